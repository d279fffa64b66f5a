//! Retries back off and permanent failures go to the dead-letter queue, with
//! a real SQS: `moto_server`'s queues, real receipt handles and receive
//! counts, the function's handler wired as `bootstrap` wires it, and
//! Dataverse played by `tools/emulator` (faults injected).

use crate::support::inprocess;
use crate::support::moto::MotoServer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use cpc_emulator::{Emulator, EmulatorHandle};
use didomi_cpc_sync::adapters::dataverse::DataverseClient;
use didomi_cpc_sync::adapters::sqs_redelivery::{
    ORIGINAL_ID_ATTRIBUTE, REASON_ATTRIBUTE, SqsRedelivery,
};
use didomi_cpc_sync::lambda::handler::Handler;
use inprocess::{demo_seed_json, fast_policy, seed_from};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// The source queue's own visibility timeout: short, so a message that was
/// not hidden longer would be visible again within the test.
const QUEUE_VISIBILITY_SECONDS: &str = "1";

struct Queues {
    moto: MotoServer,
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    dead_letter_url: String,
}

async fn queues() -> Queues {
    let moto = MotoServer::start().await;
    let sqs = moto.sqs();
    let url = sqs
        .create_queue()
        .queue_name("webhooks")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            QUEUE_VISIBILITY_SECONDS,
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dead_letter_url = sqs
        .create_queue()
        .queue_name("webhooks-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    Queues {
        moto,
        sqs,
        url,
        arn,
        dead_letter_url,
    }
}

impl Queues {
    fn redelivery(&self) -> Arc<SqsRedelivery> {
        Arc::new(SqsRedelivery::new(
            self.sqs.clone(),
            Some(self.moto.endpoint.clone()),
            Some(self.dead_letter_url.clone()),
        ))
    }

    /// Sends `body`, receives it back and returns the Lambda SQS record for
    /// that delivery (real message id, receipt handle and receive count).
    async fn deliver(&self, body: &str) -> Value {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        let received = self.receive(&self.url).await;
        let message = received.first().expect("the message is delivered");
        let count = message.attributes.as_ref().unwrap()
            [&MessageSystemAttributeName::ApproximateReceiveCount]
            .clone();
        json!({
            "messageId": message.message_id, "receiptHandle": message.receipt_handle,
            "body": message.body, "attributes": {"ApproximateReceiveCount": count},
            "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": self.arn,
            "awsRegion": "us-east-1"
        })
    }

    async fn receive(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }
}

async fn handler(emulator: &EmulatorHandle, queues: &Queues) -> Handler<DataverseClient> {
    inprocess::handler_with(emulator, |_| {}, fast_policy(), queues.redelivery())
        .await
        .expect("the function starts")
}

fn batch(records: Vec<Value>) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.deadline = (SystemTime::now() + Duration::from_secs(15))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    LambdaEvent::new(json!({ "Records": records }), context)
}

fn failed_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

fn opt_in() -> String {
    inprocess::event("event-created-opt-in.json").to_string()
}

fn dataverse_down(emulator: &EmulatorHandle) {
    emulator.set_faults(
        serde_json::from_value(json!([
            {"path_contains": "/api/data/", "times": null, "action": {"status": 503}}
        ]))
        .unwrap(),
    );
}

#[tokio::test]
async fn a_retryable_failure_stays_invisible_for_its_backoff_not_the_queue_timeout() {
    let emulator = Emulator::start(seed_from(demo_seed_json())).unwrap();
    let queues = queues().await;
    let handler = handler(&emulator, &queues).await;
    dataverse_down(&emulator);
    let record = queues.deliver(&opt_in()).await;
    let answer = handler.handle(batch(vec![record.clone()])).await.unwrap();
    assert_eq!(failed_ids(&answer), [record["messageId"].as_str().unwrap()]);
    // The queue alone would deliver it again after 1 s; the backoff is 30 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        queues.receive(&queues.url).await.is_empty(),
        "still hidden after 3 s"
    );
    assert!(queues.receive(&queues.dead_letter_url).await.is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_permanent_failure_is_in_the_dead_letter_queue_with_its_reason_after_one_delivery() {
    let emulator = Emulator::start(seed_from(demo_seed_json())).unwrap();
    let queues = queues().await;
    let handler = handler(&emulator, &queues).await;
    let body = "{\"type\": \"event.created\", \"parameters\": {\"entity\": {\"id\": 7}}}";
    let record = queues.deliver(body).await;
    let answer = handler.handle(batch(vec![record.clone()])).await.unwrap();
    assert!(failed_ids(&answer).is_empty(), "acknowledged: {answer}");
    let parked = queues.receive(&queues.dead_letter_url).await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        parked[0].body.as_deref(),
        Some(body),
        "the body is unchanged"
    );
    let attributes = parked[0].message_attributes.as_ref().unwrap();
    let text = |name: &str| attributes[name].string_value.clone().unwrap();
    assert_eq!(
        text(ORIGINAL_ID_ATTRIBUTE),
        record["messageId"].as_str().unwrap()
    );
    assert!(
        text(REASON_ATTRIBUTE).contains("parameters.entity.id"),
        "{}",
        text(REASON_ATTRIBUTE)
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_start_without_dataverse_fails_messages_retryably_until_it_is_back() {
    let emulator = Emulator::start(seed_from(demo_seed_json())).unwrap();
    let queues = queues().await;
    emulator.set_faults(
        serde_json::from_value(json!([
            {"times": null, "action": {"drop": "before"}}
        ]))
        .unwrap(),
    );
    let handler = handler(&emulator, &queues).await;
    let record = queues.deliver(&opt_in()).await;
    let answer = handler.handle(batch(vec![record.clone()])).await.unwrap();
    assert_eq!(failed_ids(&answer), [record["messageId"].as_str().unwrap()]);
    assert!(queues.receive(&queues.dead_letter_url).await.is_empty());

    emulator.set_faults(Vec::new());
    let again = queues.deliver(&opt_in()).await;
    let answer = handler.handle(batch(vec![again])).await.unwrap();
    assert!(
        failed_ids(&answer).is_empty(),
        "written once Dataverse is back: {answer}"
    );
    assert!(
        emulator.consents().len() > 2,
        "the opt-in is written next to the 2 seeded rows"
    );
    emulator.shutdown().await;
}
