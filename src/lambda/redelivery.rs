//! What the handler asks of the queue once a batch is done: hide a message
//! that failed retryably for its backoff ([`crate::lambda::backoff`]), or
//! move one that can never succeed to the dead-letter queue at once.
//!
//! The port lives here; the SQS implementation is
//! [`crate::adapters::sqs_redelivery`]. Both calls are best effort: when one
//! fails, the message is reported failed as it would have been without it,
//! so a broken queue call can delay a webhook but never lose one.

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::lambda::events::{QueueArn, SqsMessage};

/// Changes what SQS does next with a delivered message.
pub trait Redelivery: Send + Sync {
    /// Sets the message's visibility timeout (`ChangeMessageVisibility`), so
    /// its next delivery comes `visibility` from now.
    fn hide<'a>(
        &'a self,
        queue: &'a QueueArn,
        receipt_handle: &'a str,
        visibility: Duration,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>>;

    /// Sends the message's body, unchanged, to the dead-letter queue with
    /// `reason` and its original message id as message attributes.
    fn dead_letter<'a>(
        &'a self,
        message: &'a SqsMessage,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>>;
}

/// Why a queue call did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeliveryError {
    /// `DEAD_LETTER_QUEUE_URL` is not set.
    #[error("no dead-letter queue is configured (DEAD_LETTER_QUEUE_URL)")]
    NoDeadLetterQueue,
    /// No SQS client was wired (HTTP-only or test set-ups).
    #[error("no SQS client is configured")]
    NoQueueClient,
    /// The SQS API answered with an error or could not be reached.
    #[error("SQS {operation} failed: {message}")]
    Sqs {
        /// `ChangeMessageVisibility` or `SendMessage`.
        operation: &'static str,
        /// What the SDK reported (no message content).
        message: String,
    },
    /// The call did not finish in the time the invocation could give it.
    #[error("SQS {operation} did not finish in time")]
    TimedOut {
        /// `ChangeMessageVisibility` or `SendMessage`.
        operation: &'static str,
    },
}

/// No queue at all: every call fails, so failures stay plain
/// `batchItemFailures` (the behaviour without backoff or dead-lettering).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRedelivery;

impl Redelivery for NoRedelivery {
    fn hide<'a>(
        &'a self,
        _queue: &'a QueueArn,
        _receipt_handle: &'a str,
        _visibility: Duration,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>> {
        Box::pin(async { Err(RedeliveryError::NoQueueClient) })
    }

    fn dead_letter<'a>(
        &'a self,
        _message: &'a SqsMessage,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<(), RedeliveryError>> {
        Box::pin(async { Err(RedeliveryError::NoQueueClient) })
    }
}
