//! Start-up (the Lambda init phase): configuration, clients, and the wiring
//! of both into the [`Handler`].
//!
//! Only a configuration problem that no retry can fix fails the init: a
//! missing or invalid document, an unreadable secret, a mapping to a purpose
//! or topic Dataverse does not have. Entra or Dataverse being unreachable (or
//! refusing the app until an administrator fixes its Application User) does
//! not: a failed init cannot back its messages off, so each delivery would
//! last one visibility timeout and a long outage would push the queue into
//! the dead-letter queue. The function starts without its catalogue instead,
//! reads it on the first invocation that writes ([`LazyCatalog`]), and until
//! then those writes fail retryably and back off in the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use futures_util::future::BoxFuture;
use url::Url;

use crate::adapters::dataverse::{DataverseClient, DataverseError, RetryPolicy};
use crate::adapters::entra::CredentialSource;
use crate::adapters::entra::provider::EntraTokenProvider;
use crate::adapters::http::http_client;
use crate::adapters::secrets_manager::{
    DEFAULT_SECRET_TTL, SecretsError, SecretsManagerSource, sdk_client,
};
use crate::adapters::sqs_redelivery::{self, SqsRedelivery};
use crate::config::{ConfigErrors, Environment, IntegrationConfig, merge_documents};
use crate::domain::decision::Target;
use crate::domain::writes::{Catalog, TargetProblem};
use crate::lambda::catalog::{CatalogSource, CatalogUnavailable, LazyCatalog};
use crate::lambda::handler::Handler;
use crate::lambda::redelivery::Redelivery;
use crate::redact::{SecretString, derive_log_hash_key, set_log_hash_key};
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
}

impl InitError {
    /// A short category for Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            InitError::MissingSecretId | InitError::Config(_) => "InvalidConfiguration",
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

fn describe(problems: &[TargetProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.target, problem.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds the function's handler from the environment: reads the secret,
/// validates the configuration, builds the clients and [`wire`]s them.
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
    let config = Arc::new(loaded.config);
    let client = dataverse_client(
        &config,
        environment.authority.clone(),
        secrets,
        RetryPolicy::default(),
    );
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
/// tries to read purposes and topics (which also opens the TLS connections
/// the first invocation will reuse) and checks every mapped GUID: a GUID
/// Dataverse does not have fails the start. When Dataverse or Entra cannot
/// be read, the handler starts anyway and reads them on first use.
pub async fn wire(
    config: Arc<IntegrationConfig>,
    client: DataverseClient,
    redelivery: Arc<dyn Redelivery>,
) -> Result<Handler<DataverseClient>, InitError> {
    let source = Arc::new(DataverseCatalog {
        client: client.clone(),
        targets: config.targets().into_iter().collect(),
    });
    let catalog = match source.read(Instant::now() + STARTUP_BUDGET).await {
        Ok(catalog) => LazyCatalog::loaded(catalog),
        Err(CatalogProblem::UnknownTargets(fatal)) => return Err(InitError::UnknownTargets(fatal)),
        Err(CatalogProblem::Unreadable(error)) => {
            warn!(
                error = %error,
                retryable = error.is_retryable(),
                "purposes and topics could not be read at start; starting anyway: writes wait (backing off in the queue) until they can be read"
            );
            LazyCatalog::pending(source)
        }
    };
    info!(
        instance = %config.credentials.instance,
        mappings = config.rules.mappings.len(),
        targets = config.targets().len(),
        upsert_mode = config.upsert_mode,
        catalogue_loaded = catalog.is_loaded(),
        "ready"
    );
    Ok(Handler::new(client, config, catalog, SAFETY_MARGIN)
        .with_redelivery(redelivery)
        .with_metrics(Metrics::from_env()))
}

/// Why the catalogue could not be used.
enum CatalogProblem {
    /// Dataverse (or Entra) did not answer the reads.
    Unreadable(DataverseError),
    /// Mapped purposes or topics that Dataverse does not have.
    UnknownTargets(Vec<TargetProblem>),
}

/// Purposes and topics read from Dataverse, checked against the mappings.
struct DataverseCatalog {
    client: DataverseClient,
    targets: Vec<Target>,
}

impl DataverseCatalog {
    async fn read(&self, deadline: Instant) -> Result<Catalog, CatalogProblem> {
        let (purposes, topics) =
            tokio::try_join!(self.client.purposes(deadline), self.client.topics(deadline))
                .map_err(CatalogProblem::Unreadable)?;
        let catalog = Catalog::new(purposes, topics);
        let (fatal, notes): (Vec<_>, Vec<_>) = catalog
            .check(&self.targets)
            .into_iter()
            .partition(|problem| problem.fatal);
        for note in notes {
            warn!(target_id = %note.target, problem = %note.problem, "mapping target needs attention");
        }
        if fatal.is_empty() {
            Ok(catalog)
        } else {
            Err(CatalogProblem::UnknownTargets(fatal))
        }
    }
}

impl CatalogSource for DataverseCatalog {
    fn load(&self, deadline: Instant) -> BoxFuture<'_, Result<Catalog, CatalogUnavailable>> {
        Box::pin(async move {
            self.read(deadline).await.map_err(|problem| match problem {
                CatalogProblem::Unreadable(error) => CatalogUnavailable(error.to_string()),
                CatalogProblem::UnknownTargets(fatal) => {
                    // Found only now because Dataverse was down at start: the
                    // mapping needs fixing, and the messages wait for it.
                    tracing::error!(problems = %describe(&fatal), "mappings name targets Dataverse does not have");
                    CatalogUnavailable(format!(
                        "mappings name targets Dataverse does not have: {}",
                        describe(&fatal)
                    ))
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_hash_key_is_taken_out_of_the_secret_document() {
        let (rest, key) = split_log_hash_key(r#"{"log_hash_key":"k-1","upsert_mode":true}"#);
        assert_eq!(key.unwrap().expose(), "k-1");
        assert_eq!(rest, r#"{"upsert_mode":true}"#);
    }

    #[test]
    fn a_document_without_a_log_hash_key_is_left_as_it_is() {
        let raw = r#"{"upsert_mode": true}"#;
        assert_eq!(split_log_hash_key(raw), (raw.to_string(), None));
        assert_eq!(
            split_log_hash_key("not json"),
            ("not json".to_string(), None)
        );
    }
}
