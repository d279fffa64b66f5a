//! Dry run: the plans an invocation payload would produce, with no network.
//! Shared by `cpc-sync plan` and its tests; the planning itself is the
//! handler's own ([`crate::lambda::planning`]).

use serde_json::Value;

use crate::domain::decision::ConsentPlan;
use crate::domain::mapping::{MappingRules, RejectedWebhook};
use crate::lambda::events::{InboundError, classify};
use crate::lambda::planning::plan_inbound;

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
    Ok(plan_inbound(classify(payload)?, rules)
        .located()
        .into_iter()
        .map(|(location, result)| DryRunItem { location, result })
        .collect())
}
