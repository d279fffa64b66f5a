//! A `moto_server` (the Python AWS mock, installed by `scripts/python-tools.sh`)
//! started per test on a free loopback port and killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

/// A running `moto_server`.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root.
/// Panics with the fix when neither exists: these tests must not pass silently.
pub fn moto_server_path() -> PathBuf {
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
    };
    assert!(
        path.is_file(),
        "moto_server not found at {}: run scripts/python-tools.sh (or set MOTO_SERVER to its path)",
        path.display()
    );
    path
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until
    /// `GET /moto-api/` answers.
    pub async fn start() -> Self {
        let binary = moto_server_path();
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new(&binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("could not start {}: {err}", binary.display()));
            let mut server = MotoServer {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            if server.wait_ready(Duration::from_secs(30)).await {
                return server;
            }
            // Probably lost the port to another process: try another one.
        }
        panic!("moto_server did not become ready (see scripts/python-tools.sh)");
    }

    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let http = reqwest::Client::new();
        let url = format!("{}/moto-api/", self.endpoint);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A real SDK client for this server, configured explicitly (no process
    /// environment): region us-east-1, static test credentials.
    pub fn client(&self) -> aws_sdk_secretsmanager::Client {
        client_for(&self.endpoint)
    }

    /// A real SQS client for this server, configured like [`MotoServer::client`].
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs_client_for(&self.endpoint)
    }
}

/// The static credentials every test client signs with (the AWS SDKs share
/// the type).
fn test_credentials() -> Credentials {
    Credentials::new(
        "AKIDTESTTESTTEST",
        "test-secret-access-key",
        None,
        None,
        "tests",
    )
}

/// A Secrets Manager client for `endpoint` with region us-east-1 and static
/// test credentials, one attempt only (so failures are quick).
pub fn client_for(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// An SQS client for `endpoint`, configured like [`client_for`].
pub fn sqs_client_for(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A DynamoDB client for `endpoint`, configured like [`client_for`].
pub fn dynamodb_client_for(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(test_credentials())
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

impl MotoServer {
    /// A real DynamoDB client for this server.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        dynamodb_client_for(&self.endpoint)
    }

    /// Creates the reverse-sync state table `name` as the template does
    /// (partition key `pk`, a String; on demand).
    pub async fn create_state_table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        self.dynamodb()
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("moto creates the state table");
    }

    /// Puts the reverse-sync lock item in `table` as a pass holding it until
    /// `expires_at` would.
    pub async fn put_state_lock(
        &self,
        table: &str,
        holder: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.dynamodb()
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S("lock".into()))
            .item("holder", AttributeValue::S(holder.into()))
            .item(
                "expires_at",
                AttributeValue::N(expires_at.timestamp().to_string()),
            )
            .send()
            .await
            .unwrap();
    }
}
