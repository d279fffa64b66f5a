//! Recognises the three event shapes the function accepts (README, "What it does with a webhook") and
//! pulls the Didomi webhook bodies out of them: an SQS batch, an API Gateway
//! HTTP API v2 / Function URL request, or a bare webhook envelope.

use base64::Engine;
use serde_json::Value;

/// One SQS message carrying a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMessage {
    /// `messageId`, reported back in `batchItemFailures` when the message fails.
    pub message_id: String,
    /// The message body: the webhook as Didomi posted it.
    pub body: String,
}

/// A recognised invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// An SQS batch (`Records[*].eventSource == "aws:sqs"`).
    Sqs(Vec<SqsMessage>),
    /// An HTTP API v2 or Function URL request; `body` is already base64-decoded.
    Http {
        /// The request body bytes.
        body: Vec<u8>,
        /// `requestContext.requestId`, for log correlation.
        request_id: Option<String>,
    },
    /// A bare Didomi webhook envelope (direct invoke, `sam local invoke`).
    Direct(Value),
}

/// The invocation is none of the accepted shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// Not recognisable at all.
    #[error(
        "unrecognised event: expected an SQS batch (Records from aws:sqs), an API Gateway HTTP API / Function URL request, or a Didomi webhook envelope ({{\"type\", \"parameters\"}})"
    )]
    Unrecognised,
    /// `Records` from a source other than SQS.
    #[error("unsupported event source {0:?}: only aws:sqs records are processed")]
    UnsupportedSource(String),
    /// An SQS record without `messageId` or `body` (cannot be reported back).
    #[error("SQS record {index} has no {field}")]
    BadRecord {
        /// Position in `Records`.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// An HTTP request whose body claims base64 but is not.
    #[error("the HTTP request body is marked isBase64Encoded but is not valid base64")]
    BadBase64,
}

impl InboundError {
    /// Always false: the same invocation payload fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Classifies an invocation payload.
pub fn classify(event: Value) -> Result<Inbound, InboundError> {
    let Value::Object(object) = &event else {
        return Err(InboundError::Unrecognised);
    };
    if let Some(Value::Array(records)) = object.get("Records") {
        return sqs_messages(records).map(Inbound::Sqs);
    }
    if object.contains_key("requestContext")
        && (object.contains_key("rawPath") || object.contains_key("routeKey"))
    {
        return http_request(object);
    }
    if object.contains_key("type") && object.contains_key("parameters") {
        return Ok(Inbound::Direct(event));
    }
    Err(InboundError::Unrecognised)
}

fn sqs_messages(records: &[Value]) -> Result<Vec<SqsMessage>, InboundError> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let source = record
                .get("eventSource")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if source != "aws:sqs" {
                return Err(InboundError::UnsupportedSource(source.to_string()));
            }
            let message_id =
                record
                    .get("messageId")
                    .and_then(Value::as_str)
                    .ok_or(InboundError::BadRecord {
                        index,
                        field: "messageId",
                    })?;
            let body = record
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(SqsMessage {
                message_id: message_id.to_string(),
                body: body.to_string(),
            })
        })
        .collect()
}

fn http_request(object: &serde_json::Map<String, Value>) -> Result<Inbound, InboundError> {
    let raw = object
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let encoded = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = if encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| InboundError::BadBase64)?
    } else {
        raw.as_bytes().to_vec()
    };
    let request_id = object
        .get("requestContext")
        .and_then(|context| context.get("requestId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Inbound::Http { body, request_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sqs_batch_yields_each_message_id_and_body() {
        let event = json!({"Records": [
            {"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"},
            {"messageId": "m-2", "body": "[]", "eventSource": "aws:sqs"}]});
        let Ok(Inbound::Sqs(messages)) = classify(event) else {
            panic!()
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[1],
            SqsMessage {
                message_id: "m-2".into(),
                body: "[]".into()
            }
        );
    }

    #[test]
    fn records_from_another_source_are_refused() {
        let event = json!({"Records": [{"eventSource": "aws:s3"}]});
        assert_eq!(
            classify(event),
            Err(InboundError::UnsupportedSource("aws:s3".into()))
        );
    }

    #[test]
    fn http_api_body_is_decoded_from_base64() {
        let event = json!({"version": "2.0", "routeKey": "POST /didomi/webhooks", "rawPath": "/didomi/webhooks",
            "requestContext": {"requestId": "r-1"}, "isBase64Encoded": true, "body": "eyJhIjoxfQ=="});
        assert_eq!(
            classify(event),
            Ok(Inbound::Http {
                body: br#"{"a":1}"#.to_vec(),
                request_id: Some("r-1".into())
            })
        );
    }

    #[test]
    fn invalid_base64_body_is_an_error() {
        let event =
            json!({"rawPath": "/", "requestContext": {}, "isBase64Encoded": true, "body": "%%%"});
        assert_eq!(classify(event), Err(InboundError::BadBase64));
    }

    #[test]
    fn bare_envelope_is_a_direct_invocation() {
        let event = json!({"type": "event.created", "parameters": {}});
        assert!(matches!(classify(event), Ok(Inbound::Direct(_))));
    }

    #[test]
    fn anything_else_is_unrecognised() {
        assert_eq!(
            classify(json!({"hello": "world"})),
            Err(InboundError::Unrecognised)
        );
        assert_eq!(classify(json!("text")), Err(InboundError::Unrecognised));
    }
}
