//! The webhook envelope (`{"type", "regulation", "parameters"}`) and the one
//! function that turns a raw body into a typed [`Webhook`] or a precise error.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::entities::{ConsentEvent, DidomiUser, SourceRef};

/// The largest webhook body accepted, in bytes (256 KiB). A real Didomi
/// webhook is a few kilobytes; this leaves room for thousands of preference
/// values while staying inside every SQS message size setting.
pub const MAX_WEBHOOK_BYTES: usize = 256 * 1024;

/// The envelope `type` of a backfill snapshot message (see [`WebhookKind::Snapshot`]).
pub const SNAPSHOT_TYPE: &str = "didomi-cpc-sync.snapshot";

/// The six webhook types Didomi documents, plus whatever it may add later.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookKind {
    /// `event.created`: a new consent event.
    EventCreated,
    /// `event.updated`: a consent event changed (e.g. approved).
    EventUpdated,
    /// `event.deleted`: a consent event was deleted.
    EventDeleted,
    /// `user.created`: a new user and their full consent state.
    UserCreated,
    /// `user.updated`: a user's consent state changed (old and new state).
    UserUpdated,
    /// `user.deleted`: a user was deleted.
    UserDeleted,
    /// `didomi-cpc-sync.snapshot`: not a Didomi type but this product's own,
    /// sent by `cpc-sync backfill --queue-url`: one user's current state,
    /// written whatever `properties.webhook_types` says.
    Snapshot,
    /// A type this product does not know.
    Unknown(String),
}

impl WebhookKind {
    /// The six documented type names.
    pub const KNOWN: [&'static str; 6] = [
        "event.created",
        "event.updated",
        "event.deleted",
        "user.created",
        "user.updated",
        "user.deleted",
    ];

    /// Reads a type name; anything undocumented becomes [`WebhookKind::Unknown`].
    pub fn parse(name: &str) -> Self {
        match name {
            "event.created" => WebhookKind::EventCreated,
            "event.updated" => WebhookKind::EventUpdated,
            "event.deleted" => WebhookKind::EventDeleted,
            "user.created" => WebhookKind::UserCreated,
            "user.updated" => WebhookKind::UserUpdated,
            "user.deleted" => WebhookKind::UserDeleted,
            SNAPSHOT_TYPE => WebhookKind::Snapshot,
            other => WebhookKind::Unknown(other.to_string()),
        }
    }

    /// The type name as Didomi writes it.
    pub fn as_str(&self) -> &str {
        match self {
            WebhookKind::EventCreated => "event.created",
            WebhookKind::EventUpdated => "event.updated",
            WebhookKind::EventDeleted => "event.deleted",
            WebhookKind::UserCreated => "user.created",
            WebhookKind::UserUpdated => "user.updated",
            WebhookKind::UserDeleted => "user.deleted",
            WebhookKind::Snapshot => SNAPSHOT_TYPE,
            WebhookKind::Unknown(name) => name,
        }
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed Didomi webhook, with the entities each type carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Webhook {
    /// `event.created`.
    EventCreated {
        /// Envelope-level `regulation`.
        regulation: Option<String>,
        /// `parameters.entity`.
        event: ConsentEvent,
    },
    /// `event.updated`; decisions come from `new_entity`.
    EventUpdated {
        /// Envelope-level `regulation`.
        regulation: Option<String>,
        /// `parameters.new_entity`.
        event: ConsentEvent,
    },
    /// `user.created`.
    UserCreated {
        /// Envelope-level `regulation`.
        regulation: Option<String>,
        /// `parameters.entity`.
        user: DidomiUser,
    },
    /// `user.updated`: full state before and after.
    UserUpdated {
        /// Envelope-level `regulation`.
        regulation: Option<String>,
        /// `parameters.source`: the event that caused the change.
        source: Option<SourceRef>,
        /// `parameters.old_entity`.
        old: Option<DidomiUser>,
        /// `parameters.new_entity`.
        new: DidomiUser,
    },
    /// A backfill snapshot: one user's whole current state (`parameters.entity`).
    Snapshot {
        /// Envelope-level `regulation`.
        regulation: Option<String>,
        /// `parameters.entity`.
        user: DidomiUser,
    },
    /// `event.deleted` or `user.deleted`: acknowledged, never written.
    Deleted {
        /// Which of the two.
        kind: WebhookKind,
        /// The deleted entity's id, for the log line.
        entity_id: Option<String>,
    },
    /// A type this product does not know: acknowledged, never written.
    Unknown {
        /// The type name as received.
        type_name: String,
    },
}

impl Webhook {
    /// The webhook's type.
    pub fn kind(&self) -> WebhookKind {
        match self {
            Webhook::EventCreated { .. } => WebhookKind::EventCreated,
            Webhook::EventUpdated { .. } => WebhookKind::EventUpdated,
            Webhook::UserCreated { .. } => WebhookKind::UserCreated,
            Webhook::UserUpdated { .. } => WebhookKind::UserUpdated,
            Webhook::Snapshot { .. } => WebhookKind::Snapshot,
            Webhook::Deleted { kind, .. } => kind.clone(),
            Webhook::Unknown { type_name } => WebhookKind::Unknown(type_name.clone()),
        }
    }
}

/// Why a body is not a usable Didomi webhook. None of these can be fixed by
/// retrying: the same bytes will fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The body is empty or whitespace.
    #[error("the webhook body is empty")]
    Empty,
    /// The body exceeds [`MAX_WEBHOOK_BYTES`].
    #[error("the webhook body is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON (serde_json's message has line and column).
    #[error("the webhook body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field is missing or has the wrong type; `path` names it.
    #[error("invalid webhook: `{path}`: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `parameters.entity.consents.purposes[0].enabled`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The payload uses Didomi's "flatten" option, which this product does not read.
    #[error(
        "`{path}` is a flattened payload (keys joined with `__`); turn off the flatten option in the Didomi webhook settings"
    )]
    Flattened {
        /// The flattened entity.
        path: String,
    },
}

impl WebhookError {
    /// Always false: a malformed webhook stays malformed.
    pub fn is_retryable(&self) -> bool {
        false
    }

    fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        WebhookError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses a raw webhook body.
///
/// Unknown webhook types parse successfully (as [`Webhook::Unknown`]) so the
/// caller can acknowledge them; deleted entities are read only for their id.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook, WebhookError> {
    if body.len() > MAX_WEBHOOK_BYTES {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            limit: MAX_WEBHOOK_BYTES,
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(WebhookError::Empty);
    }
    let root: Value =
        serde_json::from_slice(body).map_err(|err| WebhookError::InvalidJson(err.to_string()))?;
    parse_webhook_value(root)
}

/// Parses a webhook that is already JSON (e.g. a direct Lambda invocation).
pub fn parse_webhook_value(root: Value) -> Result<Webhook, WebhookError> {
    let Value::Object(mut envelope) = root else {
        return Err(WebhookError::invalid(
            "$",
            "the webhook must be a JSON object",
        ));
    };
    let type_name = match envelope.get("type") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        Some(Value::String(_)) => return Err(WebhookError::invalid("type", "must not be empty")),
        Some(_) => return Err(WebhookError::invalid("type", "must be a string")),
        None => return Err(WebhookError::invalid("type", "is missing")),
    };
    let regulation = match envelope.get("regulation") {
        None | Some(Value::Null) => None,
        Some(Value::String(regulation)) => Some(regulation.clone()),
        Some(_) => return Err(WebhookError::invalid("regulation", "must be a string")),
    };
    let kind = WebhookKind::parse(&type_name);
    if let WebhookKind::Unknown(type_name) = kind {
        return Ok(Webhook::Unknown { type_name });
    }
    let mut parameters = match envelope.remove("parameters") {
        Some(Value::Object(parameters)) => parameters,
        Some(_) => return Err(WebhookError::invalid("parameters", "must be an object")),
        None => return Err(WebhookError::invalid("parameters", "is missing")),
    };
    Ok(match kind {
        WebhookKind::EventCreated => Webhook::EventCreated {
            regulation,
            event: required(&mut parameters, "entity")?,
        },
        WebhookKind::EventUpdated => Webhook::EventUpdated {
            regulation,
            event: required(&mut parameters, "new_entity")?,
        },
        WebhookKind::UserCreated => Webhook::UserCreated {
            regulation,
            user: required(&mut parameters, "entity")?,
        },
        WebhookKind::UserUpdated => Webhook::UserUpdated {
            regulation,
            source: optional(&mut parameters, "source")?,
            old: optional(&mut parameters, "old_entity")?,
            new: required(&mut parameters, "new_entity")?,
        },
        WebhookKind::Snapshot => Webhook::Snapshot {
            regulation,
            user: required(&mut parameters, "entity")?,
        },
        WebhookKind::EventDeleted | WebhookKind::UserDeleted => Webhook::Deleted {
            entity_id: parameters
                .get("entity")
                .and_then(|entity| entity.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string),
            kind,
        },
        WebhookKind::Unknown(_) => unreachable!("unknown kinds returned above"),
    })
}

fn required<T: DeserializeOwned>(
    parameters: &mut Map<String, Value>,
    key: &str,
) -> Result<T, WebhookError> {
    optional(parameters, key)?
        .ok_or_else(|| WebhookError::invalid(format!("parameters.{key}"), "is missing"))
}

fn optional<T: DeserializeOwned>(
    parameters: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, WebhookError> {
    let prefix = format!("parameters.{key}");
    match parameters.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(entity)) => {
            if entity.keys().any(|name| name.contains("__")) {
                return Err(WebhookError::Flattened { path: prefix });
            }
            serde_path_to_error::deserialize(Value::Object(entity))
                .map(Some)
                .map_err(|err| {
                    let inner = err.path().to_string();
                    let path = if inner == "." {
                        prefix
                    } else {
                        format!("{prefix}.{inner}")
                    };
                    WebhookError::invalid(path, err.into_inner().to_string())
                })
        }
        Some(_) => Err(WebhookError::invalid(prefix, "must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Webhook, WebhookError> {
        parse_webhook(value.to_string().as_bytes())
    }

    fn minimal_event() -> Value {
        json!({"id": "ev-1", "created_at": "2025-06-01T10:00:00Z",
               "user": {"id": "u-1", "organization_user_id": "jane@example.com"},
               "consents": {"purposes": [{"id": "marketing", "enabled": true}]}})
    }

    #[test]
    fn event_created_reads_entity() {
        let webhook =
            parse(json!({"type": "event.created", "parameters": {"entity": minimal_event()}}));
        let Ok(Webhook::EventCreated {
            event,
            regulation: None,
        }) = webhook
        else {
            panic!("{webhook:?}")
        };
        assert_eq!(event.id, "ev-1");
        assert_eq!(event.consents.purposes[0].enabled, Some(true));
    }

    #[test]
    fn event_updated_reads_new_entity_and_ignores_old() {
        let webhook = parse(json!({"type": "event.updated", "regulation": "gdpr",
            "parameters": {"source": {"id": "x"}, "old_entity": {"garbage": true}, "new_entity": minimal_event()}}));
        assert!(
            matches!(webhook, Ok(Webhook::EventUpdated { .. })),
            "{webhook:?}"
        );
    }

    #[test]
    fn user_updated_reads_source_old_and_new() {
        let user = json!({"id": "u-1", "organization_user_id": "jane@example.com", "version": 2,
                          "consents": {"purposes": []}});
        let webhook = parse(json!({"type": "user.updated", "parameters": {
            "source": {"id": "ev-9", "created_at": "2025-04-02T16:05:44.031Z"},
            "old_entity": user, "new_entity": user}}));
        let Ok(Webhook::UserUpdated {
            source: Some(source),
            old: Some(_),
            new,
            ..
        }) = webhook
        else {
            panic!("{webhook:?}")
        };
        assert_eq!(source.id.as_deref(), Some("ev-9"));
        assert_eq!(new.version, Some(2));
    }

    #[test]
    fn deleted_types_keep_only_the_entity_id() {
        let webhook =
            parse(json!({"type": "user.deleted", "parameters": {"entity": {"id": "u-1"}}}));
        assert_eq!(
            webhook,
            Ok(Webhook::Deleted {
                kind: WebhookKind::UserDeleted,
                entity_id: Some("u-1".into())
            })
        );
    }

    #[test]
    fn unknown_type_parses_for_acknowledgement() {
        let webhook = parse(json!({"type": "widget.published", "parameters": 42}));
        assert_eq!(
            webhook,
            Ok(Webhook::Unknown {
                type_name: "widget.published".into()
            })
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut event = minimal_event();
        event["delegate"] = json!({"id": "agent"});
        event["brand_new_field"] = json!([1, 2, 3]);
        let webhook =
            parse(json!({"type": "event.created", "extra": 1, "parameters": {"entity": event}}));
        assert!(webhook.is_ok(), "{webhook:?}");
    }

    #[test]
    fn empty_body_is_rejected() {
        assert_eq!(parse_webhook(b"  \n"), Err(WebhookError::Empty));
    }

    #[test]
    fn oversized_body_is_rejected_before_parsing() {
        let body = vec![b' '; MAX_WEBHOOK_BYTES + 1];
        assert!(matches!(
            parse_webhook(&body),
            Err(WebhookError::TooLarge { .. })
        ));
    }

    #[test]
    fn invalid_json_reports_position() {
        let err = parse_webhook(b"{\"type\": ").unwrap_err();
        assert!(
            matches!(&err, WebhookError::InvalidJson(msg) if msg.contains("line 1")),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_webhook(body.as_bytes()),
            Err(WebhookError::InvalidJson(_))
        ));
    }

    #[test]
    fn missing_type_is_named() {
        let err = parse(json!({"parameters": {}})).unwrap_err();
        assert_eq!(
            err,
            WebhookError::Invalid {
                path: "type".into(),
                message: "is missing".into()
            }
        );
    }

    #[test]
    fn wrong_field_type_names_the_full_path() {
        let mut event = minimal_event();
        event["consents"]["purposes"][0]["enabled"] = json!("yes");
        let err =
            parse(json!({"type": "event.created", "parameters": {"entity": event}})).unwrap_err();
        let WebhookError::Invalid { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path, "parameters.entity.consents.purposes[0].enabled");
    }

    #[test]
    fn missing_entity_is_named() {
        let err = parse(json!({"type": "event.created", "parameters": {}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid webhook: `parameters.entity`: is missing"
        );
    }

    #[test]
    fn flattened_payload_is_explained() {
        let err = parse(json!({"type": "event.created", "parameters": {"entity": {
            "id": "x", "user__organization_user_id": "jane@example.com"}}}))
        .unwrap_err();
        assert!(err.to_string().contains("flatten option"), "{err}");
    }

    #[test]
    fn non_object_body_is_rejected() {
        let err = parse(json!([1, 2])).unwrap_err();
        assert!(
            matches!(err, WebhookError::Invalid { ref path, .. } if path == "$"),
            "{err}"
        );
    }
}
