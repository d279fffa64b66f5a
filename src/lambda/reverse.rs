//! The reverse-sync function's handler (`CPC_SYNC_MODE=reverse-sync`): each
//! scheduled invocation runs one pass ([`crate::service::reverse`]) under the
//! state table's lock, logs a structured summary and prints one EMF metric
//! line. A pass that finds the lock held by another pass is skipped (answered,
//! logged and counted as `ReversePassSkipped`, not failed). A failed pass fails the invocation (the `ReverseSyncErrorsAlarm`
//! counts it); its log line says whether the next scheduled pass can succeed
//! unaided, since that pass retries from the old watermark.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use crate::config::IntegrationConfig;
use crate::lambda::handler::time_left;
use crate::lambda::schedule::{NotScheduled, parse_scheduled};
use crate::redact::mask_personal_in;
use crate::service::reverse::{
    ChangedRows, DidomiEvents, Pass, PassOptions, ReverseError, ReverseSummary, StateError,
    WatermarkStore,
};
use crate::telemetry::metrics::{Metrics, ReversePassTally, take_dataverse_traffic};

/// The lock holder's label for the function's passes.
pub const HOLDER: &str = "lambda";

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReverseInvocationError {
    /// Not a scheduled event: retrying the same event cannot help.
    #[error(transparent)]
    NotScheduled(#[from] NotScheduled),
    /// The pass failed; the watermark stayed.
    #[error("{error} (the next scheduled pass retries from the old watermark; retry helps: {retryable})", error = mask_personal_in(&.0.to_string()), retryable = .0.is_retryable())]
    Pass(#[from] ReverseError),
}

impl From<ReverseInvocationError> for Diagnostic {
    fn from(error: ReverseInvocationError) -> Self {
        let error_type = match &error {
            ReverseInvocationError::NotScheduled(_) => "UnrecognisedEvent",
            ReverseInvocationError::Pass(pass) => pass.kind(),
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: mask_personal_in(&error.to_string()),
        }
    }
}

/// Runs one pass per scheduled invocation over the Dataverse rows `R`,
/// Didomi `D` and the state store `S`.
pub struct ReverseHandler<R, D, S> {
    rows: R,
    didomi: D,
    state: S,
    config: Arc<IntegrationConfig>,
    metrics: Option<Metrics>,
    safety_margin: Duration,
    /// This product's application user, read once (`WhoAmI`): it never
    /// changes while the instance lives.
    own_user: tokio::sync::OnceCell<uuid::Uuid>,
}

impl<R: ChangedRows, D: DidomiEvents, S: WatermarkStore> ReverseHandler<R, D, S> {
    /// A handler that stops each pass `safety_margin` before the invocation's deadline.
    pub fn new(
        rows: R,
        didomi: D,
        state: S,
        config: Arc<IntegrationConfig>,
        safety_margin: Duration,
    ) -> Self {
        Self {
            rows,
            didomi,
            state,
            config,
            metrics: None,
            safety_margin,
            own_user: tokio::sync::OnceCell::new(),
        }
    }

    /// The same handler, printing one EMF metric line per pass.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Handles one invocation; every log line carries its `requestId`.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, ReverseInvocationError> {
        let span = tracing::error_span!("invocation", requestId = %event.context.request_id);
        let remaining = time_left(event.context.deadline(), SystemTime::now());
        self.handle_payload(&event.payload, remaining)
            .instrument(span)
            .await
    }

    /// Handles a payload with `remaining` time left (the part of
    /// [`ReverseHandler::handle`] that needs no Lambda context).
    pub async fn handle_payload(
        &self,
        payload: &Value,
        remaining: Duration,
    ) -> Result<Value, ReverseInvocationError> {
        let scheduled = parse_scheduled(payload)?;
        let started = Instant::now();
        take_dataverse_traffic();
        let deadline = started + remaining.saturating_sub(self.safety_margin);
        info!(schedule_event_id = %scheduled.id, fired_at = %scheduled.time, "reverse sync pass starts");
        let result = match self.pass(deadline).await {
            // Another pass holds the lock: it reads the same rows, so this
            // one has nothing to add. A skip, not a failure (no alarm).
            Err(ReverseError::State(StateError::Locked { holder, expires_at })) => {
                warn!(
                    holder = %holder,
                    lease_ends = %expires_at.to_rfc3339(),
                    "reverse sync pass skipped: another pass holds the lock; the next scheduled pass reads from the watermark"
                );
                let tally = ReversePassTally {
                    dataverse: take_dataverse_traffic(),
                    duration: started.elapsed(),
                    skipped: true,
                    ..ReversePassTally::default()
                };
                if let Some(metrics) = &self.metrics {
                    Metrics::emit(&[metrics.reverse_pass_line(&tally, SystemTime::now())]);
                }
                return Ok(
                    json!({"skipped": "another pass holds the lock", "holder": holder,
                                 "lease_ends": expires_at.to_rfc3339()}),
                );
            }
            other => other,
        };
        let mut tally = ReversePassTally {
            dataverse: take_dataverse_traffic(),
            duration: started.elapsed(),
            ..ReversePassTally::default()
        };
        match &result {
            Ok(summary) => {
                tally.rows = summary.rows;
                tally.events = summary.events;
                tally.ignored = summary.ignored.values().sum();
                tally.not_expressible = summary.not_expressible;
                info!(
                    rows = summary.rows,
                    events = summary.events,
                    posts = summary.posts,
                    ignored = %json!(summary.ignored),
                    not_expressible = summary.not_expressible,
                    watermark_before = ?summary.watermark_before.map(|at| at.to_rfc3339()),
                    watermark_after = ?summary.watermark_after.map(|at| at.to_rfc3339()),
                    duration_ms = tally.duration.as_millis() as u64,
                    "reverse sync summary"
                );
            }
            Err(failure) => {
                tally.failed = true;
                error!(
                    error = %mask_personal_in(&failure.to_string()),
                    kind = failure.kind(),
                    retryable = failure.is_retryable(),
                    "reverse sync pass failed; the watermark stays and the next scheduled pass starts from it{}",
                    if failure.is_retryable() {
                        " (retry helps: nothing to fix)"
                    } else {
                        " (retry does not help until the cause is fixed)"
                    }
                );
            }
        }
        if let Some(metrics) = &self.metrics {
            Metrics::emit(&[metrics.reverse_pass_line(&tally, SystemTime::now())]);
        }
        Ok(serde_json::to_value(result?).unwrap_or_default())
    }

    async fn pass(&self, deadline: Instant) -> Result<ReverseSummary, ReverseError> {
        let own_user = *self
            .own_user
            .get_or_try_init(|| async {
                self.rows
                    .own_user(deadline)
                    .await
                    .map_err(|err| ReverseError::Dataverse {
                        message: format!("WhoAmI: {err}"),
                        retryable: crate::service::reverse::PortError::is_retryable(&err),
                    })
            })
            .await?;
        let options = PassOptions {
            dry_run: false,
            holder: HOLDER.to_string(),
            deadline,
        };
        // Rows that cannot be expressed are logged by the pass; the lines it
        // writes for an operator's terminal have no reader here.
        let mut out = std::io::sink();
        Pass {
            rows: &self.rows,
            didomi: &self.didomi,
            state: &self.state,
            config: &self.config,
            own_user,
        }
        .run(&options, &mut out)
        .await
    }
}
