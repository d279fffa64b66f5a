//! The Lambda handler: the three event shapes of DESIGN §2 in, the matching
//! response out. SQS batches answer with the ids of exactly the messages to
//! deliver again; each of those is first hidden for its backoff, and a
//! message that can never succeed is moved to the dead-letter queue instead
//! ([`crate::lambda::redelivery`]). HTTP requests get 200/400/503; a bare
//! envelope gets a summary.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::http::header::{CONTENT_TYPE, RETRY_AFTER};
use aws_lambda_events::sqs::SqsBatchResponse;
use futures_util::FutureExt;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, warn};

use crate::domain::decision::{ConsentPlan, SkipReason};
use crate::domain::mapping::RejectedWebhook;
use crate::lambda::backoff::{jittered_visibility_after_failure, within_receipt_limit};
use crate::lambda::events::{InboundError, SqsMessage, classify};
use crate::lambda::planning::{PlanResult, PlannedInvocation, plan_inbound};
use crate::lambda::redelivery::{NoRedelivery, Redelivery, RedeliveryError};
use crate::redact::{mask_identifier, mask_personal_in};
use crate::service::{ConsentStore, MessageOutcome, SyncService};
use crate::telemetry::metrics::{
    DataverseTraffic, InvocationTally, Metrics, take_dataverse_traffic,
};

/// Seconds a caller of the HTTP endpoint is told to wait after a retryable failure.
pub const HTTP_RETRY_AFTER_SECONDS: u64 = 30;

/// Longest the queue calls after a batch (backoff, dead-lettering) may take,
/// all of them together: they run concurrently inside the safety margin.
pub const REDELIVERY_BUDGET: Duration = Duration::from_secs(2);

/// Time kept free at the very end of an invocation to send its answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(250);

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
            error_message: mask_personal_in(&error.to_string()),
        }
    }
}

/// Processes invocations: plans each webhook, writes through a
/// [`SyncService`] over `S`, and settles failed SQS messages with the queue.
pub struct Handler<S> {
    service: SyncService<S>,
    redelivery: Arc<dyn Redelivery>,
    metrics: Option<Metrics>,
    safety_margin: Duration,
}

impl<S: ConsentStore> Handler<S> {
    /// A handler writing through `service`. It stops `safety_margin` before
    /// each invocation's deadline, so it can still settle and report the
    /// messages that did not finish. Without [`Handler::with_redelivery`],
    /// failed messages are only reported, not backed off or dead-lettered.
    pub fn new(service: SyncService<S>, safety_margin: Duration) -> Self {
        Self {
            service,
            redelivery: Arc::new(NoRedelivery),
            metrics: None,
            safety_margin,
        }
    }

    /// The same handler, settling failed SQS messages through `redelivery`.
    pub fn with_redelivery(mut self, redelivery: Arc<dyn Redelivery>) -> Self {
        self.redelivery = redelivery;
        self
    }

    /// The same handler, printing one set of EMF metric lines per invocation.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Handles one invocation. Every log line it causes carries the
    /// invocation's `requestId` (and `xrayTraceId` when traced): the span is
    /// at ERROR level so that no log level filters it out.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let span = tracing::error_span!(
            "invocation",
            requestId = %event.context.request_id,
            xrayTraceId = tracing::field::Empty
        );
        if let Some(trace_id) = &event.context.xray_trace_id {
            span.record("xrayTraceId", trace_id.as_str());
        }
        self.handle_in_span(event).instrument(span).await
    }

    async fn handle_in_span(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let started = Instant::now();
        // The counters hold only this invocation's requests from here on.
        take_dataverse_traffic();
        let remaining = time_left(event.context.deadline(), SystemTime::now());
        debug!(
            remaining_ms = remaining.as_millis() as u64,
            "invocation time left"
        );
        let now = Instant::now();
        let end = now + remaining;
        let deadline = now + remaining.saturating_sub(self.safety_margin);
        let (answer, outcomes) =
            match plan_inbound(classify(event.payload)?, &self.service.config().rules) {
                PlannedInvocation::Sqs(messages) => {
                    let (response, outcomes) = self.sqs(messages, deadline, end, started).await;
                    (Ok(to_value(response)), outcomes)
                }
                PlannedInvocation::Http { request_id, item } => {
                    let (answer, outcome) = self.http(item, request_id.as_deref(), deadline).await;
                    (Ok(answer), vec![outcome])
                }
                PlannedInvocation::Direct(item) => {
                    let (answer, outcome) = self.direct(item, deadline).await;
                    (answer, vec![outcome])
                }
            };
        if let Some(metrics) = &self.metrics {
            let tally = tally(&outcomes, take_dataverse_traffic(), started.elapsed());
            Metrics::emit(&metrics.invocation_lines(&tally, SystemTime::now()));
        }
        answer
    }

    async fn sqs(
        &self,
        messages: Vec<(SqsMessage, PlanResult)>,
        deadline: Instant,
        end: Instant,
        invoked: Instant,
    ) -> (SqsBatchResponse, Vec<MessageOutcome>) {
        let (messages, items): (Vec<SqsMessage>, Vec<PlanResult>) = messages.into_iter().unzip();
        let outcomes = self.process(&items, deadline).await;
        for ((message, item), outcome) in messages.iter().zip(&items).zip(&outcomes) {
            log_outcome(Some(&message.message_id), item, outcome);
        }
        let until =
            (Instant::now() + REDELIVERY_BUDGET).min(end.checked_sub(ANSWER_MARGIN).unwrap_or(end));
        let settled = futures_util::future::join_all(
            messages
                .iter()
                .zip(&outcomes)
                .map(|(message, outcome)| self.settle(message, outcome, invoked, until)),
        )
        .await;
        let mut response = SqsBatchResponse::default();
        for (message, settlement) in messages.iter().zip(settled) {
            if settlement == Settlement::DeliverAgain {
                response.add_failure(message.message_id.clone());
            }
        }
        (response, outcomes)
    }

    /// What the queue does next with one message: nothing (done), deliver it
    /// again after its backoff, or nothing because it is in the dead-letter
    /// queue now. A queue call that fails or is late never turns a failure
    /// into a success.
    async fn settle(
        &self,
        message: &SqsMessage,
        outcome: &MessageOutcome,
        invoked: Instant,
        until: Instant,
    ) -> Settlement {
        let MessageOutcome::Failed { error, retryable } = outcome else {
            return Settlement::Done;
        };
        let message_id = message.message_id.as_str();
        if *retryable {
            let (Some(queue), Some(receipt_handle)) = (&message.queue, &message.receipt_handle)
            else {
                return Settlement::DeliverAgain;
            };
            let visibility = within_receipt_limit(
                jittered_visibility_after_failure(message.receive_count),
                invoked.elapsed(),
            );
            let hidden = bounded(
                until,
                "ChangeMessageVisibility",
                self.redelivery.hide(queue, receipt_handle, visibility),
            )
            .await;
            match hidden {
                Ok(()) => info!(
                    message_id,
                    receive_count = message.receive_count,
                    retry_in_s = visibility.as_secs(),
                    "retry backed off"
                ),
                Err(err) => {
                    warn!(message_id, error = %err, "could not back the retry off; the queue's visibility timeout applies")
                }
            }
            return Settlement::DeliverAgain;
        }
        let reason = mask_personal_in(error);
        match bounded(
            until,
            "SendMessage",
            self.redelivery.dead_letter(message, &reason),
        )
        .await
        {
            Ok(()) => {
                warn!(message_id, reason = %reason, "permanent failure moved to the dead-letter queue");
                Settlement::DeadLettered
            }
            Err(err) => {
                warn!(message_id, error = %err, "could not move the permanent failure to the dead-letter queue; it is delivered again");
                Settlement::DeliverAgain
            }
        }
    }

    async fn http(
        &self,
        item: PlanResult,
        request_id: Option<&str>,
        deadline: Instant,
    ) -> (Value, MessageOutcome) {
        if let Err(rejected) = &item {
            let reason = mask_personal_in(&rejected.to_string());
            warn!(request_id, error = %reason, "webhook rejected");
            let outcome = MessageOutcome::Failed {
                error: reason.clone(),
                retryable: false,
            };
            return (
                http_response(400, &json!({ "error": reason }), None),
                outcome,
            );
        }
        let outcome = self
            .process(std::slice::from_ref(&item), deadline)
            .await
            .remove(0);
        log_outcome(request_id, &item, &outcome);
        let answer = match &outcome {
            MessageOutcome::Failed {
                error,
                retryable: true,
            } => http_response(
                503,
                &json!({ "error": public_error(error) }),
                Some(HTTP_RETRY_AFTER_SECONDS),
            ),
            MessageOutcome::Failed {
                error,
                retryable: false,
            } => http_response(500, &json!({ "error": public_error(error) }), None),
            _ => http_response(200, &summary(&item, &outcome), None),
        };
        (answer, outcome)
    }

    async fn direct(
        &self,
        item: PlanResult,
        deadline: Instant,
    ) -> (Result<Value, HandlerError>, MessageOutcome) {
        let outcome = self
            .process(std::slice::from_ref(&item), deadline)
            .await
            .remove(0);
        log_outcome(None, &item, &outcome);
        let answer = match (&outcome, item) {
            (MessageOutcome::Failed { .. }, Err(rejected)) => {
                Err(HandlerError::InvalidWebhook(rejected))
            }
            (MessageOutcome::Failed { error, retryable }, Ok(_)) => {
                Err(HandlerError::WriteFailed {
                    error: public_error(error),
                    retryable: *retryable,
                })
            }
            (outcome, item) => Ok(summary(&item, outcome)),
        };
        (answer, outcome)
    }

    /// Runs the service, failing (as retryable) whatever is still running at
    /// the deadline or panics, so the queue delivers it again. (Metadata that
    /// cannot be read yet fails the writes retryably inside the service.)
    async fn process(&self, items: &[PlanResult], deadline: Instant) -> Vec<MessageOutcome> {
        let work = AssertUnwindSafe(self.service.process(items, deadline)).catch_unwind();
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(_panic)) => {
                error!("processing panicked; the batch's messages are failed for a retry");
                unfinished(items, "internal error while processing")
            }
            Err(_elapsed) => {
                warn!("invocation deadline reached; unfinished messages are failed for a retry");
                unfinished(
                    items,
                    "the invocation's deadline was reached before the writes finished",
                )
            }
        }
    }
}

/// The metric counts of one invocation's outcomes.
fn tally(
    outcomes: &[MessageOutcome],
    dataverse: DataverseTraffic,
    duration: Duration,
) -> InvocationTally {
    let mut tally = InvocationTally {
        received: outcomes.len() as u64,
        dataverse,
        duration,
        ..InvocationTally::default()
    };
    for outcome in outcomes {
        match outcome {
            MessageOutcome::Written {
                created,
                updated,
                stale,
                replayed,
            } => {
                tally.created += *created as u64;
                tally.updated += *updated as u64;
                tally.stale += *stale as u64;
                tally.replayed += *replayed as u64;
            }
            MessageOutcome::Skipped { reason } => {
                *tally.skipped.entry(reason.category()).or_default() += 1;
            }
            MessageOutcome::Failed {
                retryable: true, ..
            } => tally.failed_retryable += 1,
            MessageOutcome::Failed {
                retryable: false, ..
            } => tally.failed_permanent += 1,
        }
    }
    tally
}

/// What happens to one SQS message after its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settlement {
    /// Written or skipped: acknowledged.
    Done,
    /// Reported in `batchItemFailures`, to be delivered again.
    DeliverAgain,
    /// In the dead-letter queue: acknowledged here.
    DeadLettered,
}

/// Runs one queue call, giving up at `until`.
async fn bounded(
    until: Instant,
    operation: &'static str,
    call: impl Future<Output = Result<(), RedeliveryError>>,
) -> Result<(), RedeliveryError> {
    tokio::time::timeout_at(until, call)
        .await
        .unwrap_or(Err(RedeliveryError::TimedOut { operation }))
}

/// The outcomes when the writes could not run: rejections stay permanent,
/// skips stand (they needed no write), writes fail retryably with `error`.
fn unfinished(items: &[PlanResult], error: &str) -> Vec<MessageOutcome> {
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
}

/// An error as told to a caller (HTTP body, direct invoke's `errorMessage`):
/// no address, and of Dataverse's answer only what it is (status and code),
/// not its internals; the full line is in the log.
fn public_error(error: &str) -> String {
    error
        .split("; ")
        .map(|part| match part.find("(HTTP ") {
            Some(start) => match part[start..].find(')') {
                Some(close) => &part[..start + close + 1],
                None => part,
            },
            None => part,
        })
        .map(mask_personal_in)
        .collect::<Vec<_>>()
        .join("; ")
}

fn to_value(response: SqsBatchResponse) -> Value {
    // A struct of strings always serialises; never answer "all done" instead.
    serde_json::to_value(response).expect("a batch response is plain JSON")
}

/// Deadlines before this instant are not epoch times: `cargo lambda watch`
/// sends the function timeout itself (e.g. `600000`) in
/// `Lambda-Runtime-Deadline-Ms`, where AWS sends epoch milliseconds.
const EARLIEST_EPOCH_DEADLINE: Duration = Duration::from_secs(1_000_000_000);

/// The time an invocation has left.
pub(crate) fn time_left(deadline: SystemTime, now: SystemTime) -> Duration {
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

/// An HTTP API v2 / Function URL response with a JSON body.
fn http_response(status: u16, body: &Value, retry_after: Option<u64>) -> Value {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = retry_after {
        response
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response.body = Some(Body::Text(body.to_string()));
    response.is_base64_encoded = false;
    // Headers of static names and numbers always serialise.
    serde_json::to_value(response).expect("an HTTP response is plain JSON")
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
            info!(message_id, event_id, user, reason = %mask_personal_in(&reason.to_string()), skip_category = reason.category(), "webhook skipped")
        }
        MessageOutcome::Failed { error, retryable } => {
            warn!(message_id, event_id, user, retryable, error = %mask_personal_in(error), "webhook failed")
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
    use uuid::Uuid;

    /// A store broken in one way, standing in for what can go wrong below
    /// the handler. Only its data calls break: start-up facts (`WhoAmI`, the
    /// catalogue) answer, except when Dataverse is down.
    #[derive(Clone, Copy)]
    enum BrokenStore {
        /// Panics on its first data call: any bug below the handler.
        Panics,
        /// Never answers, like a Dataverse that hangs.
        Hangs,
        /// Every call fails retryably, like a Dataverse that is down.
        Down,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Dataverse is unavailable (HTTP 503)")]
    struct Down;

    impl StoreError for Down {
        fn is_retryable(&self) -> bool {
            true
        }
        fn is_already_exists(&self) -> bool {
            false
        }
    }

    impl BrokenStore {
        /// What a data call does.
        async fn break_call<T>(self) -> Result<T, Down> {
            match self {
                BrokenStore::Panics => panic!("store bug"),
                BrokenStore::Hangs => std::future::pending().await,
                BrokenStore::Down => Err(Down),
            }
        }

        /// What a start-up call does.
        fn start_up<T>(self, answer: T) -> Result<T, Down> {
            match self {
                BrokenStore::Down => Err(Down),
                BrokenStore::Panics | BrokenStore::Hangs => Ok(answer),
            }
        }
    }

    impl ConsentStore for BrokenStore {
        type Error = Down;
        async fn own_user(&self, _: Instant) -> Result<Uuid, Down> {
            self.start_up(Uuid::nil())
        }
        async fn purposes_and_topics(
            &self,
            _: Instant,
        ) -> Result<(Vec<Purpose>, Vec<Topic>), Down> {
            self.start_up((Vec::new(), Vec::new()))
        }
        async fn find_contacts(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Instant,
        ) -> Result<Vec<Contact>, Down> {
            self.break_call().await
        }
        async fn consent_rows(&self, _: &[String], _: Instant) -> Result<Vec<ConsentRow>, Down> {
            self.break_call().await
        }
        async fn execute_writes(
            &self,
            _: &[WriteOp],
            _: Instant,
        ) -> Result<Vec<Result<(), Down>>, Down> {
            self.break_call().await
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

    fn handler() -> Handler<BrokenStore> {
        handler_with(BrokenStore::Panics)
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
        let answer = handler_with(BrokenStore::Hangs)
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
        let request = json!({"rawPath": "/didomi/webhooks", "routeKey": "POST /didomi/webhooks", "requestContext": {"requestId": "r", "http": {"method": "POST"}},
            "body": include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/events/event-created-cpra.json"))});
        let answer = handler().handle(event(request)).await.unwrap();
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert!(answer["body"].as_str().unwrap().contains("skipped"));
    }

    /// Records the queue calls; dead-lettering fails when `refuse_dead_letter`,
    /// every call takes `delay`.
    #[derive(Default)]
    struct RecordingQueue {
        hidden: std::sync::Mutex<Vec<(String, Duration)>>,
        dead_lettered: std::sync::Mutex<Vec<(String, String, String)>>,
        refuse_dead_letter: bool,
        delay: Duration,
    }

    impl Redelivery for RecordingQueue {
        fn hide<'a>(
            &'a self,
            _queue: &'a crate::lambda::events::QueueArn,
            receipt_handle: &'a str,
            visibility: Duration,
        ) -> futures_util::future::BoxFuture<'a, Result<(), RedeliveryError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.hidden
                    .lock()
                    .unwrap()
                    .push((receipt_handle.to_string(), visibility));
                Ok(())
            })
        }

        fn dead_letter<'a>(
            &'a self,
            message: &'a SqsMessage,
            reason: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<(), RedeliveryError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                if self.refuse_dead_letter {
                    return Err(RedeliveryError::NoDeadLetterQueue);
                }
                self.dead_lettered.lock().unwrap().push((
                    message.message_id.clone(),
                    message.body.clone(),
                    reason.to_string(),
                ));
                Ok(())
            })
        }
    }

    fn queued(id: &str, body: &str, receive_count: u32) -> Value {
        json!({"messageId": id, "eventSource": "aws:sqs", "body": body, "receiptHandle": format!("rh-{id}"),
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:webhooks",
            "attributes": {"ApproximateReceiveCount": receive_count.to_string()}})
    }

    fn failed_ids(answer: &Value) -> Vec<&str> {
        answer["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|failure| failure["itemIdentifier"].as_str().unwrap())
            .collect()
    }

    const OPT_IN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/event-created-opt-in.json"
    ));

    #[tokio::test]
    async fn a_retryable_failure_is_hidden_for_the_backoff_of_its_delivery_and_delivered_again() {
        let queue = Arc::new(RecordingQueue::default());
        let handler = handler_with(BrokenStore::Down).with_redelivery(queue.clone());
        let batch = json!({"Records": [queued("third-try", OPT_IN, 3)]});
        let answer = handler.handle(event(batch)).await.unwrap();
        assert_eq!(failed_ids(&answer), ["third-try"]);
        let hidden = queue.hidden.lock().unwrap().clone();
        assert_eq!(hidden.len(), 1);
        assert_eq!(hidden[0].0, "rh-third-try");
        assert!(
            (Duration::from_secs(120)..=Duration::from_secs(144)).contains(&hidden[0].1),
            "the third delivery backs off 120 s plus upward jitter: {:?}",
            hidden[0].1
        );
    }

    #[tokio::test]
    async fn a_permanent_failure_goes_to_the_dead_letter_queue_unchanged_and_is_acknowledged() {
        let queue = Arc::new(RecordingQueue::default());
        let handler = handler_with(BrokenStore::Down).with_redelivery(queue.clone());
        let batch = json!({"Records": [queued("bad", "{not json", 1)]});
        let answer = handler.handle(event(batch)).await.unwrap();
        assert_eq!(failed_ids(&answer), Vec::<&str>::new());
        let dead = queue.dead_lettered.lock().unwrap().clone();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].0.as_str(), dead[0].1.as_str()),
            ("bad", "{not json")
        );
        assert!(!dead[0].2.is_empty(), "a reason is given");
        assert!(queue.hidden.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_permanent_failure_the_dead_letter_queue_refuses_is_delivered_again() {
        let queue = Arc::new(RecordingQueue {
            refuse_dead_letter: true,
            ..RecordingQueue::default()
        });
        let handler = handler_with(BrokenStore::Down).with_redelivery(queue);
        let batch = json!({"Records": [queued("bad", "{not json", 1)]});
        let answer = handler.handle(event(batch)).await.unwrap();
        assert_eq!(failed_ids(&answer), ["bad"]);
    }

    #[tokio::test]
    async fn a_slow_queue_never_holds_the_invocation_past_its_deadline_nor_acknowledges() {
        let queue = Arc::new(RecordingQueue {
            delay: Duration::from_secs(30),
            ..RecordingQueue::default()
        });
        let handler = handler_with(BrokenStore::Down).with_redelivery(queue);
        let batch = json!({"Records": [queued("bad", "{not json", 1), queued("down", OPT_IN, 1)]});
        let started = std::time::Instant::now();
        let answer = handler
            .handle(event_with_time_left(batch, Duration::from_secs(1)))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(failed_ids(&answer), ["bad", "down"]);
    }

    #[tokio::test]
    async fn without_a_catalogue_writes_fail_retryably_and_skips_still_stand() {
        // Metadata not read yet, and the store cannot give it (Dataverse down since start).
        let document: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/integration-config.json"
        )))
        .unwrap();
        let config = IntegrationConfig::from_document(&document, false)
            .unwrap()
            .config;
        let handler = Handler::new(
            SyncService::new(BrokenStore::Down, Arc::new(config)),
            Duration::from_millis(100),
        );
        let anonymous = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/event-created-anonymous-cookie-banner.json"
        ));
        let queue = Arc::new(RecordingQueue::default());
        let handler = handler.with_redelivery(queue.clone());
        let batch = json!({"Records": [queued("write", OPT_IN, 1), queued("skip", anonymous, 1)]});
        let answer = handler.handle(event(batch)).await.unwrap();
        assert_eq!(failed_ids(&answer), ["write"]);
        assert_eq!(
            queue.hidden.lock().unwrap().len(),
            1,
            "backed off, not dead-lettered"
        );
    }

    #[tokio::test]
    async fn a_retryable_http_failure_is_a_503_with_retry_after_and_a_json_body() {
        let request = json!({"version": "2.0", "rawPath": "/didomi/webhooks", "routeKey": "POST /didomi/webhooks",
            "requestContext": {"requestId": "r", "http": {"method": "POST"}}, "body": OPT_IN});
        let answer = handler_with(BrokenStore::Down)
            .handle(event(request))
            .await
            .unwrap();
        assert_eq!(answer["statusCode"], 503, "{answer}");
        assert_eq!(answer["headers"]["retry-after"], "30");
        assert_eq!(answer["headers"]["content-type"], "application/json");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("HTTP 503"),
            "{body}"
        );
    }

    #[test]
    fn errors_told_to_callers_keep_the_status_and_code_but_not_dataverse_internals() {
        let error = "writing consent: $batch part 1 (create consent): Dataverse refused the request (HTTP 400 0x80040203): Invalid value for jane.doe@example.com in msdynmkt_contactpointvalue";
        assert_eq!(
            public_error(error),
            "writing consent: $batch part 1 (create consent): Dataverse refused the request (HTTP 400 0x80040203)"
        );
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
