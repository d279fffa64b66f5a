//! The pass's order of steps over fake ports: lock before reading, post
//! before advancing, release whatever happens, and no advance on failure.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::domain::cpc::{CHANNEL_EMAIL, ConsentRow};
use crate::domain::decision::ConsentValue;
use crate::domain::reverse::ChangedRow;

const PURPOSE: &str = "10000000-0000-0000-0000-000000000003";
const UNSUBSCRIBE: i32 = 534_120_007;

#[derive(Debug, thiserror::Error)]
#[error("fake failure (retryable: {0})")]
struct Fail(bool);

impl PortError for Fail {
    fn is_retryable(&self) -> bool {
        self.0
    }
}

struct Rows(Vec<ChangedRow>);

impl ChangedRows for Rows {
    type Error = Fail;
    async fn own_user(&self, _deadline: Instant) -> Result<Uuid, Fail> {
        Ok(Uuid::from_u128(1))
    }
    async fn changed_consent_rows(
        &self,
        _since: DateTime<Utc>,
        _own_user: Uuid,
        _sources: &[i32],
        _deadline: Instant,
    ) -> Result<Vec<ChangedRow>, Fail> {
        Ok(self.0.clone())
    }
}

#[derive(Default)]
struct Didomi {
    fail_posts: Option<bool>,
    posted: Mutex<Vec<Value>>,
}

impl DidomiEvents for Didomi {
    type Error = Fail;
    async fn user(&self, _id: &str, _deadline: Instant) -> Result<Option<Value>, Fail> {
        Ok(Some(json!({
            "id": "u1", "organization_user_id": "jane@example.com",
            "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": true}]}
        })))
    }
    async fn post_events(&self, events: &[Value], _deadline: Instant) -> Result<usize, Fail> {
        if let Some(retryable) = self.fail_posts {
            return Err(Fail(retryable));
        }
        self.posted.lock().unwrap().extend_from_slice(events);
        Ok(1)
    }
}

/// A store recording every call, with the watermark and lock in memory.
#[derive(Default)]
struct Memory {
    calls: Mutex<Vec<String>>,
    watermark: Mutex<Option<Watermark>>,
    locked: Option<StateError>,
}

impl WatermarkStore for Memory {
    async fn lock(&self, holder: &str, lease: Duration) -> Result<Held, StateError> {
        self.calls.lock().unwrap().push("lock".into());
        if let Some(error) = &self.locked {
            return Err(error.clone());
        }
        Ok(Held {
            holder: holder.into(),
            expires_at: Utc::now() + chrono::Duration::from_std(lease).unwrap(),
            watermark: self.watermark.lock().unwrap().clone(),
            version: 0,
        })
    }
    async fn advance(&self, _held: &Held, to: &Watermark) -> Result<(), StateError> {
        self.calls.lock().unwrap().push("advance".into());
        *self.watermark.lock().unwrap() = Some(to.clone());
        Ok(())
    }
    async fn release(&self, _held: &Held) -> Result<(), StateError> {
        self.calls.lock().unwrap().push("release".into());
        Ok(())
    }
}

fn config() -> IntegrationConfig {
    let document: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/integration-config.json"
    ))
    .unwrap();
    IntegrationConfig::from_document(&document, false)
        .unwrap()
        .config
}

fn unsubscribe() -> ChangedRow {
    ChangedRow {
        row: ConsentRow {
            id: Uuid::from_u128(7),
            contact_point: "jane@example.com".into(),
            channel: CHANNEL_EMAIL,
            consent_type: None,
            purpose_id: Some(PURPOSE.parse().unwrap()),
            topic_id: None,
            value: Some(ConsentValue::OptedOut),
            reason: None,
            state: 0,
            modified_on: "2026-12-01T10:00:00Z".parse().unwrap(),
            modified_by: Some(Uuid::from_u128(2)),
            etag: "W/\"1\"".into(),
        },
        source: Some(UNSUBSCRIBE),
    }
}

fn options(dry_run: bool) -> PassOptions {
    PassOptions {
        dry_run,
        holder: "test".into(),
        deadline: Instant::now() + Duration::from_secs(30),
    }
}

async fn run(
    didomi: &Didomi,
    store: &Memory,
    dry_run: bool,
) -> Result<ReverseSummary, ReverseError> {
    let mut out = Vec::new();
    Pass {
        rows: &Rows(vec![unsubscribe()]),
        didomi,
        state: store,
        config: &config(),
        own_user: Uuid::from_u128(1),
    }
    .run(&options(dry_run), &mut out)
    .await
}

#[tokio::test]
async fn the_watermark_advances_after_the_post_and_the_lock_is_released() {
    let (didomi, store) = (Didomi::default(), Memory::default());
    let summary = run(&didomi, &store, false).await.unwrap();
    assert_eq!(summary.events, 1);
    assert_eq!(didomi.posted.lock().unwrap().len(), 1);
    assert_eq!(*store.calls.lock().unwrap(), ["lock", "advance", "release"]);
    assert_eq!(
        store.watermark.lock().unwrap().clone().unwrap().modifiedon,
        unsubscribe().row.modified_on
    );
}

#[tokio::test]
async fn a_failed_post_keeps_the_watermark_releases_the_lock_and_says_whether_to_retry() {
    for retryable in [true, false] {
        let didomi = Didomi {
            fail_posts: Some(retryable),
            ..Didomi::default()
        };
        let store = Memory::default();
        let error = run(&didomi, &store, false).await.unwrap_err();
        assert!(matches!(error, ReverseError::Didomi { .. }), "{error:?}");
        assert_eq!(error.is_retryable(), retryable);
        assert_eq!(*store.calls.lock().unwrap(), ["lock", "release"]);
        assert!(store.watermark.lock().unwrap().is_none());
    }
}

#[tokio::test]
async fn a_held_lock_stops_the_pass_before_anything_is_read_or_posted() {
    let didomi = Didomi::default();
    let store = Memory {
        locked: Some(StateError::Locked {
            holder: "lambda/x".into(),
            expires_at: Utc::now(),
        }),
        ..Memory::default()
    };
    let error = run(&didomi, &store, false).await.unwrap_err();
    assert_eq!(error.kind(), "PassAlreadyRunning");
    assert!(error.is_retryable());
    assert!(didomi.posted.lock().unwrap().is_empty());
    assert_eq!(*store.calls.lock().unwrap(), ["lock"]);
}

#[tokio::test]
async fn a_dry_run_posts_nothing_and_keeps_the_watermark() {
    let (didomi, store) = (Didomi::default(), Memory::default());
    let summary = run(&didomi, &store, true).await.unwrap();
    assert_eq!(summary.events, 1);
    assert!(didomi.posted.lock().unwrap().is_empty());
    assert_eq!(*store.calls.lock().unwrap(), ["lock", "release"]);
}
