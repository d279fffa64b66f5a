//! `cpc-sync backfill` (library level) against the emulator's Didomi API and
//! Dataverse: dry run, direct writes, replays, ordering, pagination, 429,
//! session expiry, checkpoints and batch exports with malformed lines.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cpc_emulator::{Emulator, EmulatorHandle, FaultRule};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::cli::backfill::{
    BackfillError, BackfillOptions, BackfillRun, BackfillSummary, Sink, resume_position, run,
};
use didomi_cpc_sync::cli::source::{Position, UserSource};
use didomi_cpc_sync::domain::mapping::MappingRules;
use serde_json::{Value, json};

use crate::support::didomi::{self, fixture_users, settings, users};
use crate::support::inprocess::{
    config_for, dataverse_requests, dataverse_write_requests, fast_policy, service_with, table,
};
use crate::support::scratch;

/// A user of the second page of 100, as a write part's JSON has it (quoted;
/// the queries name addresses in single quotes): a fault aimed at it fails
/// the second page's writes only, however the writes are split in `$batch`es.
const ON_PAGE_TWO: &str = "\"user150@example.com\"";

/// A `Write` tests can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

fn start(contacts: usize, users: Vec<Value>, edit: impl FnOnce(&mut Value)) -> EmulatorHandle {
    Emulator::start(didomi::seed(contacts, didomi::didomi_section(users, edit))).unwrap()
}

fn rules(emulator: &EmulatorHandle) -> MappingRules {
    config_for(emulator, |_| {}).rules
}

fn api(emulator: &EmulatorHandle, cursor: Option<String>) -> UserSource {
    let client = DidomiApiClient::new(http_client(), &settings(emulator, |_| {}), fast_policy());
    UserSource::api(client, cursor)
}

async fn direct(emulator: &EmulatorHandle) -> Sink {
    Sink::Direct(service_with(emulator, |_| {}, fast_policy()).await)
}

fn quiet() -> BackfillOptions {
    BackfillOptions {
        checkpoint: None,
        progress: false,
    }
}

async fn backfill(emulator: &EmulatorHandle, sink: Sink) -> BackfillSummary {
    let run = run(api(emulator, None), &rules(emulator), sink, &quiet(), None).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    run.summary
}

fn faults(rules: Value) -> Vec<FaultRule> {
    serde_json::from_value(rules).unwrap()
}

#[tokio::test]
async fn dry_run_prints_one_plan_per_deciding_user_and_counts_the_rest_by_reason() {
    let emulator = start(0, fixture_users(), |_| {});
    let out = Captured::default();
    let summary = backfill(&emulator, Sink::DryRun(Box::new(out.clone()))).await;
    let lines = out.lines();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|plan| plan["outcome"] == "write"
        && plan["event_id"].as_str().unwrap().starts_with("snapshot-")));
    assert_eq!(lines[0]["occurred_at"], "2025-04-02T16:05:44.120Z");
    assert_eq!((summary.users_read, summary.planned), (5, 3));
    assert_eq!(summary.skipped.values().sum::<u64>(), 2);
    assert!(
        summary
            .skipped
            .keys()
            .any(|reason| reason.contains("organization_user_id"))
    );
    assert!(
        dataverse_requests(&emulator).is_empty(),
        "a dry run never touches Dataverse"
    );
}

#[tokio::test]
async fn direct_writes_every_users_rows_across_many_pages() {
    let emulator = start(250, users(250), |section| section["page_size"] = json!(25));
    let summary = backfill(&emulator, direct(&emulator).await).await;
    assert_eq!(
        (summary.pages, summary.written, summary.failed),
        (10, 250, 0)
    );
    assert!(summary.complete);
    // Four mapped targets per user, one row each.
    assert_eq!(table(&emulator).len(), 2 + 250 * 4);
}

#[tokio::test]
async fn a_second_backfill_of_the_same_state_is_a_replay_that_writes_nothing() {
    let emulator = start(120, users(120), |_| {});
    backfill(&emulator, direct(&emulator).await).await;
    let before = table(&emulator);
    emulator.clear_requests();
    let again = backfill(&emulator, direct(&emulator).await).await;
    assert_eq!((again.written, again.unchanged), (0, 120));
    assert_eq!(table(&emulator), before);
    assert_eq!(dataverse_write_requests(&emulator), 0);
}

#[tokio::test]
async fn a_snapshot_never_overwrites_a_row_decided_later() {
    let mut seed = didomi::seed(1, didomi::didomi_section(users(1), |_| {}));
    // user0 opted out of the purpose in Dynamics after Didomi's last update.
    let newer: Value = json!({
        "msdynmkt_contactpointvalue": "user0@example.com", "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_contactpointconsenttype": 534120000, "msdynmkt_value": 534120002,
        "_msdynmkt_purposeid_value": "10000000-0000-0000-0000-000000000003",
        "msdynmkt_source": 534120000, "msdynmkt_logicalreason": 534119999,
        "msdynmkt_reason": "Subscription center",
        "createdon": "2026-01-05T10:00:00Z", "modifiedon": "2026-01-05T10:00:00Z"});
    seed.consents.push(serde_json::from_value(newer).unwrap());
    let emulator = Emulator::start(seed).unwrap();
    let mut user = users(1);
    user[0]["consents"]["purposes"][0]["enabled"] = json!(true);
    emulator.didomi().set_users(user);
    backfill(&emulator, direct(&emulator).await).await;
    let purpose_row = table(&emulator)
        .into_iter()
        .find(|row| row.0 == "user0@example.com" && row.2 == "-")
        .unwrap();
    assert_eq!(purpose_row.3, 534_120_002, "the later opt-out stays");
}

#[tokio::test]
async fn a_429_in_the_middle_of_the_walk_is_waited_out() {
    let emulator = start(0, users(250), |_| {});
    emulator.didomi().throttle(1, 1, 1);
    let summary = backfill(&emulator, Sink::DryRun(Box::new(Captured::default()))).await;
    assert_eq!((summary.users_read, summary.pages), (250, 3));
    assert_eq!(emulator.didomi().throttled(), 1);
}

#[tokio::test]
async fn a_session_expiring_mid_run_is_renewed_and_the_run_completes() {
    // The token says nothing of its lifetime and the server ends it after a
    // second: the client finds out from a 401.
    let emulator = start(60, users(60), |section| {
        section["page_size"] = json!(10);
        section["session_lifetime_secs"] = json!(1);
        section["jwt_exp"] = json!(false);
    });
    emulator.set_faults(faults(json!([{"path_contains": "$batch", "times": null,
                                        "action": {"delay_ms": 250}}])));
    let summary = backfill(&emulator, direct(&emulator).await).await;
    assert_eq!(summary.written, 60);
    assert!(emulator.didomi().sessions_created() >= 2);
}

async fn run_with_checkpoint(
    emulator: &EmulatorHandle,
    source: UserSource,
    path: &Path,
) -> BackfillRun {
    let options = BackfillOptions {
        checkpoint: Some(path.to_path_buf()),
        progress: false,
    };
    let resumed = resume_position(&options, &source.label()).unwrap();
    let summary = resumed.map(|checkpoint| checkpoint.summary);
    run(
        source,
        &rules(emulator),
        direct(emulator).await,
        &options,
        summary,
    )
    .await
}

#[tokio::test]
async fn a_run_stopped_by_an_outage_resumes_from_its_checkpoint() {
    let emulator = start(250, users(250), |_| {});
    let checkpoint = scratch::dir("backfill-resume").join("checkpoint.json");
    emulator.set_faults(faults(
        json!([{"path_contains": "$batch", "body_contains": ON_PAGE_TWO, "times": null,
                "action": {"status": 503}}]),
    ));
    let first = run_with_checkpoint(&emulator, api(&emulator, None), &checkpoint).await;
    assert!(
        matches!(
            first.error,
            Some(BackfillError::RetryableFailures { page: 2, .. })
        ),
        "{:?}",
        first.error
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["summary"]["pages"], 1);
    let Position::Api { cursor } = serde_json::from_value(saved["position"].clone()).unwrap()
    else {
        panic!("{saved}")
    };

    emulator.set_faults(Vec::new());
    let reads_before = emulator.didomi().user_reads();
    let second = run_with_checkpoint(&emulator, api(&emulator, cursor), &checkpoint).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(
        emulator.didomi().user_reads() - reads_before,
        2,
        "pages 2 and 3 only"
    );
    assert_eq!((second.summary.users_read, second.summary.pages), (250, 3));
    assert!(second.summary.complete);
    assert_eq!(table(&emulator).len(), 2 + 250 * 4);
    let done: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(done["position"]["kind"], "finished");
}

fn gzip(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    for line in lines {
        writeln!(encoder, "{line}").unwrap();
    }
    encoder.finish().unwrap();
}

#[tokio::test]
async fn an_export_with_malformed_lines_reports_each_with_file_and_line_and_processes_the_rest() {
    let emulator = start(3, Vec::new(), |_| {});
    let root = scratch::dir("export-malformed");
    let partition = root.join("export-id=e1/date=2025-06-02/users");
    let all = users(3);
    gzip(
        &partition.join("part-0000.json.gz"),
        &[
            all[0].to_string(),
            "{\"id\": \"truncated".into(),
            String::new(),
            "[1, 2, 3]".into(),
        ],
    );
    // The other reading of "a user and its events" on one line.
    std::fs::write(
        partition.join("part-0001.json"),
        format!(
            "{}\n{}\n{}\n",
            json!({"user": all[1], "events": []}),
            json!({"user": all[2], "events": [{"id": "ev-1"}]}),
            // A user whose field has the wrong type: serde quotes the value.
            json!({"id": "u-x", "organization_user_id": "leak@example.com", "version": "leak@example.com"})
        ),
    )
    .unwrap();
    std::fs::write(partition.join("_SUCCESS"), "").unwrap();
    let source = UserSource::export(root.clone(), None).unwrap();
    let run = run(
        source,
        &rules(&emulator),
        direct(&emulator).await,
        &quiet(),
        None,
    )
    .await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let summary = run.summary;
    assert_eq!((summary.users_read, summary.written), (6, 3));
    assert_eq!((summary.malformed, summary.failed), (2, 3));
    let places: Vec<&str> = summary.failures.iter().map(|f| f.at.as_str()).collect();
    assert_eq!(
        places,
        [
            "export-id=e1/date=2025-06-02/users/part-0000.json.gz:2",
            "export-id=e1/date=2025-06-02/users/part-0000.json.gz:4",
            "export-id=e1/date=2025-06-02/users/part-0001.json:3"
        ]
    );
    let text = serde_json::to_string(&summary.failures).unwrap();
    assert!(!text.contains("leak@"), "{text}");
}

#[tokio::test]
async fn an_export_backfill_resumes_mid_file_from_its_checkpoint() {
    let emulator = start(250, Vec::new(), |_| {});
    let root = scratch::dir("export-resume");
    let lines: Vec<String> = users(250).iter().map(Value::to_string).collect();
    gzip(&root.join("users/part-0000.json.gz"), &lines);
    let checkpoint = root.join("checkpoint.json");
    emulator.set_faults(faults(
        json!([{"path_contains": "$batch", "body_contains": ON_PAGE_TWO, "times": null,
                "action": {"status": 503}}]),
    ));
    let first = run_with_checkpoint(
        &emulator,
        UserSource::export(root.clone(), None).unwrap(),
        &checkpoint,
    )
    .await;
    assert!(first.error.is_some());
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(
        saved["position"],
        json!({"kind": "export", "file": "users/part-0000.json.gz", "line": 100})
    );

    emulator.set_faults(Vec::new());
    let Position::Export(start) = serde_json::from_value(saved["position"].clone()).unwrap() else {
        panic!()
    };
    let source = UserSource::export(root.clone(), Some(&start)).unwrap();
    let second = run_with_checkpoint(&emulator, source, &checkpoint).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(second.summary.users_read, 250);
    assert_eq!(table(&emulator).len(), 2 + 250 * 4);
    let done: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(done["position"]["kind"], "finished");
}

/// Runs the real `cpc-sync backfill` with `args` against `emulator`.
async fn command(emulator: &EmulatorHandle, mut args: Vec<String>) -> std::process::Output {
    args.insert(0, "backfill".to_string());
    didomi::cpc_sync_against(emulator, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_the_plans_then_the_summary_and_refuses_two_modes() {
    let emulator = start(0, fixture_users(), |_| {});
    let dir = scratch::dir("backfill-cli");
    let path = dir.join("config.json");
    let mut config = crate::support::inprocess::config_json(&emulator);
    config["didomi_api"] = didomi::didomi_api_json();
    std::fs::write(&path, config.to_string()).unwrap();
    let config_args = |extra: &[&str]| {
        let mut args = vec!["--config".to_string(), path.display().to_string()];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let output = command(&emulator, config_args(&["--dry-run", "--no-progress"])).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "three plans and the summary");
    assert_eq!(lines[3]["planned"], 3);
    assert_eq!(lines[3]["complete"], true);
    let output = command(&emulator, config_args(&["--dry-run", "--direct"])).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exactly one of"));
}
