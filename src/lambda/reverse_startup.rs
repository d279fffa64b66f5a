//! Start-up of the reverse-sync function (`CPC_SYNC_MODE=reverse-sync`): the
//! integration document from `SECRET_ID` (merged with `INTEGRATION_CONFIG`,
//! as the webhook function reads it), the Didomi API key from the secret
//! `DIDOMI_API_SECRET_ID` names (or, without it, the document's own
//! `didomi_api`, as `cpc-sync` reads it), the Didomi base URL from
//! `DIDOMI_API_URL`, and the state table from `STATE_TABLE`. Only
//! configuration fails the init; Dataverse and Didomi are first called by
//! the pass, whose failure the next schedule retries.

use std::sync::Arc;

use serde_json::Value;
use tracing::info;

use crate::adapters::dataverse::{DataverseClient, RetryPolicy};
use crate::adapters::didomi_api::DidomiApiClient;
use crate::adapters::dynamodb_state::{self, DynamoStateStore};
use crate::adapters::http::http_client;
use crate::adapters::secrets_manager::{DEFAULT_SECRET_TTL, SecretsManagerSource, sdk_client};
use crate::config::{ConfigError, ConfigErrors, DidomiApiSettings, Environment};
use crate::lambda::reverse::ReverseHandler;
use crate::lambda::startup::{
    InitError, IntegrationSecret, SAFETY_MARGIN, dataverse_client, load_integration, read_secret,
};
use crate::telemetry::metrics::Metrics;

/// The handler the reverse-sync function runs.
pub type ReverseSyncHandler = ReverseHandler<DataverseClient, DidomiApiClient, DynamoStateStore>;

/// Environment variable naming the secret with the Didomi API key.
pub const DIDOMI_API_SECRET_ID: &str = "DIDOMI_API_SECRET_ID";
/// Environment variable naming the DynamoDB state table.
pub const STATE_TABLE: &str = "STATE_TABLE";

/// Builds the reverse-sync handler from the environment.
pub async fn build_reverse_handler() -> Result<ReverseSyncHandler, InitError> {
    let environment = Environment::from_env()?;
    let read = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    let table = read(STATE_TABLE).ok_or(InitError::MissingStateTable)?;
    let client = sdk_client().await;
    let IntegrationSecret {
        secrets,
        document,
        config,
    } = load_integration(&environment, client.clone()).await?;
    let didomi_document = match read(DIDOMI_API_SECRET_ID) {
        None => document,
        Some(didomi_secret_id) => {
            let source = SecretsManagerSource::new(
                client,
                didomi_secret_id,
                DEFAULT_SECRET_TTL,
                environment.allow_insecure_http,
            );
            didomi_api_document(&read_secret(&source).await?)?
        }
    };
    let settings = DidomiApiSettings::from_document(
        &didomi_document,
        read("DIDOMI_API_URL").as_deref(),
        environment.allow_insecure_http,
    )?;
    let config = Arc::new(config);
    let dataverse = dataverse_client(
        &config,
        environment.authority.clone(),
        secrets,
        RetryPolicy::default(),
    );
    let didomi = DidomiApiClient::new(http_client(), &settings, RetryPolicy::default());
    let state = DynamoStateStore::new(dynamodb_state::sdk_client().await, table.clone());
    info!(
        instance = %config.credentials.instance,
        didomi_api = %settings.base_url,
        organization_id = %settings.organization_id,
        state_table = %table,
        sources = ?config.properties.reverse_sync.sources,
        opt_ins = config.properties.reverse_sync.opt_ins,
        "reverse sync ready"
    );
    Ok(
        ReverseHandler::new(dataverse, didomi, state, config, SAFETY_MARGIN)
            .with_metrics(Metrics::from_env()),
    )
}

/// The Didomi API secret as a document carrying `didomi_api`: the secret is
/// either that object itself (`{"key", "secret", "organization_id"}`) or a
/// document with a `didomi_api` member.
pub fn didomi_api_document(text: &str) -> Result<Value, ConfigErrors> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) if object.contains_key("didomi_api") => Ok(Value::Object(object)),
        Ok(object @ Value::Object(_)) => Ok(serde_json::json!({ "didomi_api": object })),
        _ => Err(ConfigErrors(vec![ConfigError::new(
            DIDOMI_API_SECRET_ID,
            "the secret must be JSON: {\"key\", \"secret\", \"organization_id\"} (a Didomi private API key)",
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_didomi_secret_may_be_the_key_object_or_a_document_carrying_it() {
        let bare =
            didomi_api_document(r#"{"key":"k","secret":"s","organization_id":"o"}"#).unwrap();
        let wrapped =
            didomi_api_document(r#"{"didomi_api":{"key":"k","secret":"s","organization_id":"o"}}"#)
                .unwrap();
        assert_eq!(bare, wrapped);
        let settings = DidomiApiSettings::from_document(&bare, None, false).unwrap();
        assert_eq!(settings.organization_id, "o");
    }

    #[test]
    fn a_didomi_secret_that_is_not_json_names_the_variable_and_not_the_value() {
        let error = didomi_api_document("s3cr3t-not-json")
            .unwrap_err()
            .to_string();
        assert!(error.contains(DIDOMI_API_SECRET_ID), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
