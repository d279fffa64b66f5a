//! Dry run: the plans an invocation payload would produce, with no network.
//! Shared by `cpc-sync plan` and its tests.

use serde_json::Value;

use crate::domain::decision::ConsentPlan;
use crate::domain::mapping::{MappingRules, RejectedWebhook, plan_body, plan_value};
use crate::lambda::events::{Inbound, InboundError, classify};

/// The plan (or the rejection) of one webhook found in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunItem {
    /// Where the webhook was found: `event`, `body`, or `Records[i] (messageId …)`.
    pub location: String,
    /// Its plan, or why it was rejected.
    pub result: Result<ConsentPlan, RejectedWebhook>,
}

/// Plans every webhook in an invocation payload (bare envelope, SQS batch or
/// HTTP API request), in order.
pub fn plan_invocation(
    payload: Value,
    rules: &MappingRules,
) -> Result<Vec<DryRunItem>, InboundError> {
    Ok(match classify(payload)? {
        Inbound::Direct(envelope) => {
            vec![DryRunItem {
                location: "event".into(),
                result: plan_value(envelope, rules),
            }]
        }
        Inbound::Http { body, .. } => {
            vec![DryRunItem {
                location: "body".into(),
                result: plan_body(&body, rules),
            }]
        }
        Inbound::Sqs(messages) => messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| DryRunItem {
                location: format!("Records[{index}] (messageId {})", message.message_id),
                result: plan_body(message.body.as_bytes(), rules),
            })
            .collect(),
    })
}
