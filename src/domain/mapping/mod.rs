//! From a Didomi webhook to a consent plan (README, "Mapping rules"): filters, selectors and
//! per-target aggregation. Pure code: no I/O, no clock.

pub mod sanity;
mod selector;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

pub use crate::domain::decision::SkipReason;
use crate::domain::decision::{ConsentPlan, ConsentValue, Decision, Outcome, Target};
use crate::domain::didomi::{
    ConsentEvent, Consents, DidomiUser, EventStatus, Webhook, WebhookError, WebhookKind,
    parse_webhook, parse_webhook_value,
};

pub use selector::{Selector, SelectorError, ValueOwners};
pub use snapshot::{plan_snapshot, snapshot_envelope, snapshot_event_id};

/// The regulation assumed when neither the envelope nor the entity names one.
pub const DEFAULT_REGULATION: &str = "gdpr";

/// One validated mapping: a Dynamics target and the Didomi selector feeding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// `purpose:<guid>` or `topic:<guid>`.
    pub target: Target,
    /// What the mapping reads in the event.
    pub selector: Selector,
}

/// Everything the mapping stage needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRules {
    /// The mappings, in configuration order.
    pub mappings: Vec<Mapping>,
    /// Regulations whose events are written (lower case).
    pub regulations: Vec<String>,
    /// Webhook types that may lead to writes.
    pub webhook_types: BTreeSet<WebhookKind>,
    /// Preference owning each bare value id, so a bare selector can opt out.
    pub value_owners: ValueOwners,
}

/// A webhook that should write but cannot be ordered against other decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// No timestamp to order the decision by.
    #[error(
        "`{path}` is missing: a consent decision without a time cannot be ordered against newer ones"
    )]
    MissingTime {
        /// The field that should have held the time.
        path: &'static str,
    },
}

/// A webhook body that cannot become a plan: malformed, or unorderable.
/// Never retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectedWebhook {
    /// The body is not a valid Didomi webhook.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The webhook is valid but cannot be written safely.
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

/// Parses a raw webhook body and plans it.
pub fn plan_body(body: &[u8], rules: &MappingRules) -> Result<ConsentPlan, RejectedWebhook> {
    Ok(plan_webhook(&parse_webhook(body)?, rules)?)
}

/// Plans a webhook that arrived as JSON already (direct invocation).
pub fn plan_value(
    value: serde_json::Value,
    rules: &MappingRules,
) -> Result<ConsentPlan, RejectedWebhook> {
    Ok(plan_webhook(&parse_webhook_value(value)?, rules)?)
}

/// Turns one webhook into its consent plan.
pub fn plan_webhook(webhook: &Webhook, rules: &MappingRules) -> Result<ConsentPlan, MappingError> {
    let kind = webhook.kind();
    match webhook {
        Webhook::Deleted { kind, entity_id } => Ok(Draft {
            event_id: entity_id.clone(),
            ..Draft::default()
        }
        .skip(SkipReason::Deleted(kind.clone()))),
        Webhook::Unknown { type_name } => {
            Ok(Draft::default().skip(SkipReason::UnknownType(type_name.clone())))
        }
        Webhook::EventCreated { regulation, event }
        | Webhook::EventUpdated { regulation, event } => {
            let path = if kind == WebhookKind::EventCreated {
                "parameters.entity.created_at"
            } else {
                "parameters.new_entity.created_at"
            };
            plan_event(&kind, regulation.as_deref(), event, path, rules)
        }
        Webhook::Snapshot { regulation, user } => plan_snapshot(regulation.as_deref(), user, rules),
        Webhook::UserCreated { regulation, user } => {
            let draft = user_draft(regulation.as_deref(), user, None, None);
            let decisions = || decide_all(&rules.mappings, &user.consents, &rules.value_owners);
            finish(
                draft,
                &kind,
                rules,
                None,
                "parameters.entity.updated_at",
                decisions,
            )
        }
        Webhook::UserUpdated {
            regulation,
            source,
            old,
            new,
        } => {
            let draft = user_draft(
                regulation.as_deref(),
                new,
                source.as_ref().and_then(|source| source.id.clone()),
                source.as_ref().and_then(|source| source.created_at),
            );
            let decisions = || match old {
                Some(old) => diff(
                    &rules.mappings,
                    &old.consents,
                    &new.consents,
                    &rules.value_owners,
                ),
                None => decide_all(&rules.mappings, &new.consents, &rules.value_owners),
            };
            let empty_reason = old.as_ref().map(|_| SkipReason::NothingChanged);
            finish(
                draft,
                &kind,
                rules,
                empty_reason,
                "parameters.source.created_at",
                decisions,
            )
        }
    }
}

/// The fields of a plan known before any decision is made.
#[derive(Default)]
struct Draft {
    event_id: Option<String>,
    regulation: Option<String>,
    organization_user_id: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    status: Option<EventStatus>,
}

impl Draft {
    fn skip(self, reason: SkipReason) -> ConsentPlan {
        self.into_plan(Outcome::Skip, Some(reason), Vec::new())
    }

    fn into_plan(
        self,
        outcome: Outcome,
        reason: Option<SkipReason>,
        consents: Vec<Decision>,
    ) -> ConsentPlan {
        ConsentPlan {
            outcome,
            reason,
            event_id: self.event_id,
            regulation: self.regulation,
            organization_user_id: self.organization_user_id,
            occurred_at: self.occurred_at,
            consents,
        }
    }
}

fn plan_event(
    kind: &WebhookKind,
    envelope_regulation: Option<&str>,
    event: &ConsentEvent,
    time_path: &'static str,
    rules: &MappingRules,
) -> Result<ConsentPlan, MappingError> {
    let draft = Draft {
        event_id: Some(event.id.clone()),
        regulation: Some(resolve_regulation(
            envelope_regulation,
            event.regulation.as_deref(),
        )),
        organization_user_id: present(event.user.organization_user_id.as_deref()),
        occurred_at: event.created_at.or(event.updated_at),
        status: Some(event.effective_status()),
    };
    if event.is_own_echo() {
        return Ok(draft.skip(SkipReason::OwnEcho));
    }
    let decisions = || decide_all(&rules.mappings, &event.consents, &rules.value_owners);
    finish(draft, kind, rules, None, time_path, decisions)
}

fn user_draft(
    envelope_regulation: Option<&str>,
    user: &DidomiUser,
    source_id: Option<String>,
    source_time: Option<DateTime<Utc>>,
) -> Draft {
    // Without the triggering event's id, the user's version and update time
    // still identify this exact state, so replays of the same webhook are
    // recognised while two versionless states never share an id.
    let fallback_id = match (user.version, user.updated_at) {
        (Some(version), _) => format!("user:{}:v{version}", user.id),
        (None, Some(at)) => format!(
            "user:{}:at{}",
            user.id,
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        (None, None) => format!("user:{}:v0", user.id),
    };
    Draft {
        event_id: Some(source_id.unwrap_or(fallback_id)),
        regulation: Some(resolve_regulation(
            envelope_regulation,
            user.regulation.as_deref(),
        )),
        organization_user_id: present(user.organization_user_id.as_deref()),
        occurred_at: source_time.or(user.updated_at),
        status: None,
    }
}

/// Applies the filters in the order the README lists them, then the decisions.
fn finish(
    draft: Draft,
    kind: &WebhookKind,
    rules: &MappingRules,
    empty_reason: Option<SkipReason>,
    time_path: &'static str,
    decisions: impl FnOnce() -> Vec<Decision>,
) -> Result<ConsentPlan, MappingError> {
    if !rules.webhook_types.contains(kind) {
        return Ok(draft.skip(SkipReason::TypeNotEnabled(kind.clone())));
    }
    finish_filtered(draft, rules, empty_reason, time_path, decisions)
}

/// The filters after the type check (shared with snapshots, which have no
/// type to enable), then the decisions.
fn finish_filtered(
    draft: Draft,
    rules: &MappingRules,
    empty_reason: Option<SkipReason>,
    time_path: &'static str,
    decisions: impl FnOnce() -> Vec<Decision>,
) -> Result<ConsentPlan, MappingError> {
    if draft.organization_user_id.is_none() {
        return Ok(draft.skip(SkipReason::NoOrganizationUserId));
    }
    match &draft.status {
        Some(EventStatus::PendingApproval) => return Ok(draft.skip(SkipReason::PendingApproval)),
        Some(EventStatus::Other(status)) => {
            let reason = SkipReason::StatusNotConfirmed(status.clone());
            return Ok(draft.skip(reason));
        }
        Some(EventStatus::Confirmed) | None => {}
    }
    let regulation = draft
        .regulation
        .clone()
        .unwrap_or_else(|| DEFAULT_REGULATION.into());
    if !rules.regulations.contains(&regulation) {
        let allowed = rules.regulations.clone();
        return Ok(draft.skip(SkipReason::RegulationNotAllowed {
            regulation,
            allowed,
        }));
    }
    let decisions = decisions();
    if decisions.is_empty() {
        return Ok(draft.skip(empty_reason.unwrap_or(SkipReason::NothingMapped)));
    }
    if draft.occurred_at.is_none() {
        return Err(MappingError::MissingTime { path: time_path });
    }
    Ok(draft.into_plan(Outcome::Write, None, decisions))
}

/// Envelope `regulation`, then the entity's, then GDPR; compared in lower case.
fn resolve_regulation(envelope: Option<&str>, entity: Option<&str>) -> String {
    [envelope, entity]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|regulation| !regulation.is_empty())
        .unwrap_or(DEFAULT_REGULATION)
        .to_lowercase()
}

fn present(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// Every target's decision in one consent state.
fn decide_all(mappings: &[Mapping], consents: &Consents, owners: &ValueOwners) -> Vec<Decision> {
    let owners: Vec<Vec<String>> = mappings
        .iter()
        .map(|mapping| configured_owners(&mapping.selector, owners))
        .collect();
    aggregate(mappings, consents, &owners)
}

/// Decides each mapping (with `owners[i]` the known owning preferences of
/// mapping `i`'s bare value) and folds them per target: opted in if any
/// decided selector is opted in, opted out if all decided ones are opted out.
fn aggregate(mappings: &[Mapping], consents: &Consents, owners: &[Vec<String>]) -> Vec<Decision> {
    let mut by_target: BTreeMap<Target, ConsentValue> = BTreeMap::new();
    for (mapping, owners) in mappings.iter().zip(owners) {
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        let Some(value) = mapping.selector.decide(consents, &owners) else {
            continue;
        };
        by_target
            .entry(mapping.target)
            .and_modify(|current| {
                if value == ConsentValue::OptedIn {
                    *current = ConsentValue::OptedIn;
                }
            })
            .or_insert(value);
    }
    by_target
        .into_iter()
        .map(|(target, value)| Decision { target, value })
        .collect()
}

fn configured_owners(selector: &Selector, owners: &ValueOwners) -> Vec<String> {
    match selector {
        Selector::Value { value } => owners.get(value).cloned().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// `user.updated`: the decisions of the new state that differ from the old
/// state's. A bare value's owning preference is also learnt from either
/// state, so a value that leaves its preference's list counts as opted out.
fn diff(
    mappings: &[Mapping],
    old: &Consents,
    new: &Consents,
    owners: &ValueOwners,
) -> Vec<Decision> {
    let owners: Vec<Vec<String>> = mappings
        .iter()
        .map(|mapping| {
            let mut found = configured_owners(&mapping.selector, owners);
            if let Selector::Value { value } = &mapping.selector {
                found.extend(preferences_listing(old, value));
                found.extend(preferences_listing(new, value));
            }
            found
        })
        .collect();
    let before: BTreeMap<Target, ConsentValue> = aggregate(mappings, old, &owners)
        .into_iter()
        .map(|decision| (decision.target, decision.value))
        .collect();
    aggregate(mappings, new, &owners)
        .into_iter()
        .filter(|decision| before.get(&decision.target) != Some(&decision.value))
        .collect()
}

fn preferences_listing<'a>(
    consents: &'a Consents,
    value: &'a str,
) -> impl Iterator<Item = String> + 'a {
    consents.purposes.iter().flat_map(move |choice| {
        choice
            .values
            .iter()
            .filter(move |(_, selected)| {
                selected
                    .ids()
                    .is_some_and(|ids| ids.iter().any(|id| id == value))
            })
            .map(|(preference, _)| preference.clone())
    })
}

/// Mappings from `(target, selector)` pairs as the integration document
/// writes them (`("purpose:<guid>", "marketing")`); for tests, which need
/// rules without a whole document.
#[cfg(test)]
pub(crate) fn mappings_for_test(pairs: &[(&str, &str)]) -> Vec<Mapping> {
    pairs
        .iter()
        .map(|(id, value)| {
            let target: Target = id.parse().unwrap();
            Mapping {
                selector: Selector::parse(value, &target).unwrap(),
                target,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
