//! Start-up (the Lambda init phase): configuration, clients, and the wiring
//! of both into the [`Handler`].
//!
//! Only a configuration problem that no retry can fix fails the init: a
//! missing or invalid document, an unreadable secret, a mapping to a purpose
//! or topic Dataverse does not have. Entra or Dataverse being unreachable (or
//! refusing the app until an administrator fixes its Application User) does
//! not: a failed init cannot back its messages off, so each delivery would
//! last one visibility timeout and a long outage would push the queue into
//! the dead-letter queue. The function starts without its metadata instead,
//! the service reads it on the first invocation that writes
//! ([`SyncService::metadata`]), and until then those writes fail retryably and
//! back off in the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use url::Url;

use crate::adapters::dataverse::{DEFAULT_MIN_PARTS_PER_REQUEST, DataverseClient, RetryPolicy};
use crate::adapters::entra::CredentialSource;
use crate::adapters::entra::provider::EntraTokenProvider;
use crate::adapters::http::http_client;
use crate::adapters::secrets_manager::{
    DEFAULT_SECRET_TTL, SecretsError, SecretsManagerSource, sdk_client,
};
use crate::adapters::sqs_redelivery::{self, SqsRedelivery};
use crate::config::{ConfigErrors, Environment, IntegrationConfig, merge_documents};
use crate::domain::writes::TargetProblem;
use crate::lambda::handler::Handler;
use crate::lambda::redelivery::Redelivery;
use crate::redact::{SecretString, derive_log_hash_key, mask_personal_in, set_log_hash_key};
use crate::service::{MetadataError, SyncService, describe_problems as describe};
use crate::telemetry::metrics::Metrics;

/// Time kept back from each invocation's deadline to report unfinished
/// messages before Lambda stops the function.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// Longest the start-up checks against Dataverse may take (Lambda gives the
/// whole init phase 10 seconds).
const STARTUP_BUDGET: Duration = Duration::from_secs(7);

/// Why the function cannot start: configuration no retry can fix. (Entra
/// or Dataverse being unreachable is not among them: see the module
/// documentation.) Each message says what to fix.
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
    /// Mapped purposes or topics that do not exist.
    #[error("mappings name targets Dataverse does not have: {}", describe(.0))]
    UnknownTargets(Vec<TargetProblem>),
    /// `CPC_SYNC_MODE` names no mode (`webhooks`, `reverse-sync`).
    #[error(
        "CPC_SYNC_MODE is {0:?}: use webhooks (the default: the SQS/HTTP webhook function) or reverse-sync (the scheduled Dynamics -> Didomi pass)"
    )]
    UnknownMode(String),
    /// The reverse-sync function has no `STATE_TABLE`.
    #[error(
        "STATE_TABLE is not set: give the name of the DynamoDB table holding the reverse-sync watermark and lock"
    )]
    MissingStateTable,
}

impl InitError {
    /// A short category for Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            InitError::MissingSecretId
            | InitError::Config(_)
            | InitError::UnknownMode(_)
            | InitError::MissingStateTable => "InvalidConfiguration",
            InitError::Secret { .. } => "SecretUnavailable",
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
    let body = serde_json::json!({ "errorType": error.kind(), "errorMessage": crate::redact::mask_personal_in(&error.to_string()) });
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

/// What both functions' inits read first: the integration secret, merged with
/// `INTEGRATION_CONFIG` and validated.
pub struct IntegrationSecret {
    /// The secret's source (cached; the token provider re-reads it when Entra
    /// refuses a rotated client secret).
    pub secrets: Arc<SecretsManagerSource>,
    /// The merged integration document (the reverse sync reads its `didomi_api`).
    pub document: serde_json::Value,
    /// The validated configuration.
    pub config: IntegrationConfig,
}

/// The secret's document, or the start-up failure naming the secret.
pub async fn read_secret(secrets: &SecretsManagerSource) -> Result<String, InitError> {
    secrets
        .document(false)
        .await
        .map_err(|source| InitError::Secret {
            secret_id: secrets.secret_id().to_string(),
            source,
        })
}

/// Reads `SECRET_ID` through `client`, merges `INTEGRATION_CONFIG`, validates
/// the document, keys the log labels and logs the configuration warnings.
pub async fn load_integration(
    environment: &Environment,
    client: aws_sdk_secretsmanager::Client,
) -> Result<IntegrationSecret, InitError> {
    let secret_id = environment
        .secret_id
        .clone()
        .ok_or(InitError::MissingSecretId)?;
    let secrets = Arc::new(SecretsManagerSource::new(
        client,
        secret_id,
        DEFAULT_SECRET_TTL,
        environment.allow_insecure_http,
    ));
    let raw = read_secret(&secrets).await?;
    let (raw, log_hash_key) = split_log_hash_key(&raw);
    let (document, merge_warnings) =
        merge_documents(&raw, environment.integration_config.as_deref())?;
    let loaded = IntegrationConfig::from_document(&document, environment.allow_insecure_http)?;
    // Before anything logs a label: from here on labels are per deployment.
    set_log_hash_key(
        &log_hash_key
            .unwrap_or_else(|| derive_log_hash_key(&loaded.config.credentials.client_secret)),
    );
    for warning in merge_warnings.iter().chain(&loaded.warnings) {
        warn!(warning = %warning, "configuration");
    }
    Ok(IntegrationSecret {
        secrets,
        document,
        config: loaded.config,
    })
}

/// Builds the function's handler from the environment: reads the secret,
/// validates the configuration, builds the clients and [`wire`]s them.
pub async fn build_handler() -> Result<Handler<DataverseClient>, InitError> {
    let environment = Environment::from_env()?;
    let IntegrationSecret {
        secrets, config, ..
    } = load_integration(&environment, sdk_client().await).await?;
    let config = Arc::new(config);
    let client = dataverse_client(
        &config,
        environment.authority.clone(),
        secrets,
        RetryPolicy::default(),
    )
    .with_parallel_writes(environment.max_parallel, DEFAULT_MIN_PARTS_PER_REQUEST);
    let redelivery = SqsRedelivery::new(
        sqs_redelivery::sdk_client().await,
        sqs_redelivery::endpoint_from_env(),
        std::env::var("DEAD_LETTER_QUEUE_URL").ok(),
    );
    wire(config, client, Arc::new(redelivery)).await
}

/// Secret document key holding the key of the log labels ([`crate::redact`]).
pub const LOG_HASH_KEY: &str = "log_hash_key";

/// Takes `log_hash_key` out of the secret document (it is not part of the
/// integration document), returning the rest and the key when it is a
/// non-empty string. A document that is not a JSON object is returned as it
/// is, for the configuration to report.
pub fn split_log_hash_key(raw: &str) -> (String, Option<SecretString>) {
    let Ok(serde_json::Value::Object(mut document)) = serde_json::from_str(raw) else {
        return (raw.to_string(), None);
    };
    match document.remove(LOG_HASH_KEY) {
        Some(serde_json::Value::String(key)) if !key.trim().is_empty() => (
            serde_json::Value::Object(document).to_string(),
            Some(SecretString::new(key)),
        ),
        Some(_) => (serde_json::Value::Object(document).to_string(), None),
        None => (raw.to_string(), None),
    }
}

/// The Dataverse client for `config`, with tokens from Entra at `authority`
/// for the credentials `credentials` gives.
pub fn dataverse_client(
    config: &IntegrationConfig,
    authority: Url,
    credentials: Arc<dyn CredentialSource>,
    policy: RetryPolicy,
) -> DataverseClient {
    let http = http_client();
    let tokens = Arc::new(EntraTokenProvider::new(
        http.clone(),
        authority,
        credentials,
    ));
    DataverseClient::new(http, config.credentials.instance.clone(), tokens, policy)
}

/// Wires a validated configuration and its clients into the handler. It
/// tries to read the environment's metadata (purposes and topics, and this
/// product's application user; this also opens the TLS connections the first
/// invocation will reuse) and checks every mapped GUID: a GUID Dataverse does
/// not have fails the start. When Dataverse or Entra cannot be read, the
/// handler starts anyway and the service reads them on first use.
pub async fn wire(
    config: Arc<IntegrationConfig>,
    client: DataverseClient,
    redelivery: Arc<dyn Redelivery>,
) -> Result<Handler<DataverseClient>, InitError> {
    let service = SyncService::new(client, config.clone());
    let loaded = match service.metadata(Instant::now() + STARTUP_BUDGET).await {
        Ok(metadata) => {
            for note in &metadata.notes {
                warn!(target_id = %note.target, problem = %note.problem, "mapping target needs attention");
            }
            true
        }
        Err(MetadataError::UnknownTargets(fatal)) => return Err(InitError::UnknownTargets(fatal)),
        Err(MetadataError::Store(error)) => {
            warn!(
                error = %mask_personal_in(&error.to_string()),
                retryable = error.is_retryable(),
                "purposes, topics and the application user could not be read at start; starting anyway: writes wait (backing off in the queue) until they can be read"
            );
            false
        }
    };
    info!(
        instance = %config.credentials.instance,
        mappings = config.rules.mappings.len(),
        targets = config.targets().len(),
        upsert_mode = config.upsert_mode,
        metadata_loaded = loaded,
        "ready"
    );
    Ok(Handler::new(service, SAFETY_MARGIN)
        .with_redelivery(redelivery)
        .with_metrics(Metrics::from_env()))
}
