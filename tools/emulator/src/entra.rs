//! Microsoft Entra v2 client-credentials token endpoint (`/{tenant}/oauth2/v2.0/token`).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use crate::odata::pct;
use crate::server::App;
use crate::state::{IssuedToken, lock};

/// Entra-shaped error (`error`, `error_description` starting with `AADSTSnnnn:`, ...).
pub fn error(status: u16, error: &str, code: u32, text: &str) -> Response {
    let trace = uuid::Uuid::new_v4();
    let correlation = uuid::Uuid::new_v4();
    let ts = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}"),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace.to_string(),
        "correlation_id": correlation.to_string(),
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    json_response(status, body.to_string())
}

fn json_response(status: u16, body: String) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-store, no-cache"),
    );
    resp
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((pct::decode(id, true), pct::decode(secret, true)))
}

/// Normalises a resource URL so `localhost`/`127.0.0.1` and trailing slashes compare equal.
fn normalise(resource: &str) -> String {
    resource
        .trim_end_matches('/')
        .to_ascii_lowercase()
        .replace("://localhost", "://127.0.0.1")
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: the OpenID discovery document MSAL
/// (and so azure-identity) reads to find the token endpoint of an authority.
pub async fn openid_configuration(
    State(app): State<App>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let known = lock(&app.state)
        .config
        .tenant_id
        .eq_ignore_ascii_case(&tenant);
    if !known {
        return error(
            400,
            "invalid_tenant",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let base = app.public_base(&headers);
    let t = format!("{base}/{tenant}");
    let body = json!({
        "token_endpoint": format!("{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{t}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{t}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{t}/oauth2/v2.0/logout"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    });
    json_response(200, body.to_string())
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(app): State<App>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = pct::query_pairs(&String::from_utf8_lossy(&body))
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let basic = basic_auth(&headers);
    let own_base = app.public_base(&headers);
    let mut st = lock(&app.state);
    if !st.config.tenant_id.eq_ignore_ascii_case(&tenant) {
        return error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }
    let grant = field("grant_type").unwrap_or_default();
    if grant.is_empty() {
        return error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if grant != "client_credentials" {
        return error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let Some(client_id) = field("client_id").or_else(|| basic.as_ref().map(|b| b.0.clone())) else {
        return error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(cred) = st
        .credentials
        .iter()
        .find(|c| c.client_id == client_id)
        .cloned()
    else {
        return error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let Some(secret) = field("client_secret").or_else(|| basic.map(|b| b.1)) else {
        return error(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        );
    };
    if secret != cred.client_secret {
        return error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let scope = field("scope").unwrap_or_default();
    if scope.is_empty() {
        return error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    let resource = scope.strip_suffix("/.default");
    let expected = normalise(st.config.instance.as_deref().unwrap_or(&own_base));
    if resource.is_none_or(|r| normalise(r) != expected) {
        let named = resource.unwrap_or(&scope);
        return error(
            400,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {named} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let token = format!(
        "emu.{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let lifetime = st.config.token_lifetime;
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            expires: Instant::now() + lifetime,
            client_id: client_id.clone(),
        },
    );
    drop(st);
    let secs = lifetime.as_secs();
    json_response(
        200,
        json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
            .to_string(),
    )
}
