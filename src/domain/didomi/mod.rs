//! Didomi webhooks: the envelope, the consent event and user entities inside it,
//! and parsing of raw bodies into a typed [`Webhook`] (the shapes the README
//! lists under "Mapping rules").

mod consents;
mod entities;
mod envelope;
mod time;

pub use consents::{Consents, PurposeChoice, SelectedValues};
pub use entities::{ConsentEvent, DidomiUser, EventStatus, EventUser, SourceRef};
pub use envelope::{
    MAX_WEBHOOK_BYTES, SNAPSHOT_TYPE, Webhook, WebhookError, WebhookKind, parse_webhook,
    parse_webhook_value,
};
