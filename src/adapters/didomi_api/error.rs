//! What can go wrong talking to the Didomi API, each saying what to fix and
//! whether trying again could help.

use std::time::Duration;

/// A failed Didomi API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidomiApiError {
    /// `POST /sessions` answered 400/401/403: the key or secret is wrong.
    #[error(
        "Didomi refused the API key ({status}: {message}); check didomi_api.key and didomi_api.secret (Didomi Console → Settings → Private API keys)"
    )]
    BadCredentials {
        /// HTTP status.
        status: u16,
        /// Didomi's `message`.
        message: String,
    },
    /// 403 on a consents route whose message points at the Consents API.
    #[error(
        "the API key has no access to the Consents API ({message}); it is a separately priced Didomi product: ask your Didomi contact to enable it, or read a batch export with --from-export DIR"
    )]
    NoConsentsApiAccess {
        /// Didomi's `message`.
        message: String,
    },
    /// 403/404 naming the organization: the key does not belong to it.
    #[error(
        "organization {organization_id:?} is unknown to this API key ({status}: {message}); check didomi_api.organization_id (the id in the Console URL, not the name)"
    )]
    UnknownOrganization {
        /// `didomi_api.organization_id`.
        organization_id: String,
        /// HTTP status.
        status: u16,
        /// Didomi's `message`.
        message: String,
    },
    /// A 401 persisted after a fresh session.
    #[error("Didomi rejected a fresh access token ({message}); the key may have been revoked")]
    Unauthorized {
        /// Didomi's `message`.
        message: String,
    },
    /// Any other HTTP error.
    #[error("Didomi answered {status} to {operation}: {message}")]
    Http {
        /// What was being done.
        operation: String,
        /// HTTP status.
        status: u16,
        /// Didomi's `message`, or the start of the body.
        message: String,
        /// `Retry-After` of a 429/503, when given.
        retry_after: Option<Duration>,
    },
    /// Connection refused, reset, timed out.
    #[error("cannot reach the Didomi API for {operation}: {message}")]
    Transport {
        /// What was being done.
        operation: String,
        /// The transport error.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("unexpected answer from Didomi to {operation}: {message}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What is wrong.
        message: String,
    },
    /// The wait for the next attempt would pass the deadline.
    #[error("{0}; gave up before the deadline (try again later, or resume from the checkpoint)")]
    Deadline(Box<DidomiApiError>),
}

impl DidomiApiError {
    /// True when the same call may succeed later: throttling, 5xx, transport
    /// failures, the deadline. Configuration errors are never retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            DidomiApiError::Http { status, .. } => *status == 429 || *status >= 500,
            DidomiApiError::Transport { .. } | DidomiApiError::Deadline(_) => true,
            DidomiApiError::BadCredentials { .. }
            | DidomiApiError::NoConsentsApiAccess { .. }
            | DidomiApiError::UnknownOrganization { .. }
            | DidomiApiError::Unauthorized { .. }
            | DidomiApiError::Protocol { .. } => false,
        }
    }

    /// True for errors an operator fixes in the configuration.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            DidomiApiError::BadCredentials { .. }
                | DidomiApiError::NoConsentsApiAccess { .. }
                | DidomiApiError::UnknownOrganization { .. }
                | DidomiApiError::Unauthorized { .. }
        )
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DidomiApiError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Didomi's error body (`{"code", "name", "message", "errors"}`), reduced to
/// its message; the start of the body when it is not that shape.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|value| value.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let text = message
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    // Messages may quote request values; never let an address through.
    crate::redact::mask_emails_in(&text)
}

/// Reads a 403/404 on a consents route: the Consents API not enabled, the
/// organization unknown to the key, or neither.
pub fn classify_forbidden(
    status: u16,
    message: &str,
    organization_id: &str,
    operation: &str,
) -> DidomiApiError {
    let lower = message.to_lowercase();
    if lower.contains("consents api") || lower.contains("consents_api") || lower.contains("premium")
    {
        DidomiApiError::NoConsentsApiAccess {
            message: message.to_string(),
        }
    } else if lower.contains("organization") || status == 404 {
        DidomiApiError::UnknownOrganization {
            organization_id: organization_id.to_string(),
            status,
            message: message.to_string(),
        }
    } else {
        DidomiApiError::Http {
            operation: operation.to_string(),
            status,
            message: message.to_string(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_outages_are_retryable_configuration_is_not() {
        let http = |status| DidomiApiError::Http {
            operation: "x".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(400).is_retryable());
        let bad = DidomiApiError::BadCredentials {
            status: 400,
            message: "Invalid authentication information".into(),
        };
        assert!(!bad.is_retryable() && bad.is_configuration());
    }

    #[test]
    fn forbidden_is_told_apart_by_its_message() {
        assert!(matches!(
            classify_forbidden(403, "The Consents API is not enabled", "acme", "x"),
            DidomiApiError::NoConsentsApiAccess { .. }
        ));
        assert!(matches!(
            classify_forbidden(403, "Access to organization acme denied", "acme", "x"),
            DidomiApiError::UnknownOrganization { .. }
        ));
        assert!(matches!(
            classify_forbidden(403, "nope", "acme", "x"),
            DidomiApiError::Http { status: 403, .. }
        ));
    }

    #[test]
    fn error_messages_never_carry_an_address() {
        let body = br#"{"code":400,"name":"BadRequest","message":"bad user jane@example.com","errors":{}}"#;
        let message = error_message(body);
        assert!(!message.contains("jane@"), "{message}");
        assert!(message.starts_with("bad user u:"), "{message}");
    }
}
