//! End to end with real parts: the `bootstrap` binary under the Lambda Runtime
//! API of `cargo lambda`, Secrets Manager played by `moto_server` with the real
//! AWS SDK, and Entra + Dataverse played by `tools/emulator`. Every event shape
//! goes in; the consent table that comes out is asserted row by row.

use crate::support::inprocess;
use crate::support::lambda;
use crate::support::moto;
use axum::serve::ListenerExt;

use std::collections::BTreeSet;
use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use inprocess::{EMULATOR_SECRET, config_json, demo_seed_json, seed_from};
use lambda::{LocalLambda, fixture};
use moto::MotoServer;
use serde_json::{Value, json};

const SECRET_NAME: &str = "didomi/cpc-sync";

/// Addresses of the demo seed and fixtures: none may reach a log line.
const ADDRESSES: [&str; 4] = [
    "jane.doe@example.com",
    "john.o'brien+news@example.com",
    "ana.garcia@example.org",
    "jane.o'brien@example.com",
];

/// The emulator, moto and the real `bootstrap` under a Runtime API.
pub(crate) struct World {
    pub(crate) emulator: EmulatorHandle,
    _moto: MotoServer,
    pub(crate) lambda: LocalLambda,
}

/// An edit of a JSON document (the seed or the integration document).
type Edit = Box<dyn FnOnce(&mut Value)>;

/// What a test may change before the function starts.
#[derive(Default)]
struct Setup {
    seed: Option<Edit>,
    config: Option<Edit>,
    secrets_endpoint: Option<String>,
    /// Emulator faults in force before the function starts.
    faults: Option<Value>,
}

/// A world with the fixture configuration, edited by `edit`.
pub(crate) async fn world(edit: impl FnOnce(&mut Value) + 'static) -> World {
    world_with(Setup {
        config: Some(Box::new(edit)),
        ..Setup::default()
    })
    .await
}

async fn world_with(setup: Setup) -> World {
    let mut seed = demo_seed_json();
    if let Some(edit) = setup.seed {
        edit(&mut seed);
    }
    let emulator = Emulator::start(seed_from(seed)).unwrap();
    if let Some(faults) = setup.faults {
        emulator.set_faults(serde_json::from_value(faults).unwrap());
    }
    let moto = MotoServer::start().await;
    let mut config = config_json(&emulator);
    if let Some(edit) = setup.config {
        edit(&mut config);
    }
    moto.client()
        .create_secret()
        .name(SECRET_NAME)
        .secret_string(config.to_string())
        .send()
        .await
        .unwrap();
    let secrets_endpoint = setup
        .secrets_endpoint
        .unwrap_or_else(|| moto.endpoint.clone());
    let lambda = LocalLambda::start(&lambda::function_env(
        SECRET_NAME,
        &secrets_endpoint,
        &emulator.base_url(),
    ))
    .await
    .forbid_in_logs(lambda::never_logged(&ADDRESSES));
    World {
        emulator,
        _moto: moto,
        lambda,
    }
}

/// The table as (address, purpose, topic, value, statecode), without markers.
fn table(emulator: &EmulatorHandle) -> BTreeSet<(String, String, String, i64, i64)> {
    inprocess::table(emulator)
        .into_iter()
        .map(|(address, purpose, topic, value, state, _reason)| {
            (address, purpose, topic, value, state)
        })
        .collect()
}

const COMMERCIAL: &str = "10000000-0000-0000-0000-000000000003";
const NEWSLETTER: &str = "23db4a4d-ba9f-f011-bbd3-6045bd194648";
const OFFERS: &str = "5b1c9e1a-7f3d-4c2a-9e8b-2d4f6a8c0e13";
const EVENTS: &str = "8e2f4a6c-1b3d-4e5f-a7b9-c0d1e2f3a4b5";
const IN: i64 = 534_120_001;
const OUT: i64 = 534_120_002;

fn row(
    address: &str,
    purpose: &str,
    topic: &str,
    value: i64,
    state: i64,
) -> (String, String, String, i64, i64) {
    (
        address.to_string(),
        purpose.to_string(),
        topic.to_string(),
        value,
        state,
    )
}

#[tokio::test]
async fn every_event_shape_becomes_the_expected_consent_rows() {
    let world = world(|_| {}).await;
    let lambda = &world.lambda;

    let opt_in = lambda.invoke_fixture("event-created-opt-in.json").await;
    assert_eq!(opt_in["outcome"], "written", "{opt_in}");
    let sqs = lambda.invoke_fixture("sqs-batch.json").await;
    assert_eq!(sqs, json!({"batchItemFailures": []}));
    let http = lambda.invoke_fixture("http-api-request.json").await;
    assert_eq!(http["statusCode"], 200, "{http}");
    assert_eq!(
        serde_json::from_str::<Value>(http["body"].as_str().unwrap()).unwrap()["outcome"],
        "written"
    );
    for name in [
        "event-created-pending-approval.json",
        "event-updated-confirmed.json",
        "event-created-one-click-opt-out.json",
    ] {
        let answer = lambda.invoke_fixture(name).await;
        assert!(
            answer["outcome"] == "written" || answer["outcome"] == "skipped",
            "{name}: {answer}"
        );
    }
    for name in [
        "event-created-cpra.json",
        "event-created-anonymous-cookie-banner.json",
        "event-deleted.json",
        "user-updated.json",
    ] {
        assert_eq!(
            lambda.invoke_fixture(name).await["outcome"],
            "skipped",
            "{name}"
        );
    }

    let expected: BTreeSet<_> = [
        row("jane.doe@example.com", COMMERCIAL, "-", OUT, 0),
        row("jane.doe@example.com", COMMERCIAL, "-", OUT, 1),
        row("jane.doe@example.com", COMMERCIAL, NEWSLETTER, OUT, 0),
        row("jane.doe@example.com", COMMERCIAL, OFFERS, OUT, 0),
        row("jane.doe@example.com", COMMERCIAL, EVENTS, OUT, 0),
        row("john.o'brien+news@example.com", COMMERCIAL, "-", OUT, 0),
        row("ana.garcia@example.org", COMMERCIAL, "-", IN, 0),
        row("ana.garcia@example.org", COMMERCIAL, NEWSLETTER, OUT, 0),
        row("ana.garcia@example.org", COMMERCIAL, OFFERS, IN, 0),
        row("ana.garcia@example.org", COMMERCIAL, EVENTS, OUT, 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(table(&world.emulator), expected);
    assert_eq!(world.emulator.consents().len(), 10, "no duplicate rows");
}

#[tokio::test]
async fn replaying_every_event_writes_nothing_more() {
    let world = world(|_| {}).await;
    for name in ["event-created-opt-in.json", "event-created-deselect.json"] {
        world.lambda.invoke_fixture(name).await;
    }
    let before = world.emulator.consents();
    world.emulator.clear_requests();
    let replay = world.lambda.invoke_fixture("sqs-batch.json").await;
    assert_eq!(replay, json!({"batchItemFailures": []}));
    assert_eq!(world.emulator.consents(), before);
    // The replay's only Dataverse request is its `$batch` of queries (the
    // contacts and their rows, GET parts only): no `$batch` of writes.
    let writes: Vec<_> = world
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.starts_with("/api/data/"))
        .collect();
    assert!(
        writes.len() == 1 && writes[0].path.ends_with("$batch"),
        "a replay must not write: {writes:?}"
    );
}

#[tokio::test]
async fn the_first_batch_after_a_cold_start_costs_what_later_ones_do() {
    let world = world(|_| {}).await;
    // The init ends with the cold-start metric line: from then on every
    // request belongs to an invocation.
    let started = std::time::Instant::now();
    while !world.lambda.stdout().contains("ColdStart") {
        assert!(started.elapsed() < Duration::from_secs(30), "no init line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut costs = Vec::new();
    for name in ["event-created-opt-in.json", "event-created-opt-out.json"] {
        world.emulator.clear_requests();
        world.lambda.invoke_fixture(name).await;
        let requests: Vec<String> = world
            .emulator
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.method,
                    r.path.split('?').next().unwrap_or_default()
                )
            })
            .collect();
        costs.push(requests);
    }
    let two_round_trips = ["POST /api/data/v9.2/$batch", "POST /api/data/v9.2/$batch"];
    // No token, WhoAmI or catalogue request in the first: the init read them.
    assert_eq!(costs[0], two_round_trips, "first batch");
    assert_eq!(costs[1], two_round_trips, "second batch");
}

#[tokio::test]
async fn a_bad_sqs_message_fails_alone() {
    let world = world(|_| {}).await;
    let good = fixture("event-created-opt-out.json").to_string();
    let batch = json!({"Records": [
        {"messageId": "bad-json", "eventSource": "aws:sqs", "body": "{\"type\": \"event.created\", "},
        {"messageId": "good", "eventSource": "aws:sqs", "body": good},
        {"messageId": "unknown-type", "eventSource": "aws:sqs", "body": "{\"type\":\"widget.updated\",\"parameters\":{}}"}]});
    let answer = world.lambda.invoke(&batch).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "bad-json"}]})
    );
    assert_eq!(
        world.emulator.consents().len(),
        3,
        "John's row is written next to the 2 seeded rows"
    );
}

#[tokio::test]
async fn invalid_http_payload_is_answered_400_with_the_reason() {
    let world = world(|_| {}).await;
    let mut request = fixture("http-api-request.json");
    request["body"] = json!("{\"type\":\"event.created\",\"parameters\":{\"entity\":{\"id\":7}}}");
    let answer = world.lambda.invoke(&request).await;
    assert_eq!(answer["statusCode"], 400, "{answer}");
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains("parameters.entity.id"),
        "{answer}"
    );
}

#[tokio::test]
async fn unknown_invocation_shape_is_a_clear_error() {
    let world = world(|_| {}).await;
    let answer = world
        .lambda
        .invoke(&json!({"detail-type": "Scheduled Event"}))
        .await;
    assert_eq!(answer["errorType"], "UnrecognisedEvent", "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .unwrap()
            .contains("expected an SQS batch"),
        "{answer}"
    );
}

#[tokio::test]
async fn throttled_dataverse_fails_the_batch_back_to_the_queue_then_succeeds() {
    let world = world(|_| {}).await;
    world.emulator.set_faults(
        serde_json::from_value(json!([
            {"path_contains": "$batch", "times": 50, "action": {"status": 429, "retry_after": 1}}
        ]))
        .unwrap(),
    );
    let answer = world.lambda.invoke_fixture("sqs-batch.json").await;
    let failed: BTreeSet<&str> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from([
            "059f36b4-87a3-44ab-83d2-661975830a7d",
            "2e1424d4-f796-459a-8184-9c92662be6da"
        ])
    );
    let attempts = world
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.contains("$batch"))
        .count();
    assert!(
        (2..=7).contains(&attempts),
        "bounded retries, Retry-After honoured: {attempts} attempts"
    );
    world.emulator.set_faults(Vec::new());
    assert_eq!(
        world.lambda.invoke_fixture("sqs-batch.json").await,
        json!({"batchItemFailures": []})
    );
}

/// `address` as it appears in a URL query: `@` and the other reserved
/// characters percent-encoded (upper and lower case hex).
fn url_encoded_forms(address: &str) -> Vec<String> {
    let encoded: String = address
        .chars()
        .map(|c| match c {
            '@' => "%40".to_string(),
            '\'' => "%27".to_string(),
            '+' => "%2B".to_string(),
            c => c.to_string(),
        })
        .collect();
    vec![
        encoded.clone(),
        encoded.to_lowercase(),
        address.replace('@', "%40"),
    ]
}

#[tokio::test]
async fn logs_are_json_carry_the_request_id_and_hold_no_secret_token_or_address() {
    let world = world(|_| {}).await;
    let mut throttled = fixture("sqs-batch.json");
    throttled["Records"][0]["messageId"] = json!("failing-run");
    for name in [
        "sqs-batch.json",
        "http-api-request.json",
        "event-created-opt-out.json",
        "event-created-one-click-opt-out.json",
    ] {
        world.lambda.invoke_fixture(name).await;
    }
    // A failing run too: error paths log Dataverse's answers.
    world.emulator.set_faults(
        serde_json::from_value(json!([
            {"method": "POST", "path_contains": "$batch", "body_contains": "GET ", "times": null,
             "action": {"status": 400, "message": "Bad value jane.doe@example.com"}},
            // A refused $batch of queries is retried as single queries to find the culprit.
            {"method": "GET", "path_contains": "msdynmkt_contactpointconsent4s", "times": null,
             "action": {"status": 400, "message": "Bad value jane.doe@example.com"}}
        ]))
        .unwrap(),
    );
    let failed = world.lambda.invoke(&throttled).await;
    assert!(
        !failed["batchItemFailures"].as_array().unwrap().is_empty(),
        "{failed}"
    );
    let direct = world
        .lambda
        .invoke_fixture("event-created-opt-in.json")
        .await;
    let told = direct["errorMessage"].as_str().unwrap_or_default();
    assert!(
        told.contains("HTTP 400"),
        "the caller is told what failed: {direct}"
    );
    assert!(
        !told.contains("Bad value") && !told.contains("jane"),
        "but not Dataverse's internals: {direct}"
    );
    let logs = world.lambda.logs();
    assert!(logs.lines().count() > 3, "{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    let lower = logs.to_lowercase();
    let forbidden = [EMULATOR_SECRET, "bearer ", "emu."]
        .into_iter()
        .map(str::to_string)
        .chain(ADDRESSES.iter().map(|address| address.to_string()))
        .chain(
            ADDRESSES
                .iter()
                .flat_map(|address| url_encoded_forms(address)),
        );
    for forbidden in forbidden {
        assert!(
            !lower.contains(&forbidden.to_lowercase()),
            "logs contain {forbidden:?}"
        );
    }
    let per_message: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("message_id").is_some())
        .collect();
    assert!(!per_message.is_empty(), "per-message ids are logged");
    for line in per_message {
        assert!(
            line["requestId"].as_str().is_some_and(|id| !id.is_empty()),
            "requestId is a top-level field: {line}"
        );
    }
}

/// Checks that the start failed: the process exits unsuccessfully and logs
/// `error_type` with a message containing `needle`, and nothing was written.
/// (That the failure also reaches the Runtime API's `/init/error` is checked
/// by `init_failure_is_reported_to_the_runtime_api`.)
async fn assert_start_fails(mut world: World, error_type: &str, needle: &str) {
    assert_ne!(
        world.lambda.exit_code(Duration::from_secs(20)).await,
        Some(0)
    );
    let logs = world.lambda.logs();
    let failure = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "cannot start")
        .unwrap_or_else(|| panic!("no start failure logged: {logs}"));
    assert_eq!(failure["kind"], error_type, "{failure}");
    assert!(
        failure["error"]
            .as_str()
            .unwrap_or_default()
            .contains(needle),
        "{failure}"
    );
    assert_eq!(world.emulator.consents().len(), 2, "only the seeded rows");
}

#[tokio::test]
async fn mapping_a_purpose_dataverse_does_not_have_fails_the_start_with_the_guid() {
    let missing = "purpose:99999999-0000-0000-0000-000000000000";
    let world = world(move |config| config["mappings"][0]["id"] = json!(missing)).await;
    assert_start_fails(world, "UnknownMappingTargets", missing).await;
}

#[tokio::test]
async fn unreachable_secrets_manager_fails_the_start_with_the_reason() {
    let closed = format!("http://127.0.0.1:{}", moto::free_port());
    let world = world_with(Setup {
        secrets_endpoint: Some(closed),
        ..Setup::default()
    })
    .await;
    assert_start_fails(world, "SecretUnavailable", "didomi/cpc-sync").await;
}

/// The ids of `answer`'s `batchItemFailures`.
fn failed_ids(answer: &Value) -> BTreeSet<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"))
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// The messages of `events/sqs-batch.json` that write (the third is skipped).
const WRITERS: [&str; 2] = [
    "059f36b4-87a3-44ab-83d2-661975830a7d",
    "2e1424d4-f796-459a-8184-9c92662be6da",
];

#[tokio::test]
async fn missing_application_user_starts_and_fails_writes_retryably_naming_the_fix() {
    let seed: Edit = Box::new(|seed: &mut Value| seed["app_user"] = json!(false));
    let mut world = world_with(Setup {
        seed: Some(seed),
        ..Setup::default()
    })
    .await;
    let answer = world.lambda.invoke_fixture("sqs-batch.json").await;
    assert_eq!(failed_ids(&answer), WRITERS.map(String::from).into());
    assert_eq!(
        world.lambda.exit_code(Duration::from_millis(200)).await,
        None,
        "still running"
    );
    let logs = world.lambda.logs();
    assert!(
        logs.contains("Application User"),
        "the fix is logged: {logs}"
    );
    assert_eq!(world.emulator.consents().len(), 2, "only the seeded rows");
}

#[tokio::test]
async fn unreachable_dataverse_at_start_does_not_fail_the_start_and_writes_once_it_is_back() {
    let mut world = world_with(Setup {
        faults: Some(json!([{"times": null, "action": {"drop": "before"}}])),
        ..Setup::default()
    })
    .await;
    let answer = world.lambda.invoke_fixture("sqs-batch.json").await;
    assert_eq!(failed_ids(&answer), WRITERS.map(String::from).into());
    assert_eq!(
        world.lambda.exit_code(Duration::from_millis(200)).await,
        None,
        "still running"
    );
    world.emulator.set_faults(Vec::new());
    let answer = world.lambda.invoke_fixture("sqs-batch.json").await;
    assert!(failed_ids(&answer).is_empty(), "{answer}");
    assert!(world.emulator.consents().len() > 2, "the batch is written");
}

#[tokio::test]
async fn invalid_configuration_fails_the_start_naming_the_field() {
    let world =
        world(|config| config["authentication"]["instance"] = json!("https://contoso.example.com"))
            .await;
    assert_start_fails(world, "InvalidConfiguration", "authentication.instance").await;
}

/// A stand-in Runtime API that records what `/runtime/init/error` receives.
async fn fake_runtime_api() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
) {
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::post;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/2018-06-01/runtime/init/error",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let error_type = headers
                .get("lambda-runtime-function-error-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let _ = sender.send((
                error_type,
                serde_json::from_slice(&body).unwrap_or_default(),
            ));
            async { axum::http::StatusCode::ACCEPTED }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address.to_string(), receiver)
}

#[tokio::test]
async fn init_failure_is_reported_to_the_runtime_api() {
    let (runtime_api, mut reports) = fake_runtime_api().await;
    // Blocking wait on another thread: the fake Runtime API runs on this one.
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bootstrap"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stderr(std::process::Stdio::null())
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!status.success());
    let (header, body) = reports.recv().await.expect("an init error was posted");
    assert_eq!(header, "Runtime.InvalidConfiguration");
    assert_eq!(body["errorType"], "InvalidConfiguration");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("SECRET_ID"),
        "{body}"
    );
}
