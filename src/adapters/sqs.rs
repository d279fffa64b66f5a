//! Sends snapshot messages to the function's SQS queue with
//! `SendMessageBatch` (10 messages and at most 256 KiB a call). Entries SQS
//! rejects for its own reasons (throttling, internal errors) are re-sent up
//! to three times with backoff; entries rejected as the sender's fault are
//! reported at once.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// Most entries of one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Largest total payload of one `SendMessageBatch` (and of one message).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Attempts per entry (the first included).
const MAX_ATTEMPTS: u32 = 4;

/// An SQS client from the usual AWS configuration chain
/// (`AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL` for local endpoints).
pub async fn sdk_client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_sqs::Client::new(&config)
}

/// Why one message was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQS did not take the message ({code}): {message}")]
pub struct SqsError {
    /// SQS's error code, or `SendMessageBatch` for a failed call.
    pub code: String,
    /// SQS's message.
    pub message: String,
    /// Whether sending it again could succeed.
    pub retryable: bool,
}

/// Sends message bodies to one queue.
#[derive(Clone, Debug)]
pub struct SqsSender {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SqsSender {
    /// A sender to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            calls: Default::default(),
        }
    }

    /// `SendMessageBatch` calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends every body; one result per body, in order.
    pub async fn send_all(&self, bodies: &[String]) -> Vec<Result<(), SqsError>> {
        let mut results: Vec<Option<Result<(), SqsError>>> = vec![None; bodies.len()];
        for (index, body) in bodies.iter().enumerate() {
            if body.len() > MAX_BATCH_BYTES {
                results[index] = Some(Err(SqsError {
                    code: "MessageTooLong".into(),
                    message: format!(
                        "the message is {} bytes, over SQS's {MAX_BATCH_BYTES}",
                        body.len()
                    ),
                    retryable: false,
                }));
            }
        }
        let mut pending: Vec<usize> = (0..bodies.len())
            .filter(|index| results[*index].is_none())
            .collect();
        for attempt in 1..=MAX_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 2))).await;
            }
            let mut again = Vec::new();
            for group in groups(&pending, bodies) {
                for (index, outcome) in self.send_batch(&group, bodies).await {
                    match outcome {
                        Err(err) if err.retryable && attempt < MAX_ATTEMPTS => again.push(index),
                        outcome => results[index] = Some(outcome),
                    }
                }
            }
            pending = again;
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(SqsError {
                        code: "NotSent".into(),
                        message: "no attempt left".into(),
                        retryable: true,
                    })
                })
            })
            .collect()
    }

    async fn send_batch(
        &self,
        group: &[usize],
        bodies: &[String],
    ) -> Vec<(usize, Result<(), SqsError>)> {
        let entries: Vec<SendMessageBatchRequestEntry> = group
            .iter()
            .map(|index| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&bodies[*index])
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(err) => {
                let service = err.as_service_error();
                let code = service
                    .and_then(|e| aws_sdk_sqs::error::ProvideErrorMetadata::code(e))
                    .unwrap_or("SendMessageBatch")
                    .to_string();
                let message = aws_sdk_sqs::error::DisplayErrorContext(&err).to_string();
                // A missing queue or denied access will not change by retrying.
                let retryable = !matches!(
                    code.as_str(),
                    "AWS.SimpleQueueService.NonExistentQueue"
                        | "QueueDoesNotExist"
                        | "AccessDenied"
                        | "AccessDeniedException"
                        | "InvalidAddress"
                );
                return group
                    .iter()
                    .map(|index| {
                        (
                            *index,
                            Err(SqsError {
                                code: code.clone(),
                                message: message.clone(),
                                retryable,
                            }),
                        )
                    })
                    .collect();
            }
        };
        let mut outcomes: Vec<(usize, Result<(), SqsError>)> = Vec::new();
        for failed in output.failed() {
            if let Ok(index) = failed.id().parse::<usize>() {
                outcomes.push((
                    index,
                    Err(SqsError {
                        code: failed.code().to_string(),
                        message: failed.message().unwrap_or_default().to_string(),
                        retryable: !failed.sender_fault(),
                    }),
                ));
            }
        }
        for done in output.successful() {
            if let Ok(index) = done.id().parse::<usize>() {
                outcomes.push((index, Ok(())));
            }
        }
        for index in group {
            if !outcomes.iter().any(|(seen, _)| seen == index) {
                outcomes.push((
                    *index,
                    Err(SqsError {
                        code: "NoAnswer".into(),
                        message: "SQS did not report on this entry".into(),
                        retryable: true,
                    }),
                ));
            }
        }
        outcomes
    }
}

/// Splits `indexes` into calls of at most 10 entries and 256 KiB.
fn groups(indexes: &[usize], bodies: &[String]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for index in indexes {
        let body = bodies[*index].len();
        let full = groups
            .last()
            .is_none_or(|group| group.len() >= MAX_BATCH_ENTRIES || size + body > MAX_BATCH_BYTES);
        if full {
            groups.push(Vec::new());
            size = 0;
        }
        groups.last_mut().expect("pushed above").push(*index);
        size += body;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_carry_at_most_ten_entries() {
        let bodies: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let indexes: Vec<usize> = (0..25).collect();
        let sizes: Vec<usize> = groups(&indexes, &bodies).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[test]
    fn calls_stay_under_the_payload_limit() {
        let bodies: Vec<String> = (0..3).map(|_| "x".repeat(100 * 1024)).collect();
        let sizes: Vec<usize> = groups(&[0, 1, 2], &bodies).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1]);
    }
}
