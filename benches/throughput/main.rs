//! Throughput benchmark (issue 15): prints its figures, asserts nothing
//! about time. Run with `cargo bench --bench throughput` (see README,
//! "Throughput"). Not part of the CI test command.
//!
//! Everything runs on loopback: `tools/emulator` (Entra, Dataverse under
//! scaled-down service-protection limits, Secrets Manager) in this process,
//! and real `bootstrap` processes fed by [`fleet`], which plays the Lambda
//! Runtime API and the SQS queue (partial batch failures and the function's
//! visibility changes included). Only the naive comparison client runs in
//! this process.

mod fleet;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpc_emulator::{CostModel, Emulator, EmulatorHandle, FaultRule, Limits, Seed, Stats};
use didomi_cpc_sync::adapters::dataverse::{DataverseClient, RetryPolicy};
use didomi_cpc_sync::adapters::entra::StaticCredentials;
use didomi_cpc_sync::adapters::entra::provider::EntraTokenProvider;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::config::IntegrationConfig;
use didomi_cpc_sync::service::SyncService;
use fleet::{Fleet, FleetSettings};
use serde_json::{Value, json};
use tokio::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SECRET: &str = "local-dev-secret~not-a-real-one";
/// Decisions per webhook (a purpose and three topics).
const DECISIONS: usize = 4;
/// The scaled-down service-protection window (Dataverse: 300 s): 10 s, or
/// 2 s with `--quick`, so that its short drain still runs for several
/// windows.
static WINDOW_S: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn window_s() -> u64 {
    *WINDOW_S.get_or_init(|| 10)
}
/// Requests per second of the window (Dataverse: 6000 per 300 s, 20/s).
const REQUESTS_PER_S: u64 = 20;
/// Execution milliseconds per second of the window (Dataverse: 1,200,000
/// per 300 s, 4000/s; halved here so that the execution limit binds at
/// `BatchSize` 100).
const EXEC_MS_PER_S: u64 = 2000;
/// Server time of one operation inside a `$batch`.
const OP_COST_MS: u64 = 2;
/// Consent rows in the demo seed before a drain.
const SEEDED_ROWS: usize = 2;

fn seed(users: usize) -> Seed {
    let text = std::fs::read_to_string(format!("{ROOT}/tools/emulator/demo-seed.json")).unwrap();
    let mut seed: Value = serde_json::from_str(&text).unwrap();
    for i in 0..users {
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-8000-{i:012}"),
            "emailaddress1": format!("user{i}@example.com"), "lastname": format!("User {i}")}));
    }
    serde_json::from_value(seed).unwrap()
}

fn webhook(index: usize) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": format!("ev-{index}"), "created_at": format!("2025-03-14T09:{:02}:00Z", index % 60),
        "user": {"id": format!("u-{index}"), "organization_user_id": format!("user{index}@example.com")},
        "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": true,
            "values": {"f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13": {"value": "v-news,v-events"}}}]}}}})
}

fn config(emulator: &EmulatorHandle) -> IntegrationConfig {
    let text =
        std::fs::read_to_string(format!("{ROOT}/tests/fixtures/integration-config.json")).unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["authentication"]["client_secret"] = json!(SECRET);
    document["authentication"]["instance"] = json!(emulator.base_url());
    IntegrationConfig::from_document(&document, true)
        .unwrap()
        .config
}

fn client(emulator: &EmulatorHandle, config: &IntegrationConfig) -> DataverseClient {
    let tokens = EntraTokenProvider::new(
        http_client(),
        emulator.base_url().parse().unwrap(),
        Arc::new(StaticCredentials(config.credentials.clone())),
    );
    let policy = RetryPolicy {
        max_attempts: 10,
        ..RetryPolicy::default()
    };
    DataverseClient::new(
        http_client(),
        config.credentials.instance.clone(),
        Arc::new(tokens),
        policy,
    )
}

/// An instance as `bootstrap` builds it at init: client, service, metadata.
async fn instance(emulator: &EmulatorHandle) -> SyncService<DataverseClient> {
    let config = config(emulator);
    let service = SyncService::new(client(emulator, &config), Arc::new(config));
    service
        .metadata(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    service
}

fn dataverse_requests(emulator: &EmulatorHandle) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/data/"))
        .count()
}

const SECRET_NAME: &str = "didomi-cpc-sync/integration";

/// The template's function timeout and the queue's visibility timeout (6×).
fn fleet_settings(processes: usize, batch_size: usize) -> FleetSettings {
    FleetSettings {
        processes,
        batch_size,
        function_timeout: Duration::from_secs(60),
        visibility_timeout: Duration::from_secs(360),
    }
}

/// The integration document the bootstraps read from the emulator's
/// Secrets Manager.
fn publish_secret(emulator: &EmulatorHandle) {
    let text =
        std::fs::read_to_string(format!("{ROOT}/tests/fixtures/integration-config.json")).unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["authentication"]["client_secret"] = json!(SECRET);
    document["authentication"]["instance"] = json!(emulator.base_url());
    emulator.set_secret(SECRET_NAME, &document.to_string());
}

/// Batch latency at an emulated network latency, through one real
/// `bootstrap` after its cold start: the first invocation, then the mean of
/// later ones, each from hand-out to answer, and the Dataverse requests each
/// made.
async fn latency(latency_ms: u64) {
    let emulator = Emulator::start(seed(200)).unwrap();
    publish_secret(&emulator);
    let rules: Vec<FaultRule> = serde_json::from_value(json!([
        {"path_contains": "/api/data/", "times": null, "action": {"delay_ms": latency_ms}}
    ]))
    .unwrap();
    emulator.set_faults(rules);
    let fleet = Fleet::start(&emulator.base_url(), SECRET_NAME, fleet_settings(1, 10)).await;
    fleet.release();
    let mut trips = Vec::new();
    for batch in 0..6 {
        emulator.clear_requests();
        fleet.send((batch * 10..batch * 10 + 10).map(|i| webhook(i).to_string()));
        assert!(fleet.drained(Duration::from_secs(30)).await);
        trips.push(dataverse_requests(&emulator));
    }
    let times: Vec<f64> = fleet
        .durations()
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let later = times[1..].iter().sum::<f64>() / (times.len() - 1) as f64;
    println!(
        "latency {latency_ms:>3} ms | floor (2 round trips) {:>4} ms | first batch after a cold start {:>6.1} ms | later batches {:>6.1} ms (first/later {:.2}) | requests per batch {:?}",
        2 * latency_ms,
        times[0],
        later,
        times[0] / later,
        trips
    );
    drop(fleet);
    emulator.shutdown().await;
}

#[derive(Default)]
struct Counts {
    written: AtomicU64,
}

/// The scaled-down limits and the per-operation cost of every drain.
fn limited(emulator: &EmulatorHandle) {
    emulator.set_cost(CostModel {
        op_cost_ms: OP_COST_MS,
        dop_hint: 4,
        limits: Some(Limits {
            requests: REQUESTS_PER_S * window_s(),
            exec_ms: EXEC_MS_PER_S * window_s(),
            window_s: window_s(),
            concurrent: 52,
        }),
        ..CostModel::default()
    });
}

/// What the limits allow at `batch_size`: every millisecond of the
/// execution budget on a write, or every request of the budget carrying a
/// batch's decisions at the two-request floor, whichever binds.
fn ceiling(batch_size: usize) -> f64 {
    let exec_ceiling = EXEC_MS_PER_S as f64 / OP_COST_MS as f64;
    let request_ceiling = REQUESTS_PER_S as f64 * (batch_size * DECISIONS) as f64 / 2.0;
    exec_ceiling.min(request_ceiling)
}

/// Samples the rows written once the first window has passed (it starts
/// empty, so a burst above the limits is let through) and returns the
/// sustained rate from then to the end.
struct Rate {
    started: Instant,
    after_first_window: Option<(Instant, usize)>,
}

impl Rate {
    fn start() -> Self {
        Rate {
            started: Instant::now(),
            after_first_window: None,
        }
    }

    fn sample(&mut self, emulator: &EmulatorHandle) {
        if self.after_first_window.is_none()
            && self.started.elapsed() >= Duration::from_secs(window_s())
        {
            self.after_first_window = Some((Instant::now(), emulator.consents().len()));
        }
    }

    fn decisions_per_s(&self, emulator: &EmulatorHandle) -> f64 {
        let rows = emulator.consents().len();
        match self.after_first_window {
            Some((at, before)) => (rows - before) as f64 / at.elapsed().as_secs_f64(),
            None => (rows - SEEDED_ROWS) as f64 / self.started.elapsed().as_secs_f64(),
        }
    }
}

fn throttled(stats: &Stats) -> u64 {
    stats.throttled.requests + stats.throttled.execution_time + stats.throttled.concurrency
}

/// One drain, for its line of figures.
struct Run<'a> {
    label: &'a str,
    webhooks: usize,
    workers: String,
    batch_size: usize,
}

impl Run<'_> {
    /// Prints the drain's line: the sustained rate against the ceiling, the
    /// requests and 429s since `before`, and what failed back, was lost or
    /// was dead-lettered.
    fn report(
        &self,
        rate: &Rate,
        emulator: &EmulatorHandle,
        before: &Stats,
        failed_back: u64,
        dead_lettered: u64,
    ) {
        let Run {
            label,
            webhooks,
            workers,
            batch_size,
        } = self;
        let elapsed = rate.started.elapsed().as_secs_f64();
        let stats = emulator.stats();
        let rows = emulator.consents().len() - SEEDED_ROWS;
        let decisions_per_s = rate.decisions_per_s(emulator);
        let ceiling = ceiling(*batch_size);
        let throttled = throttled(&stats) - throttled(before);
        let served = stats.requests_served - before.requests_served;
        let lost = (webhooks * DECISIONS).saturating_sub(rows) / DECISIONS;
        println!(
            "{label:<34} | {webhooks:>5} webhooks, {workers} × BatchSize {batch_size:>3} | {decisions_per_s:>7.1} decisions/s = {:>5.1} % of ceiling {ceiling:.0}/s | {elapsed:>6.1} s | requests {served:>6}, 429s {throttled:>5} ({:.1} %) | failed back {failed_back:>4} | lost {lost} | dead-lettered {dead_lettered}",
            100.0 * decisions_per_s / ceiling,
            100.0 * throttled as f64 / served.max(1) as f64,
        );
    }
}

/// Drains `webhooks` through `processes` real `bootstrap`s of `batch_size`.
async fn drain(label: &str, webhooks: usize, processes: usize, batch_size: usize) {
    let emulator = Emulator::start(seed(webhooks)).unwrap();
    publish_secret(&emulator);
    limited(&emulator);
    let fleet = Fleet::start(
        &emulator.base_url(),
        SECRET_NAME,
        fleet_settings(processes, batch_size),
    )
    .await;
    fleet.send((0..webhooks).map(|i| webhook(i).to_string()));
    // The inits' own requests (token, WhoAmI, catalogue) are not the drain's.
    let before = emulator.stats();
    let mut rate = Rate::start();
    fleet.release();
    let limit = Duration::from_secs(1800);
    while fleet.counts().remaining > 0 && rate.started.elapsed() < limit {
        rate.sample(&emulator);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = fleet.counts();
    let run = Run {
        label,
        webhooks,
        workers: format!("{processes:>2} bootstraps"),
        batch_size,
    };
    run.report(
        &rate,
        &emulator,
        &before,
        counts.failed_back,
        counts.dead_lettered,
    );
    drop(fleet);
    emulator.shutdown().await;
}

/// The same limits against a naive client in this process: one request per
/// decision, no pacing, `instances` workers taking `batch_size` webhooks at
/// a time from a shared queue.
async fn naive(label: &str, webhooks: usize, instances: usize, batch_size: usize) {
    let emulator = Emulator::start(seed(webhooks)).unwrap();
    limited(&emulator);
    let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..webhooks).collect()));
    let counts = Arc::new(Counts::default());
    let mut services = Vec::new();
    for _ in 0..instances {
        services.push(instance(&emulator).await);
    }
    let before = emulator.stats();
    let mut rate = Rate::start();
    let mut tasks = Vec::new();
    for service in services {
        let queue = queue.clone();
        let counts = counts.clone();
        let base = emulator.base_url();
        tasks.push(tokio::spawn(async move {
            let http = http_client();
            loop {
                let batch: Vec<usize> = {
                    let mut queue = queue.lock().unwrap();
                    let n = batch_size.min(queue.len());
                    queue.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                for index in batch {
                    naive_write(&http, &base, &service, index, &counts).await;
                }
            }
        }));
    }
    for task in tasks {
        while !task.is_finished() {
            rate.sample(&emulator);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.await.unwrap();
    }
    let run = Run {
        label,
        webhooks,
        workers: format!("{instances:>2} workers   "),
        batch_size,
    };
    run.report(&rate, &emulator, &before, 0, 0);
    emulator.shutdown().await;
}

static NAIVE_IDS: AtomicU64 = AtomicU64::new(0);

/// One request per decision, no pacing: a create per consent row, each
/// retried after Retry-After on 429 (what a simple client does).
async fn naive_write(
    http: &reqwest::Client,
    base: &str,
    service: &SyncService<DataverseClient>,
    index: usize,
    counts: &Counts,
) {
    let token = token(http, base, service).await;
    const PURPOSE: &str = "10000000-0000-0000-0000-000000000003";
    let targets = [
        (PURPOSE, None),
        (PURPOSE, Some("23db4a4d-ba9f-f011-bbd3-6045bd194648")),
        (PURPOSE, Some("5b1c9e1a-7f3d-4c2a-9e8b-2d4f6a8c0e13")),
        (PURPOSE, Some("8e2f4a6c-1b3d-4e5f-a7b9-c0d1e2f3a4b5")),
    ];
    for (purpose, topic) in targets {
        let mut body = json!({
            "msdynmkt_contactpointvalue": format!("user{index}@example.com"),
            "msdynmkt_contactpointtype": 534120000,
            "msdynmkt_contactpointconsenttype": if topic.is_some() { 534120001 } else { 534120000 },
            "msdynmkt_value": 534120001, "msdynmkt_source": 534120000, "msdynmkt_logicalreason": 534119999,
            "msdynmkt_purposeId@odata.bind": format!("/msdynmkt_purposes({purpose})"),
        });
        if let Some(topic) = topic {
            body["msdynmkt_topicId@odata.bind"] = json!(format!("/msdynmkt_topics({topic})"));
        }
        let id = uuid::Uuid::from_u128(
            0xbe_0000_0000 + u128::from(NAIVE_IDS.fetch_add(1, Ordering::Relaxed)),
        );
        loop {
            let answer = http
                .patch(format!(
                    "{base}/api/data/v9.2/msdynmkt_contactpointconsent4s({id})"
                ))
                .bearer_auth(&token)
                .header("If-None-Match", "*")
                .json(&body)
                .send()
                .await
                .unwrap();
            if answer.status() == 429 {
                let wait: u64 = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            break;
        }
    }
    counts.written.fetch_add(1, Ordering::Relaxed);
}

async fn token(
    http: &reqwest::Client,
    base: &str,
    service: &SyncService<DataverseClient>,
) -> String {
    let config = service.config();
    let answer: Value = http
        .post(format!(
            "{base}/{}/oauth2/v2.0/token",
            config.credentials.tenant_id
        ))
        .form(&[
            ("client_id", config.credentials.client_id.as_str()),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{base}/.default")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let backlog = if quick { 1000 } else { 5000 };
    WINDOW_S.set(if quick { 2 } else { 10 }).unwrap();
    println!("== batch latency (one real bootstrap, 10 webhooks and 40 decisions per batch) ==");
    latency(50).await;
    latency(150).await;
    println!(
        "== sustained throughput: limits {} requests / {} ms execution per {} s window, {OP_COST_MS} ms per operation; rates after the first window ==",
        REQUESTS_PER_S * window_s(),
        EXEC_MS_PER_S * window_s(),
        window_s()
    );
    drain("default (MaximumConcurrency 5)", backlog, 5, 10).await;
    drain("oversubscribed (20 bootstraps)", backlog, 20, 10).await;
    drain("BatchSize 100 (5 bootstraps)", backlog, 5, 100).await;
    naive("naive: 1 request per decision", backlog / 10, 5, 10).await;
}
