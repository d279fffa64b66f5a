//! The Didomi API client against the emulator's Didomi API: the cursor walk,
//! throttling, session expiry and the configuration errors an operator must
//! be able to act on.

use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::didomi_api::{DidomiApiClient, DidomiApiError};
use didomi_cpc_sync::adapters::http::http_client;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::didomi::{self, settings, users};
use crate::support::inprocess::fast_policy;

fn start(users: Vec<Value>, edit: impl FnOnce(&mut Value)) -> EmulatorHandle {
    Emulator::start(didomi::seed(0, didomi::didomi_section(users, edit))).unwrap()
}

fn client(emulator: &EmulatorHandle, edit: impl FnOnce(&mut Value)) -> DidomiApiClient {
    DidomiApiClient::new(http_client(), &settings(emulator, edit), fast_policy())
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// Every user id, page by page, following cursors to the end.
async fn walk(client: &DidomiApiClient) -> Result<(Vec<String>, usize), DidomiApiError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = client.users_page(cursor.as_deref(), deadline()).await?;
        pages += 1;
        ids.extend(
            page.users
                .iter()
                .map(|user| user["id"].as_str().unwrap().to_string()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((ids, pages)),
        }
    }
}

#[tokio::test]
async fn the_cursor_walk_reads_every_user_of_every_page_once() {
    let emulator = start(users(250), |_| {});
    let (ids, pages) = walk(&client(&emulator, |_| {})).await.unwrap();
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 250);
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 250);
}

#[tokio::test]
async fn one_session_serves_the_whole_walk() {
    let emulator = start(users(250), |_| {});
    walk(&client(&emulator, |_| {})).await.unwrap();
    assert_eq!(emulator.didomi().sessions_created(), 1);
}

#[tokio::test]
async fn a_token_without_exp_is_used_for_the_documented_hour() {
    let emulator = start(users(250), |section| section["jwt_exp"] = json!(false));
    walk(&client(&emulator, |_| {})).await.unwrap();
    assert_eq!(emulator.didomi().sessions_created(), 1);
}

#[tokio::test]
async fn a_429_in_the_middle_waits_retry_after_and_the_walk_completes() {
    let emulator = start(users(250), |_| {});
    emulator.didomi().throttle(1, 1, 1);
    let started = std::time::Instant::now();
    let (ids, _) = walk(&client(&emulator, |_| {})).await.unwrap();
    assert_eq!(ids.len(), 250);
    assert_eq!(emulator.didomi().throttled(), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
}

#[tokio::test]
async fn a_429_whose_wait_passes_the_deadline_fails_at_once_as_retryable() {
    let emulator = start(users(10), |_| {});
    emulator.didomi().throttle(0, 1, 30);
    let client = client(&emulator, |_| {});
    let err = client
        .users_page(None, Instant::now() + Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, DidomiApiError::Deadline(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_session_expiring_mid_walk_is_renewed_once_and_the_walk_completes() {
    let emulator = start(users(250), |_| {});
    let client = client(&emulator, |_| {});
    let first = client.users_page(None, deadline()).await.unwrap();
    emulator.didomi().expire_sessions();
    let second = client
        .users_page(first.next_cursor.as_deref(), deadline())
        .await
        .unwrap();
    assert_eq!(second.users.len(), 100);
    assert_eq!(emulator.didomi().sessions_created(), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_a_configuration_error_naming_the_fields() {
    let emulator = start(users(1), |_| {});
    let client = client(&emulator, |api| api["secret"] = json!("wrong"));
    let err = client.users_page(None, deadline()).await.unwrap_err();
    assert!(
        matches!(err, DidomiApiError::BadCredentials { status: 400, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("didomi_api.secret"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the secret is never echoed: {err}"
    );
}

#[tokio::test]
async fn a_key_without_the_consents_api_says_so_and_points_to_the_export() {
    let emulator = start(users(1), |section| {
        section["keys"][0]["consents_api"] = json!(false);
    });
    let err = client(&emulator, |_| {})
        .users_page(None, deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DidomiApiError::NoConsentsApiAccess { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--from-export"), "{err}");
}

#[tokio::test]
async fn an_organization_the_key_does_not_belong_to_is_named() {
    let emulator = start(users(1), |_| {});
    let err = client(&emulator, |api| api["organization_id"] = json!("globex"))
        .users_page(None, deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DidomiApiError::UnknownOrganization { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("didomi_api.organization_id"),
        "{err}"
    );
}

#[tokio::test]
async fn non_gdpr_users_are_not_returned_by_default() {
    let mut all = users(3);
    all[1]["regulation"] = json!("cpra");
    let emulator = start(all, |_| {});
    let (ids, _) = walk(&client(&emulator, |_| {})).await.unwrap();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn users_are_served_as_didomi_stores_them() {
    let emulator = start(didomi::fixture_users(), |_| {});
    let page = client(&emulator, |_| {})
        .users_page(None, deadline())
        .await
        .unwrap();
    assert_eq!(page.users, didomi::fixture_users());
    assert_eq!(page.next_cursor, None);
}
