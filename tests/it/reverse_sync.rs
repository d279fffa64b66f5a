//! `cpc-sync reverse-sync --once` against the emulator (Dataverse and the
//! Didomi API in one process): a UI-style unsubscribe becomes exactly one
//! Didomi event that keeps the user's other preference values, a re-run posts
//! nothing, our own writes and unlisted sources are ignored, an unmappable row
//! is reported, a dry run posts nothing, a failed post keeps the watermark,
//! and the webhook echo of a post writes nothing in Dynamics.

use std::path::Path;

use cpc_emulator::{Emulator, EmulatorHandle, Seed};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::adapters::state_file::FileWatermarkStore;
use didomi_cpc_sync::cli::reverse::{StateChoice, run_once};
use didomi_cpc_sync::service::reverse::{ReverseError, ReverseSummary, Watermark};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::didomi::{self, settings};
use crate::support::inprocess::{
    client_for, config_for, fast_policy, plans, process, service_with,
};
use crate::support::scratch;
use didomi_cpc_sync::domain::decision::{Outcome, SkipReason};

const SET: &str = "msdynmkt_contactpointconsent4s";
const PURPOSE: &str = "10000000-0000-0000-0000-000000000003";
/// Fed by `<purpose>/<Topics>/v-news`: reversible.
const NEWS_TOPIC: &str = "23db4a4d-ba9f-f011-bbd3-6045bd194648";
/// Fed by `<Topics>/v-offers` (no purpose): not reversible.
const OFFERS_TOPIC: &str = "5b1c9e1a-7f3d-4c2a-9e8b-2d4f6a8c0e13";
pub(crate) const PURPOSE_ROW: &str = "aaaaaaaa-0000-4000-8000-000000000001";
pub(crate) const NEWS_ROW: &str = "aaaaaaaa-0000-4000-8000-000000000002";
const OFFERS_ROW: &str = "aaaaaaaa-0000-4000-8000-000000000003";
const OPTED_OUT: i64 = 534_120_002;
pub(crate) const UNSUBSCRIBE: i64 = 534_120_007;
const INTERNAL: i64 = 534_120_000;
/// A person editing in the Dynamics UI.
pub(crate) const PERSON: &str = "0b0b0b0b-1111-4222-8333-444444444444";

fn row(id: &str, topic: Option<&str>) -> Value {
    json!({
        "msdynmkt_contactpointconsent4id": id,
        "msdynmkt_contactpointvalue": "user0@example.com", "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_contactpointconsenttype": if topic.is_some() { 534120001 } else { 534120000 },
        "msdynmkt_value": 534120001, "_msdynmkt_purposeid_value": PURPOSE,
        "_msdynmkt_topicid_value": topic, "msdynmkt_source": INTERNAL,
        "msdynmkt_logicalreason": 534119999, "msdynmkt_reason": "seed",
        "createdon": "2024-03-01T00:00:00Z", "modifiedon": "2024-03-01T00:00:00Z"})
}

/// user0 opted in to the purpose with v-news and v-offers in Didomi, and
/// opted-in purpose, News and Offers rows in Dynamics.
pub(crate) fn seed() -> Seed {
    let users = vec![didomi::user(
        0,
        true,
        "v-news,v-offers",
        "2025-06-01T12:00:00.000Z",
    )];
    let mut seed = didomi::seed(1, didomi::didomi_section(users, |_| {}));
    for row in [
        row(PURPOSE_ROW, None),
        row(NEWS_ROW, Some(NEWS_TOPIC)),
        row(OFFERS_ROW, Some(OFFERS_TOPIC)),
    ] {
        seed.consents.push(serde_json::from_value(row).unwrap());
    }
    seed
}

/// A person's edit in the Dynamics UI: opted out, from `source`.
pub(crate) fn unsubscribe(emulator: &EmulatorHandle, row: &str, source: i64, by: &str) {
    emulator
        .edit_row(
            SET,
            row,
            json!({"msdynmkt_value": OPTED_OUT, "msdynmkt_source": source}),
            Some(by),
        )
        .unwrap();
}

struct Pass {
    result: Result<ReverseSummary, ReverseError>,
    lines: Vec<Value>,
}

async fn pass(emulator: &EmulatorHandle, dry_run: bool, watermark: &Path) -> Pass {
    pass_in_pages(emulator, dry_run, watermark, None).await
}

/// [`pass`] with the changed rows asked for `page_size` at a time.
async fn pass_in_pages(
    emulator: &EmulatorHandle,
    dry_run: bool,
    watermark: &Path,
    page_size: Option<u32>,
) -> Pass {
    let config = config_for(emulator, |_| {});
    let mut dataverse = client_for(emulator, &config, fast_policy());
    if let Some(rows) = page_size {
        dataverse = dataverse.with_max_page_size(rows);
    }
    let own_user = own_user(emulator).await;
    let didomi = DidomiApiClient::new(http_client(), &settings(emulator, |_| {}), fast_policy());
    let state = StateChoice::File(watermark.to_path_buf());
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    let result = run_once(
        &dataverse, &didomi, &config, own_user, &state, dry_run, deadline, &mut out,
    )
    .await;
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    Pass { result, lines }
}

pub(crate) async fn own_user(emulator: &EmulatorHandle) -> Uuid {
    let config = config_for(emulator, |_| {});
    client_for(emulator, &config, fast_policy())
        .who_am_i(Instant::now() + std::time::Duration::from_secs(10))
        .await
        .unwrap()
}

/// The watermark in the file, if any.
fn read_watermark(path: &Path) -> Result<Option<Watermark>, String> {
    FileWatermarkStore::new(path)
        .read()
        .map(|(watermark, _)| watermark)
        .map_err(|err| err.to_string())
}

/// Writes a watermark file as a previous pass would have.
fn write_watermark(path: &Path, watermark: &Watermark) {
    std::fs::write(
        path,
        json!({"modifiedon": watermark.modifiedon, "version": 1}).to_string(),
    )
    .unwrap();
}

pub(crate) fn didomi_user0(emulator: &EmulatorHandle) -> Value {
    emulator
        .didomi()
        .users()
        .into_iter()
        .find(|user| user["organization_user_id"] == "user0@example.com")
        .unwrap()
}

#[tokio::test]
async fn a_ui_unsubscribe_posts_one_event_that_keeps_the_other_values_and_a_rerun_posts_nothing() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-once");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let first = pass(&emulator, false, &watermark).await;
    let summary = first.result.unwrap();
    assert_eq!(summary.events, 1, "{summary:?}");
    assert_eq!(summary.posts, 1);
    let events = emulator.didomi().events();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["user"]["organization_user_id"], "user0@example.com");
    assert_eq!(
        event["consents"]["purposes"],
        json!([{"id": didomi::PURPOSE, "values": {didomi::TOPICS: {"value": "v-offers"}}}])
    );
    assert_eq!(event["metadata"]["origin"], "didomi-cpc-sync");
    assert_eq!(event["metadata"]["row"], NEWS_ROW);
    // Didomi's state: v-news removed, v-offers and the purpose kept.
    let user = didomi_user0(&emulator);
    let purpose = &user["consents"]["purposes"][0];
    assert_eq!(purpose["values"][didomi::TOPICS]["value"], "v-offers");
    assert_eq!(purpose["enabled"], true);
    // The watermark is the edit's modifiedon.
    let edited = emulator
        .consents()
        .into_iter()
        .find(|row| row["msdynmkt_contactpointconsent4id"] == NEWS_ROW)
        .unwrap();
    let mark = read_watermark(&watermark).unwrap().unwrap();
    assert_eq!(
        mark.modifiedon,
        edited["modifiedon"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    );

    // A re-run re-reads the edit (overlap) and posts nothing.
    let posts = emulator.didomi().event_posts();
    let second = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(second.events, 0, "{second:?}");
    assert_eq!(emulator.didomi().events().len(), 1);
    assert!(emulator.didomi().event_posts() <= posts + 1);
    // Even with the watermark gone, the same edit is not imported twice.
    std::fs::remove_file(&watermark).unwrap();
    let third = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(third.events, 0, "{third:?}");
    assert_eq!(emulator.didomi().events().len(), 1);
}

#[tokio::test]
async fn own_writes_and_unlisted_sources_are_ignored() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-ignored");
    let watermark = dir.join("watermark.json");
    let own = own_user(&emulator).await.to_string();
    unsubscribe(&emulator, PURPOSE_ROW, UNSUBSCRIBE, &own);
    unsubscribe(&emulator, NEWS_ROW, INTERNAL, PERSON);
    let summary = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(summary.events, 0, "{summary:?}");
    assert!(emulator.didomi().events().is_empty());
    // Neither is even read: the query asks for `_modifiedby_value ne <own
    // user>` and the listed sources (the domain rules check both again).
    assert_eq!(summary.rows, 0, "{summary:?}");
    assert!(summary.ignored.is_empty(), "{summary:?}");
    let query = emulator
        .requests()
        .into_iter()
        .map(|request| percent_decode(&request.path))
        .find(|path| path.contains("msdynmkt_contactpointconsent4s?"))
        .expect("the changed-rows query was sent");
    for part in [
        "msdynmkt_contactpointtype eq 534120000",
        "statecode eq 0",
        "modifiedon ge 1970-01-01T00:00:00Z",
        &format!("_modifiedby_value ne {own}"),
        "msdynmkt_source eq 534120007",
        "$orderby=modifiedon asc,msdynmkt_contactpointconsent4id asc",
        "_modifiedby_value,msdynmkt_source&$filter=",
    ] {
        assert!(query.contains(part), "{part} missing from {query}");
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test]
async fn an_unmappable_row_is_reported_and_not_posted() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-unmappable");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, OFFERS_ROW, UNSUBSCRIBE, PERSON);
    let Pass { result, lines } = pass(&emulator, false, &watermark).await;
    let summary = result.unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(summary.not_expressible, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["row"], OFFERS_ROW);
    assert!(
        lines[0]["not_expressible"]
            .as_str()
            .unwrap()
            .contains("selector"),
        "{lines:?}"
    );
    assert!(emulator.didomi().events().is_empty());
}

#[tokio::test]
async fn a_dry_run_prints_the_event_and_posts_nothing() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-dry");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let Pass { result, lines } = pass(&emulator, true, &watermark).await;
    assert_eq!(result.unwrap().events, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["metadata"]["row"], NEWS_ROW);
    assert_eq!(emulator.didomi().event_posts(), 0);
    assert!(!watermark.exists(), "a dry run keeps the watermark");
}

#[tokio::test]
async fn a_didomi_429_or_5xx_keeps_the_watermark() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-fail");
    let watermark = dir.join("watermark.json");
    let old = Watermark {
        modifiedon: "2025-01-01T00:00:00Z".parse().unwrap(),
    };
    write_watermark(&watermark, &old);
    unsubscribe(&emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
    // fast_policy makes 4 attempts: every one fails.
    emulator.didomi().fail_event_posts(&[429, 503, 500, 502]);
    let failed = pass(&emulator, false, &watermark).await;
    assert!(
        matches!(
            failed.result,
            Err(ReverseError::Didomi {
                retryable: true,
                ..
            })
        ),
        "{:?}",
        failed.result
    );
    assert_eq!(emulator.didomi().event_posts(), 4);
    assert!(emulator.didomi().events().is_empty());
    assert_eq!(read_watermark(&watermark).unwrap(), Some(old.clone()));
    // The next pass sends the same event and moves the watermark.
    let summary = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(summary.events, 1);
    let events = emulator.didomi().events();
    assert_eq!(
        events[0]["consents"]["purposes"],
        json!([{"id": didomi::PURPOSE, "enabled": false}])
    );
    assert!(read_watermark(&watermark).unwrap().unwrap().modifiedon > old.modifiedon);
    assert_eq!(
        didomi_user0(&emulator)["consents"]["purposes"][0]["enabled"],
        false
    );
}

/// The posted event as Didomi's `event.created` webhook would carry it back.
fn echo_webhook(event: &Value) -> Value {
    json!({"type": "event.created", "parameters": {"entity": event}})
}

#[tokio::test]
async fn the_echo_of_a_reverse_post_writes_nothing_in_dynamics() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-echo");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
    pass(&emulator, false, &watermark).await.result.unwrap();
    let event = emulator.didomi().events().remove(0);
    let before = emulator.consents();
    let service = service_with(&emulator, |_| {}, fast_policy()).await;
    // With the marker: skipped as our own echo.
    let marked = plans(&[echo_webhook(&event)], &service);
    let plan = marked[0].as_ref().unwrap();
    assert_eq!(plan.outcome, Outcome::Skip, "{plan:?}");
    assert_eq!(plan.reason, Some(SkipReason::OwnEcho));
    // Without it (stripped on the way): not newer than the edit
    // (created_at = modifiedon), so the row is not written either.
    let mut stripped = event.clone();
    stripped.as_object_mut().unwrap().remove("metadata");
    stripped.as_object_mut().unwrap().remove("delegate");
    let planned = plans(&[echo_webhook(&stripped)], &service);
    assert_eq!(
        planned[0].as_ref().unwrap().outcome,
        Outcome::Write,
        "the stripped echo reaches the write rules"
    );
    let outcomes = process(
        &service,
        &[echo_webhook(&event), echo_webhook(&stripped)],
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(emulator.consents(), before, "the echo wrote nothing");
}

async fn command(emulator: &EmulatorHandle, mut args: Vec<String>) -> std::process::Output {
    args.insert(0, "reverse-sync".to_string());
    didomi::cpc_sync_against(emulator, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_dry_runs_then_posts_and_moves_the_watermark_file() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-cli");
    let config_path = dir.join("config.json");
    let watermark = dir.join("watermark.json");
    let mut config = crate::support::inprocess::config_json(&emulator);
    config["didomi_api"] = didomi::didomi_api_json();
    std::fs::write(&config_path, config.to_string()).unwrap();
    unsubscribe(&emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let args = |extra: &[&str]| {
        let mut args = vec![
            "--config".to_string(),
            config_path.display().to_string(),
            "--watermark".to_string(),
            watermark.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let refused = command(&emulator, args(&[])).await;
    assert_eq!(refused.status.code(), Some(2), "--once is required");

    let dry = command(&emulator, args(&["--once", "--dry-run"])).await;
    let stderr = String::from_utf8_lossy(&dry.stderr).to_string();
    assert!(dry.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(dry.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "one event line: {lines:?}");
    assert_eq!(lines[0]["metadata"]["row"], NEWS_ROW);
    assert!(emulator.didomi().events().is_empty());
    assert!(!watermark.exists());

    let real = command(&emulator, args(&["--once"])).await;
    let stderr = String::from_utf8_lossy(&real.stderr).to_string();
    assert!(real.status.success(), "{stderr}");
    let summary: Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(summary["events"], 1, "{summary}");
    assert_eq!(emulator.didomi().events().len(), 1);
    assert_eq!(emulator.didomi().events()[0]["id"], lines[0]["id"]);
    assert!(read_watermark(&watermark).unwrap().is_some());
}

#[tokio::test]
async fn a_re_read_edit_keeps_its_event_id_and_is_not_imported_twice() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-same-id");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
    pass(&emulator, false, &watermark).await.result.unwrap();
    let first = emulator.didomi().events();
    assert_eq!(first.len(), 1);
    // The user opts in again on Didomi's side; the old Dynamics edit is read
    // again (watermark lost): the event has the same id, Didomi skips it.
    let mut users = emulator.didomi().users();
    users[0]["consents"]["purposes"][0]["enabled"] = json!(true);
    emulator.didomi().set_users(users);
    std::fs::remove_file(&watermark).unwrap();
    let again = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(again.events, 1, "built again: {again:?}");
    assert_eq!(
        emulator.didomi().events(),
        first,
        "same id, not imported twice"
    );
    assert_eq!(
        didomi_user0(&emulator)["consents"]["purposes"][0]["enabled"],
        true
    );
}

/// `count` users opted in, each with a purpose row a person then
/// unsubscribed in Dynamics.
fn unsubscribed_in_dynamics(count: usize) -> EmulatorHandle {
    let users = (0..count)
        .map(|i| didomi::user(i, true, "v-news", "2025-06-01T12:00:00.000Z"))
        .collect();
    let mut seed = didomi::seed(count, didomi::didomi_section(users, |_| {}));
    let ids: Vec<String> = (0..count)
        .map(|i| format!("bbbbbbbb-0000-4000-8000-{i:012}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut row = row(id, None);
        row["msdynmkt_contactpointvalue"] = json!(format!("user{i}@example.com"));
        seed.consents.push(serde_json::from_value(row).unwrap());
    }
    let emulator = Emulator::start(seed).unwrap();
    for id in &ids {
        unsubscribe(&emulator, id, UNSUBSCRIBE, PERSON);
    }
    emulator
}

#[tokio::test]
async fn changed_rows_are_read_across_pages() {
    let emulator = unsubscribed_in_dynamics(60);
    emulator.clear_requests();
    let dir = scratch::dir("reverse-pages");
    let summary = pass_in_pages(&emulator, false, &dir.join("watermark.json"), Some(25))
        .await
        .result
        .unwrap();
    assert_eq!((summary.rows, summary.events), (60, 60), "{summary:?}");
    let pages = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains(SET))
        .count();
    assert_eq!(pages, 3, "25 + 25 + 10 rows");
    assert_eq!(emulator.didomi().events().len(), 60);
}

#[tokio::test]
async fn more_than_100_events_are_posted_in_arrays_of_at_most_100() {
    let count = 130;
    let emulator = unsubscribed_in_dynamics(count);
    let dir = scratch::dir("reverse-batches");
    let summary = pass(&emulator, false, &dir.join("watermark.json"))
        .await
        .result
        .unwrap();
    assert_eq!(summary.events, count as u64, "{summary:?}");
    assert_eq!(summary.posts, 2);
    assert_eq!(emulator.didomi().event_posts(), 2);
    assert_eq!(emulator.didomi().events().len(), count);
}

#[tokio::test]
async fn a_409_for_an_existing_id_counts_as_accepted() {
    let emulator = Emulator::start(seed()).unwrap();
    let dir = scratch::dir("reverse-409");
    let watermark = dir.join("watermark.json");
    unsubscribe(&emulator, PURPOSE_ROW, UNSUBSCRIBE, PERSON);
    emulator.didomi().fail_event_posts(&[409]);
    let summary = pass(&emulator, false, &watermark).await.result.unwrap();
    assert_eq!(summary.posts, 1);
    assert_eq!(emulator.didomi().event_posts(), 1, "a 409 is not retried");
    assert!(read_watermark(&watermark).unwrap().is_some());
}
