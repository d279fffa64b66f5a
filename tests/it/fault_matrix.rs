//! The fault matrix: the sync service in-process against `tools/emulator`
//! with one injected fault per test (throttling, 5xx, slow answers, lost
//! answers, token trouble, missing application user, missing topics) and
//! hostile inputs (addresses, OData injection, huge preference lists).
//!
//! Every test checks the same invariant: the final consent table is the one
//! an identical fault-free run produces (or the untouched table when nothing
//! may be written), retries made no duplicate rows, and only the messages the
//! fault concerns failed.

use crate::support::inprocess;

use std::sync::Arc;
use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle, FaultRule, Seed};
use didomi_cpc_sync::adapters::dataverse::DataverseClient;
use didomi_cpc_sync::domain::cpc::{CONSENT_OPTED_IN, Purpose, Topic};
use didomi_cpc_sync::domain::decision::Target;
use didomi_cpc_sync::domain::writes::Catalog;
use didomi_cpc_sync::service::{MessageOutcome, Metadata, SyncService};
use inprocess::{
    RowView, client_for, config_for, dataverse_requests, demo_seed_json, event, fast_policy,
    has_no_duplicates, process, seed_from, seed_with_users, service_with, table,
};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Time each `process` call gets unless a test is about the budget.
const BUDGET: Duration = Duration::from_secs(10);
/// The Didomi purpose every mapping of the fixture configuration reads.
const DIDOMI_PURPOSE: &str = "marketing-communications-Xk3Pq9";
/// The Didomi preference holding `v-news`, `v-offers` and `v-events`.
const PREFERENCE: &str = "f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13";
/// The "Commercial" purpose of the demo seed.
const COMMERCIAL: &str = "10000000-0000-0000-0000-000000000003";
/// The inactive "Legacy partner offers" purpose of the demo seed.
const INACTIVE_PURPOSE: &str = "4c8d2f9a-0d4e-4b7a-8a51-7f3c2b1a0e99";
/// `$batch` as [`dataverse_requests`] reports it.
const BATCH: &str = "POST /api/data/v9.2/$batch";

/// What the first `$batch` of a batch (the queries, one GET part each) answers
/// before the faults, which target the writes' `$batch` (`body_contains: "PATCH "`).
const READS_OK: Option<u16> = Some(200);

// ---------------------------------------------------------------- helpers

/// An `event.created` of `user` at 09:`minute` selecting `values` (comma
/// separated) of [`PREFERENCE`] under an enabled [`DIDOMI_PURPOSE`].
fn webhook(event_id: &str, minute: u32, user: &str, values: &str) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": event_id, "created_at": format!("2025-03-14T09:{minute:02}:00Z"),
        "user": {"id": format!("u-{event_id}"), "organization_user_id": user},
        "consents": {"purposes": [{"id": DIDOMI_PURPOSE, "enabled": true,
            "values": {PREFERENCE: {"value": values}}}]}}}})
}

/// The batch most fault tests send: Jane (who has rows, so updates), two new
/// users (creates only) and an `event.deleted` that writes nothing.
fn standard_webhooks() -> Vec<Value> {
    vec![
        webhook("ev-jane", 1, "jane.doe@example.com", "v-news,v-events"),
        webhook("ev-user0", 2, "user0@example.com", "v-news,v-offers"),
        webhook("ev-user1", 3, "user1@example.com", "v-events"),
        event("event-deleted.json"),
    ]
}

/// Indices of the messages of [`standard_webhooks`] that write.
const WRITERS: [usize; 3] = [0, 1, 2];
/// Index of the message of [`standard_webhooks`] that writes nothing.
const NON_WRITER: usize = 3;

fn standard_seed() -> Seed {
    seed_with_users(2)
}

fn faults(rules: Value) -> Vec<FaultRule> {
    serde_json::from_value(rules).expect("valid fault rules")
}

/// An emulator on `seed` and a service against it (catalogue read, token
/// cached), the request log cleared.
async fn start(seed: Seed) -> (EmulatorHandle, SyncService<DataverseClient>) {
    let emulator = Emulator::start(seed).expect("the emulator starts");
    let service = service_with(&emulator, |_| {}, fast_policy()).await;
    emulator.clear_requests();
    (emulator, service)
}

/// The table an identical fault-free run of `webhooks` on `seed` (with the
/// configuration edited by `edit`) produces; every message must succeed.
async fn fault_free_table(
    seed: Seed,
    edit: impl FnOnce(&mut Value),
    webhooks: &[Value],
) -> Vec<RowView> {
    let emulator = Emulator::start(seed).expect("the emulator starts");
    let service = service_with(&emulator, edit, fast_policy()).await;
    let outcomes = process(&service, webhooks, BUDGET).await;
    assert!(
        outcomes.iter().all(|outcome| !outcome.is_failure()),
        "the fault-free run must succeed: {outcomes:?}"
    );
    let rows = table(&emulator);
    emulator.shutdown().await;
    rows
}

/// The invariant every fault test ends on: the consent table equals the
/// fault-free one and holds no duplicate row. Returns the table.
fn assert_final_table(
    emulator: &EmulatorHandle,
    expected: &[RowView],
    context: &str,
) -> Vec<RowView> {
    let rows = table(emulator);
    assert!(has_no_duplicates(&rows), "{context}: {rows:#?}");
    assert_eq!(rows, expected, "{context}");
    rows
}

/// The HTTP statuses of the `$batch` requests the emulator saw (`None`: dropped).
fn batch_statuses(emulator: &EmulatorHandle) -> Vec<Option<u16>> {
    emulator
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path.contains("$batch"))
        .map(|request| request.status)
        .collect()
}

fn token_requests(emulator: &EmulatorHandle) -> Vec<Option<u16>> {
    emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.contains("/oauth2/v2.0/token"))
        .map(|request| request.status)
        .collect()
}

fn is_written(outcome: &MessageOutcome) -> bool {
    matches!(outcome, MessageOutcome::Written { .. })
}

fn is_skipped(outcome: &MessageOutcome) -> bool {
    matches!(outcome, MessageOutcome::Skipped { .. })
}

fn is_failed(outcome: &MessageOutcome, want_retryable: bool) -> bool {
    matches!(outcome, MessageOutcome::Failed { retryable, .. } if *retryable == want_retryable)
}

/// The writers of [`standard_webhooks`] all written, the non-writer skipped.
fn assert_standard_success(outcomes: &[MessageOutcome]) {
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    for index in WRITERS {
        assert!(
            is_written(&outcomes[index]),
            "message {index}: {outcomes:?}"
        );
    }
    assert!(is_skipped(&outcomes[NON_WRITER]), "{outcomes:?}");
}

/// The writers of [`standard_webhooks`] all failed with `retryable`, the
/// non-writer still skipped: a fault never touches a message that writes nothing.
fn assert_writers_failed(outcomes: &[MessageOutcome], retryable: bool) {
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    for index in WRITERS {
        assert!(
            is_failed(&outcomes[index], retryable),
            "message {index} should fail with retryable={retryable}: {outcomes:?}"
        );
    }
    assert!(is_skipped(&outcomes[NON_WRITER]), "{outcomes:?}");
}

/// The purposes and topics the environment holds, to edit before use.
async fn purposes_and_topics(client: &DataverseClient) -> (Vec<Purpose>, Vec<Topic>) {
    let deadline = Instant::now() + BUDGET;
    (
        client.purposes(deadline).await.unwrap(),
        client.topics(deadline).await.unwrap(),
    )
}

fn add_mapping(document: &mut Value, id: &str, value: &str) {
    document["mappings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": id, "value": value}));
}

// ------------------------------------------------------------- 1. 429 burst

#[tokio::test]
async fn three_429s_on_batch_wait_retry_after_and_the_batch_succeeds() {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "body_contains": "PATCH ", "times": 3,
         "action": {"status": 429, "retry_after": 1}}
    ])));
    let started = Instant::now();
    let outcomes = process(&service, &webhooks, BUDGET).await;
    let elapsed = started.elapsed();
    assert_standard_success(&outcomes);
    assert_eq!(
        batch_statuses(&emulator),
        vec![READS_OK, Some(429), Some(429), Some(429), Some(200)],
        "three throttled attempts, then the same $batch once more"
    );
    assert!(
        elapsed >= Duration::from_secs(3),
        "three Retry-After: 1 waits were honoured: {elapsed:?}"
    );
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 2. 429 storm

#[tokio::test]
async fn endless_429_storm_on_batch_is_bounded_and_fails_the_writers_retryably() {
    let webhooks = standard_webhooks();
    let (emulator, service) = start(standard_seed()).await;
    let before = table(&emulator);
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "times": null,
         "action": {"status": 429, "retry_after": 1}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_writers_failed(&outcomes, true);
    let attempts = batch_statuses(&emulator);
    let max_attempts = fast_policy().max_attempts as usize;
    assert!(
        !attempts.is_empty() && attempts.len() <= max_attempts + 1,
        "at most {max_attempts} attempts plus one re-send of failed parts: {attempts:?}"
    );
    assert!(attempts.iter().all(|status| *status == Some(429)));
    assert_eq!(table(&emulator), before, "nothing written");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 3. 5xx

async fn two_server_errors_then_success(status: u16) {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "body_contains": "PATCH ", "times": 2,
         "action": {"status": status}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_standard_success(&outcomes);
    assert_eq!(
        batch_statuses(&emulator),
        vec![READS_OK, Some(status), Some(status), Some(200)],
        "HTTP {status} is retried with backoff"
    );
    assert_final_table(&emulator, &expected, &format!("HTTP {status}"));
    emulator.shutdown().await;
}

#[tokio::test]
async fn batch_502_twice_then_success_writes_the_expected_table() {
    two_server_errors_then_success(502).await;
}

#[tokio::test]
async fn batch_503_twice_then_success_writes_the_expected_table() {
    two_server_errors_then_success(503).await;
}

#[tokio::test]
async fn batch_504_twice_then_success_writes_the_expected_table() {
    two_server_errors_then_success(504).await;
}

// ------------------------------------------------------------- 4. slow answer

#[tokio::test]
async fn consent_query_slower_than_the_budget_fails_retryably_within_the_budget() {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    let before = table(&emulator);
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch",
         "body_contains": "GET /api/data/v9.2/msdynmkt_contactpointconsent4s",
         "action": {"delay_ms": 4000}}
    ])));
    let budget = Duration::from_millis(1500);
    let started = Instant::now();
    let outcomes = process(&service, &webhooks, budget).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed <= budget + Duration::from_secs(1),
        "returned {elapsed:?} after a {budget:?} budget"
    );
    assert_writers_failed(&outcomes, true);
    assert_eq!(table(&emulator), before, "nothing written");
    // The slow `$batch` of queries is abandoned (the emulator logs it only if
    // it finished); no `$batch` of writes follows.
    assert!(
        dataverse_requests(&emulator).len() <= 1,
        "the queries only: no writes without the consent rows: {:?}",
        dataverse_requests(&emulator)
    );

    // The queue delivers again; Dataverse is fast now.
    emulator.set_faults(vec![]);
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_standard_success(&outcomes);
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 5. lost answer

#[tokio::test]
async fn batch_answer_lost_after_the_writes_is_replayed_without_duplicates() {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "body_contains": "PATCH ",
         "action": {"drop": "after"}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    // What the product does: the dropped connection is a transport error, so
    // the whole `$batch` is sent again. The emulator had applied the first
    // one, so every create-only write (`If-None-Match: *`) of the re-send
    // answers 412; the client reports that as a retryable failure ("the next
    // delivery will see it") rather than as success. Updates (`If-Match: *`)
    // simply apply again. Every writer here has at least one create (Jane
    // holds only a purpose row, so her topic rows are creates), so all three
    // go back to the queue.
    assert_eq!(
        batch_statuses(&emulator),
        vec![READS_OK, None, Some(200)],
        "the lost answer is followed by one re-send of the whole $batch"
    );
    for index in WRITERS {
        assert!(is_failed(&outcomes[index], true), "{outcomes:?}");
        let MessageOutcome::Failed { error, .. } = &outcomes[index] else {
            unreachable!()
        };
        assert!(error.contains("412"), "{error}");
    }
    assert!(is_skipped(&outcomes[NON_WRITER]), "{outcomes:?}");
    assert_final_table(&emulator, &expected, "the first $batch was applied once");

    // The redelivery finds its own rows and replays them.
    emulator.set_faults(vec![]);
    emulator.clear_requests();
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_standard_success(&outcomes);
    for index in WRITERS {
        let MessageOutcome::Written {
            created, replayed, ..
        } = &outcomes[index]
        else {
            unreachable!()
        };
        assert_eq!(*created, 0, "message {index}: {outcomes:?}");
        assert!(*replayed > 0, "message {index}: {outcomes:?}");
    }
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 6. token expiry

#[tokio::test]
async fn token_expiring_at_the_batch_is_refreshed_once_and_the_batch_succeeds() {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "body_contains": "PATCH ",
         "action": {"expire_tokens": true}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_standard_success(&outcomes);
    assert_eq!(
        batch_statuses(&emulator),
        vec![READS_OK, Some(401), Some(200)]
    );
    assert_eq!(token_requests(&emulator), vec![Some(200)], "one refresh");
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 7. Entra down

#[tokio::test]
async fn token_endpoint_down_fails_the_writers_retryably_until_it_is_back() {
    let webhooks = standard_webhooks();
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;
    let (emulator, service) = start(standard_seed()).await;
    let before = table(&emulator);
    emulator.expire_tokens();
    emulator.set_faults(faults(json!([
        {"path_contains": "oauth2", "times": null, "action": {"status": 503}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_writers_failed(&outcomes, true);
    let MessageOutcome::Failed { error, .. } = &outcomes[0] else {
        unreachable!()
    };
    assert!(error.contains("Entra"), "{error}");
    assert!(!token_requests(&emulator).is_empty());
    assert!(
        token_requests(&emulator).len() <= fast_policy().max_attempts as usize,
        "token requests are bounded: {:?}",
        token_requests(&emulator)
    );
    // The cached token is tried once on the queries (401), then no more.
    assert!(
        batch_statuses(&emulator).iter().all(|s| *s == Some(401))
            && batch_statuses(&emulator).len() <= 1,
        "no $batch of writes: {:?}",
        batch_statuses(&emulator)
    );
    assert_eq!(table(&emulator), before, "nothing written");

    emulator.set_faults(vec![]);
    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert_standard_success(&outcomes);
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 8. no app user

#[tokio::test]
async fn not_an_application_user_is_not_retried_now_but_waits_in_the_queue_for_the_fix() {
    let webhooks = standard_webhooks();
    let (emulator, service) = start(standard_seed()).await;
    let before = table(&emulator);
    emulator.set_faults(faults(json!([
        {"method": "POST", "path_contains": "$batch", "times": null,
         "action": {"status": 403, "code": "0x80072560"}}
    ])));
    let outcomes = process(&service, &webhooks, BUDGET).await;
    // An administrator fixes this in Dataverse: retryable (backing off in the
    // queue, not the dead-letter queue), but not retried within the invocation.
    assert_writers_failed(&outcomes, true);
    for index in WRITERS {
        let MessageOutcome::Failed { error, .. } = &outcomes[index] else {
            unreachable!()
        };
        assert!(error.contains("Application User"), "{error}");
    }
    assert_eq!(batch_statuses(&emulator), vec![Some(403)], "no retries");
    assert_eq!(table(&emulator), before, "nothing written");
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 9. missing topic

#[tokio::test]
async fn only_the_message_mapped_to_a_missing_topic_fails() {
    const GHOST_TOPIC: &str = "0badf00d-0000-4000-8000-000000000001";
    let webhooks = vec![
        webhook("ev-a", 1, "user0@example.com", "v-news,v-ghost"),
        webhook("ev-b", 2, "user1@example.com", "v-news,v-ghost-free"),
    ];
    // The same webhooks without the ghost mapping: what every write that
    // does not concern the missing topic produces.
    let expected = fault_free_table(standard_seed(), |_| {}, &webhooks).await;

    let emulator = Emulator::start(standard_seed()).expect("the emulator starts");
    let config = config_for(&emulator, |document| {
        add_mapping(document, &format!("topic:{GHOST_TOPIC}"), "v-ghost");
    });
    let client = client_for(&emulator, &config, fast_policy());
    let (purposes, mut topics) = purposes_and_topics(&client).await;
    // The catalogue believes in a topic Dataverse does not have (deleted
    // since start-up, say).
    topics.push(Topic {
        id: GHOST_TOPIC.parse().unwrap(),
        name: "Ghost".into(),
        purpose_id: Some(COMMERCIAL.parse().unwrap()),
        active: true,
    });
    let own_user = client
        .who_am_i(tokio::time::Instant::now() + BUDGET)
        .await
        .unwrap();
    let service = SyncService::new(client, Arc::new(config)).with_metadata(Metadata {
        catalog: Catalog::new(purposes, topics),
        own_user,
        notes: Vec::new(),
    });
    let outcomes = process(&service, &webhooks, BUDGET).await;

    // Fixed by correcting the mapping: it waits in the queue, not the DLQ.
    assert!(is_failed(&outcomes[0], true), "{outcomes:?}");
    let MessageOutcome::Failed { error, .. } = &outcomes[0] else {
        unreachable!()
    };
    assert!(error.contains("404"), "{error}");
    assert!(error.contains("topic"), "{error}");
    assert!(is_written(&outcomes[1]), "{outcomes:?}");
    assert_eq!(
        batch_statuses(&emulator),
        vec![READS_OK, Some(200)],
        "one $batch of writes, no re-send of a 404"
    );

    let rows = table(&emulator);
    assert!(has_no_duplicates(&rows), "{rows:#?}");
    assert!(
        rows.iter().all(|row| row.2 != GHOST_TOPIC),
        "no row for the missing topic"
    );
    let user1_rows = rows
        .iter()
        .filter(|row| row.0 == "user1@example.com")
        .count();
    assert_eq!(user1_rows, 4, "B's rows are in the table: {rows:#?}");
    // A's other rows went through (each write is its own `$batch` part);
    // only its message fails, and it fails permanently.
    assert_eq!(rows, expected);
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 10. inactive parent

#[tokio::test]
async fn topic_under_an_inactive_purpose_is_written_with_a_non_fatal_warning() {
    const LEGACY_TOPIC: &str = "6d1e2f3a-4b5c-4d6e-8f70-112233445566";
    let seed = || {
        let mut seed = demo_seed_json();
        let purpose = seed["purposes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|purpose| purpose["id"] == INACTIVE_PURPOSE)
            .unwrap();
        assert_eq!(purpose["active"], false);
        purpose["topics"] =
            json!([{"id": LEGACY_TOPIC, "name": "Legacy newsletter", "active": true}]);
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": "00000000-0000-4000-8000-000000000000",
            "emailaddress1": "user0@example.com", "lastname": "User 0"}));
        seed_from(seed)
    };
    let webhooks = vec![webhook(
        "ev-legacy",
        1,
        "user0@example.com",
        "v-news,v-legacy",
    )];
    let with_legacy = |document: &mut Value| {
        add_mapping(document, &format!("topic:{LEGACY_TOPIC}"), "v-legacy");
    };
    let without_legacy = fault_free_table(seed(), |_| {}, &webhooks).await;

    let emulator = Emulator::start(seed()).expect("the emulator starts");
    let service = service_with(&emulator, with_legacy, fast_policy()).await;
    // Start-up would log this and go on: the problem is not fatal.
    let config = config_for(&emulator, with_legacy);
    let (purposes, topics) =
        purposes_and_topics(&client_for(&emulator, &config, fast_policy())).await;
    let problems = Catalog::new(purposes, topics).check(&config.targets());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].target,
        Target::Topic(LEGACY_TOPIC.parse().unwrap())
    );
    assert!(!problems[0].fatal, "{problems:?}");
    assert!(problems[0].problem.contains("inactive"), "{problems:?}");

    let outcomes = process(&service, &webhooks, BUDGET).await;
    assert!(is_written(&outcomes[0]), "{outcomes:?}");
    let rows = table(&emulator);
    assert!(has_no_duplicates(&rows), "{rows:#?}");
    let legacy: Vec<&RowView> = rows.iter().filter(|row| row.2 == LEGACY_TOPIC).collect();
    assert_eq!(legacy.len(), 1, "{rows:#?}");
    let (address, purpose, _, value, state, _) = legacy[0];
    assert_eq!(address, "user0@example.com");
    assert_eq!(
        purpose, INACTIVE_PURPOSE,
        "a topic row binds its parent purpose"
    );
    assert_eq!(*value, i64::from(CONSENT_OPTED_IN));
    assert_eq!(*state, 0, "an active row");
    let others: Vec<RowView> = rows
        .into_iter()
        .filter(|row| row.2 != LEGACY_TOPIC)
        .collect();
    assert_eq!(others, without_legacy);
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 11. hostile addresses

#[tokio::test]
async fn hostile_addresses_each_get_their_own_rows_only() {
    // Each sender's address breaks a naive query string or OData literal:
    // `'` must be doubled, `+` `&` `#` `%` percent-encoded, non-ASCII encoded
    // as UTF-8. The decoys are what a broken encoding would match instead.
    let senders = [
        "zoë.o'neil+a&b#c%d@exämple.com",
        "o'neil+a&b@example.com",
        "x#y@example.com",
        "c%41d@example.com",
        "o''neil@example.com",
        "ünïcødé+tag@exämple.com",
    ];
    let decoys = [
        "cad@example.com",
        "o'neil@example.com",
        "o'neil a&b@example.com",
        "x@example.com",
        "zoë.o'neil a@exämple.com",
        "ünïcødé tag@exämple.com",
    ];
    let mut seed = demo_seed_json();
    for (i, address) in senders.iter().chain(&decoys).enumerate() {
        assert!(address.chars().count() <= 100);
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-9000-{i:012}"),
            "emailaddress1": address, "lastname": format!("Hostile {i}")}));
    }
    let hostile: Vec<Value> = senders
        .iter()
        .enumerate()
        .map(|(i, address)| webhook(&format!("ev-{i}"), i as u32, address, "v-news,v-events"))
        .collect();
    // The same webhooks from plain addresses, on a plain seed.
    let plain: Vec<Value> = (0..senders.len())
        .map(|i| {
            webhook(
                &format!("ev-{i}"),
                i as u32,
                &format!("user{i}@example.com"),
                "v-news,v-events",
            )
        })
        .collect();
    let plain_rows = fault_free_table(seed_with_users(senders.len()), |_| {}, &plain).await;
    let mut expected: Vec<RowView> = plain_rows
        .into_iter()
        .map(|mut row| {
            if let Some(i) = row
                .0
                .strip_prefix("user")
                .and_then(|rest| rest.strip_suffix("@example.com"))
            {
                row.0 = senders[i.parse::<usize>().unwrap()].to_lowercase();
            }
            row
        })
        .collect();
    expected.sort();

    let emulator = Emulator::start(seed_from(seed)).expect("the emulator starts");
    let service = service_with(&emulator, |_| {}, fast_policy()).await;
    emulator.clear_requests();
    let outcomes = process(&service, &hostile, BUDGET).await;
    for (outcome, address) in outcomes.iter().zip(senders) {
        assert!(is_written(outcome), "{address}: {outcome:?}");
    }
    assert!(
        emulator
            .requests()
            .iter()
            .all(|request| request.status == Some(200)),
        "every query parsed: {:?}",
        emulator.requests()
    );
    let rows = table(&emulator);
    assert!(has_no_duplicates(&rows), "{rows:#?}");
    for address in senders {
        let own = rows
            .iter()
            .filter(|row| row.0 == address.to_lowercase())
            .count();
        assert_eq!(own, 4, "{address}: {rows:#?}");
    }
    for decoy in decoys {
        assert!(
            rows.iter().all(|row| row.0 != decoy.to_lowercase()),
            "{decoy} was cross-matched: {rows:#?}"
        );
    }
    assert_eq!(rows, expected);
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 12. OData injection

#[tokio::test]
async fn odata_injection_in_organization_user_id_matches_no_contact() {
    let injections = [
        "x' or 1 eq 1 or 'a",
        "' or ''='",
        "a@b.com' or contains(emailaddress1,'@')",
        "jane.doe@example.com' or 'a' eq 'a",
        "x') or (emailaddress1 ne null",
    ];
    let webhooks: Vec<Value> = injections
        .iter()
        .enumerate()
        .map(|(i, user)| webhook(&format!("ev-inj-{i}"), i as u32, user, "v-news"))
        .collect();
    let (emulator, service) = start(standard_seed()).await;
    let before = table(&emulator);
    let contacts_before = emulator.contacts();
    let outcomes = process(&service, &webhooks, BUDGET).await;
    for (outcome, user) in outcomes.iter().zip(injections) {
        let MessageOutcome::Skipped { reason } = outcome else {
            panic!("{user}: {outcome:?}");
        };
        assert!(
            reason
                .to_string()
                .contains("no contact has emailaddress1 equal to organization_user_id"),
            "{user}: no existing contact may match: {reason}"
        );
    }
    let requests = dataverse_requests(&emulator);
    assert_eq!(
        requests,
        vec![BATCH.to_string()],
        "one $batch of queries, nothing matched, so no writes"
    );
    assert!(
        emulator
            .requests()
            .iter()
            .all(|request| request.status == Some(200)),
        "the literals were escaped, so the filter parsed: {:?}",
        emulator.requests()
    );
    assert_eq!(table(&emulator), before, "no consent rows written");
    assert_eq!(
        emulator.contacts(),
        contacts_before,
        "upsert is off: no contact created"
    );
    emulator.shutdown().await;
}

// ------------------------------------------------------------- 13. huge webhook

#[tokio::test]
async fn five_thousand_preference_values_in_one_webhook_are_written_within_budget() {
    let mut ids: Vec<String> = (0..4999).map(|i| format!("value-{i:05}")).collect();
    ids.insert(2500, "v-news".into());
    assert_eq!(ids.len(), 5000);
    let huge = vec![webhook("ev-huge", 1, "user0@example.com", &ids.join(","))];
    let small = vec![webhook("ev-huge", 1, "user0@example.com", "v-news")];
    let expected = fault_free_table(standard_seed(), |_| {}, &small).await;
    let (emulator, service) = start(standard_seed()).await;
    let budget = Duration::from_secs(5);
    let started = Instant::now();
    let outcomes = process(&service, &huge, budget).await;
    assert!(started.elapsed() < budget, "{:?}", started.elapsed());
    assert!(
        matches!(outcomes[0], MessageOutcome::Written { created: 4, .. }),
        "{outcomes:?}"
    );
    assert_final_table(&emulator, &expected, "final table");
    emulator.shutdown().await;
}
