//! Reading Microsoft Entra's answers to a token request: the success body,
//! and the classification of errors by the OAuth `error` field and the
//! `AADSTS` numbers in `error_codes`, never by the description text, as
//! Microsoft asks. Nothing here ever puts the client secret or the token into
//! an error.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::AuthError;
use crate::config::Credentials;
use crate::redact::SecretString;

/// Entra error numbers (`error_codes`) this provider reacts to.
const CODE_INVALID_SECRET: u64 = 7_000_215;
const CODE_EXPIRED_SECRET: u64 = 7_000_222;
const CODE_UNKNOWN_TENANT: u64 = 90_002;
const CODE_UNKNOWN_CLIENT: u64 = 700_016;
const CODE_WRONG_RESOURCE: u64 = 500_011;

/// Longest description kept in [`AuthError::Rejected`].
const MAX_DESCRIPTION_CHARS: usize = 300;

/// A token as obtained from Entra.
pub(super) struct IssuedToken {
    pub(super) token: SecretString,
    pub(super) lifetime: Duration,
}

/// The success body: `{"token_type":"Bearer","expires_in":3599,"access_token":"…"}`.
/// Deliberately not `Debug`: it holds the token.
#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
}

/// The token in a success answer, or why the answer is not one.
pub(super) fn parse_token(status: StatusCode, body: &[u8]) -> Result<IssuedToken, AuthError> {
    let invalid = |description: &str| AuthError::Rejected {
        status: status.as_u16(),
        error: "invalid_token_response".to_string(),
        description: description.to_string(),
    };
    let parsed: TokenBody = serde_json::from_slice(body)
        .map_err(|_| invalid("the token endpoint's answer is not a JSON token response"))?;
    let token = parsed
        .access_token
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| invalid("the answer has no access_token"))?;
    if let Some(kind) = &parsed.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(invalid("the answer's token_type is not Bearer"));
    }
    let lifetime = match &parsed.expires_in {
        Some(Value::Number(number)) => number
            .as_u64()
            .or_else(|| number.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(Value::String(text)) => text.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid("the answer has no numeric expires_in"))?;
    Ok(IssuedToken {
        token: SecretString::new(token),
        lifetime: Duration::from_secs(lifetime),
    })
}

/// The error body: `{"error":"invalid_client","error_description":"AADSTS7000215: …","error_codes":[7000215],…}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Option<Vec<u64>>,
}

/// The [`AuthError`] an error answer stands for.
pub(super) fn classify_error(
    status: StatusCode,
    body: &[u8],
    credentials: &Credentials,
    host: &str,
) -> AuthError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let error = parsed.error.unwrap_or_default();
    let codes = parsed.error_codes.unwrap_or_default();
    let has = |code: u64| codes.contains(&code);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        let mut detail = format!("HTTP {} from {host}", status.as_u16());
        if !error.is_empty() {
            detail.push_str(&format!(", {error}"));
        }
        if let Some(code) = codes.first() {
            detail.push_str(&format!(" AADSTS{code}"));
        }
        return AuthError::Unavailable(detail);
    }
    if has(CODE_INVALID_SECRET) || has(CODE_EXPIRED_SECRET) || error == "invalid_client" {
        let code = codes
            .iter()
            .find(|code| [CODE_INVALID_SECRET, CODE_EXPIRED_SECRET].contains(code))
            .or(codes.first())
            .map(|code| format!("AADSTS{code}"))
            .unwrap_or_else(|| "invalid_client".to_string());
        return AuthError::InvalidClient {
            code,
            client_id: credentials.client_id.clone(),
        };
    }
    if has(CODE_UNKNOWN_TENANT) {
        return AuthError::UnknownTenant {
            tenant_id: credentials.tenant_id.clone(),
        };
    }
    if has(CODE_UNKNOWN_CLIENT) {
        return AuthError::UnknownClient {
            client_id: credentials.client_id.clone(),
        };
    }
    if has(CODE_WRONG_RESOURCE) {
        return AuthError::WrongResource {
            scope: credentials.scope(),
        };
    }
    let description = parsed
        .error_description
        .as_deref()
        .map(|text| first_line(text, credentials.client_secret.expose()))
        .unwrap_or_else(|| {
            if status.is_redirection() {
                "the token endpoint answered with a redirect, which is not followed".to_string()
            } else {
                "no OAuth error description".to_string()
            }
        });
    AuthError::Rejected {
        status: status.as_u16(),
        error: if error.is_empty() {
            "(none)".to_string()
        } else {
            error
        },
        description,
    }
}

/// The first line of an `error_description` (the rest carries trace and
/// correlation ids), shortened, with the secret masked should Entra ever echo it.
fn first_line(description: &str, secret: &str) -> String {
    let line = description.lines().next().unwrap_or_default().trim();
    let mut line: String = line.chars().take(MAX_DESCRIPTION_CHARS).collect();
    if !secret.trim().is_empty() && line.contains(secret) {
        line = line.replace(secret, "***");
    }
    line
}
