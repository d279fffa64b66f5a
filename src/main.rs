//! `bootstrap`: the Lambda function. It only wires: logs, start-up, then the
//! runtime loop with one handler built once and shared by every invocation.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

use didomi_cpc_sync::lambda::startup;
use didomi_cpc_sync::telemetry;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let handler = match startup::build_handler().await {
        Ok(handler) => handler,
        Err(error) => {
            // Failing the init phase makes Lambda report it and retry the init
            // on the next invocation; the queued webhooks wait in SQS.
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
