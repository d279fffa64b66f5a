//! [`Redelivery`] over Amazon SQS: `ChangeMessageVisibility` on the queue a
//! message came from (exponential backoff of retries) and `SendMessage` to
//! the dead-letter queue (permanent failures).
//!
//! The queue URL is derived from the record's `eventSourceARN`
//! (`arn:aws:sqs:<region>:<account>:<name>` →
//! `https://sqs.<region>.amazonaws.com/<account>/<name>`), so no extra
//! `GetQueueUrl` round trip is spent. With an endpoint override
//! (`AWS_ENDPOINT_URL_SQS`, then `AWS_ENDPOINT_URL`: the SDK's own names, used
//! for local runs against `moto_server`), the URL is `<endpoint>/<account>/<name>`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use futures_util::future::BoxFuture;

use crate::lambda::events::{QueueArn, SqsMessage};
use crate::lambda::redelivery::{Redelivery, RedeliveryError};

/// Message attribute carrying why the message was dead-lettered.
pub const REASON_ATTRIBUTE: &str = "FailureReason";
/// Message attribute carrying the message's id in the source queue.
pub const ORIGINAL_ID_ATTRIBUTE: &str = "OriginalMessageId";

/// Longest reason kept in the attribute (SQS allows 256 KiB per message;
/// a reason is one line for an operator).
const MAX_REASON_CHARS: usize = 1_000;

/// An SQS client for the function's queue calls, from the environment
/// (region, credentials, endpoint overrides). Short timeouts and one retry:
/// these calls run at the end of an invocation and must not outlive it.
pub async fn sdk_client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(1_000))
                .operation_timeout(Duration::from_millis(1_800))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// The endpoint override the SDK itself honours for SQS, if any.
pub fn endpoint_from_env() -> Option<String> {
    ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().trim_end_matches('/').to_string())
        .find(|value| !value.is_empty())
}

/// Backoff and dead-lettering through the SQS API.
#[derive(Clone, Debug)]
pub struct SqsRedelivery {
    client: aws_sdk_sqs::Client,
    endpoint: Option<String>,
    dead_letter_queue_url: Option<String>,
}

impl SqsRedelivery {
    /// Calls SQS with `client`; `endpoint` is the override the client was
    /// built with (see [`endpoint_from_env`]); without a dead-letter queue
    /// URL, permanent failures stay ordinary failures.
    pub fn new(
        client: aws_sdk_sqs::Client,
        endpoint: Option<String>,
        dead_letter_queue_url: Option<String>,
    ) -> Self {
        Self {
            client,
            endpoint: endpoint.map(|url| url.trim_end_matches('/').to_string()),
            dead_letter_queue_url: dead_letter_queue_url.filter(|url| !url.trim().is_empty()),
        }
    }

    /// The queue's URL.
    pub fn queue_url(&self, queue: &QueueArn) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}/{}", queue.account, queue.name),
            None => format!(
                "https://sqs.{}.amazonaws.com/{}/{}",
                queue.region, queue.account, queue.name
            ),
        }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, RedeliveryError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|err| RedeliveryError::Sqs {
            operation: "SendMessage",
            message: err.to_string(),
        })
}

impl Redelivery for SqsRedelivery {
    fn hide<'a>(
        &'a self,
        queue: &'a QueueArn,
        receipt_handle: &'a str,
        visibility: Duration,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>> {
        Box::pin(async move {
            let seconds = i32::try_from(visibility.as_secs_f64().ceil() as u64).unwrap_or(i32::MAX);
            self.client
                .change_message_visibility()
                .queue_url(self.queue_url(queue))
                .receipt_handle(receipt_handle)
                .visibility_timeout(seconds)
                .send()
                .await
                .map(|_| ())
                .map_err(|err| RedeliveryError::Sqs {
                    operation: "ChangeMessageVisibility",
                    message: DisplayErrorContext(&err).to_string(),
                })
        })
    }

    fn dead_letter<'a>(
        &'a self,
        message: &'a SqsMessage,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>> {
        Box::pin(async move {
            let Some(url) = &self.dead_letter_queue_url else {
                return Err(RedeliveryError::NoDeadLetterQueue);
            };
            let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
            // SQS refuses an empty body, so no queued message has one; only a
            // hand-made event can get here with it.
            let body = if message.body.is_empty() {
                "(empty body)"
            } else {
                &message.body
            };
            self.client
                .send_message()
                .queue_url(url)
                .message_body(body)
                .message_attributes(REASON_ATTRIBUTE, string_attribute(&reason)?)
                .message_attributes(
                    ORIGINAL_ID_ATTRIBUTE,
                    string_attribute(&message.message_id)?,
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|err| RedeliveryError::Sqs {
                    operation: "SendMessage",
                    message: DisplayErrorContext(&err).to_string(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> QueueArn {
        QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:webhooks").unwrap()
    }

    fn redelivery(endpoint: Option<&str>) -> SqsRedelivery {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("eu-west-1"))
            .build();
        SqsRedelivery::new(
            aws_sdk_sqs::Client::from_conf(config),
            endpoint.map(str::to_string),
            None,
        )
    }

    #[test]
    fn the_queue_url_is_the_regional_endpoint_account_and_name() {
        assert_eq!(
            redelivery(None).queue_url(&queue()),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/webhooks"
        );
    }

    #[test]
    fn an_endpoint_override_replaces_the_regional_endpoint() {
        assert_eq!(
            redelivery(Some("http://127.0.0.1:5000/")).queue_url(&queue()),
            "http://127.0.0.1:5000/123456789012/webhooks"
        );
    }
}
