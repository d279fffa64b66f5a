//! `bootstrap`: the Lambda function. It only wires: logs, start-up, then the
//! runtime loop with one handler built once and shared by every invocation.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use didomi_cpc_sync::lambda::startup;
use didomi_cpc_sync::telemetry;
use didomi_cpc_sync::telemetry::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    telemetry::init();
    let handler = match startup::build_handler().await {
        Ok(handler) => {
            let metrics = Metrics::from_env();
            Metrics::emit(&[metrics.init_line(started.elapsed(), std::time::SystemTime::now())]);
            handler
        }
        Err(error) => {
            // Only configuration no retry can fix gets here. Lambda reports the
            // failed init and retries it with the next invocation; the batch
            // it received goes back to the queue after the visibility timeout
            // and counts as a delivery (without backoff), so fix it quickly.
            tracing::error!(error = %error, kind = error.kind(), "cannot start");
            startup::report_init_error(&error).await;
            return Err(error.into());
        }
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event).await
    }))
    .await
}
