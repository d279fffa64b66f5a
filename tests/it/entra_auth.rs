//! The Entra token provider against the local emulator (`tools/emulator`):
//! real token requests, tokens Dataverse accepts, secret rotation through the
//! emulator's Secrets Manager, and the emulator's Entra errors.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use cpc_emulator::{Emulator, EmulatorHandle, FaultRule, Seed};
use didomi_cpc_sync::adapters::entra::provider::EntraTokenProvider;
use didomi_cpc_sync::adapters::entra::{
    AuthError, CredentialSource, StaticCredentials, TokenSource,
};
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::adapters::secrets_manager::{DEFAULT_SECRET_TTL, SecretsManagerSource};
use didomi_cpc_sync::config::Credentials;
use didomi_cpc_sync::redact::SecretString;
use reqwest::Url;

const TENANT: &str = "72f988bf-0000-0000-0000-000000000001";
const CLIENT: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
const SECRET: &str = "local-dev-secret~first";
const ROTATED: &str = "local-dev-secret~rotated";
const SECRET_NAME: &str = "didomi/cpc-sync";

fn start_emulator() -> EmulatorHandle {
    let seed = serde_json::json!({
        "tenant_id": TENANT,
        "credentials": [{"client_id": CLIENT, "client_secret": SECRET}],
    });
    Emulator::start(Seed::from_json(&seed.to_string()).unwrap()).expect("start the emulator")
}

fn credentials(emulator: &EmulatorHandle, secret: &str) -> Credentials {
    Credentials {
        client_id: CLIENT.into(),
        client_secret: SecretString::new(secret),
        tenant_id: TENANT.into(),
        instance: Url::parse(&emulator.base_url()).unwrap(),
    }
}

fn provider(emulator: &EmulatorHandle, source: Arc<dyn CredentialSource>) -> EntraTokenProvider {
    EntraTokenProvider::new(
        http_client(),
        Url::parse(&emulator.base_url()).unwrap(),
        source,
    )
}

fn static_provider(emulator: &EmulatorHandle, creds: Credentials) -> EntraTokenProvider {
    provider(emulator, Arc::new(StaticCredentials(creds)))
}

fn token_requests(emulator: &EmulatorHandle) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|request| request.path.contains("/oauth2/v2.0/token"))
        .count()
}

/// Status of a Dataverse query made with `token`.
async fn dataverse_status(emulator: &EmulatorHandle, token: &SecretString) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/api/data/v9.2/msdynmkt_purposes?$select=msdynmkt_name",
            emulator.base_url()
        ))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn emulator_token_is_accepted_by_dataverse_and_cached() {
    let emulator = start_emulator();
    let provider = static_provider(&emulator, credentials(&emulator, SECRET));

    let first = provider.bearer(false).await.unwrap();
    let second = provider.bearer(false).await.unwrap();

    assert_eq!(first, second);
    assert_eq!(token_requests(&emulator), 1);
    assert_eq!(dataverse_status(&emulator, &first).await, 200);
}

#[tokio::test]
async fn revoked_token_is_replaced_by_a_forced_refresh() {
    let emulator = start_emulator();
    let provider = static_provider(&emulator, credentials(&emulator, SECRET));
    let old = provider.bearer(false).await.unwrap();

    emulator.expire_tokens();
    assert_eq!(dataverse_status(&emulator, &old).await, 401);
    let new = provider.bearer(true).await.unwrap();

    assert_ne!(old, new);
    assert_eq!(dataverse_status(&emulator, &new).await, 200);
    assert_eq!(token_requests(&emulator), 2);
}

/// A Secrets Manager client for the emulator's `GetSecretValue`.
fn emulator_secrets_client(emulator: &EmulatorHandle) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDTESTTESTTEST",
            "test-secret-access-key",
            None,
            None,
            "tests",
        ))
        .endpoint_url(emulator.base_url())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

fn secret_document(emulator: &EmulatorHandle, secret: &str) -> String {
    serde_json::json!({
        "authentication": {
            "client_id": CLIENT,
            "client_secret": secret,
            "tenant_id": TENANT,
            "instance": emulator.base_url(),
        }
    })
    .to_string()
}

#[tokio::test]
async fn rotated_client_secret_is_picked_up_from_secrets_manager_after_invalid_client() {
    let emulator = start_emulator();
    emulator.set_secret(SECRET_NAME, &secret_document(&emulator, SECRET));
    let source = Arc::new(SecretsManagerSource::new(
        emulator_secrets_client(&emulator),
        SECRET_NAME.into(),
        DEFAULT_SECRET_TTL,
        true,
    ));
    let provider = provider(&emulator, source);
    provider.bearer(false).await.unwrap();

    // Rotation: Entra gets the new secret, Secrets Manager the new document,
    // while the source still caches the old one; the token is revoked.
    emulator.set_client_secret(CLIENT, ROTATED);
    emulator.set_secret(SECRET_NAME, &secret_document(&emulator, ROTATED));
    emulator.expire_tokens();
    emulator.clear_requests();

    let token = provider.bearer(true).await.unwrap();

    assert_eq!(dataverse_status(&emulator, &token).await, 200);
    let statuses: Vec<Option<u16>> = emulator
        .requests()
        .iter()
        .filter(|request| request.path.contains("/oauth2/v2.0/token"))
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![Some(401), Some(200)]);
}

#[tokio::test]
async fn wrong_secret_that_stays_wrong_is_invalid_client() {
    let emulator = start_emulator();
    let provider = static_provider(&emulator, credentials(&emulator, "not-the-secret"));

    let error = provider.bearer(false).await.unwrap_err();

    assert_eq!(
        error,
        AuthError::InvalidClient {
            code: "AADSTS7000215".into(),
            client_id: CLIENT.into()
        }
    );
    assert!(!error.is_retryable());
    assert!(!format!("{error:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn unknown_tenant_at_the_emulator_is_unknown_tenant() {
    let emulator = start_emulator();
    let mut creds = credentials(&emulator, SECRET);
    creds.tenant_id = "12345678-1234-1234-1234-123456789012".into();

    let error = static_provider(&emulator, creds)
        .bearer(false)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        AuthError::UnknownTenant {
            tenant_id: "12345678-1234-1234-1234-123456789012".into()
        }
    );
}

#[tokio::test]
async fn unknown_app_at_the_emulator_is_unknown_client() {
    let emulator = start_emulator();
    let mut creds = credentials(&emulator, SECRET);
    creds.client_id = "00000000-0000-0000-0000-00000000beef".into();

    let error = static_provider(&emulator, creds)
        .bearer(false)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        AuthError::UnknownClient {
            client_id: "00000000-0000-0000-0000-00000000beef".into()
        }
    );
}

#[tokio::test]
async fn wrong_instance_at_the_emulator_is_wrong_resource() {
    let emulator = start_emulator();
    let mut creds = credentials(&emulator, SECRET);
    creds.instance = Url::parse("https://contoso.crm4.dynamics.com").unwrap();

    let error = static_provider(&emulator, creds)
        .bearer(false)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        AuthError::WrongResource {
            scope: "https://contoso.crm4.dynamics.com/.default".into()
        }
    );
}

#[tokio::test]
async fn token_endpoint_down_is_unavailable_and_retryable() {
    let emulator = start_emulator();
    let rule: FaultRule = serde_json::from_value(serde_json::json!({
        "path_contains": "/oauth2/v2.0/token",
        "times": null,
        "action": {"status": 503}
    }))
    .unwrap();
    emulator.set_faults(vec![rule]);
    let provider = static_provider(&emulator, credentials(&emulator, SECRET))
        .with_request_timeout(Duration::from_secs(5));

    let error = provider.bearer(false).await.unwrap_err();

    assert!(matches!(error, AuthError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
}
