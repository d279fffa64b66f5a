//! `/_emulator/` control API for tests and demos, plus the same operations for the library handle.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use serde::Deserialize;

use crate::clock::{self, ClockSetting};
use crate::cost::CostModel;
use crate::dataverse::schema::{EntityKind, Kind};
use crate::dataverse::write;
use crate::faults::{FaultRule, FaultSlot};
use crate::seed::Credential;
use crate::server::App;
use crate::state::{RequestRecord, SecretEntry, Shared, lock};
use crate::users;

/// Admin routes (mounted under `/_emulator`).
pub fn router() -> Router<App> {
    Router::new()
        .route("/consents", get(consents))
        .route("/contacts", get(contacts))
        .route("/requests", get(requests).delete(clear))
        .route("/faults", put(faults))
        .route("/secrets/{*name}", put(secret))
        .route("/expire-tokens", post(expire))
        .route("/credentials", put(credentials))
        .route("/rows/{set}/{id}", post(edit))
        .route("/clock", put(clock_setting))
        .route("/cost", get(cost).put(set_cost))
        .route("/stats", get(stats))
        .route("/didomi/webhook", put(didomi_webhook))
        .route("/didomi/webhooks", get(didomi_webhooks))
}

/// `PUT /_emulator/didomi/webhook` `{"url": "http://…" | null}`: where the
/// emulated Didomi sends its `event.created` webhooks.
async fn didomi_webhook(State(app): State<App>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Target {
        url: Option<String>,
    }
    match serde_json::from_slice::<Target>(&body) {
        Ok(target) => {
            app.didomi.set_webhook_url(target.url);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("expected {{\"url\": string | null}}: {err}")})),
        )
            .into_response(),
    }
}

/// `GET /_emulator/didomi/webhooks`: the webhooks sent, `[{"body", "status"}]`.
async fn didomi_webhooks(State(app): State<App>) -> Json<Value> {
    let sent: Vec<Value> = app
        .didomi
        .webhook_deliveries()
        .into_iter()
        .map(|delivery| json!({"body": delivery.body, "status": delivery.status}))
        .collect();
    Json(Value::Array(sent))
}

/// An edit "as a person in the Dynamics UI" (`POST /_emulator/rows/<set>/<id>`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UiEdit {
    /// Columns to change, by read name (`_msdynmkt_topicid_value` for lookups), as in seeds;
    /// `modifiedon` may be given to pin the stamp of this edit.
    columns: serde_json::Map<String, Value>,
    /// systemuserid of the editing person; default [`users::SOMEONE_ELSE`].
    #[serde(default)]
    modified_by: Option<String>,
}

/// Applies a UI edit: only the given columns change (the UI keeps `msdynmkt_reason` unless the
/// person edits it), `modifiedon` and the ETag move on, `_modifiedby_value` names the person.
pub fn edit_row(
    state: &Shared,
    entity_set: &str,
    id: &str,
    columns: Value,
    modified_by: Option<&str>,
) -> Result<Value, (u16, String)> {
    let kind = EntityKind::from_set(entity_set)
        .ok_or_else(|| (404, format!("unknown entity set '{entity_set}'")))?;
    let def = kind.def();
    let Value::Object(columns) = columns else {
        return Err((400, "columns must be a JSON object".into()));
    };
    let mut st = lock(state);
    let pos = st.tables.position(kind, id).ok_or_else(|| {
        (
            404,
            format!("{} With Id = {id} Does Not Exist", def.logical),
        )
    })?;
    let mut changes = Vec::new();
    let mut stamp = None;
    for (name, value) in columns {
        if name == "modifiedon" {
            let t = value
                .as_str()
                .and_then(clock::parse)
                .ok_or_else(|| (400, format!("modifiedon: not a date-time: {value}")))?;
            stamp = Some(clock::format(t));
            continue;
        }
        let col = def
            .readable(&name)
            .filter(|c| c.writable || matches!(c.kind, Kind::Lookup { .. }))
            .filter(|c| c.name != def.pk)
            .ok_or_else(|| (400, format!("column '{name}' cannot be edited in the UI")))?;
        let value = match col.kind {
            Kind::Lookup { target, .. } if !value.is_null() => {
                let target_id = value.as_str().unwrap_or_default().to_ascii_lowercase();
                if st.tables.find(target, &target_id).is_none() {
                    return Err((
                        404,
                        format!("{name}: no {} {target_id}", target.def().logical),
                    ));
                }
                serde_json::json!(target_id)
            }
            Kind::Lookup { .. } => Value::Null,
            _ => write::checked(def, col, &value).map_err(|e| (e.status, e.message))?,
        };
        changes.push((name, value));
    }
    let mut row = st.tables.rows(kind)[pos].clone();
    write::apply(def, &mut row, changes).map_err(|e| (e.status, e.message))?;
    let stamp = stamp.unwrap_or_else(|| clock::format(st.clock.next()));
    row.insert("modifiedon".into(), serde_json::json!(stamp));
    let version = st.next_version();
    row.insert("versionnumber".into(), serde_json::json!(version));
    let by = modified_by.unwrap_or(users::SOMEONE_ELSE);
    row.insert("_modifiedby_value".into(), serde_json::json!(by));
    st.tables.replace(kind, pos, row.clone());
    Ok(Value::Object(row))
}

/// Rows of a table sorted by `createdon`.
pub fn dump(state: &Shared, kind: EntityKind) -> Vec<Value> {
    lock(state).dump(kind)
}

/// Copy of the request log.
pub fn request_log(state: &Shared) -> Vec<RequestRecord> {
    lock(state).requests.clone()
}

/// Empties the request log.
pub fn clear_log(state: &Shared) {
    lock(state).requests.clear();
}

/// Replaces all fault rules (counters restart).
pub fn replace_faults(state: &Shared, rules: Vec<FaultRule>) {
    lock(state).faults = rules.into_iter().map(FaultSlot::new).collect();
}

/// Creates or replaces a secret (new VersionId), emulating rotation.
pub fn put_secret(state: &Shared, name: &str, value: &str) {
    lock(state)
        .secrets
        .insert(name.to_string(), SecretEntry::new(value.to_string()));
}

/// Sets (or adds) a client secret for an app registration.
pub fn put_client_secret(state: &Shared, client_id: &str, secret: &str) {
    let mut st = lock(state);
    match st.credentials.iter_mut().find(|c| c.client_id == client_id) {
        Some(c) => c.client_secret = secret.to_string(),
        None => st.credentials.push(Credential {
            client_id: client_id.to_string(),
            client_secret: secret.to_string(),
            user_id: None,
        }),
    }
}

/// Revokes all issued tokens.
pub fn revoke_tokens(state: &Shared) {
    lock(state).expire_tokens();
}

async fn consents(State(app): State<App>) -> Json<Vec<Value>> {
    Json(dump(&app.state, EntityKind::Consent))
}

async fn contacts(State(app): State<App>) -> Json<Vec<Value>> {
    Json(dump(&app.state, EntityKind::Contact))
}

async fn requests(State(app): State<App>) -> Json<Vec<RequestRecord>> {
    Json(request_log(&app.state))
}

async fn clear(State(app): State<App>) -> StatusCode {
    clear_log(&app.state);
    StatusCode::NO_CONTENT
}

fn bad_json(e: serde_json::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": format!("invalid JSON: {e}")})),
    )
        .into_response()
}

async fn faults(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<FaultRule>>(&body) {
        Ok(rules) => {
            replace_faults(&app.state, rules);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

async fn secret(State(app): State<App>, Path(name): Path<String>, body: Bytes) -> StatusCode {
    put_secret(&app.state, &name, &String::from_utf8_lossy(&body));
    StatusCode::NO_CONTENT
}

async fn edit(
    State(app): State<App>,
    Path((set, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let edit: UiEdit = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return bad_json(e),
    };
    let columns = Value::Object(edit.columns);
    match edit_row(&app.state, &set, &id, columns, edit.modified_by.as_deref()) {
        Ok(row) => Json(row).into_response(),
        Err((status, msg)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(json!({"error": msg})),
        )
            .into_response(),
    }
}

async fn clock_setting(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<ClockSetting>(&body) {
        Ok(setting) => {
            lock(&app.state).clock.set(setting);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

async fn cost(State(app): State<App>) -> Json<CostModel> {
    Json(lock(&app.state).cost.clone())
}

async fn set_cost(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<CostModel>(&body) {
        Ok(c) => {
            lock(&app.state).set_cost(c);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}

async fn stats(State(app): State<App>) -> Json<crate::state::Stats> {
    Json(lock(&app.state).stats())
}

async fn expire(State(app): State<App>) -> StatusCode {
    revoke_tokens(&app.state);
    StatusCode::NO_CONTENT
}

async fn credentials(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Credential>>(&body) {
        Ok(creds) => {
            lock(&app.state).credentials = creds;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_json(e),
    }
}
