//! Pacing against the emulator's service-protection limits (reference §4):
//! parallel write `$batch` requests never outnumber `x-ms-dop-hint`, and a
//! 429 lowers the client's own parallelism. Counted, not timed.

use std::sync::Arc;
use std::time::Duration;

use cpc_emulator::{CostModel, Emulator, EmulatorHandle, Limits};
use didomi_cpc_sync::adapters::dataverse::{DataverseClient, RetryPolicy};
use didomi_cpc_sync::service::SyncService;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::inprocess::{
    client_for, config_for, process, process_all_written, seed_with_users,
};

fn webhook(index: usize) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": format!("ev-{index}"), "created_at": format!("2025-03-14T09:{:02}:00Z", index % 60),
        "user": {"id": format!("u-{index}"), "organization_user_id": format!("user{index}@example.com")},
        "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": true,
            "values": {"f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13": {"value": "v-news,v-events"}}}]}}}})
}

async fn service(
    emulator: &EmulatorHandle,
    max_parallel: usize,
    policy: RetryPolicy,
) -> SyncService<DataverseClient> {
    let config = config_for(emulator, |_| {});
    let client = client_for(emulator, &config, policy).with_parallel_writes(max_parallel, 50);
    let service = SyncService::new(client, Arc::new(config));
    service
        .metadata(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    service
}

fn write_batches(emulator: &EmulatorHandle) -> Vec<usize> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("$batch") && r.status == Some(200))
        .skip(1)
        .map(|r| r.batch_parts.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn parallel_writes_never_outnumber_the_dop_hint() {
    let emulator = Emulator::start(seed_with_users(100)).unwrap();
    emulator.set_cost(CostModel {
        op_cost_ms: 1,
        dop_hint: 2,
        limits: Some(Limits {
            concurrent: 2,
            ..Limits::default()
        }),
        ..CostModel::default()
    });
    let service = service(&emulator, 8, RetryPolicy::default()).await;
    let webhooks: Vec<Value> = (0..100).map(webhook).collect();
    emulator.clear_requests();
    process_all_written(&service, &webhooks, Duration::from_secs(30)).await;
    assert_eq!(
        write_batches(&emulator),
        vec![200, 200],
        "cap 8, hint 2: two requests"
    );
    let stats = emulator.stats();
    assert_eq!(stats.throttled.concurrency, 0, "{stats:?}");
    assert_eq!(service.store().parallelism(), 2);
}

#[tokio::test]
async fn small_batches_are_never_split() {
    let emulator = Emulator::start(seed_with_users(10)).unwrap();
    let service = service(&emulator, 8, RetryPolicy::default()).await;
    let webhooks: Vec<Value> = (0..10).map(webhook).collect();
    emulator.clear_requests();
    process(&service, &webhooks, Duration::from_secs(30)).await;
    assert_eq!(write_batches(&emulator), vec![40], "40 writes: one request");
}

#[tokio::test]
async fn a_429_lowers_the_clients_parallelism_and_everything_is_written() {
    let emulator = Emulator::start(seed_with_users(100)).unwrap();
    // Two requests per second: the reads and one of the four write batches
    // get through, the others are throttled.
    emulator.set_cost(CostModel {
        dop_hint: 4,
        limits: Some(Limits {
            requests: 2,
            window_s: 1,
            ..Limits::default()
        }),
        ..CostModel::default()
    });
    let policy = RetryPolicy {
        max_attempts: 10,
        max_retry_after: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let service = service(&emulator, 4, policy).await;
    let webhooks: Vec<Value> = (0..100).map(webhook).collect();
    process_all_written(&service, &webhooks, Duration::from_secs(60)).await;
    assert_eq!(emulator.consents().len(), 2 + 100 * 4);
    let stats = emulator.stats();
    assert!(stats.throttled.requests > 0, "{stats:?}");
    assert!(
        service.store().parallelism() < 4,
        "halved on 429: {}",
        service.store().parallelism()
    );
}
