//! Faults that match on the request body and hold a request until another one is applied.
mod common;

use std::time::{Duration, Instant};

use common::*;
use cpc_emulator::FaultRule;
use serde_json::{Value, json};

fn consent_for(event: &str) -> Value {
    let mut c = purpose_consent(&format!("{event}@example.com"), 534120001);
    c["msdynmkt_reason"] = json!(format!("didomi-sync {event}"));
    c
}

fn rule(value: Value) -> FaultRule {
    serde_json::from_value(value).expect("fault rule")
}

/// Sends a one-create batch for `event` from a separate task.
fn spawn_batch(env: &Env, event: &str) -> tokio::task::JoinHandle<(u16, Duration)> {
    let http = env.http.clone();
    let url = env.url("$batch");
    let token = env.token.clone();
    let body = batch_of_creates(&[consent_for(event)]);
    tokio::spawn(async move {
        let started = Instant::now();
        let r = http
            .post(url)
            .bearer_auth(token)
            .header("Content-Type", "multipart/mixed; boundary=batch_b")
            .body(body)
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), started.elapsed())
    })
}

async fn until_held(env: &Env, n: u64) {
    for _ in 0..200 {
        if env.emu.stats().held_now == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no request was held");
}

fn created_order(env: &Env) -> Vec<String> {
    env.emu
        .consents()
        .iter()
        .filter_map(|c| c["msdynmkt_reason"].as_str().map(str::to_string))
        .filter(|r| r.starts_with("didomi-sync evt-"))
        .collect()
}

#[tokio::test]
async fn body_contains_delays_only_the_batch_carrying_the_text() {
    let env = Env::with_seed(quiet_seed()).await;
    env.emu.set_faults(vec![rule(json!({
        "path_contains": "$batch", "body_contains": "evt-A", "times": null,
        "action": {"delay_ms": 400}
    }))]);
    let (_, other) = spawn_batch(&env, "evt-B").await.unwrap();
    let (status, matching) = spawn_batch(&env, "evt-A").await.unwrap();
    assert_eq!(status, 200);
    assert!(other < Duration::from_millis(300), "{other:?}");
    assert!(matching >= Duration::from_millis(400), "{matching:?}");
}

#[tokio::test]
async fn held_batch_is_applied_right_after_the_releasing_batch() {
    let env = Env::with_seed(quiet_seed()).await;
    env.emu.set_faults(vec![rule(json!({
        "path_contains": "$batch", "body_contains": "evt-A",
        "action": {"hold_until_applied": {"path_contains": "$batch", "body_contains": "evt-B", "max_wait_ms": 5000}}
    }))]);
    let a = spawn_batch(&env, "evt-A");
    until_held(&env, 1).await;
    let (b_status, _) = spawn_batch(&env, "evt-B").await.unwrap();
    let (a_status, a_took) = a.await.unwrap();
    assert_eq!((a_status, b_status), (200, 200));
    assert!(
        a_took < Duration::from_secs(5),
        "released, not timed out: {a_took:?}"
    );
    assert_eq!(
        created_order(&env),
        ["didomi-sync evt-B", "didomi-sync evt-A"]
    );
    assert_eq!(env.emu.stats().held_now, 0);
}

#[tokio::test]
async fn held_request_proceeds_after_max_wait() {
    let env = Env::with_seed(quiet_seed()).await;
    env.emu.set_faults(vec![rule(json!({
        "path_contains": "$batch",
        "action": {"hold_until_applied": {"body_contains": "never-sent", "max_wait_ms": 300}}
    }))]);
    let (status, took) = spawn_batch(&env, "evt-A").await.unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(created_order(&env), ["didomi-sync evt-A"]);
}

#[tokio::test]
async fn ui_edit_through_the_admin_api_releases_a_held_request() {
    let env = Env::with_seed(quiet_seed()).await;
    env.emu.set_faults(vec![rule(json!({
        "path_contains": "$batch",
        "action": {"hold_until_applied": {"path_contains": "/_emulator/rows/", "max_wait_ms": 5000}}
    }))]);
    let a = spawn_batch(&env, "evt-A");
    until_held(&env, 1).await;
    let seeded = "f1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8";
    let r = env
        .http
        .post(env.admin(&format!("rows/{CONSENTS}/{seeded}")))
        .json(&json!({"columns": {"msdynmkt_value": 534120001}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, took) = a.await.unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn request_log_marks_held_requests() {
    let env = Env::with_seed(quiet_seed()).await;
    env.emu.set_faults(vec![rule(json!({
        "path_contains": "$batch",
        "action": {"hold_until_applied": {"body_contains": "never-sent", "max_wait_ms": 10}}
    }))]);
    spawn_batch(&env, "evt-A").await.unwrap();
    let log = env.emu.requests();
    assert_eq!(log.last().unwrap().fault.as_deref(), Some("hold"));
}
