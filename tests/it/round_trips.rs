//! The round-trip budget (DESIGN §4, issue 15): once the token and the
//! purpose/topic catalogue are cached, a batch costs two sequential Dataverse
//! requests in the default configuration (`contact_match_field` =
//! `contact_point_field`) — one `$batch` of GETs (contacts and their consent
//! rows together), then one `$batch` of writes — whatever the number of
//! webhooks (up to 100) and mappings. Counted at the emulator, not timed.

use crate::support::inprocess;

use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use inprocess::{dataverse_requests, process_all_written, seed_with_users, service};
use serde_json::{Value, json};

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
    let requests = requests_against(&emulator, webhooks).await;
    (requests, emulator)
}

async fn requests_against(emulator: &EmulatorHandle, webhooks: Vec<Value>) -> Vec<String> {
    let service = service(emulator).await;
    emulator.clear_requests();
    process_all_written(&service, &webhooks, Duration::from_secs(20)).await;
    dataverse_requests(emulator)
}

const BUDGET: [&str; 2] = ["POST /api/data/v9.2/$batch", "POST /api/data/v9.2/$batch"];

/// The parts of each `$batch` the emulator served, in order.
fn batch_parts(emulator: &EmulatorHandle) -> Vec<usize> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/data/"))
        .map(|r| r.batch_parts.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn one_webhook_costs_two_round_trips() {
    let (requests, emulator) =
        dataverse_requests_for(vec![webhook(0, "user0@example.com")], 1).await;
    assert_eq!(requests, BUDGET);
    // The first holds the two queries (GET parts), the second the four creates.
    assert_eq!(batch_parts(&emulator), vec![2, 4]);
    assert_eq!(emulator.consents().len(), 2 + 4);
}

#[tokio::test]
async fn ten_webhooks_of_ten_users_still_cost_two_round_trips() {
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
async fn ten_webhooks_of_one_user_cost_two_round_trips_and_write_each_row_once() {
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

#[tokio::test]
async fn a_hundred_webhooks_of_a_hundred_users_cost_two_round_trips() {
    let webhooks = (0..100)
        .map(|i| webhook(i, &format!("user{i}@example.com")))
        .collect();
    let (requests, emulator) = dataverse_requests_for(webhooks, 100).await;
    // The 400 writes are split into min(x-ms-dop-hint 4, cap 4) `$batch`
    // requests sent side by side: still one sequential round trip.
    assert_eq!(requests[0], BUDGET[0], "one $batch of queries");
    assert_eq!(&requests[1..], [BUDGET[1]; 4], "then four of writes");
    assert_eq!(batch_parts(&emulator), vec![2, 100, 100, 100, 100]);
    assert_eq!(emulator.consents().len(), 2 + 100 * 4);
}

#[tokio::test]
async fn a_replayed_batch_costs_one_round_trip() {
    let emulator = Emulator::start(seed_with_users(10)).unwrap();
    let webhooks: Vec<Value> = (0..10)
        .map(|i| webhook(i, &format!("user{i}@example.com")))
        .collect();
    requests_against(&emulator, webhooks.clone()).await;
    let requests = requests_against(&emulator, webhooks).await;
    assert_eq!(requests, BUDGET[..1], "nothing to write: the queries only");
}

#[tokio::test]
async fn a_contact_point_field_other_than_the_match_field_costs_three_round_trips() {
    let emulator = Emulator::start(seed_with_users(3)).unwrap();
    let service = inprocess::service_with(
        &emulator,
        |config| config["properties"]["contact_match_field"] = json!("lastname"),
        didomi_cpc_sync::adapters::dataverse::RetryPolicy::default(),
    )
    .await;
    let webhooks: Vec<Value> = (0..3).map(|i| webhook(i, &format!("User {i}"))).collect();
    emulator.clear_requests();
    process_all_written(&service, &webhooks, Duration::from_secs(20)).await;
    assert_eq!(
        dataverse_requests(&emulator),
        [
            "GET /api/data/v9.2/contacts",
            "GET /api/data/v9.2/msdynmkt_contactpointconsent4s",
            "POST /api/data/v9.2/$batch",
        ]
    );
}
