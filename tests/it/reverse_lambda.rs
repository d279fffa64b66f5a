//! The reverse sync as deployed, with real parts: the `bootstrap` binary in
//! `CPC_SYNC_MODE=reverse-sync` under a Lambda Runtime API, driven by the
//! scheduled-event sample in `events/`, its secrets (the integration document
//! and a separate Didomi API key, as the template passes them) and its state
//! table in `moto_server`, and Dataverse and Didomi in the emulator, whose
//! Didomi sends an `event.created` webhook for every imported event to a
//! loopback receiver; a second `bootstrap` (the webhook function) gets those
//! webhooks. The whole loop ends with one write each way.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use axum::serve::ListenerExt;
use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::dynamodb_state::DynamoStateStore;
use serde_json::{Value, json};

use crate::reverse_sync::{NEWS_ROW, PERSON, UNSUBSCRIBE, seed, unsubscribe};
use crate::support::didomi::{self, didomi_api_json};
use crate::support::inprocess::config_json;
use crate::support::lambda::{self, LocalLambda};
use crate::support::moto::MotoServer;

const SECRET_NAME: &str = "didomi/cpc-sync";
const DIDOMI_SECRET_NAME: &str = "didomi/api-key";
const TABLE: &str = "reverse-sync-state";
const SCHEDULED: &str = "scheduled-reverse-sync.json";

/// Collects the webhooks the emulated Didomi sends (and answers 200, as the
/// stack's HTTP API does once a webhook is queued).
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Serves on a free loopback port (TCP_NODELAY on every connection); returns its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/didomi/webhooks", listener.local_addr().unwrap());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .route("/didomi/webhooks", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

async fn receive(State(receiver): State<Receiver>, axum::Json(body): axum::Json<Value>) {
    receiver.received.lock().unwrap().push(body);
}

struct World {
    emulator: EmulatorHandle,
    moto: MotoServer,
    receiver: Receiver,
    reverse: LocalLambda,
}

async fn world() -> World {
    let emulator = Emulator::start(seed()).unwrap();
    let moto = MotoServer::start().await;
    for (name, value) in [
        (SECRET_NAME, config_json(&emulator)),
        (DIDOMI_SECRET_NAME, didomi_api_json()),
    ] {
        moto.client()
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
    }
    moto.create_state_table(TABLE).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    emulator.didomi().set_webhook_url(Some(url));
    let mut env = lambda::function_env(SECRET_NAME, &moto.endpoint, &emulator.base_url());
    env.extend([
        ("CPC_SYNC_MODE", "reverse-sync".to_string()),
        ("STATE_TABLE", TABLE.to_string()),
        ("DIDOMI_API_SECRET_ID", DIDOMI_SECRET_NAME.to_string()),
        ("DIDOMI_API_URL", format!("{}/v1", emulator.base_url())),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint.clone()),
        ("METRICS_NAMESPACE", "ReverseTest".to_string()),
    ]);
    let reverse = LocalLambda::start(&env).await.forbid_in_logs(forbidden());
    World {
        emulator,
        moto,
        receiver,
        reverse,
    }
}

/// Secrets, tokens and the address of the test user: never in a log.
fn forbidden() -> Vec<String> {
    let mut values = lambda::never_logged(&["user0@example.com"]);
    values.push(didomi::SECRET.to_string());
    values
}

/// Requests to the Dataverse Web API that are not reads.
fn dataverse_writes(emulator: &EmulatorHandle) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/api/data/") && request.method != "GET")
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ui_unsubscribe_makes_the_full_loop_with_one_write_each_way_and_a_second_pass_posts_nothing()
 {
    let world = world().await;
    // The one Dataverse write: a person unsubscribes in Dynamics.
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let edited = world.emulator.consents();
    world.emulator.clear_requests();

    let first = world.reverse.invoke_fixture(SCHEDULED).await;
    assert_eq!(first["events"], 1, "{first}");
    assert_eq!(first["posts"], 1, "{first}");
    // The one Didomi write, and the webhook Didomi sends back for it.
    assert_eq!(world.emulator.didomi().event_posts(), 1);
    assert_eq!(world.emulator.didomi().events().len(), 1);
    let webhooks = world.receiver.take();
    assert_eq!(webhooks.len(), 1, "{webhooks:?}");
    let entity = &webhooks[0]["parameters"]["entity"];
    assert_eq!(webhooks[0]["type"], "event.created");
    assert_eq!(entity["metadata"]["origin"], "didomi-cpc-sync");
    assert_eq!(entity["user"]["organization_user_id"], "user0@example.com");

    // The webhook reaches the forward function (the real bootstrap), which writes nothing.
    let forward = LocalLambda::start(&lambda::function_env(
        SECRET_NAME,
        &world.moto.endpoint,
        &world.emulator.base_url(),
    ))
    .await
    .forbid_in_logs(forbidden());
    let answer = forward.invoke(&webhooks[0]).await;
    assert_eq!(answer["outcome"], "skipped", "{answer}");
    assert!(
        answer["reason"]
            .to_string()
            .contains("own reverse-sync post"),
        "{answer}"
    );
    assert_eq!(
        world.emulator.consents(),
        edited,
        "no further Dataverse write"
    );

    // The next scheduled pass finds nothing to send.
    let second = world.reverse.invoke_fixture(SCHEDULED).await;
    assert_eq!(second["events"], 0, "{second}");
    assert_eq!(world.emulator.didomi().event_posts(), 1, "still one post");
    assert!(world.receiver.take().is_empty());
    assert_eq!(
        dataverse_writes(&world.emulator),
        Vec::<String>::new(),
        "both functions only read Dataverse"
    );
    assert_eq!(world.emulator.consents(), edited);

    // The watermark is in the table; each pass printed its metric line.
    let store = DynamoStateStore::new(world.moto.dynamodb(), TABLE);
    let (watermark, version) = store.read().await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        Some(watermark.unwrap().modifiedon.to_rfc3339()),
        second["watermark_after"].as_str().map(|at| at
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .to_rfc3339())
    );
    let metric_lines: Vec<Value> = world
        .reverse
        .stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("ReverseEventsPosted").is_some())
        .collect();
    assert_eq!(metric_lines.len(), 2, "{metric_lines:?}");
    assert_eq!(metric_lines[0]["ReverseEventsPosted"], 1.0);
    assert_eq!(metric_lines[0]["ReverseRowsRead"], 1.0);
    assert_eq!(metric_lines[1]["ReverseEventsPosted"], 0.0);
    assert_eq!(
        metric_lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ReverseTest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scheduled_pass_fails_the_invocation_and_the_next_one_retries_from_the_old_watermark()
 {
    let world = world().await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    // Every attempt of the function's retry policy (6) is throttled.
    world.emulator.didomi().fail_event_posts(&[429; 6]);
    let failed = world.reverse.invoke_fixture(SCHEDULED).await;
    assert_eq!(failed["errorType"], "DidomiFailed", "{failed}");
    let message = failed["errorMessage"].as_str().unwrap();
    assert!(message.contains("retry helps: true"), "{message}");
    assert!(world.emulator.didomi().events().is_empty());
    let store = DynamoStateStore::new(world.moto.dynamodb(), TABLE);
    assert_eq!(store.read().await.unwrap(), (None, 0), "no watermark yet");
    let logs = world.reverse.logs();
    assert!(logs.contains("reverse sync pass failed"), "{logs}");
    assert!(logs.contains("\"ReversePassFailed\":1.0"), "{logs}");

    let retried = world.reverse.invoke_fixture(SCHEDULED).await;
    assert_eq!(retried["events"], 1, "{retried}");
    assert_eq!(world.emulator.didomi().events().len(), 1);
    assert_eq!(store.read().await.unwrap().1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_pass_that_finds_the_lock_held_is_skipped_not_failed() {
    let world = world().await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    world
        .moto
        .put_state_lock(TABLE, "cli/operator", until)
        .await;
    let skipped = world.reverse.invoke_fixture(SCHEDULED).await;
    assert!(skipped.get("errorType").is_none(), "{skipped}");
    assert_eq!(skipped["holder"], "cli/operator", "{skipped}");
    assert_eq!(world.emulator.didomi().event_posts(), 0);
    let logs = world.reverse.logs();
    assert!(logs.contains("\"ReversePassSkipped\":1.0"), "{logs}");
    assert!(logs.contains("\"ReversePassFailed\":0.0"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reverse_sync_function_refuses_anything_but_its_schedule() {
    let world = world().await;
    unsubscribe(&world.emulator, NEWS_ROW, UNSUBSCRIBE, PERSON);
    for fixture in ["event-created-opt-out.json", "sqs-batch.json"] {
        let refused = world.reverse.invoke_fixture(fixture).await;
        assert_eq!(
            refused["errorType"], "UnrecognisedEvent",
            "{fixture}: {refused}"
        );
    }
    let not_scheduled = world
        .reverse
        .invoke(&json!({"detail-type": "Object Created", "source": "aws.s3"}))
        .await;
    assert_eq!(not_scheduled["errorType"], "UnrecognisedEvent");
    assert_eq!(world.emulator.didomi().event_posts(), 0, "no pass ran");
    assert!(
        world
            .moto
            .dynamodb()
            .scan()
            .table_name(TABLE)
            .send()
            .await
            .unwrap()
            .count()
            == 0,
        "no lock was taken"
    );
}
