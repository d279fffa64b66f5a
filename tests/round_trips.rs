//! The round-trip budget (DESIGN §4): once the token and the purpose/topic
//! catalogue are cached, a batch of up to 10 webhooks costs three sequential
//! Dataverse requests — contacts, consent rows, one `$batch` — whatever the
//! number of webhooks and mappings. Counted at the emulator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle, Seed};
use didomi_cpc_sync::auth::StaticCredentials;
use didomi_cpc_sync::auth::entra::EntraTokenProvider;
use didomi_cpc_sync::config::IntegrationConfig;
use didomi_cpc_sync::consent::ConsentPlan;
use didomi_cpc_sync::dataverse::{DataverseClient, RetryPolicy, http_client};
use didomi_cpc_sync::mapping::{RejectedWebhook, plan_value};
use didomi_cpc_sync::planner::Catalog;
use didomi_cpc_sync::sync::{MessageOutcome, SyncService};
use serde_json::{Value, json};
use tokio::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A seed with `users` contacts `user<i>@example.com` besides the demo data.
fn seed(users: usize) -> Seed {
    let text = std::fs::read_to_string(root().join("tools/emulator/demo-seed.json")).unwrap();
    let mut seed: Value = serde_json::from_str(&text).unwrap();
    for i in 0..users {
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-8000-{i:012}"),
            "emailaddress1": format!("user{i}@example.com"), "lastname": format!("User {i}")}));
    }
    serde_json::from_value(seed).unwrap()
}

async fn service(emulator: &EmulatorHandle) -> SyncService<DataverseClient> {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/integration-config.json")).unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["authentication"]["client_secret"] = json!("local-dev-secret~not-a-real-one");
    document["authentication"]["instance"] = json!(emulator.base_url());
    let config = IntegrationConfig::from_document(&document, true)
        .unwrap()
        .config;
    let authority = emulator.base_url().parse().unwrap();
    let tokens = EntraTokenProvider::new(
        http_client(),
        authority,
        Arc::new(StaticCredentials(config.credentials.clone())),
    );
    let client = DataverseClient::new(
        http_client(),
        config.credentials.instance.clone(),
        Arc::new(tokens),
        RetryPolicy::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let catalog = Catalog::new(
        client.purposes(deadline).await.unwrap(),
        client.topics(deadline).await.unwrap(),
    );
    SyncService::new(client, Arc::new(config), Arc::new(catalog))
}

/// An `event.created` of `user` deciding the purpose and all three topics.
fn webhook(index: usize, user: &str) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": format!("ev-{index}"), "created_at": format!("2025-03-14T09:{:02}:00Z", index % 60),
        "user": {"id": format!("u-{index}"), "organization_user_id": user},
        "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": true,
            "values": {"f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13": {"value": "v-news,v-events"}}}]}}}})
}

fn plans(
    webhooks: Vec<Value>,
    service: &SyncService<DataverseClient>,
) -> Vec<Result<ConsentPlan, RejectedWebhook>> {
    webhooks
        .into_iter()
        .map(|webhook| plan_value(webhook, &service.config().rules))
        .collect()
}

async fn dataverse_requests_for(
    webhooks: Vec<Value>,
    users: usize,
) -> (Vec<String>, EmulatorHandle) {
    let emulator = Emulator::start(seed(users)).unwrap();
    let service = service(&emulator).await;
    let items = plans(webhooks, &service);
    emulator.clear_requests();
    let outcomes = service
        .process(&items, Instant::now() + Duration::from_secs(20))
        .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, MessageOutcome::Written { .. })),
        "{outcomes:?}"
    );
    let requests = emulator
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
        .collect();
    (requests, emulator)
}

const BUDGET: [&str; 3] = [
    "GET /api/data/v9.2/contacts",
    "GET /api/data/v9.2/msdynmkt_contactpointconsent4s",
    "POST /api/data/v9.2/$batch",
];

#[tokio::test]
async fn one_webhook_costs_three_round_trips() {
    let (requests, emulator) =
        dataverse_requests_for(vec![webhook(0, "user0@example.com")], 1).await;
    assert_eq!(requests, BUDGET);
    assert_eq!(emulator.consents().len(), 2 + 4);
}

#[tokio::test]
async fn ten_webhooks_of_ten_users_still_cost_three_round_trips() {
    let webhooks = (0..10)
        .map(|i| webhook(i, &format!("user{i}@example.com")))
        .collect();
    let (requests, emulator) = dataverse_requests_for(webhooks, 10).await;
    assert_eq!(requests, BUDGET);
    assert_eq!(
        emulator.consents().len(),
        2 + 10 * 4,
        "four rows per user, no duplicates"
    );
}

#[tokio::test]
async fn ten_webhooks_of_one_user_cost_three_round_trips_and_write_each_row_once() {
    let webhooks = (0..10).map(|i| webhook(i, "user0@example.com")).collect();
    let (requests, emulator) = dataverse_requests_for(webhooks, 1).await;
    assert_eq!(requests, BUDGET);
    let user_rows: Vec<Value> = emulator
        .consents()
        .into_iter()
        .filter(|row| row["msdynmkt_contactpointvalue"] == "user0@example.com")
        .collect();
    assert_eq!(user_rows.len(), 4);
    assert!(
        user_rows
            .iter()
            .all(|row| row["msdynmkt_reason"].as_str().unwrap().contains("ev-9 ")),
        "newest event wins"
    );
}
