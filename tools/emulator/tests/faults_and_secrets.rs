//! Fault injection and Secrets Manager contract.
mod common;

use common::*;
use cpc_emulator::{DropWhen, FaultAction, FaultRule};
use serde_json::{Value, json};

fn rule(method: Option<&str>, path: Option<&str>, action: FaultAction) -> FaultRule {
    FaultRule {
        method: method.map(str::to_string),
        path_contains: path.map(str::to_string),
        action,
        ..FaultRule::default()
    }
}

#[tokio::test]
async fn throttle_429_has_body_and_retry_after_then_recovers() {
    let env = Env::start().await;
    env.emu.set_faults(vec![rule(
        Some("GET"),
        Some("contacts"),
        FaultAction {
            status: Some(429),
            retry_after: Some(39),
            ..Default::default()
        },
    )]);
    let r = env
        .dv(reqwest::Method::GET, "contacts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "39");
    let (s, v) = status_json(r).await;
    assert_eq!(s, 429);
    assert_eq!(error_code(&v), "0x80072322");
    assert_eq!(
        error_message(&v),
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
    );
    assert_eq!(env.get_json("contacts").await.0, 200);
}

#[tokio::test]
async fn skip_lets_first_requests_through() {
    let env = Env::start().await;
    let mut r = rule(
        None,
        Some("/api/data/"),
        FaultAction {
            status: Some(503),
            ..Default::default()
        },
    );
    r.skip = 1;
    env.emu.set_faults(vec![r]);
    assert_eq!(env.get_json("contacts").await.0, 200);
    assert_eq!(env.get_json("contacts").await.0, 503);
    assert_eq!(env.get_json("contacts").await.0, 200);
}

#[tokio::test]
async fn drop_after_processing_applies_the_write() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    env.emu.set_faults(vec![rule(
        Some("POST"),
        Some(CONSENTS),
        FaultAction {
            drop: Some(DropWhen::After),
            ..Default::default()
        },
    )]);
    let res = env
        .dv(reqwest::Method::POST, CONSENTS)
        .json(&purpose_consent("dropped@example.com", 534120001))
        .send()
        .await;
    assert!(res.is_err(), "no response expected");
    assert_eq!(env.emu.consents().len(), before + 1);
    let log = env.emu.requests();
    assert_eq!(log.last().unwrap().status, None);
}

#[tokio::test]
async fn drop_before_processing_writes_nothing() {
    let env = Env::start().await;
    let before = env.emu.consents().len();
    env.emu.set_faults(vec![rule(
        Some("POST"),
        None,
        FaultAction {
            drop: Some(DropWhen::Before),
            ..Default::default()
        },
    )]);
    let res = env
        .dv(reqwest::Method::POST, CONSENTS)
        .json(&purpose_consent("dropped@example.com", 534120001))
        .send()
        .await;
    assert!(res.is_err());
    assert_eq!(env.emu.consents().len(), before);
}

#[tokio::test]
async fn expire_tokens_fault_yields_401() {
    let env = Env::start().await;
    env.emu.set_faults(vec![rule(
        None,
        Some("contacts"),
        FaultAction {
            expire_tokens: true,
            ..Default::default()
        },
    )]);
    assert_eq!(env.get_json("contacts").await.0, 401);
}

#[tokio::test]
async fn token_endpoint_down_is_503() {
    let env = Env::start().await;
    env.emu.set_faults(vec![rule(
        Some("POST"),
        Some("/oauth2/v2.0/token"),
        FaultAction {
            status: Some(503),
            ..Default::default()
        },
    )]);
    let base = env.emu.base_url();
    let r = reqwest::Client::new()
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn request_log_records_bearer_presence_not_the_token() {
    let env = Env::start().await;
    env.emu.clear_requests();
    env.get_json("contacts?$top=1").await;
    let log = env.emu.requests();
    assert_eq!(log.len(), 1);
    assert!(log[0].bearer);
    assert_eq!(log[0].path, "/api/data/v9.2/contacts?$top=1");
    assert_eq!(log[0].status, Some(200));
    assert!(!serde_json::to_string(&log).unwrap().contains(&env.token));
}

#[tokio::test]
async fn admin_api_dumps_and_sets_faults() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let http = reqwest::Client::new();
    let rows: Vec<Value> = http
        .get(format!("{base}/_emulator/consents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["createdon"].as_str() <= rows[1]["createdon"].as_str());
    let r = http
        .put(format!("{base}/_emulator/faults"))
        .json(&json!([{"path_contains":"contacts","action":{"status":504}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(env.get_json("contacts").await.0, 504);
    assert!(
        env.emu
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/_emulator"))
    );
}

async fn get_secret(base: &str, id: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/"))
        .header("X-Amz-Target", "secretsmanager.GetSecretValue")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261126/eu-west-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=abc")
        .body(json!({"SecretId": id}).to_string())
        .send()
        .await
        .unwrap();
    status_json(r).await
}

#[tokio::test]
async fn get_secret_value_found_by_name_and_arn() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v) = get_secret(&base, "didomi/cpc-sync").await;
    assert_eq!(s, 200);
    assert_eq!(v["Name"], "didomi/cpc-sync");
    assert_eq!(v["VersionStages"], json!(["AWSCURRENT"]));
    assert!(v["CreatedDate"].is_f64());
    let config: Value = serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(config["type_id"], "microsoft-dynamics-cpc");
    let arn = v["ARN"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:secretsmanager:eu-west-1:123456789012:secret:didomi/cpc-sync-")
    );
    assert_eq!(get_secret(&base, &arn).await.1["Name"], "didomi/cpc-sync");
}

#[tokio::test]
async fn get_secret_value_missing_is_resource_not_found() {
    let env = Env::start().await;
    let (s, v) = get_secret(&env.emu.base_url(), "nope").await;
    assert_eq!(s, 400);
    assert_eq!(v["__type"], "ResourceNotFoundException");
    assert_eq!(
        v["message"],
        "Secrets Manager can't find the specified secret."
    );
}

#[tokio::test]
async fn rotated_secret_gets_new_value_and_version() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (_, v1) = get_secret(&base, "didomi/cpc-sync").await;
    env.emu.set_secret("didomi/cpc-sync", "{\"rotated\":true}");
    let (_, v2) = get_secret(&base, "didomi/cpc-sync").await;
    assert_eq!(v2["SecretString"], "{\"rotated\":true}");
    assert_ne!(v1["VersionId"], v2["VersionId"]);
}
