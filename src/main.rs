//! `bootstrap`: the Lambda function. It only wires: logs, then the mode's
//! start-up and runtime loop ([`didomi_cpc_sync::lambda::entry`]), with one
//! handler built once and shared by every invocation.

use didomi_cpc_sync::lambda::entry;
use didomi_cpc_sync::telemetry;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    telemetry::init();
    entry::run(started).await
}
