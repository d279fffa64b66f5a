//! `cpc-sync reconcile` against the emulator: every class on the pair it
//! describes, masked output, Dataverse read in sets, `--repair` (never over
//! a newer Dynamics choice) followed by a clean reconcile, and the command's
//! exit status.

use std::collections::BTreeMap;

use cpc_emulator::{Emulator, EmulatorHandle, Seed};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::cli::reconcile::{ReconcileOptions, ReconcileReport, run};
use didomi_cpc_sync::cli::source::UserSource;
use didomi_cpc_sync::domain::reconcile::DriftClass;
use serde_json::{Value, json};

use crate::support::didomi::{self, settings, users};
use crate::support::inprocess::{
    EMULATOR_SECRET, config_json, dataverse_requests, fast_policy, service_with, table,
};
use crate::support::scratch;

const PURPOSE: &str = "10000000-0000-0000-0000-000000000003";
const PURPOSE_TARGET: &str = "purpose:10000000-0000-0000-0000-000000000003";
const OPTED_IN: i64 = 534_120_001;
const OPTED_OUT: i64 = 534_120_002;

/// A purpose row for `address` written by someone else at `modified`.
fn purpose_row(address: &str, value: i64, modified: &str) -> Value {
    json!({
        "msdynmkt_contactpointvalue": address, "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_contactpointconsenttype": 534120000, "msdynmkt_value": value,
        "_msdynmkt_purposeid_value": PURPOSE, "msdynmkt_source": 534120000,
        "msdynmkt_logicalreason": 534119999, "msdynmkt_reason": "Subscription center",
        "createdon": modified, "modifiedon": modified})
}

/// Didomi users 0..=6 updated 2025-06-01 (0, 2, 4, 5 opted in; 1, 3 opted
/// out; 6 decides nothing), contacts for 0..=4 and 6, and rows making each
/// class appear on the purpose:
/// user1 opted in 2024 (Didomi newer), user2 opted out 2026 (Dynamics newer),
/// user3 twice (duplicates), user4 opted in 2024 (in sync), user0 none (missing).
fn every_class_seed() -> Seed {
    let opted_in = [true, false, true, false, true, true, false];
    let mut didomi_users: Vec<Value> = (0..7)
        .map(|i| {
            let values = if opted_in[i] { "v-news,v-offers" } else { "" };
            didomi::user(i, opted_in[i], values, "2025-06-01T12:00:00.000Z")
        })
        .collect();
    didomi_users[6]["consents"]["purposes"] = json!([{"id": didomi::PURPOSE, "enabled": null}]);
    let mut seed = didomi::seed(7, didomi::didomi_section(didomi_users, |_| {}));
    seed.contacts
        .retain(|contact| contact.get("emailaddress1") != Some(&json!("user5@example.com")));
    for row in [
        purpose_row("user1@example.com", OPTED_IN, "2024-03-01T00:00:00Z"),
        purpose_row("user2@example.com", OPTED_OUT, "2026-01-05T00:00:00Z"),
        purpose_row("user3@example.com", OPTED_OUT, "2024-03-01T00:00:00Z"),
        purpose_row("user3@example.com", OPTED_OUT, "2023-03-01T00:00:00Z"),
        purpose_row("USER4@example.com", OPTED_IN, "2024-03-01T00:00:00Z"),
    ] {
        seed.consents.push(serde_json::from_value(row).unwrap());
    }
    seed
}

fn api(emulator: &EmulatorHandle) -> UserSource {
    let client = DidomiApiClient::new(http_client(), &settings(emulator, |_| {}), fast_policy());
    UserSource::api(client, None)
}

async fn reconcile(
    emulator: &EmulatorHandle,
    repair: bool,
    show_addresses: bool,
) -> (ReconcileReport, Vec<Value>) {
    let mut out = Vec::new();
    let options = ReconcileOptions {
        show_addresses,
        progress: false,
    };
    // Metadata (purposes, topics, WhoAmI) is read here, before the count.
    let service = service_with(emulator, |_| {}, fast_policy()).await;
    emulator.clear_requests();
    let report = run(api(emulator), &service, repair, &mut out, &options)
        .await
        .unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (report, lines)
}

/// `(address, target) → class` of the drift lines.
fn classes(lines: &[Value]) -> BTreeMap<(String, String), String> {
    lines
        .iter()
        .map(|line| {
            let key = (
                line["address"].as_str().unwrap().to_lowercase(),
                line["target"].as_str().unwrap().to_string(),
            );
            (key, line["class"].as_str().unwrap().to_string())
        })
        .collect()
}

fn purpose_class(lines: &[Value], user: usize) -> String {
    classes(lines)
        .get(&(
            format!("user{user}@example.com"),
            PURPOSE_TARGET.to_string(),
        ))
        .cloned()
        .unwrap_or_else(|| "in_sync".into())
}

#[tokio::test]
async fn every_class_is_found_on_the_pair_it_describes() {
    let emulator = Emulator::start(every_class_seed()).unwrap();
    let (report, lines) = reconcile(&emulator, false, true).await;
    assert_eq!(purpose_class(&lines, 0), "missing_in_dynamics");
    assert_eq!(purpose_class(&lines, 1), "differs_didomi_newer");
    assert_eq!(purpose_class(&lines, 2), "differs_dynamics_newer");
    assert_eq!(purpose_class(&lines, 3), "duplicate_rows");
    assert_eq!(purpose_class(&lines, 4), "in_sync");
    assert_eq!(purpose_class(&lines, 5), "no_contact");
    assert!(
        !classes(&lines)
            .keys()
            .any(|(address, _)| address == "user6@example.com"),
        "undecided pairs are counted, not listed"
    );
    let counts = &report.before;
    assert_eq!(counts.get(DriftClass::InSync), 1);
    // user5 has no contact: its opt-ins cannot be written, but its Events
    // opt-out is written for the address (write_opt_outs_without_contact).
    assert_eq!(
        counts.get(DriftClass::NoContact),
        3,
        "user5's three opt-ins"
    );
    assert_eq!(
        counts.get(DriftClass::Undecided),
        4,
        "all four targets of user6"
    );
    // user0's four targets, the three topics of users 1–4, user5's Events opt-out.
    assert_eq!(counts.get(DriftClass::MissingInDynamics), 4 + 4 * 3 + 1);
    assert_eq!(report.users_compared, 7);
    assert!(report.final_counts().drift() > 0);
}

#[tokio::test]
async fn drift_lines_mask_addresses_unless_asked_to_show_them() {
    let emulator = Emulator::start(every_class_seed()).unwrap();
    let (_, lines) = reconcile(&emulator, false, false).await;
    let text: String = lines.iter().map(Value::to_string).collect();
    assert!(!text.contains("user0@"), "{text}");
    assert!(lines[0]["address"].as_str().unwrap().starts_with("u:"));
}

#[tokio::test]
async fn dataverse_is_read_in_sets_two_queries_per_page_of_users() {
    let emulator = Emulator::start(didomi::seed(
        250,
        didomi::didomi_section(users(250), |_| {}),
    ))
    .unwrap();
    let (report, _) = reconcile(&emulator, false, false).await;
    assert_eq!(report.pages, 3);
    let reads: Vec<String> = dataverse_requests(&emulator);
    assert_eq!(reads.len(), 2 * 3, "{reads:?}");
    assert!(reads.iter().all(|request| request.starts_with("GET ")));
}

#[tokio::test]
async fn repair_writes_what_didomi_decided_later_and_keeps_newer_dynamics_choices() {
    let emulator = Emulator::start(every_class_seed()).unwrap();
    let (report, _) = reconcile(&emulator, true, true).await;
    let after = report.after.as_ref().unwrap();
    assert_eq!(after.get(DriftClass::MissingInDynamics), 0);
    assert_eq!(after.get(DriftClass::DiffersDidomiNewer), 0);
    assert_eq!(after.get(DriftClass::DiffersDynamicsNewer), 1, "kept");
    assert_eq!(
        after.get(DriftClass::DuplicateRows),
        1,
        "reported, not merged"
    );
    assert_eq!(report.repair_failed, 0);
    let user2_purpose = table(&emulator)
        .into_iter()
        .find(|row| row.0 == "user2@example.com" && row.2 == "-")
        .unwrap();
    assert_eq!(
        user2_purpose.3, OPTED_OUT,
        "the 2026 Dynamics opt-out stays"
    );
}

#[tokio::test]
async fn repair_followed_by_a_fresh_reconcile_is_clean() {
    let mut seed = didomi::seed(40, didomi::didomi_section(users(40), |_| {}));
    for i in (0..40).step_by(4) {
        let row = purpose_row(
            &format!("user{i}@example.com"),
            OPTED_IN,
            "2024-01-01T00:00:00Z",
        );
        seed.consents.push(serde_json::from_value(row).unwrap());
    }
    let emulator = Emulator::start(seed).unwrap();
    let (repaired, _) = reconcile(&emulator, true, false).await;
    assert!(repaired.before.drift() > 0);
    assert_eq!(repaired.after.as_ref().unwrap().drift(), 0);
    let (fresh, lines) = reconcile(&emulator, false, false).await;
    assert_eq!(fresh.before.drift(), 0, "{lines:?}");
    assert_eq!(fresh.before.get(DriftClass::InSync), 40 * 4);
}

/// Runs the real `cpc-sync reconcile` against `emulator`; (exit code, stderr).
async fn command(emulator: &EmulatorHandle, config: Value, extra: &[&str]) -> (i32, String) {
    let dir = scratch::dir("reconcile-cli");
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut args = vec![
        "reconcile".to_string(),
        "--config".into(),
        path.display().to_string(),
        "--no-progress".into(),
        "--output".into(),
        dir.join("drift.jsonl").display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let output = didomi::cpc_sync_against(emulator, args).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_exits_3_on_drift_0_once_repaired_and_2_without_didomi_api() {
    let emulator =
        Emulator::start(didomi::seed(20, didomi::didomi_section(users(20), |_| {}))).unwrap();
    let mut config = config_json(&emulator);
    assert_eq!(config["authentication"]["client_secret"], EMULATOR_SECRET);
    let (status, _) = command(&emulator, config.clone(), &[]).await;
    assert_eq!(status, 2, "no didomi_api in the document");
    config["didomi_api"] = didomi::didomi_api_json();
    let (status, stderr) = command(&emulator, config.clone(), &[]).await;
    assert_eq!(status, 3, "{stderr}");
    assert!(stderr.contains("missing_in_dynamics"), "{stderr}");
    let (status, stderr) = command(&emulator, config.clone(), &["--repair"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("after repair"), "{stderr}");
    let (status, stderr) = command(&emulator, config, &[]).await;
    assert_eq!(status, 0, "{stderr}");
    assert!(!stderr.contains("user0@"), "no address on stderr: {stderr}");
}

#[tokio::test]
async fn an_export_reconciles_exactly_like_the_api() {
    let emulator = Emulator::start(every_class_seed()).unwrap();
    let (from_api, _) = reconcile(&emulator, false, false).await;
    let root = scratch::dir("reconcile-export");
    let lines: Vec<String> = emulator
        .didomi()
        .users()
        .iter()
        .map(Value::to_string)
        .collect();
    std::fs::write(root.join("users.ndjson"), lines.join("\n")).unwrap();
    let options = ReconcileOptions {
        show_addresses: false,
        progress: false,
    };
    let service = service_with(&emulator, |_| {}, fast_policy()).await;
    let source = UserSource::export(root, None).unwrap();
    let from_export = run(source, &service, false, &mut Vec::new(), &options)
        .await
        .unwrap();
    assert_eq!(from_export.before, from_api.before);
    assert_eq!(from_export.users_compared, 7);
}
