//! The cost model: operation cost per `$batch` part, parallelism, `x-ms-dop-hint`, and the
//! service-protection limits with their 429s (reference §4).
mod common;

use std::time::{Duration, Instant};

use common::*;
use cpc_emulator::{CostModel, Limits, Seed};
use serde_json::{Value, json};

fn seed_with(cost: CostModel) -> Seed {
    let mut seed = quiet_seed();
    seed.cost = cost;
    seed
}

fn limits(requests: u64, exec_ms: u64, concurrent: u64) -> Option<Limits> {
    Some(Limits {
        requests,
        exec_ms,
        window_s: 10,
        concurrent,
    })
}

fn consents(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| purpose_consent(&format!("{tag}{i}@example.com"), 534120001))
        .collect()
}

async fn timed_get(env: &Env) -> (u16, Duration) {
    let started = Instant::now();
    let (s, _) = env.get_json("msdynmkt_purposes").await;
    (s, started.elapsed())
}

#[tokio::test]
async fn operation_cost_applies_to_each_batch_part_in_turn() {
    let env = Env::with_seed(seed_with(CostModel {
        op_cost_ms: 100,
        ..CostModel::default()
    }))
    .await;
    let started = Instant::now();
    let r = env.post_batch(batch_of_creates(&consents(3, "cost"))).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(env.emu.requests().last().unwrap().batch_parts, Some(3));
}

#[tokio::test]
async fn batch_parts_become_visible_one_by_one() {
    let env = Env::with_seed(seed_with(CostModel {
        op_cost_ms: 300,
        ..CostModel::default()
    }))
    .await;
    let before = env.emu.consents().len();
    let http = env.http.clone();
    let (url, token) = (env.url("$batch"), env.token.clone());
    let body = batch_of_creates(&consents(2, "partial"));
    let batch = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(token)
            .header("Content-Type", "multipart/mixed; boundary=batch_b")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        env.emu.consents().len(),
        before + 1,
        "first part applied, second executing"
    );
    assert_eq!(batch.await.unwrap(), 200);
    assert_eq!(env.emu.consents().len(), before + 2);
}

#[tokio::test]
async fn parallelism_makes_operations_wait_for_a_free_slot() {
    let env = Env::with_seed(seed_with(CostModel {
        op_cost_ms: 200,
        parallelism: Some(1),
        ..CostModel::default()
    }))
    .await;
    let started = Instant::now();
    let (a, b) = tokio::join!(timed_get(&env), timed_get(&env));
    assert_eq!((a.0, b.0), (200, 200));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_answer_carries_the_dop_hint() {
    let env = Env::with_seed(quiet_seed()).await;
    let r = env
        .dv(reqwest::Method::GET, "contacts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-ms-dop-hint"], "4");
    env.emu.set_cost(CostModel {
        dop_hint: 12,
        ..CostModel::default()
    });
    let r = env
        .dv(reqwest::Method::GET, "contacts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-ms-dop-hint"], "12");
}

#[tokio::test]
async fn request_limit_answers_429_0x80072322_with_retry_after() {
    let env = Env::with_seed(seed_with(CostModel {
        limits: limits(2, 1_000_000, 52),
        ..CostModel::default()
    }))
    .await;
    assert_eq!(env.get_json("contacts").await.0, 200);
    assert_eq!(env.get_json("contacts").await.0, 200);
    let r = env
        .dv(reqwest::Method::GET, "contacts")
        .send()
        .await
        .unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 429);
    assert_eq!(error_code(&v), "0x80072322");
    assert_eq!(
        error_message(&v),
        "Number of requests exceeded the limit of 2 over time window of 10 seconds."
    );
}

#[tokio::test]
async fn a_batch_counts_as_one_request() {
    let env = Env::with_seed(seed_with(CostModel {
        limits: limits(2, 1_000_000, 52),
        ..CostModel::default()
    }))
    .await;
    let r = env.post_batch(batch_of_creates(&consents(5, "one"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(env.get_json("contacts").await.0, 200);
    assert_eq!(env.get_json("contacts").await.0, 429);
}

#[tokio::test]
async fn execution_time_limit_answers_429_0x80072321() {
    let env = Env::with_seed(seed_with(CostModel {
        op_cost_ms: 40,
        limits: limits(1000, 100, 52),
        ..CostModel::default()
    }))
    .await;
    let r = env.post_batch(batch_of_creates(&consents(3, "exec"))).await;
    assert_eq!(r.status(), 200);
    let r = env
        .dv(reqwest::Method::GET, "contacts")
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let (s, v) = status_json(r).await;
    assert_eq!(s, 429);
    assert_eq!(error_code(&v), "0x80072321");
    assert!(error_message(&v).starts_with(
        "Combined execution time of incoming requests exceeded limit of 100 milliseconds over time window of 10 seconds."
    ));
}

#[tokio::test]
async fn concurrency_limit_answers_429_0x80072326_at_once() {
    let env = Env::with_seed(seed_with(CostModel {
        op_cost_ms: 300,
        limits: limits(1000, 1_000_000, 1),
        ..CostModel::default()
    }))
    .await;
    let ((a, _), (b, _)) = tokio::join!(timed_get(&env), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let r = env
            .dv(reqwest::Method::GET, "contacts")
            .send()
            .await
            .unwrap();
        let (s, v) = status_json(r).await;
        assert_eq!(error_code(&v), "0x80072326");
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "refused immediately"
        );
        (s, ())
    });
    assert_eq!((a, b), (200, 429));
}

#[tokio::test]
async fn stats_count_served_requests_and_429s_by_limit() {
    let env = Env::with_seed(seed_with(CostModel {
        limits: limits(1, 1_000_000, 52),
        ..CostModel::default()
    }))
    .await;
    env.get_json("contacts").await;
    env.get_json("contacts").await;
    env.get_json("contacts").await;
    let v: Value = env
        .http
        .get(env.admin("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The token request counts as served too.
    assert_eq!(v["requests_served"], 4);
    assert_eq!(
        v["throttled"],
        json!({"requests": 2, "execution_time": 0, "concurrency": 0})
    );
}

#[tokio::test]
async fn cost_model_can_be_replaced_through_the_admin_api() {
    let env = Env::with_seed(quiet_seed()).await;
    let r = env
        .http
        .put(env.admin("cost"))
        .json(&json!({"op_cost_ms": 5, "dop_hint": 6, "limits": {"requests": 1, "window_s": 10}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let v: Value = env
        .http
        .get(env.admin("cost"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["limits"]["exec_ms"], 1_200_000,
        "unnamed figures keep Dataverse's"
    );
    assert_eq!(env.get_json("contacts").await.0, 200);
    assert_eq!(env.get_json("contacts").await.0, 429);
}

#[tokio::test]
async fn limits_are_off_by_default() {
    let env = Env::with_seed(quiet_seed()).await;
    for _ in 0..20 {
        assert_eq!(env.get_json("contacts").await.0, 200);
    }
    assert_eq!(env.emu.stats().throttled.requests, 0);
}
