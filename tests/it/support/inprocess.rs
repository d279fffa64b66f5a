//! The sync service wired in-process against `tools/emulator`, with the
//! demo seed and the fixture configuration: for tests that count requests,
//! inject faults and compare consent tables.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cpc_emulator::{EmulatorHandle, Seed};
use didomi_cpc_sync::adapters::dataverse::{DataverseClient, RetryPolicy};
use didomi_cpc_sync::adapters::entra::StaticCredentials;
use didomi_cpc_sync::config::IntegrationConfig;
use didomi_cpc_sync::domain::decision::ConsentPlan;
use didomi_cpc_sync::domain::mapping::{RejectedWebhook, plan_value};
use didomi_cpc_sync::lambda::handler::Handler;
use didomi_cpc_sync::lambda::redelivery::Redelivery;
use didomi_cpc_sync::lambda::startup::{self, InitError};
use didomi_cpc_sync::service::{MessageOutcome, SyncService};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The client secret the demo seed accepts.
pub const EMULATOR_SECRET: &str = "local-dev-secret~not-a-real-one";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo seed (`tools/emulator/demo-seed.json`) as JSON, to edit before use.
pub fn demo_seed_json() -> Value {
    let text = std::fs::read_to_string(root().join("tools/emulator/demo-seed.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A seed from JSON.
pub fn seed_from(json: Value) -> Seed {
    serde_json::from_value(json).unwrap()
}

/// The demo seed plus contacts `user<i>@example.com` for `i < users`.
pub fn seed_with_users(users: usize) -> Seed {
    let mut seed = demo_seed_json();
    for i in 0..users {
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-8000-{i:012}"),
            "emailaddress1": format!("user{i}@example.com"), "lastname": format!("User {i}")}));
    }
    seed_from(seed)
}

/// The fixture configuration (`tests/fixtures/integration-config.json`)
/// pointed at `emulator`.
pub fn config_json(emulator: &EmulatorHandle) -> Value {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/integration-config.json")).unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["authentication"]["client_secret"] = json!(EMULATOR_SECRET);
    document["authentication"]["instance"] = json!(emulator.base_url());
    document
}

/// The fixture configuration for `emulator`, edited, validated.
pub fn config_for(emulator: &EmulatorHandle, edit: impl FnOnce(&mut Value)) -> IntegrationConfig {
    let mut document = config_json(emulator);
    edit(&mut document);
    IntegrationConfig::from_document(&document, true)
        .expect("the configuration is valid")
        .config
}

/// A Dataverse client for `emulator`, with tokens from its Entra endpoint,
/// built as `bootstrap` builds it ([`startup::dataverse_client`]).
pub fn client_for(
    emulator: &EmulatorHandle,
    config: &IntegrationConfig,
    policy: RetryPolicy,
) -> DataverseClient {
    startup::dataverse_client(
        config,
        emulator.base_url().parse().unwrap(),
        Arc::new(StaticCredentials(config.credentials.clone())),
        policy,
    )
}

/// The function's handler against `emulator`, wired exactly as `bootstrap`
/// wires it ([`startup::wire`]), settling failed SQS messages through
/// `redelivery`.
pub async fn handler_with(
    emulator: &EmulatorHandle,
    edit: impl FnOnce(&mut Value),
    policy: RetryPolicy,
    redelivery: Arc<dyn Redelivery>,
) -> Result<Handler<DataverseClient>, InitError> {
    let config = Arc::new(config_for(emulator, edit));
    let client = client_for(emulator, &config, policy);
    startup::wire(config, client, redelivery).await
}

/// A service against `emulator` with the fixture configuration (optionally
/// edited) and the given retry policy; reads the metadata (and so takes a
/// token) before returning.
pub async fn service_with(
    emulator: &EmulatorHandle,
    edit: impl FnOnce(&mut Value),
    policy: RetryPolicy,
) -> SyncService<DataverseClient> {
    let config = config_for(emulator, edit);
    let client = client_for(emulator, &config, policy);
    let service = SyncService::new(client, Arc::new(config));
    service
        .metadata(Instant::now() + Duration::from_secs(10))
        .await
        .expect("the emulator serves purposes, topics and WhoAmI");
    service
}

/// [`service_with`] with the fixture configuration and the default policy.
pub async fn service(emulator: &EmulatorHandle) -> SyncService<DataverseClient> {
    service_with(emulator, |_| {}, RetryPolicy::default()).await
}

/// A retry policy with short waits, for fault tests.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    }
}

/// Plans webhooks with the service's configuration.
pub fn plans(
    webhooks: &[Value],
    service: &SyncService<DataverseClient>,
) -> Vec<Result<ConsentPlan, RejectedWebhook>> {
    webhooks
        .iter()
        .map(|webhook| plan_value(webhook.clone(), &service.config().rules))
        .collect()
}

/// Plans and processes webhooks as one batch with `budget` to finish.
pub async fn process(
    service: &SyncService<DataverseClient>,
    webhooks: &[Value],
    budget: Duration,
) -> Vec<MessageOutcome> {
    service
        .process(&plans(webhooks, service), Instant::now() + budget)
        .await
}

/// [`process`], asserting that every webhook was written.
pub async fn process_all_written(
    service: &SyncService<DataverseClient>,
    webhooks: &[Value],
    budget: Duration,
) -> Vec<MessageOutcome> {
    let outcomes = process(service, webhooks, budget).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, MessageOutcome::Written { .. })),
        "{outcomes:?}"
    );
    outcomes
}

/// A JSON fixture from `events/`.
pub fn event(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One consent row as compared by the invariants: address (lower case),
/// purpose, topic, value, statecode and the reason (marker) text.
pub type RowView = (String, String, String, i64, i64, String);

/// The emulator's consent table, without ids or timestamps; a multiset is
/// kept as a sorted list so duplicates show.
pub fn table(emulator: &EmulatorHandle) -> Vec<RowView> {
    let mut rows: Vec<RowView> = emulator
        .consents()
        .iter()
        .map(|row| {
            let text = |key: &str| row[key].as_str().unwrap_or("-").to_string();
            (
                text("msdynmkt_contactpointvalue").to_lowercase(),
                text("_msdynmkt_purposeid_value"),
                text("_msdynmkt_topicid_value"),
                row["msdynmkt_value"].as_i64().unwrap_or_default(),
                row["statecode"].as_i64().unwrap_or_default(),
                text("msdynmkt_reason"),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// True when no two rows share (address, purpose, topic, statecode) — the
/// demo seed's one intentional inactive duplicate differs in statecode.
pub fn has_no_duplicates(rows: &[RowView]) -> bool {
    let keys: BTreeSet<_> = rows.iter().map(|(a, p, t, _, s, _)| (a, p, t, s)).collect();
    keys.len() == rows.len()
}

/// How many Dataverse requests the emulator served that write: a `$batch`
/// with at least one operation other than `GET`, or a plain request other
/// than `GET`. A `$batch` of queries is a read.
pub fn dataverse_write_requests(emulator: &EmulatorHandle) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|request| request.path.starts_with("/api/data/"))
        .filter(|request| match request.batch_writes {
            Some(writes) => writes > 0,
            None => request.method != "GET",
        })
        .count()
}

/// Requests the emulator served under the Dataverse API, as `METHOD path` (no query).
pub fn dataverse_requests(emulator: &EmulatorHandle) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/api/data/"))
        .map(|request| {
            format!(
                "{} {}",
                request.method,
                request.path.split('?').next().unwrap_or_default()
            )
        })
        .collect()
}
