//! Reads: collections with `$select`/`$filter`/`$orderby`/`$top`/paging, and single rows.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use crate::dataverse::DvResponse;
use crate::dataverse::schema::{EntityDef, EntityKind, Kind};
use crate::errors::DvError;
use crate::odata::filter::{self, PropType};
use crate::odata::pct;
use crate::odata::query::{self, Prefer};
use crate::state::{Row, State};

/// Default and maximum page size of Dataverse.
const MAX_PAGE: usize = 5000;

fn prop_type(def: &EntityDef, name: &str) -> Option<PropType> {
    def.readable(name).map(|c| match c.kind {
        Kind::Guid | Kind::Lookup { .. } => PropType::Guid,
        Kind::Str(_) => PropType::String,
        Kind::Choice(_) | Kind::Int => PropType::Int,
        Kind::Bool => PropType::Bool,
        Kind::DateTime => PropType::DateTime,
    })
}

/// Checks `$select` names; `None` means all columns.
pub fn resolve_select(
    def: &EntityDef,
    select: Option<&Vec<String>>,
) -> Result<Option<Vec<String>>, DvError> {
    let Some(list) = select else {
        return Ok(None);
    };
    for name in list {
        if def.readable(name).is_none() {
            return Err(DvError::unknown_property(def.logical, name));
        }
    }
    Ok(Some(list.clone()))
}

/// `@odata.context` URL.
pub fn context(base: &str, def: &EntityDef, select: Option<&[String]>, entity: bool) -> String {
    let cols = select
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let suffix = if entity { "/$entity" } else { "" };
    format!("{base}/api/data/v9.2/$metadata#{}{cols}{suffix}", def.set)
}

/// Weak ETag of a row.
pub fn etag(row: &Row) -> String {
    format!(
        "W/\"{}\"",
        row.get("versionnumber")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    )
}

/// A row as the Web API shows it: `@odata.etag`, the selected columns, always the primary key.
pub fn represent(def: &EntityDef, row: &Row, select: Option<&[String]>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("@odata.etag".into(), json!(etag(row)));
    let names = select
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| def.read_names());
    for name in names.iter().map(String::as_str).chain([def.pk]) {
        out.insert(
            name.to_string(),
            row.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    out
}

/// `GET /<set>`.
pub fn collection(
    state: &State,
    base: &str,
    kind: EntityKind,
    raw_query: Option<&str>,
    prefer: &Prefer,
) -> Result<DvResponse, DvError> {
    let def = kind.def();
    let q = query::parse(raw_query)?;
    let select = resolve_select(def, q.select.as_ref())?;
    let expr = match &q.filter {
        Some(text) => {
            let e = filter::parse(text)?;
            filter::validate(&e, def.logical, &|p| prop_type(def, p))?;
            Some(e)
        }
        None => None,
    };
    for (prop, _) in &q.orderby {
        if def.readable(prop).is_none() {
            return Err(DvError::unknown_property(def.logical, prop));
        }
    }
    let mut rows: Vec<&Row> = state
        .tables
        .rows(kind)
        .iter()
        .filter(|r| expr.as_ref().is_none_or(|e| filter::eval(e, r)))
        .collect();
    rows.sort_by(|a, b| {
        q.orderby
            .iter()
            .map(|(p, desc)| {
                let o = order(a.get(p), b.get(p));
                if *desc { o.reverse() } else { o }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    // Dataverse ignores $top when a page size is requested.
    if prefer.max_page_size.is_none()
        && let Some(top) = q.top
    {
        rows.truncate(top);
    }
    let page = prefer.max_page_size.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let start = q.skip_rows.min(rows.len());
    let end = (start + page).min(rows.len());
    let value: Vec<Value> = rows[start..end]
        .iter()
        .map(|r| Value::Object(represent(def, r, select.as_deref())))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context(base, def, select.as_deref(), false)),
    );
    body.insert("value".into(), Value::Array(value));
    if end < rows.len() {
        let token = pct::encode(&query::skiptoken(end, end / page + 1));
        let mut pairs = q.raw_without_skiptoken.clone();
        pairs.push(format!("$skiptoken={token}"));
        body.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{base}/api/data/v9.2/{}?{}",
                def.set,
                pairs.join("&")
            )),
        );
    }
    let mut resp = DvResponse::json(200, &Value::Object(body));
    if let Some(n) = prefer.max_page_size {
        resp.headers.push((
            "Preference-Applied".into(),
            format!("odata.maxpagesize={n}"),
        ));
    }
    Ok(resp)
}

/// `GET /<set>(<id>)`.
pub fn single(
    state: &State,
    base: &str,
    kind: EntityKind,
    id: &str,
    raw_query: Option<&str>,
) -> Result<DvResponse, DvError> {
    let def = kind.def();
    let q = query::parse(raw_query)?;
    let select = resolve_select(def, q.select.as_ref())?;
    let row = state
        .tables
        .find(kind, id)
        .ok_or_else(|| DvError::record_not_found(def.logical, id))?;
    Ok(entity_response(200, base, def, row, select.as_deref()))
}

/// A single-entity body with `@odata.context` and an `ETag` header.
pub fn entity_response(
    status: u16,
    base: &str,
    def: &EntityDef,
    row: &Row,
    select: Option<&[String]>,
) -> DvResponse {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context(base, def, select, true)),
    );
    body.extend(represent(def, row, select));
    let mut resp = DvResponse::json(status, &Value::Object(body));
    resp.headers.push(("ETag".into(), etag(row)));
    resp
}

fn order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}
