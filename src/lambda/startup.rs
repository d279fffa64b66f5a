//! Start-up (the Lambda init phase): configuration, clients and the checks
//! that must fail loudly before the first webhook, not on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::adapters::dataverse::{DataverseClient, DataverseError, RetryPolicy};
use crate::adapters::entra::AuthError;
use crate::adapters::entra::provider::EntraTokenProvider;
use crate::adapters::http::http_client;
use crate::adapters::secrets_manager::{
    DEFAULT_SECRET_TTL, SecretsError, SecretsManagerSource, sdk_client,
};
use crate::config::{ConfigErrors, Environment, IntegrationConfig, merge_documents};
use crate::domain::writes::TargetProblem;
use crate::lambda::handler::Handler;
use crate::service::{MetadataError, SyncService};

/// Time kept back from each invocation's deadline to report unfinished
/// messages before Lambda stops the function.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// Longest the start-up checks against Dataverse may take (Lambda gives the
/// whole init phase 10 seconds).
const STARTUP_BUDGET: Duration = Duration::from_secs(7);

/// Why the function cannot start. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `SECRET_ID` is not set.
    #[error(
        "SECRET_ID is not set: give the name or ARN of the Secrets Manager secret holding the integration document"
    )]
    MissingSecretId,
    /// The environment or the document is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The secret could not be read.
    #[error("reading secret {secret_id}: {source}")]
    Secret {
        /// `SECRET_ID`.
        secret_id: String,
        /// What Secrets Manager (or the network) said.
        source: SecretsError,
    },
    /// No token for Dataverse.
    #[error("getting a Dataverse token: {0}")]
    Auth(#[from] AuthError),
    /// Dataverse refused or failed the start-up reads.
    #[error("reading purposes and topics from Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
    /// Mapped purposes or topics that do not exist.
    #[error("mappings name targets Dataverse does not have: {}", describe(.0))]
    UnknownTargets(Vec<TargetProblem>),
}

impl InitError {
    /// A short category for Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            InitError::MissingSecretId | InitError::Config(_) => "InvalidConfiguration",
            InitError::Secret { .. } => "SecretUnavailable",
            InitError::Auth(_) => "EntraAuthenticationFailed",
            InitError::Dataverse(_) => "DataverseUnavailable",
            InitError::UnknownTargets(_) => "UnknownMappingTargets",
        }
    }
}

/// Tells the Lambda Runtime API why the init phase failed
/// (`POST /runtime/init/error`), so the failed invocation carries the
/// message instead of a bare "Runtime exited". Best effort: the process
/// exits with the error anyway.
pub async fn report_init_error(error: &InitError) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    // AWS gives `host:port`; local runtimes such as cargo lambda give a URL.
    let base = if api.starts_with("http://") || api.starts_with("https://") {
        api.trim_end_matches('/').to_string()
    } else {
        format!("http://{api}")
    };
    let body = serde_json::json!({ "errorType": error.kind(), "errorMessage": error.to_string() });
    let sent = reqwest::Client::new()
        .post(format!("{base}/2018-06-01/runtime/init/error"))
        .header(
            "Lambda-Runtime-Function-Error-Type",
            format!("Runtime.{}", error.kind()),
        )
        .timeout(Duration::from_secs(2))
        .json(&body)
        .send()
        .await;
    if let Err(err) = sent {
        warn!(error = %err, "could not report the init error to the Lambda Runtime API");
    }
}

fn describe(problems: &[TargetProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.target, problem.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds the handler: reads the secret, validates the configuration, gets a
/// token and reads purposes and topics (which also opens the TLS connections
/// the first invocation will reuse), and checks every mapped GUID.
pub async fn build_handler() -> Result<Handler<DataverseClient>, InitError> {
    let environment = Environment::from_env()?;
    let secret_id = environment
        .secret_id
        .clone()
        .ok_or(InitError::MissingSecretId)?;
    let secrets = Arc::new(SecretsManagerSource::new(
        sdk_client().await,
        secret_id,
        DEFAULT_SECRET_TTL,
        environment.allow_insecure_http,
    ));
    let raw = secrets
        .document(false)
        .await
        .map_err(|source| InitError::Secret {
            secret_id: secrets.secret_id().to_string(),
            source,
        })?;
    let (document, merge_warnings) =
        merge_documents(&raw, environment.integration_config.as_deref())?;
    let loaded = IntegrationConfig::from_document(&document, environment.allow_insecure_http)?;
    for warning in merge_warnings.iter().chain(&loaded.warnings) {
        warn!(warning = %warning, "configuration");
    }
    let config = Arc::new(loaded.config);
    let http = http_client();
    let tokens = Arc::new(EntraTokenProvider::new(
        http.clone(),
        environment.authority.clone(),
        secrets,
    ));
    let client = DataverseClient::new(
        http,
        config.credentials.instance.clone(),
        tokens,
        RetryPolicy::default(),
    );
    let service = SyncService::new(client, config.clone());
    let deadline = Instant::now() + STARTUP_BUDGET;
    let metadata = service.metadata(deadline).await.map_err(|err| match err {
        MetadataError::Store(err) => InitError::Dataverse(err),
        MetadataError::UnknownTargets(problems) => InitError::UnknownTargets(problems),
    })?;
    for note in &metadata.notes {
        warn!(target_id = %note.target, problem = %note.problem, "mapping target needs attention");
    }
    let targets = config.targets();
    info!(
        instance = %config.credentials.instance,
        mappings = config.rules.mappings.len(),
        targets = targets.len(),
        upsert_mode = config.upsert_mode,
        "ready"
    );
    Ok(Handler::new(service, SAFETY_MARGIN))
}
