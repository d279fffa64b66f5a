//! Two real `bootstrap` processes (two Lambda Runtime APIs, as two concurrent
//! invocations are in production) against one emulator, and edits made "in
//! the Dynamics UI" between deliveries. Whatever the interleaving, the row
//! must end with the choice the person made last, and an older event must
//! never undo a newer choice or an edit made in Dynamics.
//!
//! The emulator's `hold_until_applied` fault forces each interleaving: it holds
//! one invocation's `$batch` until the other's has been applied.

use std::time::Duration;

use cpc_emulator::{Emulator, EmulatorHandle};
use serde_json::{Value, json};

use crate::support::inprocess::{config_json, demo_seed_json, seed_from};
use crate::support::lambda::{LocalLambda, function_env, never_logged};
use crate::support::moto::MotoServer;

const SECRET_NAME: &str = "didomi/cpc-sync-races";
const JANE: &str = "jane.doe@example.com";
const COMMERCIAL: &str = "10000000-0000-0000-0000-000000000003";
/// `msdynmkt_value` option numbers.
const OPTED_IN: i64 = 534_120_001;
const OPTED_OUT: i64 = 534_120_002;

/// One emulator, one Secrets Manager, two functions.
struct Pair {
    emulator: EmulatorHandle,
    _moto: MotoServer,
    a: LocalLambda,
    b: LocalLambda,
}

async fn pair() -> Pair {
    let emulator = Emulator::start(seed_from(demo_seed_json())).unwrap();
    let moto = MotoServer::start().await;
    moto.client()
        .create_secret()
        .name(SECRET_NAME)
        .secret_string(config_json(&emulator).to_string())
        .send()
        .await
        .unwrap();
    let env = function_env(SECRET_NAME, &moto.endpoint, &emulator.base_url());
    let (a, b) = tokio::join!(LocalLambda::start(&env), LocalLambda::start(&env));
    Pair {
        emulator,
        _moto: moto,
        a: a.forbid_in_logs(never_logged(&[JANE])),
        b: b.forbid_in_logs(never_logged(&[JANE])),
    }
}

/// Jane's choice on the Commercial purpose (Didomi purpose
/// `marketing-communications-Xk3Pq9`) at `at`, as an SQS message.
fn choice(event_id: &str, at: &str, enabled: bool) -> Value {
    let body = json!({
        "type": "event.created",
        "regulation": "gdpr",
        "parameters": {"entity": {
            "id": event_id,
            "created_at": at,
            "status": "confirmed",
            "regulation": "gdpr",
            "user": {"id": "7c1e2a44-93b0-4f5e-8d21-6a0f3b9c2e77", "organization_user_id": JANE},
            "consents": {"purposes": [{"id": "marketing-communications-Xk3Pq9", "enabled": enabled}]}
        }}
    });
    json!({"Records": [{
        "messageId": format!("msg-{event_id}"),
        "receiptHandle": "rh",
        "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:didomi-webhooks",
        "awsRegion": "us-east-1"
    }]})
}

/// The ids of the messages the function failed back to the queue.
fn failed(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not an SQS batch response: {answer}"))
        .iter()
        .map(|item| item["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts every one of Jane's Commercial purpose rows (she has an active and
/// an inactive one; Customer Insights – Journeys enforces both) holds `value`.
fn assert_jane_commercial(emulator: &EmulatorHandle, value: i64, context: &str) {
    let values = jane_commercial(emulator);
    assert!(
        !values.is_empty() && values.iter().all(|v| *v == value),
        "{context}: expected every row {value}, found {values:?}"
    );
}

/// Jane's Commercial purpose value(s), one per row.
fn jane_commercial(emulator: &EmulatorHandle) -> Vec<i64> {
    emulator
        .consents()
        .iter()
        .filter(|row| {
            row["msdynmkt_contactpointvalue"]
                .as_str()
                .is_some_and(|address| address.eq_ignore_ascii_case(JANE))
                && row["_msdynmkt_purposeid_value"] == COMMERCIAL
                && row["_msdynmkt_topicid_value"].is_null()
        })
        .map(|row| row["msdynmkt_value"].as_i64().unwrap())
        .collect()
}

fn hold_batch_of(held: &str, until: &str) -> Vec<cpc_emulator::FaultRule> {
    serde_json::from_value(json!([{
        "method": "POST", "path_contains": "$batch", "body_contains": held,
        "action": {"hold_until_applied": {
            "method": "POST", "path_contains": "$batch", "body_contains": until,
            "max_wait_ms": 20000
        }}
    }]))
    .unwrap()
}

async fn until_held(emulator: &EmulatorHandle) {
    for _ in 0..200 {
        if emulator.stats().held_now > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no request was held");
}

/// Jane's row exists and carries our marker of 09:00 (opted in).
async fn with_jane_written(pair: &Pair) {
    let answer = pair
        .a
        .invoke(&choice("ev-0", "2025-03-14T09:00:00.000Z", true))
        .await;
    assert!(failed(&answer).is_empty(), "{answer}");
    assert_jane_commercial(&pair.emulator, OPTED_IN, "final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_choice_held_until_the_newer_one_is_written_cannot_overwrite_it() {
    let pair = pair().await;
    with_jane_written(&pair).await;
    let older = choice("ev-a", "2025-03-14T10:00:00.000Z", true);
    let newer = choice("ev-b", "2025-03-14T10:00:01.000Z", false);
    pair.emulator.set_faults(hold_batch_of("ev-a", "ev-b"));

    // A reads the row and sends its update; the emulator holds it.
    let a = {
        let a = &pair.a;
        let older = older.clone();
        async move { a.invoke(&older).await }
    };
    let (a_answer, b_answer) = tokio::join!(a, async {
        until_held(&pair.emulator).await;
        // B reads the same row version and writes the newer choice.
        pair.b.invoke(&newer).await
    });
    assert!(failed(&b_answer).is_empty(), "B writes: {b_answer}");
    // A's update names the version it read, which B replaced: 412, retryable.
    assert_eq!(failed(&a_answer), vec!["msg-ev-a"], "{a_answer}");
    assert_jane_commercial(&pair.emulator, OPTED_OUT, "final");

    // The queue delivers A again: it re-reads, finds the newer choice, writes nothing.
    pair.emulator.set_faults(Vec::new());
    let again = pair.a.invoke(&older).await;
    assert!(failed(&again).is_empty(), "{again}");
    assert_jane_commercial(&pair.emulator, OPTED_OUT, "final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_choice_held_until_the_older_one_is_written_wins_on_its_redelivery() {
    let pair = pair().await;
    with_jane_written(&pair).await;
    let older = choice("ev-a", "2025-03-14T10:00:00.000Z", true);
    let newer = choice("ev-b", "2025-03-14T10:00:01.000Z", false);
    pair.emulator.set_faults(hold_batch_of("ev-b", "ev-a"));

    let b = {
        let b = &pair.b;
        let newer = newer.clone();
        async move { b.invoke(&newer).await }
    };
    let (b_answer, a_answer) = tokio::join!(b, async {
        until_held(&pair.emulator).await;
        pair.a.invoke(&older).await
    });
    assert!(failed(&a_answer).is_empty(), "A writes first: {a_answer}");
    assert_eq!(failed(&b_answer), vec!["msg-ev-b"], "{b_answer}");

    pair.emulator.set_faults(Vec::new());
    let again = pair.b.invoke(&newer).await;
    assert!(failed(&again).is_empty(), "{again}");
    assert_jane_commercial(&pair.emulator, OPTED_OUT, "final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_either_sequential_order_the_newer_choice_ends_on_the_row() {
    for newer_first in [false, true] {
        let pair = pair().await;
        with_jane_written(&pair).await;
        let older = choice("ev-a", "2025-03-14T10:00:00.000Z", true);
        let newer = choice("ev-b", "2025-03-14T10:00:01.000Z", false);
        let (first, second) = if newer_first {
            ((&pair.b, &newer), (&pair.a, &older))
        } else {
            ((&pair.a, &older), (&pair.b, &newer))
        };
        assert!(failed(&first.0.invoke(first.1).await).is_empty());
        assert!(failed(&second.0.invoke(second.1).await).is_empty());
        assert_jane_commercial(
            &pair.emulator,
            OPTED_OUT,
            &format!("newer first: {newer_first}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_made_in_dynamics_is_not_undone_by_a_redelivered_older_event() {
    let pair = pair().await;
    with_jane_written(&pair).await;
    // A person unsubscribes in Dynamics (the UI keeps msdynmkt_reason, our marker).
    let row_ids: Vec<String> = pair
        .emulator
        .consents()
        .iter()
        .filter(|row| {
            row["_msdynmkt_purposeid_value"] == COMMERCIAL
                && row["_msdynmkt_topicid_value"].is_null()
                && row["msdynmkt_contactpointvalue"]
                    .as_str()
                    .is_some_and(|a| a.eq_ignore_ascii_case(JANE))
        })
        .map(|row| {
            row["msdynmkt_contactpointconsent4id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for row_id in &row_ids {
        pair.emulator
            .edit_row(
                "msdynmkt_contactpointconsent4s",
                row_id,
                json!({"msdynmkt_value": OPTED_OUT}),
                None,
            )
            .unwrap();
    }
    // An event older than the edit but newer than our marker arrives (or a
    // redrive replays one): the edit in Dynamics stands.
    for event in [
        choice("ev-late", "2025-03-14T09:30:00.000Z", true),
        choice("ev-0", "2025-03-14T09:00:00.000Z", true),
    ] {
        let answer = pair.b.invoke(&event).await;
        assert!(failed(&answer).is_empty(), "{answer}");
        assert_jane_commercial(&pair.emulator, OPTED_OUT, "final");
    }
}
