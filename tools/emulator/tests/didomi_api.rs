//! Didomi API contract (reference `didomi-api.md` §1, §3.1, §6): sessions,
//! the users cursor, Didomi's error body, 401/403 and 429 with its headers.

use cpc_emulator::{Emulator, EmulatorHandle, Seed};
use reqwest::Client;
use serde_json::{Value, json};

fn seed(users: usize, edit: impl FnOnce(&mut Value)) -> Seed {
    let users: Vec<Value> = (0..users)
        .map(|i| {
            json!({"id": format!("u{i}"), "organization_user_id": format!("user{i}@example.com"),
                        "updated_at": "2025-06-01T12:00:00Z", "consents": {"purposes": []}})
        })
        .collect();
    let mut didomi = json!({"organization_id": "acme", "users": users,
                            "keys": [{"key": "k", "secret": "s"}]});
    edit(&mut didomi);
    serde_json::from_value(json!({ "didomi": didomi })).unwrap()
}

async fn session(http: &Client, emu: &EmulatorHandle, secret: &str) -> (u16, Value) {
    let response = http
        .post(format!("{}/v1/sessions", emu.base_url()))
        .json(&json!({"type": "api-key", "key": "k", "secret": secret}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn users(
    http: &Client,
    emu: &EmulatorHandle,
    token: Option<&str>,
    query: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http.get(format!("{}/v1/consents/users?{query}", emu.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

async fn token(http: &Client, emu: &EmulatorHandle) -> String {
    let (status, body) = session(http, emu, "s").await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_session_answers_a_jwt_with_the_key_and_type() {
    let emu = Emulator::start(seed(0, |_| {})).unwrap();
    let (status, body) = session(&Client::new(), &emu, "s").await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["type"].as_str(), body["key"].as_str()),
        (Some("api-key"), Some("k"))
    );
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn bad_credentials_get_400_with_didomis_error_body() {
    let emu = Emulator::start(seed(0, |_| {})).unwrap();
    let (status, body) = session(&Client::new(), &emu, "wrong").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"code": 400, "errors": {}, "message": "Invalid authentication information", "name": "BadRequest"})
    );
}

#[tokio::test]
async fn users_come_in_pages_with_a_cursor_that_is_null_at_the_end() {
    let emu = Emulator::start(seed(250, |_| {})).unwrap();
    let http = Client::new();
    let token = token(&http, &emu).await;
    let (status, _, first) = users(&http, &emu, Some(&token), "organization_id=acme").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            first["data"].as_array().unwrap().len(),
            first["limit"].as_u64()
        ),
        (100, Some(100))
    );
    let cursor = first["cursor"].as_str().unwrap();
    let (_, _, second) = users(
        &http,
        &emu,
        Some(&token),
        &format!("organization_id=acme&$cursor={cursor}"),
    )
    .await;
    assert_eq!(second["data"][0]["id"], "u100");
    let cursor = second["cursor"].as_str().unwrap();
    let (_, _, last) = users(
        &http,
        &emu,
        Some(&token),
        &format!("organization_id=acme&$cursor={cursor}"),
    )
    .await;
    assert_eq!(last["data"].as_array().unwrap().len(), 50);
    assert_eq!(last["cursor"], Value::Null);
}

#[tokio::test]
async fn reads_without_a_valid_token_get_401() {
    let emu = Emulator::start(seed(1, |_| {})).unwrap();
    let http = Client::new();
    let (status, _, _) = users(&http, &emu, None, "organization_id=acme").await;
    assert_eq!(status, 401);
    let token = token(&http, &emu).await;
    emu.didomi().expire_sessions();
    let (status, _, _) = users(&http, &emu, Some(&token), "organization_id=acme").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn organization_id_is_required_and_must_be_the_keys() {
    let emu = Emulator::start(seed(1, |_| {})).unwrap();
    let http = Client::new();
    let token = token(&http, &emu).await;
    let (status, _, _) = users(&http, &emu, Some(&token), "").await;
    assert_eq!(status, 400);
    let (status, _, body) = users(&http, &emu, Some(&token), "organization_id=globex").await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("organization"));
}

#[tokio::test]
async fn a_key_without_the_consents_api_gets_403_saying_so() {
    let emu = Emulator::start(seed(1, |d| d["keys"][0]["consents_api"] = json!(false))).unwrap();
    let http = Client::new();
    let token = token(&http, &emu).await;
    let (status, _, body) = users(&http, &emu, Some(&token), "organization_id=acme").await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("Consents API"));
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    let emu = Emulator::start(seed(1, |d| {
        d["rate_limit"] = json!({"requests": 2, "window_secs": 15});
    }))
    .unwrap();
    let http = Client::new();
    let token = token(&http, &emu).await;
    for _ in 0..2 {
        let (status, _, _) = users(&http, &emu, Some(&token), "organization_id=acme").await;
        assert_eq!(status, 200);
    }
    let (status, headers, body) = users(&http, &emu, Some(&token), "organization_id=acme").await;
    assert_eq!(status, 429);
    assert_eq!(body["name"], "TooManyRequests");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15).contains(&retry_after));
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .contains("remaining=0")
    );
    assert_eq!(headers["ratelimit-policy"].to_str().unwrap(), "2;w=15");
}

#[tokio::test]
async fn non_gdpr_users_are_returned_only_when_asked_for() {
    let emu = Emulator::start(seed(2, |d| d["users"][1]["regulation"] = json!("cpra"))).unwrap();
    let http = Client::new();
    let token = token(&http, &emu).await;
    let (_, _, gdpr) = users(&http, &emu, Some(&token), "organization_id=acme").await;
    assert_eq!(gdpr["data"].as_array().unwrap().len(), 1);
    let (_, _, cpra) = users(
        &http,
        &emu,
        Some(&token),
        "organization_id=acme&regulation=cpra",
    )
    .await;
    assert_eq!(cpra["data"][0]["id"], "u1");
}
