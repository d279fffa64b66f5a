//! `cpc-sync backfill --queue-url` end to end with real parts: snapshot
//! messages sent with `SendMessageBatch` to `moto_server`'s SQS, received
//! back and delivered as SQS batches to the real `bootstrap` under the
//! Lambda Runtime API of `cargo lambda`, which writes them to the emulator
//! whatever `properties.webhook_types` says, and never over a newer row.

use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::didomi_api::DidomiApiClient;
use didomi_cpc_sync::adapters::http::http_client;
use didomi_cpc_sync::adapters::sqs::SqsSender;
use didomi_cpc_sync::cli::backfill::{BackfillOptions, Sink, run};
use didomi_cpc_sync::cli::source::UserSource;
use serde_json::{Value, json};

use crate::support::didomi::{self, settings, users};
use crate::support::inprocess::{EMULATOR_SECRET, config_for, config_json, fast_policy, table};
use crate::support::lambda::LocalLambda;
use crate::support::moto::{MotoServer, sqs_client_for};

const SECRET_NAME: &str = "didomi/cpc-sync";

/// Every message on the queue, as SQS event records (and deleted from the queue).
async fn drain(client: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Value> {
    let mut records = Vec::new();
    loop {
        let answer = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = answer.messages();
        if messages.is_empty() {
            return records;
        }
        for message in messages {
            records.push(json!({
                "messageId": message.message_id().unwrap(),
                "receiptHandle": message.receipt_handle().unwrap(),
                "body": message.body().unwrap(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1741944067512",
                               "SenderId": "AIDTEST", "ApproximateFirstReceiveTimestamp": "1741944067600"},
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:didomi-cpc-sync-webhooks",
                "awsRegion": "us-east-1"
            }));
            client
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn function(emulator: &EmulatorHandle, moto: &MotoServer) -> LocalLambda {
    // The default webhook_types: event.created and event.updated only.
    let config = config_json(emulator);
    moto.client()
        .create_secret()
        .name(SECRET_NAME)
        .secret_string(config.to_string())
        .send()
        .await
        .unwrap();
    LocalLambda::start(&[
        ("SECRET_ID", SECRET_NAME.to_string()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-access-key".into()),
        ("AZURE_AUTHORITY_HOST", emulator.base_url()),
        ("ALLOW_INSECURE_HTTP", "true".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
    ])
    .await
    .forbid_in_logs([
        EMULATOR_SECRET.to_string(),
        "user0@example.com".into(),
        "user7@example.com".into(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_sent_to_the_queue_are_written_by_the_real_bootstrap() {
    let mut seed = didomi::seed(25, didomi::didomi_section(users(25), |_| {}));
    // user1 (opted in, per Didomi, in 2025) opted out in Dynamics in 2026.
    seed.consents.push(
        serde_json::from_value(json!({
            "msdynmkt_contactpointvalue": "user1@example.com", "msdynmkt_contactpointtype": 534120000,
            "msdynmkt_contactpointconsenttype": 534120000, "msdynmkt_value": 534120002,
            "_msdynmkt_purposeid_value": "10000000-0000-0000-0000-000000000003",
            "msdynmkt_source": 534120000, "msdynmkt_logicalreason": 534119999,
            "msdynmkt_reason": "Subscription center",
            "createdon": "2026-01-05T10:00:00Z", "modifiedon": "2026-01-05T10:00:00Z"}))
        .unwrap(),
    );
    let emulator = Emulator::start(seed).unwrap();
    let moto = MotoServer::start().await;
    let sqs = sqs_client_for(&moto.endpoint);
    let queue_url = sqs
        .create_queue()
        .queue_name("didomi-cpc-sync-webhooks")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();

    let sender = SqsSender::new(sqs.clone(), &queue_url);
    let client = DidomiApiClient::new(http_client(), &settings(&emulator, |_| {}), fast_policy());
    let options = BackfillOptions {
        checkpoint: None,
        progress: false,
    };
    let rules = config_for(&emulator, |_| {}).rules;
    let backfill = run(
        UserSource::api(client, None),
        &rules,
        Sink::Queue(sender.clone()),
        &options,
        None,
    )
    .await;
    assert!(backfill.error.is_none(), "{:?}", backfill.error);
    assert_eq!(backfill.summary.enqueued, 25);
    assert_eq!(sender.calls(), 3, "10 messages a call");
    assert!(
        table(&emulator).len() == 3,
        "nothing written before the function runs"
    );

    let records = drain(&sqs, &queue_url).await;
    assert_eq!(records.len(), 25);
    let lambda = function(&emulator, &moto).await;
    for batch in records.chunks(10) {
        let answer = lambda.invoke(&json!({ "Records": batch })).await;
        assert_eq!(
            answer,
            json!({"batchItemFailures": []}),
            "{}",
            lambda.logs()
        );
    }
    let rows = table(&emulator);
    assert_eq!(
        rows.len(),
        3 + 25 * 4 - 1,
        "user1's newer purpose row is kept, not doubled"
    );
    let user1_purpose = rows
        .iter()
        .find(|row| row.0 == "user1@example.com" && row.2 == "-")
        .unwrap();
    assert_eq!(
        user1_purpose.3, 534_120_002,
        "a snapshot never overwrites a newer row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_sends_to_the_queue_named_by_queue_url() {
    let emulator =
        Emulator::start(didomi::seed(0, didomi::didomi_section(users(12), |_| {}))).unwrap();
    let moto = MotoServer::start().await;
    let sqs = sqs_client_for(&moto.endpoint);
    let queue_url = sqs
        .create_queue()
        .queue_name("cli-backfill")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let dir = crate::support::scratch::dir("backfill-queue-cli");
    let path = dir.join("config.json");
    let mut config = config_json(&emulator);
    config["didomi_api"] = didomi::didomi_api_json();
    std::fs::write(&path, config.to_string()).unwrap();
    let base = emulator.base_url();
    let endpoint = moto.endpoint.clone();
    let url = queue_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cpc-sync"))
            .args([
                "backfill",
                "--config",
                &path.display().to_string(),
                "--queue-url",
                &url,
                "--no-progress",
            ])
            .env("ALLOW_INSECURE_HTTP", "true")
            .env("AZURE_AUTHORITY_HOST", &base)
            .env("DIDOMI_API_URL", format!("{base}/v1"))
            .env("AWS_ENDPOINT_URL_SQS", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret-access-key")
            .env_remove("SECRET_ID")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (summary["mode"].as_str(), summary["enqueued"].as_u64()),
        (Some("queue"), Some(12))
    );
    let records = drain(&sqs, &queue_url).await;
    assert_eq!(records.len(), 12);
    let body: Value = serde_json::from_str(records[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "didomi-cpc-sync.snapshot");
}
