//! Plans every webhook of a recognised invocation: the one step the Lambda
//! handler and `cpc-sync plan` share, so the dry run prints exactly what the
//! function would decide.

use std::panic::AssertUnwindSafe;

use crate::domain::decision::ConsentPlan;
use crate::domain::didomi::WebhookError;
use crate::domain::mapping::{MappingRules, RejectedWebhook, plan_body, plan_value};
use crate::lambda::events::{Inbound, SqsMessage};

/// A webhook's plan, or why it was rejected.
pub type PlanResult = Result<ConsentPlan, RejectedWebhook>;

/// An invocation with each of its webhooks planned, in arrival order.
#[derive(Debug)]
pub enum PlannedInvocation {
    /// An SQS batch: each message with its plan.
    Sqs(Vec<(SqsMessage, PlanResult)>),
    /// An HTTP API request.
    Http {
        /// `requestContext.requestId`, for log correlation.
        request_id: Option<String>,
        /// The body's plan.
        item: PlanResult,
    },
    /// A bare webhook envelope.
    Direct(PlanResult),
}

impl PlannedInvocation {
    /// Every plan with where its webhook was found: `event`, `body`, or
    /// `Records[i] (messageId …)`.
    pub fn located(self) -> Vec<(String, PlanResult)> {
        match self {
            PlannedInvocation::Direct(item) => vec![("event".into(), item)],
            PlannedInvocation::Http { item, .. } => vec![("body".into(), item)],
            PlannedInvocation::Sqs(messages) => messages
                .into_iter()
                .enumerate()
                .map(|(index, (message, item))| {
                    (
                        format!("Records[{index}] (messageId {})", message.message_id),
                        item,
                    )
                })
                .collect(),
        }
    }
}

/// Plans each webhook of `inbound` with `rules`. A panic while planning one
/// webhook rejects that webhook alone.
pub fn plan_inbound(inbound: Inbound, rules: &MappingRules) -> PlannedInvocation {
    match inbound {
        Inbound::Direct(envelope) => {
            PlannedInvocation::Direct(plan_isolated(|| plan_value(envelope, rules)))
        }
        Inbound::Http { body, request_id } => PlannedInvocation::Http {
            request_id,
            item: plan_isolated(|| plan_body(&body, rules)),
        },
        Inbound::Sqs(messages) => PlannedInvocation::Sqs(
            messages
                .into_iter()
                .map(|message| {
                    let item = plan_isolated(|| plan_body(message.body.as_bytes(), rules));
                    (message, item)
                })
                .collect(),
        ),
    }
}

/// Runs `plan`, turning a panic into a rejection of that webhook.
fn plan_isolated(plan: impl FnOnce() -> PlanResult) -> PlanResult {
    std::panic::catch_unwind(AssertUnwindSafe(plan)).unwrap_or_else(|_| {
        Err(RejectedWebhook::Webhook(WebhookError::Invalid {
            path: "$".into(),
            message: "internal error while reading this webhook".into(),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_planning_becomes_that_messages_rejection() {
        let result = plan_isolated(|| panic!("planner bug"));
        assert!(matches!(result, Err(RejectedWebhook::Webhook(_))));
    }
}
