//! The real `bootstrap` under a real Lambda Runtime API: `cargo lambda watch
//! --only-lambda-apis` (from `.venv`, installed by `scripts/python-tools.sh`)
//! serves the Runtime API and the invoke endpoint on a free loopback port;
//! the test starts `bootstrap` against it with the environment it chooses.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::free_port;

/// `$CARGO_LAMBDA`, else `.venv/bin/cargo-lambda`; panics with the fix when missing.
pub fn cargo_lambda_path() -> PathBuf {
    let path = match std::env::var_os("CARGO_LAMBDA") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/cargo-lambda"),
    };
    assert!(
        path.is_file(),
        "cargo-lambda not found at {}: run scripts/python-tools.sh (or set CARGO_LAMBDA)",
        path.display()
    );
    path
}

/// A running Runtime API with one `bootstrap` process attached.
pub struct LocalLambda {
    runtime: Child,
    function: Child,
    port: u16,
    log_path: PathBuf,
    stdout_path: PathBuf,
    http: reqwest::Client,
    forbidden: Vec<String>,
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        for child in [&mut self.function, &mut self.runtime] {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Every test's function logs are checked: no secret, token or address.
        if !std::thread::panicking() {
            let logs = self.logs().to_lowercase();
            for forbidden in &self.forbidden {
                assert!(
                    !logs.contains(&forbidden.to_lowercase()),
                    "the function logged {forbidden:?}; see {}",
                    self.log_path.display()
                );
            }
        }
    }
}

impl LocalLambda {
    /// Starts the Runtime API, then `bootstrap` with `env` (and nothing else
    /// from this process's environment but `PATH` and `HOME`). The function's
    /// stderr goes to a log file that [`LocalLambda::logs`] reads.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let port = free_port();
        let runtime = Command::new(cargo_lambda_path())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch starts");
        wait_for_port(port, Duration::from_secs(30)).await;
        let log_path = std::env::temp_dir().join(format!("didomi-cpc-sync-e2e-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let stdout_path = std::env::temp_dir().join(format!("didomi-cpc-sync-e2e-{port}.out"));
        let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let function = command.spawn().expect("bootstrap starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        LocalLambda {
            runtime,
            function,
            port,
            log_path,
            stdout_path,
            http,
            forbidden: Vec::new(),
        }
    }

    /// Strings that must never appear in the function's logs (checked, case-
    /// insensitively, when the test ends): secrets, tokens, email addresses.
    pub fn forbid_in_logs(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.forbidden.extend(values);
        self
    }

    /// Invokes the function synchronously; returns the function's answer, or
    /// the runtime's error document (`errorType`, `errorMessage`) on failure.
    pub async fn invoke(&self, payload: &serde_json::Value) -> serde_json::Value {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.port
        );
        let response = self
            .http
            .post(url)
            .json(payload)
            .send()
            .await
            .expect("invoke answers");
        response.json().await.expect("invoke returns JSON")
    }

    /// Invokes with a fixture from `events/`.
    pub async fn invoke_fixture(&self, name: &str) -> serde_json::Value {
        self.invoke(&fixture(name)).await
    }

    /// Waits for the function process to exit (init failures) and returns its status code.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.function.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Everything the function has logged so far: its log lines (stderr),
    /// then what it printed to stdout (the metric lines). Lambda sends both
    /// to CloudWatch Logs.
    pub fn logs(&self) -> String {
        let mut logs = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        logs.push_str(&self.stdout());
        logs
    }

    /// What the function printed to stdout so far (EMF metric lines).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }
}

/// The environment of a `bootstrap` that reads `secret_name` from the Secrets
/// Manager at `secrets_endpoint` (moto, which also serves the SQS backoff
/// calls) and talks to the emulator at
/// `emulator_url` as Entra and Dataverse, logging JSON at DEBUG.
pub fn function_env(
    secret_name: &str,
    secrets_endpoint: &str,
    emulator_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("SECRET_ID", secret_name.to_string()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            secrets_endpoint.to_string(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-access-key".into()),
        ("AZURE_AUTHORITY_HOST", emulator_url.to_string()),
        ("ALLOW_INSECURE_HTTP", "true".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()),
    ]
}

/// What no function log may hold: the emulator's client secret, the AWS
/// test key, any bearer token, and the given addresses.
pub fn never_logged(addresses: &[&str]) -> Vec<String> {
    [
        super::inprocess::EMULATOR_SECRET,
        "test-secret-access-key",
        "bearer ey",
        "access_token",
    ]
    .into_iter()
    .chain(addresses.iter().copied())
    .map(str::to_string)
    .collect()
}

/// A JSON fixture from `events/`.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

async fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Lambda Runtime API did not open port {port}");
}
