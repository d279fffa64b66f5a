//! The reverse sync's DynamoDB state (`adapters::dynamodb_state`) under the
//! real pass, against `moto_server` with the real AWS SDK and the emulator as
//! Dataverse and Didomi: the watermark advances after a good pass and stays
//! on a Didomi 429 or 5xx, a watermark moved by someone else fails the pass
//! without being overwritten (and nothing is posted twice), a held lock
//! refuses a second pass, and an expired one is taken over.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::dynamodb_state::DynamoStateStore;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::service::reverse::{
    Held, Pass, PassOptions, ReverseError, ReverseSummary, StateError, Watermark, WatermarkStore,
};
use tokio::time::Instant;

use crate::reverse_sync::{
    NEWS_ROW, PERSON, PURPOSE_ROW, UNSUBSCRIBE, own_user, seed, unsubscribe,
};
use crate::support::didomi::settings;
use crate::support::inprocess::{client_for, config_for, fast_policy};
use crate::support::moto::MotoServer;

const TABLE: &str = "reverse-sync-state";

struct World {
    emulator: EmulatorHandle,
    moto: MotoServer,
    store: DynamoStateStore,
}

async fn world() -> World {
    let emulator = Emulator::start(seed()).unwrap();
    let moto = MotoServer::start().await;
    moto.create_state_table(TABLE).await;
    let store = DynamoStateStore::new(moto.dynamodb(), TABLE);
    World {
        emulator,
        moto,
        store,
    }
}

async fn pass<S: WatermarkStore>(
    emulator: &EmulatorHandle,
    store: &S,
) -> Result<ReverseSummary, ReverseError> {
    let config = config_for(emulator, |_| {});
    let dataverse = client_for(emulator, &config, fast_policy());
    let own = own_user(emulator).await;
    let didomi = DidomiApiClient::new(http_client(), &settings(emulator, |_| {}), fast_policy());
    let options = PassOptions {
        dry_run: false,
        holder: "test".into(),
        deadline: Instant::now() + Duration::from_secs(60),
    };
    Pass {
        rows: &dataverse,
        didomi: &didomi,
        state: store,
        config: &config,
        own_user: own,
    }
    .run(&options, &mut std::io::sink())
    .await
}

fn modifiedon(emulator: &EmulatorHandle, row: &str) -> DateTime<Utc> {
    emulator
        .consents()
        .into_iter()
        .find(|r| r["msdynmkt_contactpointconsent4id"] == row)
        .unwrap()["modifiedon"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn at(text: &str) -> Watermark {
    Watermark {
        modifiedon: text.parse().unwrap(),
    }
}

impl World {
    async fn lock_item(&self) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.moto
            .dynamodb()
            .get_item()
            .table_name(TABLE)
            .key("pk", AttributeValue::S("lock".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }

    async fn put_watermark(&self, modifiedon: &str, version: u64) {
        self.moto
            .dynamodb()
            .put_item()
            .table_name(TABLE)
            .item("pk", AttributeValue::S("watermark".into()))
            .item("modifiedon", AttributeValue::S(modifiedon.into()))
            .item("version", AttributeValue::N(version.to_string()))
            .send()
            .await
            .unwrap();
    }

    async fn put_lock(&self, holder: &str, expires_at: DateTime<Utc>) {
        self.moto.put_state_lock(TABLE, holder, expires_at).await;
    }

    fn changed_rows_queries(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|request| request.path.contains("msdynmkt_contactpointconsent4s?"))
            .count()
    }
}

#[tokio::test]
async fn the_dynamodb_watermark_advances_after_a_good_pass_and_the_lock_is_released() {
    let world = world().await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let summary = pass(&world.emulator, &world.store).await.unwrap();
    assert_eq!(summary.events, 1, "{summary:?}");
    let edit = modifiedon(&world.emulator, NEWS_ROW);
    assert_eq!(
        world.store.read().await.unwrap(),
        (Some(Watermark { modifiedon: edit }), 1)
    );
    assert!(world.lock_item().await.is_none(), "the lock is released");

    // The next edit moves it again, one version on.
    unsubscribe(&world.emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
    let second = pass(&world.emulator, &world.store).await.unwrap();
    assert_eq!(second.watermark_before, Some(edit));
    let (watermark, version) = world.store.read().await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        watermark.unwrap().modifiedon,
        modifiedon(&world.emulator, PURPOSE_ROW)
    );
    assert_eq!(world.emulator.didomi().events().len(), 2);
}

#[tokio::test]
async fn a_didomi_429_or_5xx_leaves_the_dynamodb_watermark_where_it_was() {
    for status in [429, 503] {
        let world = world().await;
        world.put_watermark("2025-01-01T00:00:00Z", 3).await;
        unsubscribe(&world.emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
        // fast_policy makes 4 attempts: every one fails.
        world.emulator.didomi().fail_event_posts(&[status; 4]);
        let failed = pass(&world.emulator, &world.store).await.unwrap_err();
        assert!(
            matches!(
                failed,
                ReverseError::Didomi {
                    retryable: true,
                    ..
                }
            ),
            "{status}: {failed:?}"
        );
        assert!(world.emulator.didomi().events().is_empty());
        assert_eq!(
            world.store.read().await.unwrap(),
            (Some(at("2025-01-01T00:00:00Z")), 3),
            "{status}"
        );
        assert!(world.lock_item().await.is_none(), "{status}: released");
        // The next pass posts the same event and moves the watermark.
        let summary = pass(&world.emulator, &world.store).await.unwrap();
        assert_eq!(summary.events, 1);
        assert_eq!(world.store.read().await.unwrap().1, 4);
    }
}

/// The state table, with someone else moving the watermark between this
/// pass's read and its advance.
struct MovedMeanwhile<'a> {
    world: &'a World,
}

impl WatermarkStore for MovedMeanwhile<'_> {
    async fn lock(&self, holder: &str, lease: Duration) -> Result<Held, StateError> {
        self.world.store.lock(holder, lease).await
    }

    async fn advance(&self, held: &Held, to: &Watermark) -> Result<(), StateError> {
        self.world.put_watermark("2020-01-01T00:00:00Z", 9).await;
        self.world.store.advance(held, to).await
    }

    async fn release(&self, held: &Held) -> Result<(), StateError> {
        self.world.store.release(held).await
    }
}

#[tokio::test]
async fn a_watermark_moved_by_someone_else_fails_the_pass_without_moving_it_or_posting_twice() {
    let world = world().await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let failed = pass(&world.emulator, &MovedMeanwhile { world: &world })
        .await
        .unwrap_err();
    assert!(
        matches!(
            failed,
            ReverseError::State(StateError::Conflict { expected: 0 })
        ),
        "{failed:?}"
    );
    assert!(failed.is_retryable());
    assert_eq!(world.emulator.didomi().events().len(), 1, "posted once");
    assert_eq!(
        world.store.read().await.unwrap(),
        (Some(at("2020-01-01T00:00:00Z")), 9),
        "the other writer's watermark stays"
    );
    assert!(world.lock_item().await.is_none(), "released");
    // The next pass re-reads the edit: Didomi holds it already, nothing is posted.
    let posts = world.emulator.didomi().event_posts();
    let again = pass(&world.emulator, &world.store).await.unwrap();
    assert_eq!(again.events, 0, "{again:?}");
    assert_eq!(world.emulator.didomi().event_posts(), posts);
    assert_eq!(world.emulator.didomi().events().len(), 1);
    assert_eq!(world.store.read().await.unwrap().1, 10);
}

#[tokio::test]
async fn a_held_lock_refuses_a_second_pass_before_it_reads_or_posts() {
    let world = world().await;
    world.put_watermark("2025-01-01T00:00:00Z", 1).await;
    let until = Utc::now() + chrono::Duration::minutes(10);
    world.put_lock("lambda/0f0f", until).await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let refused = pass(&world.emulator, &world.store).await.unwrap_err();
    match &refused {
        ReverseError::State(StateError::Locked { holder, expires_at }) => {
            assert_eq!(holder, "lambda/0f0f");
            assert_eq!(expires_at.timestamp(), until.timestamp());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(refused.is_retryable());
    assert_eq!(world.changed_rows_queries(), 0, "nothing was read");
    assert_eq!(world.emulator.didomi().event_posts(), 0);
    assert!(
        world.lock_item().await.is_some(),
        "the holder keeps its lock"
    );
    assert_eq!(world.store.read().await.unwrap().1, 1);
}

#[tokio::test]
async fn an_expired_lock_is_taken_over() {
    let world = world().await;
    world
        .put_lock("lambda/crashed", Utc::now() - chrono::Duration::minutes(1))
        .await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let summary = pass(&world.emulator, &world.store).await.unwrap();
    assert_eq!(summary.events, 1);
    assert_eq!(world.store.read().await.unwrap().1, 1);
    assert!(
        world.lock_item().await.is_none(),
        "taken over, then released"
    );
}
