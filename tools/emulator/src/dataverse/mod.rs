//! The Dataverse Web API subset under `/api/data/v9.2/`.

pub mod http;
pub mod metadata;
pub mod options;
pub mod read;
pub mod schema;
pub mod whoami;
pub mod write;

use std::collections::HashMap;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::clock;
use crate::errors::DvError;
use crate::odata::filter::is_guid;
use crate::odata::query::{self, Prefer};
use crate::state::State;
use schema::{EntityDef, EntityKind};

/// JSON content type of Dataverse responses.
pub const JSON: &str = "application/json; odata.metadata=minimal";

/// A response before HTTP framing (used directly and inside `$batch`).
#[derive(Debug, Clone)]
pub struct DvResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// `set(<id>)` of a created or updated row, for `$n` Content-ID references.
    pub entity_ref: Option<String>,
}

impl DvResponse {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), JSON.into())],
            body: Some(body.to_string().into_bytes()),
            entity_ref: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            entity_ref: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<DvError> for DvResponse {
    fn from(e: DvError) -> Self {
        Self {
            status: e.status,
            headers: vec![("Content-Type".into(), JSON.into())],
            body: Some(e.body()),
            entity_ref: None,
        }
    }
}

/// Per-request context.
pub struct Ctx<'a> {
    /// `http://host:port` used in absolute URLs.
    pub base: &'a str,
    /// Content-ID → `set(<id>)` inside a `$batch`.
    pub content_ids: &'a HashMap<String, String>,
    /// systemuserid of the caller (stamped as `_createdby_value` / `_modifiedby_value`).
    pub user: &'a str,
}

/// One Web API request, path relative to `/api/data/v9.2/` and percent-decoded.
pub struct DvRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// Runs one request against the state.
pub fn execute(state: &mut State, ctx: &Ctx<'_>, req: &DvRequest<'_>) -> DvResponse {
    match route(state, ctx, req) {
        Ok(resp) => resp,
        Err(e) => e.into(),
    }
}

fn route(state: &mut State, ctx: &Ctx<'_>, req: &DvRequest<'_>) -> Result<DvResponse, DvError> {
    let path = req.path.trim_end_matches('/');
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    if first == "WhoAmI" || first == "WhoAmI()" {
        return whoami::handle(ctx, req.method, req.path, rest);
    }
    if first == "EntityDefinitions" || first.starts_with("EntityDefinitions(") {
        return metadata::handle(ctx.base, req.method, path, req.query);
    }
    if !rest.is_empty() {
        let seg = rest.split('/').next().unwrap_or(rest);
        return Err(DvError::segment_not_found(seg));
    }
    let (set, key) = match first.split_once('(') {
        Some((set, k)) => (set, Some(k.strip_suffix(')').unwrap_or(k))),
        None => (first, None),
    };
    let kind = EntityKind::from_set(set).ok_or_else(|| DvError::segment_not_found(set))?;
    let def = kind.def();
    let id = match key {
        None => None,
        Some(k) => {
            let k = k.strip_prefix(&format!("{}=", def.pk)).unwrap_or(k);
            if !is_guid(k) {
                return Err(DvError::syntax(format!(
                    "Bad Request - Error in query syntax. The key '{k}' is not a valid primary key of '{}'.",
                    def.logical
                )));
            }
            Some(k.to_ascii_lowercase())
        }
    };
    let prefer = query::prefer(header_values(req.headers, "prefer"));
    let writable = matches!(kind, EntityKind::Contact | EntityKind::Consent);
    match (req.method, id) {
        ("GET", None) => read::collection(state, ctx.base, kind, req.query, &prefer),
        ("GET", Some(id)) => read::single(state, ctx.base, kind, &id, req.query),
        ("POST", None) if writable => create(state, ctx, def, req, &prefer, None),
        ("PATCH", Some(id)) if writable => update(state, ctx, def, req, &prefer, &id),
        ("DELETE", Some(id)) if writable => delete(state, def, &id),
        (m, _) => Err(DvError::new(
            405,
            "0x80060888",
            format!("The requested resource does not support http method '{m}'."),
        )),
    }
}

fn entity_url(base: &str, def: &EntityDef, id: &str) -> String {
    format!("{base}/api/data/v9.2/{}({id})", def.set)
}

fn select_of(def: &EntityDef, req: &DvRequest<'_>) -> Result<Option<Vec<String>>, DvError> {
    let q = query::parse(req.query)?;
    read::resolve_select(def, q.select.as_ref())
}

/// POST create, or the create branch of a PATCH upsert (`forced_id`).
fn create(
    state: &mut State,
    ctx: &Ctx<'_>,
    def: &'static EntityDef,
    req: &DvRequest<'_>,
    prefer: &Prefer,
    forced_id: Option<&str>,
) -> Result<DvResponse, DvError> {
    let body = write::parse_object(def.set, req.body)?;
    let select = select_of(def, req)?;
    let changes = write::prepare(&state.tables, def, &body, ctx.content_ids)?;
    let mut row = state.blank_row(def.kind);
    row.insert("statecode".into(), json!(0));
    row.insert("statuscode".into(), json!(1));
    write::apply(def, &mut row, changes)?;
    let id = match forced_id {
        Some(id) => id.to_string(),
        None => row
            .get(def.pk)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    if state.tables.find(def.kind, &id).is_some() {
        return Err(DvError::duplicate_key());
    }
    row.insert(def.pk.into(), json!(id));
    if def.kind == EntityKind::Consent {
        if state.config.strict_required {
            write::check_required(def, &row)?;
        } else if row.get("msdynmkt_source").is_none_or(Value::is_null) {
            row.insert("msdynmkt_source".into(), json!(schema::SOURCE_DEFAULT));
        }
        // Consent rows always belong to the owner of their purpose (CI-J business-unit rule).
        let owner = row
            .get("_msdynmkt_purposeid_value")
            .and_then(Value::as_str)
            .and_then(|p| state.tables.find(EntityKind::Purpose, p))
            .and_then(|p| p.get("_ownerid_value").cloned())
            .unwrap_or(json!(crate::seed::DEFAULT_OWNER));
        row.insert("_ownerid_value".into(), owner);
    } else {
        row.insert("_ownerid_value".into(), json!(crate::seed::DEFAULT_OWNER));
    }
    let now = clock::format(state.clock.next());
    row.insert("createdon".into(), json!(now));
    row.insert("modifiedon".into(), json!(now));
    row.insert("_createdby_value".into(), json!(ctx.user));
    row.insert("_modifiedby_value".into(), json!(ctx.user));
    let version = state.next_version();
    row.insert("versionnumber".into(), json!(version));
    let url = entity_url(ctx.base, def, &id);
    let mut resp = if prefer.return_representation {
        let mut r = read::entity_response(201, ctx.base, def, &row, select.as_deref());
        r.headers
            .push(("Preference-Applied".into(), "return=representation".into()));
        r
    } else {
        let mut r = DvResponse::empty(204);
        r.headers.push(("OData-EntityId".into(), url));
        r
    };
    resp.entity_ref = Some(format!("{}({id})", def.set));
    state.tables.push(def.kind, row);
    Ok(resp)
}

fn update(
    state: &mut State,
    ctx: &Ctx<'_>,
    def: &'static EntityDef,
    req: &DvRequest<'_>,
    prefer: &Prefer,
    id: &str,
) -> Result<DvResponse, DvError> {
    let if_match = req.headers.get("if-match").and_then(|v| v.to_str().ok());
    let if_none_match = req
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let Some(pos) = state.tables.position(def.kind, id) else {
        if if_match.is_some() {
            return Err(DvError::record_not_found(def.logical, id));
        }
        return create(state, ctx, def, req, prefer, Some(id));
    };
    if if_none_match.is_some_and(|v| v.trim() == "*") {
        return Err(DvError::duplicate_key());
    }
    let current = &state.tables.rows(def.kind)[pos];
    if let Some(tag) = if_match.map(str::trim).filter(|t| *t != "*")
        && tag != read::etag(current)
    {
        return Err(DvError::version_mismatch());
    }
    let body = write::parse_object(def.set, req.body)?;
    let select = select_of(def, req)?;
    let mut changes = write::prepare(&state.tables, def, &body, ctx.content_ids)?;
    // The key comes from the URL; a PK in the body cannot move the row.
    changes.retain(|(k, _)| k != def.pk);
    let mut row = current.clone();
    write::apply(def, &mut row, changes)?;
    row.insert(
        "modifiedon".into(),
        json!(clock::format(state.clock.next())),
    );
    row.insert("_modifiedby_value".into(), json!(ctx.user));
    let version = state.next_version();
    row.insert("versionnumber".into(), json!(version));
    let mut resp = if prefer.return_representation {
        let mut r = read::entity_response(200, ctx.base, def, &row, select.as_deref());
        r.headers
            .push(("Preference-Applied".into(), "return=representation".into()));
        r
    } else {
        let mut r = DvResponse::empty(204);
        r.headers
            .push(("OData-EntityId".into(), entity_url(ctx.base, def, id)));
        r
    };
    resp.entity_ref = Some(format!("{}({id})", def.set));
    state.tables.replace(def.kind, pos, row);
    Ok(resp)
}

fn delete(state: &mut State, def: &EntityDef, id: &str) -> Result<DvResponse, DvError> {
    let pos = state
        .tables
        .position(def.kind, id)
        .ok_or_else(|| DvError::record_not_found(def.logical, id))?;
    state.tables.remove(def.kind, pos);
    Ok(DvResponse::empty(204))
}
