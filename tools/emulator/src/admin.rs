//! `/_emulator/` control API for tests and demos, plus the same operations for the library handle.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::dataverse::schema::EntityKind;
use crate::faults::{FaultRule, FaultSlot};
use crate::seed::Credential;
use crate::server::App;
use crate::state::{RequestRecord, SecretEntry, Shared, lock};

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
