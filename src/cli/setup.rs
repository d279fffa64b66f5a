//! Builds what `backfill` and `reconcile` need from the configuration: the
//! integration document (from `--config FILE`, or the function's own secret
//! via `SECRET_ID`), the sync service over Dataverse, and the Didomi API
//! client. Every failure here is a configuration problem (exit status 2)
//! unless it says a retry could help.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::adapters::dataverse::{DataverseClient, DataverseError, RetryPolicy};
use crate::adapters::didomi_api::DidomiApiClient;
use crate::adapters::entra::StaticCredentials;
use crate::adapters::entra::provider::EntraTokenProvider;
use crate::adapters::http::http_client;
use crate::adapters::secrets_manager::{DEFAULT_SECRET_TTL, SecretsManagerSource, sdk_client};
use crate::config::{DidomiApiSettings, Environment, IntegrationConfig, merge_documents};
use crate::service::SyncService;

/// The validated document and the environment.
pub struct Loaded {
    /// The merged document as JSON (for `didomi_api`).
    pub document: Value,
    /// The validated integration configuration.
    pub config: IntegrationConfig,
    /// The environment (authority, insecure-http opt-in).
    pub environment: Environment,
}

/// Why the commands cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Missing or invalid configuration; the message names the fix.
    #[error("{0}")]
    Config(String),
    /// Dataverse could not be read at start (purposes and topics).
    #[error("reading purposes and topics from Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
}

/// Loads the document from `config_path`, or from the secret named by
/// `SECRET_ID` (merged with `INTEGRATION_CONFIG`) when no path is given.
pub async fn load(config_path: Option<&Path>) -> Result<Loaded, SetupError> {
    let environment = Environment::from_env().map_err(|err| SetupError::Config(err.to_string()))?;
    let (document, warnings) = match config_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                SetupError::Config(format!("cannot read config {}: {err}", path.display()))
            })?;
            let document: Value = serde_json::from_str(&text).map_err(|err| {
                SetupError::Config(format!(
                    "config {} is not valid JSON: {err}",
                    path.display()
                ))
            })?;
            (document, Vec::new())
        }
        None => {
            let secret_id = environment.secret_id.clone().ok_or_else(|| {
                SetupError::Config(
                    "give --config FILE, or set SECRET_ID to the function's secret".into(),
                )
            })?;
            let secrets = SecretsManagerSource::new(
                sdk_client().await,
                secret_id.clone(),
                DEFAULT_SECRET_TTL,
                environment.allow_insecure_http,
            );
            let raw = secrets
                .document(false)
                .await
                .map_err(|err| SetupError::Config(format!("reading secret {secret_id}: {err}")))?;
            merge_documents(&raw, environment.integration_config.as_deref())
                .map_err(|err| SetupError::Config(err.to_string()))?
        }
    };
    let loaded = IntegrationConfig::from_document(&document, environment.allow_insecure_http)
        .map_err(|err| SetupError::Config(err.to_string()))?;
    for warning in warnings.iter().chain(&loaded.warnings) {
        eprintln!("cpc-sync: warning: {warning}");
    }
    Ok(Loaded {
        document,
        config: loaded.config,
        environment,
    })
}

/// The Didomi API client for `didomi_api` and `DIDOMI_API_URL` (`didomi_url`).
pub fn didomi_client(
    loaded: &Loaded,
    didomi_url: Option<&str>,
) -> Result<DidomiApiClient, SetupError> {
    let settings = DidomiApiSettings::from_document(
        &loaded.document,
        didomi_url,
        loaded.environment.allow_insecure_http,
    )
    .map_err(|err| SetupError::Config(err.to_string()))?;
    Ok(DidomiApiClient::new(
        http_client(),
        &settings,
        RetryPolicy::default(),
    ))
}

/// The Dataverse client for the configuration.
pub fn dataverse_client(loaded: &Loaded) -> DataverseClient {
    let tokens = EntraTokenProvider::new(
        http_client(),
        loaded.environment.authority.clone(),
        Arc::new(StaticCredentials(loaded.config.credentials.clone())),
    );
    DataverseClient::new(
        http_client(),
        loaded.config.credentials.instance.clone(),
        Arc::new(tokens),
        RetryPolicy::default(),
    )
}

/// The sync service over `client`, with the purposes, topics and the
/// application user read and the mapped targets checked, as the function
/// does at start.
pub async fn sync_service(
    loaded: &Loaded,
    client: DataverseClient,
) -> Result<SyncService<DataverseClient>, SetupError> {
    let service = SyncService::new(client, Arc::new(loaded.config.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    service
        .metadata(deadline)
        .await
        .map_err(|err| SetupError::Config(err.to_string()))?;
    Ok(service)
}
