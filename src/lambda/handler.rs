//! The Lambda handler: the three event shapes of README "What it does with a webhook" in, the matching
//! response out. SQS batches answer with the ids of exactly the failed
//! messages; HTTP requests with 200/400/503; a bare envelope with a summary.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::domain::decision::{ConsentPlan, SkipReason};
use crate::domain::mapping::RejectedWebhook;
use crate::lambda::events::{InboundError, SqsMessage, classify};
use crate::lambda::planning::{PlanResult, PlannedInvocation, plan_inbound};
use crate::redact::{mask_emails_in, mask_identifier};
use crate::service::{ConsentStore, MessageOutcome, SyncService};

/// Seconds a caller of the HTTP endpoint is told to wait after a retryable failure.
pub const HTTP_RETRY_AFTER_SECONDS: u64 = 30;

/// Why an invocation as a whole failed (an SQS batch never fails as a whole:
/// its failures are per message).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is none of the accepted shapes.
    #[error(transparent)]
    Unrecognised(#[from] InboundError),
    /// A directly invoked webhook is invalid.
    #[error("invalid webhook: {0}")]
    InvalidWebhook(#[from] RejectedWebhook),
    /// A directly invoked webhook could not be written.
    #[error("{error} (retryable: {retryable})")]
    WriteFailed {
        /// What went wrong.
        error: String,
        /// Whether invoking again later could succeed.
        retryable: bool,
    },
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Unrecognised(_) => "UnrecognisedEvent",
            HandlerError::InvalidWebhook(_) => "InvalidWebhook",
            HandlerError::WriteFailed {
                retryable: true, ..
            } => "RetryableWriteFailure",
            HandlerError::WriteFailed {
                retryable: false, ..
            } => "PermanentWriteFailure",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// Processes invocations with a [`SyncService`].
pub struct Handler<S> {
    service: SyncService<S>,
    safety_margin: Duration,
}

impl<S: ConsentStore> Handler<S> {
    /// A handler that stops `safety_margin` before each invocation's deadline,
    /// so it can still report which messages did not finish.
    pub fn new(service: SyncService<S>, safety_margin: Duration) -> Self {
        Self {
            service,
            safety_margin,
        }
    }

    /// Handles one invocation.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let deadline = self.work_deadline(event.context.deadline());
        match plan_inbound(classify(event.payload)?, self.rules()) {
            PlannedInvocation::Sqs(messages) => Ok(self.sqs(messages, deadline).await),
            PlannedInvocation::Http { request_id, item } => {
                Ok(self.http(item, request_id.as_deref(), deadline).await)
            }
            PlannedInvocation::Direct(item) => self.direct(item, deadline).await,
        }
    }

    fn work_deadline(&self, lambda_deadline: SystemTime) -> Instant {
        let remaining = time_left(lambda_deadline, SystemTime::now());
        tracing::debug!(
            remaining_ms = remaining.as_millis() as u64,
            "invocation time left"
        );
        Instant::now() + remaining.saturating_sub(self.safety_margin)
    }

    async fn sqs(&self, messages: Vec<(SqsMessage, PlanResult)>, deadline: Instant) -> Value {
        let (messages, items): (Vec<SqsMessage>, Vec<PlanResult>) = messages.into_iter().unzip();
        let outcomes = self.process(&items, deadline).await;
        let mut failures = Vec::new();
        for ((message, item), outcome) in messages.iter().zip(&items).zip(&outcomes) {
            log_outcome(Some(&message.message_id), item, outcome);
            if outcome.is_failure() {
                failures.push(json!({ "itemIdentifier": message.message_id }));
            }
        }
        json!({ "batchItemFailures": failures })
    }

    async fn http(&self, item: PlanResult, request_id: Option<&str>, deadline: Instant) -> Value {
        if let Err(rejected) = &item {
            warn!(request_id, error = %mask_emails_in(&rejected.to_string()), "webhook rejected");
            return http_response(400, &json!({ "error": rejected.to_string() }), None);
        }
        let outcome = self
            .process(std::slice::from_ref(&item), deadline)
            .await
            .remove(0);
        log_outcome(request_id, &item, &outcome);
        match &outcome {
            MessageOutcome::Failed {
                error,
                retryable: true,
            } => http_response(
                503,
                &json!({ "error": error }),
                Some(HTTP_RETRY_AFTER_SECONDS),
            ),
            MessageOutcome::Failed {
                error,
                retryable: false,
            } => http_response(500, &json!({ "error": error }), None),
            _ => http_response(200, &summary(&item, &outcome), None),
        }
    }

    async fn direct(&self, item: PlanResult, deadline: Instant) -> Result<Value, HandlerError> {
        let outcome = self
            .process(std::slice::from_ref(&item), deadline)
            .await
            .remove(0);
        log_outcome(None, &item, &outcome);
        match outcome {
            MessageOutcome::Failed { error, retryable } => match item {
                Err(rejected) => Err(HandlerError::InvalidWebhook(rejected)),
                Ok(_) => Err(HandlerError::WriteFailed { error, retryable }),
            },
            outcome => Ok(summary(&item, &outcome)),
        }
    }

    /// Runs the service, failing (as retryable) whatever is still running at
    /// the deadline or panics, so the queue delivers it again.
    async fn process(
        &self,
        items: &[Result<ConsentPlan, RejectedWebhook>],
        deadline: Instant,
    ) -> Vec<MessageOutcome> {
        let work = AssertUnwindSafe(self.service.process(items, deadline)).catch_unwind();
        let unfinished = |error: &str| {
            items
                .iter()
                .map(|item| match item {
                    Err(rejected) => MessageOutcome::Failed {
                        error: rejected.to_string(),
                        retryable: false,
                    },
                    // A skip needed no write, so it stands whatever happened below.
                    Ok(plan) if !plan.is_write() => MessageOutcome::Skipped {
                        reason: plan.reason.clone().unwrap_or(SkipReason::NothingMapped),
                    },
                    Ok(_) => MessageOutcome::Failed {
                        error: error.to_string(),
                        retryable: true,
                    },
                })
                .collect()
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(_panic)) => {
                error!("processing panicked; the batch's messages are failed for a retry");
                unfinished("internal error while processing")
            }
            Err(_elapsed) => {
                warn!("invocation deadline reached; unfinished messages are failed for a retry");
                unfinished("the invocation's deadline was reached before the writes finished")
            }
        }
    }

    fn rules(&self) -> &crate::domain::mapping::MappingRules {
        &self.service.config().rules
    }
}

/// Deadlines before this instant are not epoch times: `cargo lambda watch`
/// sends the function timeout itself (e.g. `600000`) in
/// `Lambda-Runtime-Deadline-Ms`, where AWS sends epoch milliseconds.
const EARLIEST_EPOCH_DEADLINE: Duration = Duration::from_secs(1_000_000_000);

/// The time an invocation has left.
fn time_left(deadline: SystemTime, now: SystemTime) -> Duration {
    match deadline.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since_epoch) if since_epoch < EARLIEST_EPOCH_DEADLINE => since_epoch,
        _ => deadline.duration_since(now).unwrap_or_default(),
    }
}

fn summary(item: &Result<ConsentPlan, RejectedWebhook>, outcome: &MessageOutcome) -> Value {
    let event_id = item.as_ref().ok().and_then(|plan| plan.event_id.clone());
    match outcome {
        MessageOutcome::Written {
            created,
            updated,
            stale,
            replayed,
        } => json!({
            "outcome": "written", "event_id": event_id,
            "created": created, "updated": updated, "stale": stale, "replayed": replayed,
        }),
        MessageOutcome::Skipped { reason } => {
            json!({ "outcome": "skipped", "event_id": event_id, "reason": reason })
        }
        MessageOutcome::Failed { error, retryable } => {
            json!({ "outcome": "failed", "event_id": event_id, "error": error, "retryable": retryable })
        }
    }
}

fn http_response(status: u16, body: &Value, retry_after: Option<u64>) -> Value {
    let mut headers = json!({ "content-type": "application/json" });
    if let Some(seconds) = retry_after {
        headers["retry-after"] = json!(seconds.to_string());
    }
    json!({ "statusCode": status, "headers": headers, "body": body.to_string(), "isBase64Encoded": false })
}

/// One structured line per message: ids, masked user, outcome. Never the
/// address itself.
fn log_outcome(
    message_id: Option<&str>,
    item: &Result<ConsentPlan, RejectedWebhook>,
    outcome: &MessageOutcome,
) {
    let plan = item.as_ref().ok();
    let event_id = plan.and_then(|plan| plan.event_id.as_deref());
    let user = plan
        .and_then(|plan| plan.organization_user_id.as_deref())
        .map(mask_identifier);
    match outcome {
        MessageOutcome::Written {
            created,
            updated,
            stale,
            replayed,
        } => info!(
            message_id,
            event_id, user, created, updated, stale, replayed, "consent written"
        ),
        MessageOutcome::Skipped { reason } => {
            info!(message_id, event_id, user, reason = %mask_emails_in(&reason.to_string()), skip_category = reason.category(), "webhook skipped")
        }
        MessageOutcome::Failed { error, retryable } => {
            warn!(message_id, event_id, user, retryable, error = %mask_emails_in(error), "webhook failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntegrationConfig;
    use crate::domain::cpc::{ConsentRow, Contact, Purpose, Topic, WriteOp};
    use crate::domain::writes::Catalog;
    use crate::service::{Metadata, StoreError};
    use std::sync::Arc;
    use uuid::Uuid;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    impl StoreError for Never {
        fn is_retryable(&self) -> bool {
            false
        }
        fn is_already_exists(&self) -> bool {
            false
        }
    }

    /// A store that panics on its first call, standing in for any bug below
    /// the handler.
    struct PanickingStore;

    impl ConsentStore for PanickingStore {
        type Error = Never;
        async fn own_user(&self, _: Instant) -> Result<Uuid, Never> {
            panic!("store bug")
        }
        async fn purposes_and_topics(
            &self,
            _: Instant,
        ) -> Result<(Vec<Purpose>, Vec<Topic>), Never> {
            panic!("store bug")
        }
        async fn find_contacts(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Instant,
        ) -> Result<Vec<Contact>, Never> {
            panic!("store bug")
        }
        async fn consent_rows(&self, _: &[String], _: Instant) -> Result<Vec<ConsentRow>, Never> {
            panic!("store bug")
        }
        async fn execute_writes(
            &self,
            _: &[WriteOp],
            _: Instant,
        ) -> Result<Vec<Result<(), Never>>, Never> {
            panic!("store bug")
        }
    }

    /// A store whose calls never answer, like a Dataverse that hangs.
    struct HangingStore;

    impl ConsentStore for HangingStore {
        type Error = Never;
        async fn own_user(&self, _: Instant) -> Result<Uuid, Never> {
            std::future::pending().await
        }
        async fn purposes_and_topics(
            &self,
            _: Instant,
        ) -> Result<(Vec<Purpose>, Vec<Topic>), Never> {
            std::future::pending().await
        }
        async fn find_contacts(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Instant,
        ) -> Result<Vec<Contact>, Never> {
            std::future::pending().await
        }
        async fn consent_rows(&self, _: &[String], _: Instant) -> Result<Vec<ConsentRow>, Never> {
            std::future::pending().await
        }
        async fn execute_writes(
            &self,
            _: &[WriteOp],
            _: Instant,
        ) -> Result<Vec<Result<(), Never>>, Never> {
            std::future::pending().await
        }
    }

    fn handler_with<S: ConsentStore>(store: S) -> Handler<S> {
        let document: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/integration-config.json"
        )))
        .unwrap();
        let config = IntegrationConfig::from_document(&document, false)
            .unwrap()
            .config;
        let service = SyncService::new(store, Arc::new(config)).with_metadata(Metadata {
            catalog: Catalog::default(),
            own_user: Uuid::nil(),
            notes: Vec::new(),
        });
        Handler::new(service, Duration::from_millis(100))
    }

    fn handler() -> Handler<PanickingStore> {
        handler_with(PanickingStore)
    }

    fn event(payload: Value) -> LambdaEvent<Value> {
        event_with_time_left(payload, Duration::from_secs(30))
    }

    fn event_with_time_left(payload: Value, left: Duration) -> LambdaEvent<Value> {
        let mut context = lambda_runtime::Context::default();
        let deadline = SystemTime::now() + left;
        context.deadline = deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        LambdaEvent::new(payload, context)
    }

    fn record(id: &str, body: &str) -> Value {
        json!({"messageId": id, "eventSource": "aws:sqs", "body": body})
    }

    #[tokio::test]
    async fn a_panic_below_the_handler_fails_the_writes_back_to_the_queue_not_the_runtime() {
        let opt_in = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/event-created-opt-in.json"
        ));
        let anonymous = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/event-created-anonymous-cookie-banner.json"
        ));
        let batch = json!({"Records": [record("write", opt_in), record("skip", anonymous), record("bad", "{")]});
        let answer = handler().handle(event(batch)).await.unwrap();
        let failed: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|failure| failure["itemIdentifier"].as_str().unwrap())
            .collect();
        assert_eq!(
            failed,
            ["write", "bad"],
            "the unwritten and the invalid are delivered again; the skip stands"
        );
    }

    #[tokio::test]
    async fn work_stops_before_the_deadline_and_reports_the_unfinished_messages() {
        let opt_in = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/event-created-opt-in.json"
        ));
        let anonymous = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/event-created-anonymous-cookie-banner.json"
        ));
        let batch = json!({"Records": [record("write", opt_in), record("skip", anonymous)]});
        let started = std::time::Instant::now();
        let answer = handler_with(HangingStore)
            .handle(event_with_time_left(batch, Duration::from_millis(600)))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "stopped before the deadline: {:?}",
            started.elapsed()
        );
        assert_eq!(
            answer,
            json!({"batchItemFailures": [{"itemIdentifier": "write"}]})
        );
    }

    #[tokio::test]
    async fn skipped_webhooks_need_no_store_and_answer_200() {
        let request = json!({"rawPath": "/didomi/webhooks", "routeKey": "POST /didomi/webhooks", "requestContext": {"requestId": "r"},
            "body": include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/events/event-created-cpra.json"))});
        let answer = handler().handle(event(request)).await.unwrap();
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert!(answer["body"].as_str().unwrap().contains("skipped"));
    }

    #[test]
    fn epoch_deadline_leaves_the_difference_to_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_699_741);
        assert_eq!(
            time_left(now + Duration::from_secs(30), now),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn passed_deadline_leaves_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_699_741);
        assert_eq!(time_left(now - Duration::from_secs(1), now), Duration::ZERO);
    }

    #[test]
    fn local_runtime_timeout_value_is_read_as_the_time_left() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_699_741);
        let cargo_lambda = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(time_left(cargo_lambda, now), Duration::from_secs(600));
    }
}
