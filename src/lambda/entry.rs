//! What `bootstrap` runs, chosen by `CPC_SYNC_MODE` (set by the template):
//! `webhooks` (the default) is the SQS/HTTP webhook function, `reverse-sync`
//! the scheduled Dynamics → Didomi pass. One binary serves both, so `sam
//! build` builds the code once for both functions.

use std::time::Instant;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use crate::adapters::dataverse::DataverseClient;
use crate::lambda::handler::{Handler, HandlerError};
use crate::lambda::reverse::ReverseInvocationError;
use crate::lambda::reverse_startup::{ReverseSyncHandler, build_reverse_handler};
use crate::lambda::startup::{self, InitError};
use crate::telemetry::metrics::Metrics;

/// The environment variable choosing the mode.
pub const MODE_VARIABLE: &str = "CPC_SYNC_MODE";

/// The function's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SQS batches, HTTP requests and direct webhooks into Dataverse.
    Webhooks,
    /// One reverse-sync pass per scheduled event.
    ReverseSync,
}

impl Mode {
    /// The mode `value` (of `CPC_SYNC_MODE`) names; unset or empty is [`Mode::Webhooks`].
    pub fn parse(value: Option<&str>) -> Result<Self, InitError> {
        match value.map(str::trim).unwrap_or_default() {
            "" | "webhooks" => Ok(Mode::Webhooks),
            "reverse-sync" => Ok(Mode::ReverseSync),
            other => Err(InitError::UnknownMode(other.to_string())),
        }
    }
}

/// Builds the mode's handler and serves invocations until the runtime ends.
/// An init failure is logged and reported to the Runtime API, then returned.
pub async fn run(started: Instant) -> Result<(), lambda_runtime::Error> {
    match Mode::parse(std::env::var(MODE_VARIABLE).ok().as_deref()) {
        Ok(Mode::Webhooks) => serve(startup::build_handler().await, started).await,
        Ok(Mode::ReverseSync) => serve(build_reverse_handler().await, started).await,
        Err(error) => init_failed(error).await,
    }
}

/// A built function: what answers one invocation of its mode. One trait so
/// that both modes share the cold-start metric and the runtime loop.
trait Invocable: Sync {
    /// What a failed invocation reports to the Runtime API.
    type Error: Into<Diagnostic> + std::fmt::Debug;

    /// Answers one invocation.
    fn invoke(
        &self,
        event: LambdaEvent<Value>,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send;
}

impl Invocable for Handler<DataverseClient> {
    type Error = HandlerError;

    fn invoke(
        &self,
        event: LambdaEvent<Value>,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send {
        self.handle(event)
    }
}

impl Invocable for ReverseSyncHandler {
    type Error = ReverseInvocationError;

    fn invoke(
        &self,
        event: LambdaEvent<Value>,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send {
        self.handle(event)
    }
}

/// Serves invocations with `built`, or reports why it could not be built.
async fn serve<H: Invocable>(
    built: Result<H, InitError>,
    started: Instant,
) -> Result<(), lambda_runtime::Error> {
    let handler = match built {
        Ok(handler) => handler,
        Err(error) => return init_failed(error).await,
    };
    cold_start(started);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.invoke(event).await
    }))
    .await
}

fn cold_start(started: Instant) {
    let metrics = Metrics::from_env();
    Metrics::emit(&[metrics.init_line(started.elapsed(), std::time::SystemTime::now())]);
}

/// Only configuration no retry can fix gets here. Lambda reports the failed
/// init and retries it with the next invocation: for the webhook function
/// the batch goes back to the queue after the visibility timeout (counting
/// as a delivery, without backoff); for the reverse sync the next schedule
/// tries again. Fix it quickly.
async fn init_failed(error: InitError) -> Result<(), lambda_runtime::Error> {
    tracing::error!(error = %error, kind = error.kind(), "cannot start");
    startup::report_init_error(&error).await;
    Err(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_mode_is_the_webhook_function_and_an_unknown_one_is_refused() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Webhooks);
        assert_eq!(Mode::parse(Some(" ")).unwrap(), Mode::Webhooks);
        assert_eq!(
            Mode::parse(Some("reverse-sync")).unwrap(),
            Mode::ReverseSync
        );
        let error = Mode::parse(Some("reverse")).unwrap_err();
        assert_eq!(error.kind(), "InvalidConfiguration");
        assert!(error.to_string().contains("reverse-sync"), "{error}");
    }
}
