//! Recognises the three event shapes the function accepts (README, "What it does with a webhook") and
//! pulls the Didomi webhook bodies out of them: an SQS batch, an API Gateway
//! HTTP API v2 / Function URL request, or a bare webhook envelope.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use base64::Engine;
use serde_json::Value;

/// One SQS message carrying a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMessage {
    /// `messageId`, reported back in `batchItemFailures` when the message fails.
    pub message_id: String,
    /// The message body: the webhook as Didomi posted it.
    pub body: String,
    /// `receiptHandle`, needed to change the message's visibility (backoff).
    pub receipt_handle: Option<String>,
    /// The queue it came from (`eventSourceARN`).
    pub queue: Option<QueueArn>,
    /// `attributes.ApproximateReceiveCount`: 1 on the first delivery (0 when absent).
    pub receive_count: u32,
}

/// An SQS queue named by its ARN, `arn:<partition>:sqs:<region>:<account>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueArn {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The 12-digit account id.
    pub account: String,
    /// The queue name.
    pub name: String,
}

impl QueueArn {
    /// Reads an SQS queue ARN; `None` for anything else.
    pub fn parse(arn: &str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some("sqs"), Some(region), Some(account), Some(name)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if region.is_empty() || account.is_empty() || name.is_empty() || name.contains(':') {
            return None;
        }
        Some(QueueArn {
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }
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
    /// The SQS records do not have the shape of an SQS event.
    #[error("the SQS records are malformed: {0}")]
    BadRecords(String),
    /// An HTTP API / Function URL request that does not have that shape.
    #[error("the HTTP request is malformed: {0}")]
    BadHttpRequest(String),
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
        check_sqs_records(records)?;
        return sqs_messages(event).map(Inbound::Sqs);
    }
    if object.contains_key("requestContext")
        && (object.contains_key("rawPath") || object.contains_key("routeKey"))
    {
        return http_request(event);
    }
    if object.contains_key("type") && object.contains_key("parameters") {
        return Ok(Inbound::Direct(event));
    }
    Err(InboundError::Unrecognised)
}

/// Every record is from SQS and has a `messageId` (so it can be reported back).
fn check_sqs_records(records: &[Value]) -> Result<(), InboundError> {
    for (index, record) in records.iter().enumerate() {
        let source = record
            .get("eventSource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if source != "aws:sqs" {
            return Err(InboundError::UnsupportedSource(source.to_string()));
        }
        if record.get("messageId").and_then(Value::as_str).is_none() {
            return Err(InboundError::BadRecord {
                index,
                field: "messageId",
            });
        }
    }
    Ok(())
}

/// The messages of an SQS event, read with `aws_lambda_events`' own type.
fn sqs_messages(event: Value) -> Result<Vec<SqsMessage>, InboundError> {
    let event: SqsEvent =
        serde_json::from_value(event).map_err(|err| InboundError::BadRecords(err.to_string()))?;
    Ok(event
        .records
        .into_iter()
        .map(|record| SqsMessage {
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receipt_handle: record.receipt_handle,
            queue: record.event_source_arn.as_deref().and_then(QueueArn::parse),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(0),
        })
        .collect())
}

/// The body and request id of an HTTP API v2 / Function URL request, read
/// with `aws_lambda_events`' own type.
fn http_request(event: Value) -> Result<Inbound, InboundError> {
    let request: ApiGatewayV2httpRequest = serde_json::from_value(event)
        .map_err(|err| InboundError::BadHttpRequest(err.to_string()))?;
    let raw = request.body.unwrap_or_default();
    let body = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| InboundError::BadBase64)?
    } else {
        raw.into_bytes()
    };
    Ok(Inbound::Http {
        body,
        request_id: request.request_context.request_id,
    })
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
        assert_eq!(messages[1].message_id, "m-2");
        assert_eq!(messages[1].body, "[]");
    }

    #[test]
    fn sqs_record_yields_its_receipt_handle_queue_and_receive_count() {
        let event = json!({"Records": [{"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs",
            "receiptHandle": "rh-1", "attributes": {"ApproximateReceiveCount": "3"},
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:webhooks"}]});
        let Ok(Inbound::Sqs(messages)) = classify(event) else {
            panic!()
        };
        assert_eq!(
            messages[0],
            SqsMessage {
                message_id: "m-1".into(),
                body: "{}".into(),
                receipt_handle: Some("rh-1".into()),
                queue: Some(QueueArn {
                    region: "eu-west-1".into(),
                    account: "123456789012".into(),
                    name: "webhooks".into()
                }),
                receive_count: 3,
            }
        );
    }

    #[test]
    fn only_sqs_arns_name_a_queue() {
        assert!(QueueArn::parse("arn:aws:sqs:us-east-1:123456789012:q").is_some());
        assert!(QueueArn::parse("arn:aws:sns:us-east-1:123456789012:q").is_none());
        assert!(QueueArn::parse("arn:aws:sqs:us-east-1:123456789012").is_none());
        assert!(QueueArn::parse("queue").is_none());
    }

    #[test]
    fn an_sqs_record_without_message_id_cannot_be_reported_and_is_refused() {
        let event = json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert_eq!(
            classify(event),
            Err(InboundError::BadRecord {
                index: 0,
                field: "messageId"
            })
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
            "requestContext": {"requestId": "r-1", "http": {"method": "POST"}}, "isBase64Encoded": true, "body": "eyJhIjoxfQ=="});
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
        let event = json!({"rawPath": "/", "requestContext": {"http": {"method": "POST"}}, "isBase64Encoded": true, "body": "%%%"});
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
