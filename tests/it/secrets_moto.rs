//! The Secrets Manager source against the real AWS SDK and `moto_server`
//! (install it with `scripts/python-tools.sh`; without it these tests fail).

use crate::support::moto;

use std::process::Command;
use std::time::Duration;

use aws_sdk_secretsmanager::primitives::Blob;
use didomi_cpc_sync::adapters::entra::{AuthError, CredentialSource};
use didomi_cpc_sync::adapters::secrets_manager::{
    DEFAULT_SECRET_TTL, SecretsError, SecretsManagerSource, sdk_client,
};
use moto::{MotoServer, client_for, free_port};

const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
const TENANT_ID: &str = "72f988bf-0000-0000-0000-000000000001";
const INSTANCE: &str = "https://contoso.crm4.dynamics.com";
const SECRET: &str = "first-s3cret-VALUE";
const ROTATED: &str = "rotated-s3cret-VALUE";

fn authentication(secret: &str) -> serde_json::Value {
    serde_json::json!({
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "tenant_id": TENANT_ID,
        "instance": INSTANCE,
    })
}

fn whole_document(secret: &str) -> String {
    serde_json::json!({
        "type_id": "microsoft-dynamics-cpc",
        "authentication": authentication(secret),
        "mappings": [{"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "marketing"}],
        "upsert_mode": false,
    })
    .to_string()
}

async fn create_secret(moto: &MotoServer, name: &str, value: &str) {
    moto.client()
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create_secret on moto");
}

async fn put_value(moto: &MotoServer, name: &str, value: &str) {
    moto.client()
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("put_secret_value on moto");
}

fn source(moto: &MotoServer, name: &str, ttl: Duration) -> SecretsManagerSource {
    SecretsManagerSource::new(moto.client(), name.to_string(), ttl, false)
}

#[tokio::test]
async fn whole_document_secret_is_read_and_yields_its_credentials() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "didomi/cpc", &whole_document(SECRET)).await;
    let source = source(&moto, "didomi/cpc", DEFAULT_SECRET_TTL);

    assert_eq!(
        source.document(false).await.unwrap(),
        whole_document(SECRET)
    );
    let credentials = source.credentials(false).await.unwrap();
    assert_eq!(credentials.client_id, CLIENT_ID);
    assert_eq!(credentials.tenant_id, TENANT_ID);
    assert_eq!(credentials.client_secret.expose(), SECRET);
    assert_eq!(credentials.scope(), format!("{INSTANCE}/.default"));
}

#[tokio::test]
async fn bare_authentication_secret_yields_its_credentials() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "bare", &authentication(SECRET).to_string()).await;

    let credentials = source(&moto, "bare", DEFAULT_SECRET_TTL)
        .credentials(false)
        .await
        .unwrap();

    assert_eq!(credentials.client_id, CLIENT_ID);
    assert_eq!(credentials.client_secret.expose(), SECRET);
}

#[tokio::test]
async fn cached_document_is_served_within_the_ttl_without_reading_again() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "cached", &whole_document(SECRET)).await;
    let source = source(&moto, "cached", DEFAULT_SECRET_TTL);
    source.document(false).await.unwrap();

    put_value(&moto, "cached", &whole_document(ROTATED)).await;

    assert_eq!(
        source.document(false).await.unwrap(),
        whole_document(SECRET)
    );
    let credentials = source.credentials(false).await.unwrap();
    assert_eq!(credentials.client_secret.expose(), SECRET);
}

#[tokio::test]
async fn forced_refresh_reads_the_rotated_secret() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "rotated", &whole_document(SECRET)).await;
    let source = source(&moto, "rotated", DEFAULT_SECRET_TTL);
    source.credentials(false).await.unwrap();

    put_value(&moto, "rotated", &whole_document(ROTATED)).await;

    let credentials = source.credentials(true).await.unwrap();
    assert_eq!(credentials.client_secret.expose(), ROTATED);
    assert_eq!(
        source.document(false).await.unwrap(),
        whole_document(ROTATED)
    );
}

#[tokio::test]
async fn document_is_read_again_once_the_ttl_has_passed() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "short-ttl", &whole_document(SECRET)).await;
    let source = source(&moto, "short-ttl", Duration::from_millis(300));
    source.document(false).await.unwrap();

    put_value(&moto, "short-ttl", &whole_document(ROTATED)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(
        source.document(false).await.unwrap(),
        whole_document(ROTATED)
    );
}

#[tokio::test]
async fn missing_secret_is_not_found_naming_the_secret() {
    let moto = MotoServer::start().await;

    let error = source(&moto, "no/such/secret", DEFAULT_SECRET_TTL)
        .document(false)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        SecretsError::NotFound {
            secret_id: "no/such/secret".into()
        }
    );
    assert!(error.to_string().contains("no/such/secret"), "{error}");
    assert!(error.to_string().contains("SECRET_ID"), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn non_json_secret_is_not_json_without_its_content() {
    let moto = MotoServer::start().await;
    create_secret(&moto, "plain", "client_secret=hunter2-VALUE").await;

    let error = source(&moto, "plain", DEFAULT_SECRET_TTL)
        .credentials(false)
        .await
        .unwrap_err();

    let AuthError::Credentials { message, retryable } = &error else {
        panic!("expected AuthError::Credentials, got {error:?}");
    };
    assert!(!retryable);
    assert!(message.contains("not a JSON object"), "{message}");
    for shown in [format!("{error}"), format!("{error:?}")] {
        assert!(
            !shown.contains("hunter2"),
            "the secret's content leaked: {shown}"
        );
    }
}

#[tokio::test]
async fn incomplete_secret_names_the_missing_fields() {
    let moto = MotoServer::start().await;
    let partial =
        serde_json::json!({"authentication": {"client_id": CLIENT_ID, "client_secret": SECRET}});
    create_secret(&moto, "partial", &partial.to_string()).await;

    let error = source(&moto, "partial", DEFAULT_SECRET_TTL)
        .credentials(false)
        .await
        .unwrap_err();

    let message = error.to_string();
    assert!(message.contains("authentication.tenant_id"), "{message}");
    assert!(message.contains("authentication.instance"), "{message}");
    assert!(!message.contains("authentication.client_id,"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn binary_secret_has_no_secret_string() {
    let moto = MotoServer::start().await;
    moto.client()
        .create_secret()
        .name("binary")
        .secret_binary(Blob::new(b"\x00\x01binary".to_vec()))
        .send()
        .await
        .unwrap();

    let error = source(&moto, "binary", DEFAULT_SECRET_TTL)
        .document(false)
        .await
        .unwrap_err();

    assert_eq!(
        error,
        SecretsError::NoSecretString {
            secret_id: "binary".into()
        }
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_and_retryable() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let source = SecretsManagerSource::new(
        client_for(&endpoint),
        "didomi/cpc".into(),
        DEFAULT_SECRET_TTL,
        false,
    );

    let error = source.document(false).await.unwrap_err();

    assert!(
        matches!(error, SecretsError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let auth = source.credentials(false).await.unwrap_err();
    assert!(auth.is_retryable(), "{auth:?}");
}

/// Runs [`child_reads_the_secret_through_sdk_client`] in a fresh process whose
/// only AWS settings are the environment variables given, so the SDK's own
/// endpoint resolution is exercised without touching this process's environment.
async fn sdk_client_reads_through(endpoint_variable: &str) {
    let moto = MotoServer::start().await;
    let name = format!("via-{}", endpoint_variable.to_lowercase());
    create_secret(&moto, &name, &whole_document(SECRET)).await;

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "secrets_moto::child_reads_the_secret_through_sdk_client",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(endpoint_variable, &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-access-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("CPC_CHILD_SECRET_ID", &name)
        .env("CPC_CHILD_EXPECTED", whole_document(SECRET))
        .output()
        .expect("run the child test");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{report}");
    assert!(
        report.contains("1 passed"),
        "the child test did not run:\n{report}"
    );
}

#[tokio::test]
async fn sdk_client_honours_aws_endpoint_url_secrets_manager() {
    sdk_client_reads_through("AWS_ENDPOINT_URL_SECRETS_MANAGER").await;
}

#[tokio::test]
async fn sdk_client_honours_aws_endpoint_url() {
    sdk_client_reads_through("AWS_ENDPOINT_URL").await;
}

/// Not a test on its own: run by the two tests above in a child process.
#[tokio::test]
#[ignore = "run in a child process by sdk_client_honours_* with its environment"]
async fn child_reads_the_secret_through_sdk_client() {
    let (Ok(secret_id), Ok(expected)) = (
        std::env::var("CPC_CHILD_SECRET_ID"),
        std::env::var("CPC_CHILD_EXPECTED"),
    ) else {
        panic!("run by sdk_client_honours_* only (CPC_CHILD_SECRET_ID is not set)");
    };
    let source =
        SecretsManagerSource::new(sdk_client().await, secret_id, DEFAULT_SECRET_TTL, false);
    assert_eq!(source.document(false).await.unwrap(), expected);
}
