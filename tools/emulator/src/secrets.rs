//! AWS Secrets Manager `GetSecretValue` (AWS JSON 1.1 on `POST /`); SigV4 is not checked.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::server::App;
use crate::state::lock;

/// AWS account id used in ARNs.
const ACCOUNT: &str = "123456789012";

/// AWS JSON error body.
pub fn error(status: u16, kind: &str, message: &str) -> Response {
    respond(status, json!({"__type": kind, "message": message}))
}

fn respond(status: u16, body: Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// Region from the SigV4 credential scope, so ARNs match what the caller configured.
fn region(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_string()
}

/// Stable 6-character ARN suffix, as AWS appends to secret names.
fn suffix(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    let mut n = h.finish();
    (0..6)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Full ARN of a secret.
pub fn arn(region: &str, name: &str) -> String {
    format!(
        "arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-{}",
        suffix(name)
    )
}

/// Name a `SecretId` refers to (a name, a full ARN or a partial ARN).
fn name_of(secret_id: &str) -> String {
    match secret_id.split_once(":secret:") {
        Some((_, tail)) => {
            let full = format!("-{}", suffix(tail.rsplit_once('-').map_or(tail, |t| t.0)));
            tail.strip_suffix(&full).unwrap_or(tail).to_string()
        }
        None => secret_id.to_string(),
    }
}

/// `POST /` with `X-Amz-Target`.
pub async fn handle(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target != "secretsmanager.GetSecretValue" {
        return error(
            400,
            "UnknownOperationException",
            &format!("The emulator does not implement '{target}'."),
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(
            400,
            "SerializationException",
            "Request body is not valid JSON.",
        );
    };
    let Some(secret_id) = req.get("SecretId").and_then(Value::as_str) else {
        return error(400, "InvalidParameterException", "SecretId is required.");
    };
    let name = name_of(secret_id);
    let region = region(&headers);
    let st = lock(&app.state);
    let Some(entry) = st.secrets.get(&name) else {
        return error(
            400,
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        );
    };
    respond(
        200,
        json!({
            "ARN": arn(&region, &name),
            "Name": name,
            "SecretString": entry.value,
            "VersionId": entry.version_id,
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": entry.created,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_round_trips_to_name() {
        let a = arn("eu-west-1", "didomi/cpc-sync-config");
        assert!(a.starts_with(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:didomi/cpc-sync-config-"
        ));
        assert_eq!(name_of(&a), "didomi/cpc-sync-config");
        assert_eq!(
            name_of("arn:aws:secretsmanager:eu-west-1:123456789012:secret:plain"),
            "plain"
        );
        assert_eq!(name_of("plain-name"), "plain-name");
    }
}
