//! Delivery is at-least-once and unordered (SQS standard queues, Didomi
//! retries): whatever the order, the batching and the duplicates, the consent
//! table must end up as if every webhook had been applied once, in the order
//! users made their choices. The reference is exactly that: every bare fixture
//! of `events/` processed alone, in event-time order, on a fresh emulator.
//! [`inprocess::table`] keeps the marker text, so equal tables mean the same
//! decision and the same winning event for every row.

use crate::support::inprocess;

use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::dataverse::DataverseClient;
use didomi_cpc_sync::service::{MessageOutcome, SyncService};
use inprocess::{
    RowView, demo_seed_json, event, has_no_duplicates, plans, process, root, seed_from, service,
    table,
};
use serde_json::Value;

/// Time for one batch to finish.
const BUDGET: Duration = Duration::from_secs(20);
/// `msdynmkt_value` OptedOut.
const OPTED_OUT: i64 = 534_120_002;
/// The one-click opt-out: jane's newest event.
const ONE_CLICK: &str = "event-created-one-click-opt-out.json";
const ONE_CLICK_ID: &str = "9d0c6b2e-8f1a-4e3d-b5c7-a9e8f7d6c5b4";
/// The preference-centre opt-in: jane's oldest event.
const OPT_IN: &str = "event-created-opt-in.json";
const JANE: &str = "jane.doe@example.com";

/// A bare webhook envelope from `events/`.
#[derive(Clone, Debug)]
struct Fixture {
    name: String,
    webhook: Value,
}

type Service = SyncService<DataverseClient>;

/// Every bare webhook envelope of `events/` (not the SQS batch, the API
/// Gateway request, the reverse sync's scheduled event or the SAM environment
/// file), sorted by file name.
fn fixtures() -> Vec<Fixture> {
    const NOT_WEBHOOKS: [&str; 4] = [
        "sqs-batch.json",
        "http-api-request.json",
        "scheduled-reverse-sync.json",
        "env.json",
    ];
    let mut names: Vec<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json") && !NOT_WEBHOOKS.contains(&name.as_str()))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures went missing: {names:?}");
    names
        .into_iter()
        .map(|name| Fixture {
            webhook: event(&name),
            name,
        })
        .collect()
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|fixture| fixture.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// A fresh demo-seed emulator and a service against it.
async fn fresh() -> (EmulatorHandle, Service) {
    let emulator = Emulator::start(seed_from(demo_seed_json())).unwrap();
    let service = service(&emulator).await;
    (emulator, service)
}

/// The fixtures sorted by the plan's `occurred_at`, then event id (then name,
/// for a total order); skips without a time come first.
fn event_time_order(service: &Service) -> Vec<Fixture> {
    let mut keyed: Vec<_> = fixtures()
        .into_iter()
        .map(|fixture| {
            let plan = plans(std::slice::from_ref(&fixture.webhook), service)
                .pop()
                .unwrap();
            let key = match plan {
                Ok(plan) => (plan.occurred_at, plan.event_id),
                Err(_) => (None, None),
            };
            (key, fixture)
        })
        .collect();
    keyed.sort_by(|(a, x), (b, y)| (a, &x.name).cmp(&(b, &y.name)));
    keyed.into_iter().map(|(_, fixture)| fixture).collect()
}

fn names(fixtures: &[Fixture]) -> Vec<&str> {
    fixtures
        .iter()
        .map(|fixture| fixture.name.as_str())
        .collect()
}

/// Processes `batches` one after the other; every outcome with its fixture name.
async fn run_batches(service: &Service, batches: &[Vec<Fixture>]) -> Vec<(String, MessageOutcome)> {
    let mut all = Vec::new();
    for batch in batches {
        let webhooks: Vec<Value> = batch.iter().map(|f| f.webhook.clone()).collect();
        let outcomes = process(service, &webhooks, BUDGET).await;
        assert_eq!(outcomes.len(), batch.len(), "one outcome per message");
        all.extend(batch.iter().map(|f| f.name.clone()).zip(outcomes));
    }
    all
}

fn singletons(fixtures: &[Fixture]) -> Vec<Vec<Fixture>> {
    fixtures
        .iter()
        .map(|fixture| vec![fixture.clone()])
        .collect()
}

fn failures(outcomes: &[(String, MessageOutcome)]) -> Vec<&(String, MessageOutcome)> {
    outcomes.iter().filter(|(_, o)| o.is_failure()).collect()
}

/// Brings a fresh emulator to the reference state (one webhook per batch, in
/// event-time order).
async fn apply_reference(service: &Service) {
    let ordered = event_time_order(service);
    let outcomes = run_batches(service, &singletons(&ordered)).await;
    assert!(failures(&outcomes).is_empty(), "{outcomes:#?}");
}

/// The reference table, with sanity checks on it.
async fn reference() -> Vec<RowView> {
    let (emulator, service) = fresh().await;
    apply_reference(&service).await;
    let rows = table(&emulator);
    assert!(has_no_duplicates(&rows), "{rows:#?}");
    for address in [
        JANE,
        "john.o'brien+news@example.com",
        "ana.garcia@example.org",
    ] {
        assert!(
            rows.iter()
                .any(|row| row.0 == address && row.5.starts_with("Didomi event ")),
            "the reference has no synced row for {address}: {rows:#?}"
        );
    }
    rows
}

/// Asserts the end state of a run against the reference.
fn assert_matches_reference(
    emulator: &EmulatorHandle,
    reference: &[RowView],
    outcomes: &[(String, MessageOutcome)],
    context: &str,
) {
    let failed = failures(outcomes);
    assert!(failed.is_empty(), "{context}: failed messages {failed:#?}");
    let rows = table(emulator);
    assert!(has_no_duplicates(&rows), "{context}: duplicates {rows:#?}");
    assert_eq!(
        rows, reference,
        "{context}: table differs from the reference"
    );
}

#[tokio::test]
async fn every_fixture_twice_in_shuffled_batches_gives_the_reference_table() {
    let reference = reference().await;
    for seed in 0..12u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut deliveries: Vec<Fixture> = fixtures().into_iter().chain(fixtures()).collect();
        rng.shuffle(&mut deliveries);
        let mut batches = Vec::new();
        let mut rest = deliveries.as_slice();
        while !rest.is_empty() {
            let size = rng.usize(1..=10).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            batches.push(batch.to_vec());
            rest = tail;
        }
        let (emulator, service) = fresh().await;
        let outcomes = run_batches(&service, &batches).await;
        let layout: Vec<Vec<&str>> = batches.iter().map(|b| names(b)).collect();
        assert_matches_reference(
            &emulator,
            &reference,
            &outcomes,
            &format!("seed {seed}, batches {layout:?}"),
        );
    }
}

#[tokio::test]
async fn reverse_event_time_order_gives_the_reference_table() {
    let reference = reference().await;
    let (emulator, service) = fresh().await;
    let mut ordered = event_time_order(&service);
    ordered.reverse();
    let outcomes = run_batches(&service, &singletons(&ordered)).await;
    assert_matches_reference(
        &emulator,
        &reference,
        &outcomes,
        &format!("newest first: {:?}", names(&ordered)),
    );
}

#[tokio::test]
async fn all_fixtures_in_one_batch_give_the_reference_table() {
    let reference = reference().await;
    let (emulator, service) = fresh().await;
    // Newest first, so the batch only comes out right if the planner orders it.
    let mut ordered = event_time_order(&service);
    ordered.reverse();
    let outcomes = run_batches(&service, std::slice::from_ref(&ordered)).await;
    assert_matches_reference(
        &emulator,
        &reference,
        &outcomes,
        &format!("one batch: {:?}", names(&ordered)),
    );
}

#[tokio::test]
async fn interleaved_duplicates_within_one_batch_give_the_reference_table() {
    let reference = reference().await;
    let (emulator, service) = fresh().await;
    let mut ordered = event_time_order(&service);
    ordered.reverse();
    // A, B, A, C, B, D, C, …, Z, Y, Z: every webhook twice, the copies apart.
    let mut batch = vec![ordered[0].clone()];
    for pair in ordered.windows(2) {
        batch.push(pair[1].clone());
        batch.push(pair[0].clone());
    }
    batch.push(ordered[ordered.len() - 1].clone());
    assert_eq!(batch.len(), 2 * ordered.len());
    let outcomes = run_batches(&service, std::slice::from_ref(&batch)).await;
    assert_matches_reference(
        &emulator,
        &reference,
        &outcomes,
        &format!("one batch: {:?}", names(&batch)),
    );
}

#[tokio::test]
async fn replaying_everything_after_the_fact_issues_no_write() {
    let reference = reference().await;
    let (emulator, service) = fresh().await;
    apply_reference(&service).await;
    assert_eq!(table(&emulator), reference);
    emulator.clear_requests();

    // Every webhook again, twice, newest first, in batches of four.
    let mut ordered = event_time_order(&service);
    ordered.reverse();
    let replays: Vec<Fixture> = ordered.iter().chain(&ordered).cloned().collect();
    let batches: Vec<Vec<Fixture>> = replays.chunks(4).map(<[Fixture]>::to_vec).collect();
    let outcomes = run_batches(&service, &batches).await;

    let writes: Vec<String> = emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/api/data/") && request.method != "GET")
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    // Each batch's one request is its `$batch` of queries; nothing more.
    assert_eq!(
        writes,
        vec!["POST /api/data/v9.2/$batch".to_string(); batches.len()],
        "replays wrote: {writes:#?}"
    );
    let mut writing = 0;
    for (name, outcome) in &outcomes {
        match outcome {
            MessageOutcome::Skipped { .. } => {}
            MessageOutcome::Written {
                created: 0,
                updated: 0,
                stale,
                replayed,
            } if stale + replayed > 0 => writing += 1,
            other => panic!("replayed {name} gave {other:?}; all outcomes: {outcomes:#?}"),
        }
    }
    assert!(
        writing >= 8,
        "the replays should include writing webhooks: {outcomes:#?}"
    );
    assert_eq!(table(&emulator), reference, "replays changed the table");
}

#[tokio::test]
async fn an_older_event_arriving_last_never_undoes_a_newer_choice() {
    let (emulator, service) = fresh().await;
    let newest = run_batches(&service, &[vec![fixture(ONE_CLICK)]]).await;
    assert!(
        matches!(newest[0].1, MessageOutcome::Written { .. }),
        "{newest:?}"
    );
    let jane_rows = |rows: Vec<RowView>| -> Vec<RowView> {
        rows.into_iter().filter(|row| row.0 == JANE).collect()
    };
    let after_newest = jane_rows(table(&emulator));
    // The purpose (active and inactive rows) and the three mapped topics.
    assert_eq!(after_newest.len(), 5, "{after_newest:#?}");
    for row in &after_newest {
        assert_eq!(row.3, OPTED_OUT, "{row:?}");
        assert!(row.5.contains(ONE_CLICK_ID), "{row:?}");
    }

    let oldest = run_batches(&service, &[vec![fixture(OPT_IN)]]).await;
    match &oldest[0].1 {
        MessageOutcome::Written {
            created: 0,
            updated: 0,
            stale,
            replayed: 0,
        } => assert_eq!(*stale, after_newest.len(), "{oldest:?}"),
        other => panic!("the older opt-in should be stale everywhere: {other:?}"),
    }
    assert_eq!(
        jane_rows(table(&emulator)),
        after_newest,
        "the older opt-in changed jane's rows"
    );
}
