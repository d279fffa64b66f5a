//! Didomi's webhooks, emulated: every consent event `POST /consents/events`
//! imports is sent as an `event.created` webhook (the envelope of reference
//! `didomi-webhooks.md` §2: `{"type", "regulation", "parameters": {"entity"}}`,
//! the entity being the imported Consent Event with its `id`, `user`,
//! `metadata` and `delegate`) to the configured URL (seed `didomi.webhook_url`,
//! `--didomi-webhook-url`, `PUT /_emulator/didomi/webhook`, or
//! [`super::DidomiApi::set_webhook_url`]).
//!
//! Unlike Didomi, which sends later, the emulator delivers each webhook, one
//! after another, before it answers the POST: a test that made the post
//! finds the webhooks delivered, with no waiting. A failed delivery is
//! recorded (Didomi would retry about 5 times in 5 minutes; the emulator does
//! not) and never fails the POST.

use std::time::Duration;

use serde_json::{Value, json};

/// One delivery attempt: the body sent and how the receiver answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The webhook body.
    pub body: Value,
    /// The receiver's HTTP status, or `None` when it could not be reached.
    pub status: Option<u16>,
}

/// The `event.created` webhook Didomi sends for an imported event.
pub fn event_created(event: &Value) -> Value {
    let regulation = event
        .get("regulation")
        .and_then(Value::as_str)
        .unwrap_or("gdpr");
    json!({
        "type": "event.created",
        "regulation": regulation,
        "parameters": { "entity": event },
    })
}

/// Posts each body to `url`, in order.
pub async fn deliver(http: &reqwest::Client, url: &str, bodies: Vec<Value>) -> Vec<Delivery> {
    let mut deliveries = Vec::with_capacity(bodies.len());
    for body in bodies {
        let status = http
            .post(url)
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16());
        if status.is_none_or(|status| !(200..300).contains(&status)) {
            tracing::warn!(url, ?status, "emulated Didomi webhook not accepted");
        }
        deliveries.push(Delivery { body, status });
    }
    deliveries
}
