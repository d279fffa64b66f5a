//! The scheduled event that starts a reverse-sync pass: what an EventBridge
//! schedule rule sends (`"detail-type": "Scheduled Event"`, `"source":
//! "aws.events"`, `events/scheduled-reverse-sync.json`). Its content does not
//! change the pass; it is checked so that a webhook or an SQS batch sent to
//! the reverse-sync function by mistake is refused loudly instead of
//! starting a pass.

use serde::Deserialize;
use serde_json::Value;

/// The `detail-type` of EventBridge's scheduled events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// The parts of a scheduled event worth logging.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ScheduledEvent {
    /// The event's id (EventBridge's, for tracing one run).
    #[serde(default)]
    pub id: String,
    /// When the schedule fired (RFC 3339).
    #[serde(default)]
    pub time: String,
    /// The rule or schedule that fired.
    #[serde(default)]
    pub resources: Vec<String>,
}

/// Why an event is not a scheduled event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the reverse-sync function runs on its schedule only: expected an EventBridge scheduled event (\"detail-type\": \"Scheduled Event\"), got {0}"
)]
pub struct NotScheduled(String);

/// Reads a scheduled event, refusing every other shape.
pub fn parse_scheduled(payload: &Value) -> Result<ScheduledEvent, NotScheduled> {
    let detail_type = payload.get("detail-type").and_then(Value::as_str);
    if detail_type != Some(SCHEDULED_EVENT) {
        let seen = match payload {
            Value::Object(object) if object.contains_key("Records") => "an SQS batch".to_string(),
            Value::Object(object) if object.contains_key("type") => "a Didomi webhook".to_string(),
            Value::Object(_) => match detail_type {
                Some(other) => format!("detail-type {other:?}"),
                None => "an object without detail-type".to_string(),
            },
            _ => "a payload that is not a JSON object".to_string(),
        };
        return Err(NotScheduled(seen));
    }
    serde_json::from_value(payload.clone())
        .map_err(|err| NotScheduled(format!("a malformed scheduled event ({err})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sample_in_events_is_a_scheduled_event() {
        let sample: Value =
            serde_json::from_str(include_str!("../../events/scheduled-reverse-sync.json")).unwrap();
        let event = parse_scheduled(&sample).unwrap();
        assert!(!event.id.is_empty());
        assert_eq!(event.resources.len(), 1);
    }

    #[test]
    fn webhooks_and_sqs_batches_are_refused_by_name() {
        let webhook = parse_scheduled(&json!({"type": "event.created", "parameters": {}}));
        assert!(
            webhook
                .unwrap_err()
                .to_string()
                .contains("a Didomi webhook")
        );
        let batch = parse_scheduled(&json!({"Records": []}));
        assert!(batch.unwrap_err().to_string().contains("an SQS batch"));
        assert!(parse_scheduled(&json!("x")).is_err());
    }
}
