//! `cpc-sync plan` end to end: every fixture in `events/` gives the plan in
//! `tests/fixtures/plans/`, and bad input gives a clear error and exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cpc_sync(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cpc-sync"))
        .args(args)
        .current_dir(root())
        .env_remove("ALLOW_INSECURE_HTTP")
        .env_remove("AZURE_AUTHORITY_HOST")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cpc-sync starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn plan(config: &str, event: &str) -> Output {
    cpc_sync(&["plan", "--config", config, "--event", event], None)
}

fn expected_plans(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/plans").join(name)).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn printed_plans(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const CONFIG: &str = "tests/fixtures/integration-config.json";

#[test]
fn every_event_fixture_gives_its_expected_plan() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("events")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        // The scheduled event starts the reverse sync; it is no webhook to plan.
        if path.extension().is_none_or(|ext| ext != "json")
            || name == "env"
            || name == "scheduled-reverse-sync"
        {
            continue;
        }
        let event = Path::new("events").join(path.file_name().unwrap());
        let output = plan(CONFIG, event.to_str().unwrap());
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        assert_eq!(
            printed_plans(&output),
            expected_plans(&format!("{name}.jsonl")),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} fixtures found");
}

#[test]
fn user_updated_fixture_writes_the_diff_when_the_user_stream_is_enabled() {
    let output = plan(
        "tests/fixtures/integration-config-user-stream.json",
        "events/user-updated.json",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        printed_plans(&output),
        expected_plans("user-updated.user-stream.jsonl")
    );
}

#[test]
fn sqs_batch_prints_one_plan_per_record_in_order() {
    let output = plan(CONFIG, "events/sqs-batch.json");
    let ids: Vec<_> = printed_plans(&output)
        .iter()
        .map(|plan| plan["event_id"].clone())
        .collect();
    assert_eq!(
        ids,
        [
            "0b6f3c9e-5d2a-4c1b-9a7e-2f1d8e6c4b11",
            "4e9a1f70-2b3c-4d5e-8f90-a1b2c3d4e5f6",
            "a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c0d"
        ]
    );
}

#[test]
fn event_can_come_from_standard_input() {
    let body = std::fs::read_to_string(root().join("events/event-created-opt-out.json")).unwrap();
    let output = cpc_sync(&["plan", "--config", CONFIG, "--event", "-"], Some(&body));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        printed_plans(&output),
        expected_plans("event-created-opt-out.jsonl")
    );
}

#[test]
fn invalid_webhook_exits_1_and_names_the_field() {
    let body = r#"{"type":"event.created","parameters":{"entity":{"id":"e","consents":{"purposes":[{"id":"p","enabled":"yes"}]}}}}"#;
    let output = cpc_sync(&["plan", "--config", CONFIG, "--event", "-"], Some(body));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("parameters.entity.consents.purposes[0].enabled"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_record_in_an_sqs_batch_does_not_hide_the_good_ones() {
    let batch = serde_json::json!({"Records": [
        {"messageId": "bad", "eventSource": "aws:sqs", "body": "not json"},
        {"messageId": "good", "eventSource": "aws:sqs",
         "body": std::fs::read_to_string(root().join("events/event-created-opt-out.json")).unwrap()}]});
    let output = cpc_sync(
        &["plan", "--config", CONFIG, "--event", "-"],
        Some(&batch.to_string()),
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(printed_plans(&output).len(), 1);
    assert!(
        stderr(&output).contains("Records[0] (messageId bad)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unrecognised_event_shape_exits_2() {
    let output = cpc_sync(
        &["plan", "--config", CONFIG, "--event", "-"],
        Some(r#"{"detail-type":"x"}"#),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unrecognised event"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn invalid_config_exits_2_and_lists_every_problem() {
    let output = plan("events/sqs-batch.json", "events/event-created-opt-in.json");
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("`authentication`") && message.contains("`mappings`"),
        "{message}"
    );
}

#[test]
fn missing_file_exits_2_with_its_name() {
    let output = plan(CONFIG, "events/no-such-file.json");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("events/no-such-file.json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_argument_prints_usage() {
    let output = cpc_sync(&["plan", "--config", CONFIG], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("usage:"));
}

#[test]
fn check_config_summarises_a_valid_document() {
    let output = cpc_sync(&["check-config", "--config", CONFIG], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("4 mapping(s)"));
}

#[test]
fn dry_run_refuses_a_loopback_instance_unless_insecure_http_is_allowed() {
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(CONFIG)).unwrap()).unwrap();
    config["authentication"]["instance"] = "http://127.0.0.1:8080".into();
    let output = cpc_sync(
        &["check-config", "--config", "-"],
        Some(&config.to_string()),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("ALLOW_INSECURE_HTTP"),
        "{}",
        stderr(&output)
    );
}
