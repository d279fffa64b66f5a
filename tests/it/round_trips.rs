//! The round-trip budget (DESIGN §4): once the token and the purpose/topic
//! catalogue are cached, a batch of up to 10 webhooks costs three sequential
//! Dataverse requests — contacts, consent rows, one `$batch` — whatever the
//! number of webhooks and mappings. Counted at the emulator.

use crate::support::inprocess;

use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::service::MessageOutcome;
use inprocess::{dataverse_requests, plans, seed_with_users, service};
use serde_json::{Value, json};
use tokio::time::Instant;

/// An `event.created` of `user` deciding the purpose and all three topics.
fn webhook(index: usize, user: &str) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": format!("ev-{index}"), "created_at": format!("2025-03-14T09:{:02}:00Z", index % 60),
        "user": {"id": format!("u-{index}"), "organization_user_id": user},
        "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": true,
            "values": {"f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13": {"value": "v-news,v-events"}}}]}}}})
}

async fn dataverse_requests_for(
    webhooks: Vec<Value>,
    users: usize,
) -> (Vec<String>, EmulatorHandle) {
    let emulator = Emulator::start(seed_with_users(users)).unwrap();
    let service = service(&emulator).await;
    let items = plans(&webhooks, &service);
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
    (dataverse_requests(&emulator), emulator)
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
