//! Throughput of `cpc-sync backfill` (`--direct`, and `--queue-url` against
//! moto's SQS) and `reconcile`, against the emulator with 50 ms of latency
//! added to every Didomi, Entra and Dataverse request (moto's SQS has none).
//! Prints users/s and the Dataverse and Didomi requests per 100 users.
//!
//! `cargo bench --profile dev --bench backfill_reconcile` (latency dominates,
//! so an unoptimised build gives the same figures). `BENCH_USERS` sets the
//! number of users (default 1000). Loopback only; moto is skipped, with a
//! note, when `.venv/bin/moto_server` is missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpc_emulator::{Emulator, EmulatorHandle, FaultRule, Seed};
use didomi_cpc_sync::adapters::dataverse::{DataverseClient, RetryPolicy};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::entra::StaticCredentials;
use didomi_cpc_sync::adapters::entra::provider::EntraTokenProvider;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::adapters::sqs::SqsSender;
use didomi_cpc_sync::cli::backfill::{self, BackfillOptions, Sink};
use didomi_cpc_sync::cli::reconcile::{self, ReconcileOptions};
use didomi_cpc_sync::cli::source::UserSource;
use didomi_cpc_sync::config::{DidomiApiSettings, IntegrationConfig};
use didomi_cpc_sync::service::SyncService;
use serde_json::{Value, json};

const LATENCY_MS: u64 = 50;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
}

fn seed(users: usize) -> Seed {
    let mut seed = read_json("tools/emulator/demo-seed.json");
    let mut didomi_users = Vec::new();
    for i in 0..users {
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-8000-{i:012}"),
            "emailaddress1": format!("user{i}@example.com")}));
        let enabled = i % 3 != 0;
        didomi_users.push(json!({
            "id": format!("didomi-user-{i}"), "organization_user_id": format!("user{i}@example.com"),
            "updated_at": "2025-06-01T12:00:00.000Z",
            "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": enabled,
                "values": {"f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13":
                           {"value": if enabled { "v-news,v-offers" } else { "" }}}}]}}));
    }
    seed["didomi"] = json!({"organization_id": "acme",
        "keys": [{"key": "bench-key", "secret": "bench-secret"}], "users": didomi_users});
    serde_json::from_value(seed).unwrap()
}

fn config(emulator: &EmulatorHandle) -> IntegrationConfig {
    let mut document = read_json("tests/fixtures/integration-config.json");
    document["authentication"]["client_secret"] = json!("local-dev-secret~not-a-real-one");
    document["authentication"]["instance"] = json!(emulator.base_url());
    IntegrationConfig::from_document(&document, true)
        .unwrap()
        .config
}

fn didomi(emulator: &EmulatorHandle) -> UserSource {
    let document = json!({"didomi_api": {"key": "bench-key", "secret": "bench-secret", "organization_id": "acme"}});
    let url = format!("{}/v1", emulator.base_url());
    let settings = DidomiApiSettings::from_document(&document, Some(&url), true).unwrap();
    UserSource::api(
        DidomiApiClient::new(http_client(), &settings, RetryPolicy::default()),
        None,
    )
}

fn dataverse(emulator: &EmulatorHandle, config: &IntegrationConfig) -> DataverseClient {
    let tokens = EntraTokenProvider::new(
        http_client(),
        emulator.base_url().parse().unwrap(),
        Arc::new(StaticCredentials(config.credentials.clone())),
    );
    DataverseClient::new(
        http_client(),
        config.credentials.instance.clone(),
        Arc::new(tokens),
        RetryPolicy::default(),
    )
}

async fn service(
    emulator: &EmulatorHandle,
    config: &IntegrationConfig,
) -> SyncService<DataverseClient> {
    let service = SyncService::new(dataverse(emulator, config), Arc::new(config.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    service.metadata(deadline).await.unwrap();
    service
}

fn add_latency(emulator: &EmulatorHandle) {
    let rules: Vec<FaultRule> =
        serde_json::from_value(json!([{"times": null, "action": {"delay_ms": LATENCY_MS}}]))
            .unwrap();
    emulator.set_faults(rules);
}

/// (Dataverse, Didomi) requests in the log.
fn requests(emulator: &EmulatorHandle) -> (usize, usize) {
    let log = emulator.requests();
    (
        log.iter()
            .filter(|r| r.path.starts_with("/api/data/"))
            .count(),
        log.iter().filter(|r| r.path.starts_with("/v1/")).count(),
    )
}

fn report(
    what: &str,
    users: usize,
    elapsed: Duration,
    (dataverse, didomi): (usize, usize),
    extra: &str,
) {
    let per_100 = |n: usize| n as f64 * 100.0 / users as f64;
    println!(
        "{what:<28} {users} users in {:.2} s = {:.0} users/s; per 100 users: {:.1} Dataverse, {:.1} Didomi requests{extra}",
        elapsed.as_secs_f64(),
        users as f64 / elapsed.as_secs_f64(),
        per_100(dataverse),
        per_100(didomi),
    );
}

fn quiet() -> BackfillOptions {
    BackfillOptions {
        checkpoint: None,
        progress: false,
    }
}

async fn bench_direct_and_reconcile(users: usize) {
    let emulator = Emulator::start(seed(users)).unwrap();
    let config = config(&emulator);
    let service = service(&emulator, &config).await;
    add_latency(&emulator);
    emulator.clear_requests();
    let started = Instant::now();
    let run = backfill::run(
        didomi(&emulator),
        &config.rules,
        Sink::Direct(service),
        &quiet(),
        None,
    )
    .await;
    assert!(
        run.error.is_none() && run.summary.written == users as u64,
        "{:?}",
        run.summary
    );
    report(
        "backfill --direct",
        users,
        started.elapsed(),
        requests(&emulator),
        "",
    );

    let mut out = Vec::new();
    let options = ReconcileOptions {
        show_addresses: false,
        progress: false,
    };
    // Token and metadata before timing, as for the backfill's service.
    let reader = self::service(&emulator, &config).await;
    emulator.clear_requests();
    let started = Instant::now();
    let found = reconcile::run(didomi(&emulator), &reader, false, &mut out, &options)
        .await
        .unwrap();
    assert_eq!(found.before.drift(), 0);
    report(
        "reconcile (in sync)",
        users,
        started.elapsed(),
        requests(&emulator),
        "",
    );
    emulator.shutdown().await;
}

async fn bench_queue(users: usize) {
    let moto_server = root().join(".venv/bin/moto_server");
    if !moto_server.is_file() {
        println!(
            "backfill --queue-url          skipped: {} is missing (scripts/python-tools.sh)",
            moto_server.display()
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut moto = Command::new(&moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "AKIDBENCH",
            "bench",
            None,
            None,
            "bench",
        ))
        .endpoint_url(&endpoint)
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let mut queue = None;
    for _ in 0..100 {
        if let Ok(answer) = sqs.create_queue().queue_name("bench").send().await {
            queue = answer.queue_url().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let queue = queue.expect("moto_server answers within 20 s");
    let emulator = Emulator::start(seed(users)).unwrap();
    let rules = self::config(&emulator).rules;
    add_latency(&emulator);
    emulator.clear_requests();
    let sender = SqsSender::new(sqs, queue);
    let started = Instant::now();
    let run = backfill::run(
        didomi(&emulator),
        &rules,
        Sink::Queue(sender.clone()),
        &quiet(),
        None,
    )
    .await;
    assert!(
        run.error.is_none() && run.summary.enqueued == users as u64,
        "{:?}",
        run.summary
    );
    let extra = format!(
        "; {:.1} SendMessageBatch calls",
        sender.calls() as f64 * 100.0 / users as f64
    );
    report(
        "backfill --queue-url (moto)",
        users,
        started.elapsed(),
        requests(&emulator),
        &extra,
    );
    let _ = moto.kill();
    let _ = moto.wait();
    emulator.shutdown().await;
}

fn main() {
    let users: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000)
        .clamp(10, 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{LATENCY_MS} ms emulated latency per Didomi, Entra and Dataverse request; pages of 100 users"
    );
    runtime.block_on(async {
        bench_direct_and_reconcile(users).await;
        bench_queue(users).await;
    });
}
