//! The write planner (README, "Write rules"): from the consent plans of a batch and the
//! rows Dataverse already holds to the smallest set of writes. Pure code.
//!
//! Rules: every existing row for (address, channel Email, purpose or topic)
//! counts, active or not; none → create one with every ApplicationRequired
//! column; some → update each, but only for a decision newer than the row's
//! last one (our marker's time when this product's application user wrote the
//! row last, else `modifiedon`: a person's edit in Dynamics keeps our reason
//! text, so the text alone proves nothing);
//! a newer decision that confirms the value still moves the marker forward, so
//! an older event arriving later cannot undo it; a replayed event writes
//! nothing; rows are never deactivated or deleted. Several messages of one
//! batch touching one row collapse into a single write of the final state.

mod catalog;
mod contacts;
mod marker;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::domain::cpc::{
    ConsentRow, ConsentType, ConsentUpdate, ContactPointKey, NewConsent, NewContact, WriteOp,
};
use crate::domain::decision::{ConsentPlan, ConsentValue, Target};

pub use catalog::{Catalog, TargetProblem};
pub use contacts::{ContactPoints, ContactSettings, contact_points};
pub use marker::Marker;

/// One message of the batch, ready for row planning.
#[derive(Clone, Debug)]
pub struct PlannedMessage<'a> {
    /// The message's position in the batch (its key in the results).
    pub index: usize,
    /// Its consent plan (outcome `write`).
    pub plan: &'a ConsentPlan,
    /// The addresses its decisions are written for.
    pub addresses: Vec<String>,
    /// A contact to create first (upsert mode).
    pub create_contact: Option<NewContact>,
    /// No contact has the address: only its opt-outs are written (consent
    /// belongs to the address; an opt-in without a contact waits for one).
    pub opt_outs_only: bool,
}

/// What the planner decided for one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Decisions that create a row.
    pub created: usize,
    /// Decisions that update a row (value change or marker moved forward).
    pub updated: usize,
    /// Decisions older than the row's last decision: not applied.
    pub stale: usize,
    /// Decisions of an event the row already carries: nothing to do.
    pub replayed: usize,
    /// Opt-ins not written because no contact has the address.
    pub withheld: usize,
    /// Decisions that cannot be written (permanent; the message fails).
    pub errors: Vec<String>,
}

/// The writes for a batch and who depends on each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritePlan {
    /// Writes, contacts first; executed as one `$batch`.
    pub ops: Vec<WriteOp>,
    /// `owners[i]`: indexes of the messages whose outcome depends on `ops[i]`.
    pub owners: Vec<BTreeSet<usize>>,
    /// Per message index.
    pub tallies: BTreeMap<usize, Tally>,
}

/// What the planner needs to know besides the batch and its rows.
#[derive(Clone, Copy, Debug)]
pub struct PlanningContext<'a> {
    /// The purposes and topics, for parent purposes.
    pub catalog: &'a Catalog,
    /// This product's application user (`WhoAmI`): rows it wrote last are
    /// judged by their marker, every other row by its `modifiedon`.
    pub own_user: Uuid,
    /// The `msdynmkt_source` to write.
    pub source: i32,
}

/// Namespace for the ids of consent rows this product creates: concurrent
/// invocations creating the same row choose the same id, and the create-only
/// write of the second answers 412 instead of making a duplicate.
const CONSENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_4e8e_8b1d_4c55_9a53_2d0e_7f1b_c002);

/// A row's identity for the rules: address (ASCII case folded) and target.
type RowKey = (ContactPointKey, Target);

/// The last decision a row holds, as far as ordering is concerned.
#[derive(Clone, Debug)]
enum LastDecision {
    /// Nothing yet: a row this batch creates.
    None,
    /// Written last by this product: its marker tells which event and when.
    Ours(Marker),
    /// Written last by someone else (a Dynamics form, the preference centre,
    /// an agent, another flow), at `modifiedon`, whatever its reason says.
    Foreign(DateTime<Utc>),
}

impl LastDecision {
    fn of(row: &ConsentRow, own_user: Uuid) -> Self {
        let marker = row.reason.as_deref().and_then(Marker::parse);
        match marker {
            Some(marker) if row.modified_by == Some(own_user) => LastDecision::Ours(marker),
            _ => LastDecision::Foreign(row.modified_on),
        }
    }

    /// True when `marker` is the very decision the row holds.
    fn is_replay_of(&self, marker: &Marker) -> bool {
        matches!(self, LastDecision::Ours(ours) if ours.event_id == marker.event_id)
    }

    /// True when `marker` decides after the row's last decision. A foreign
    /// `modifiedon` has whole seconds, so a choice made in the same second is
    /// not provably newer: the edit made in Dynamics wins.
    fn is_older_than(&self, marker: &Marker) -> bool {
        match self {
            LastDecision::None => true,
            LastDecision::Ours(ours) => marker > ours,
            LastDecision::Foreign(modified_on) => {
                marker.at.trunc_subsecs(0) > modified_on.trunc_subsecs(0)
            }
        }
    }
}

/// A row as the planner sees it while applying the batch in event order.
#[derive(Clone, Debug)]
struct RowState {
    id: Uuid,
    contact_point: String,
    purpose_id: Uuid,
    target: Target,
    /// Value, reason and etag as read; `None` for a row this batch creates.
    original: Option<(Option<ConsentValue>, Option<String>, String)>,
    value: Option<ConsentValue>,
    last: LastDecision,
    touched_by: BTreeSet<usize>,
}

impl RowState {
    fn existing(row: &ConsentRow, target: Target, own_user: Uuid) -> Self {
        Self {
            id: row.id,
            contact_point: row.contact_point.clone(),
            purpose_id: row.purpose_id.unwrap_or_else(|| target.id()),
            target,
            original: Some((row.value, row.reason.clone(), row.etag.clone())),
            value: row.value,
            last: LastDecision::of(row, own_user),
            touched_by: BTreeSet::new(),
        }
    }

    /// Applies `marker`'s `value` if it is newer than what the row holds,
    /// counting what happened in `tally`.
    fn apply(&mut self, marker: &Marker, value: ConsentValue, index: usize, tally: &mut Tally) {
        if self.last.is_replay_of(marker) {
            tally.replayed += 1;
        } else if !self.last.is_older_than(marker) {
            tally.stale += 1;
        } else {
            if self.original.is_none() && self.touched_by.is_empty() {
                tally.created += 1;
            } else {
                tally.updated += 1;
            }
            self.value = Some(value);
            self.last = LastDecision::Ours(marker.clone());
            self.touched_by.insert(index);
        }
    }

    /// The write that brings the row to its planned state, if any.
    fn into_op(self, source: i32) -> Option<(WriteOp, BTreeSet<usize>)> {
        if self.touched_by.is_empty() {
            return None;
        }
        let LastDecision::Ours(marker) = &self.last else {
            return None;
        };
        let reason = marker.to_reason();
        let value = self.value?;
        let op = match self.original {
            None => WriteOp::CreateConsent(NewConsent {
                id: self.id,
                contact_point: self.contact_point.clone(),
                consent_type: if self.target.is_topic() {
                    ConsentType::Topic
                } else {
                    ConsentType::Purpose
                },
                value,
                purpose_id: self.purpose_id,
                topic_id: self.target.is_topic().then(|| self.target.id()),
                source,
                reason,
            }),
            Some((old_value, old_reason, _))
                if old_value == Some(value) && old_reason.as_deref() == Some(reason.as_str()) =>
            {
                return None;
            }
            Some((_, _, etag)) => WriteOp::UpdateConsent(ConsentUpdate {
                id: self.id,
                etag,
                value,
                source,
                reason,
            }),
        };
        Some((op, self.touched_by))
    }
}

/// Plans the writes of a batch.
///
/// `existing` are the Email-channel rows of every address in `messages`
/// (one query).
pub fn plan_writes(
    messages: &[PlannedMessage<'_>],
    existing: &[ConsentRow],
    context: PlanningContext<'_>,
) -> WritePlan {
    let mut by_key: BTreeMap<RowKey, Vec<RowState>> = BTreeMap::new();
    for row in existing {
        if let Some(target) = row_target(row) {
            by_key
                .entry((ContactPointKey::of(&row.contact_point), target))
                .or_default()
                .push(RowState::existing(row, target, context.own_user));
        }
    }
    let mut tallies: BTreeMap<usize, Tally> = messages
        .iter()
        .map(|m| (m.index, Tally::default()))
        .collect();
    let mut ordered: Vec<&PlannedMessage<'_>> = messages.iter().collect();
    // Apply in the order users made their choices, whatever the delivery order.
    ordered.sort_by(|a, b| {
        (a.plan.occurred_at, &a.plan.event_id, a.index).cmp(&(
            b.plan.occurred_at,
            &b.plan.event_id,
            b.index,
        ))
    });
    for message in ordered {
        let tally = tallies.entry(message.index).or_default();
        let (Some(at), Some(event_id)) =
            (message.plan.occurred_at, message.plan.event_id.as_deref())
        else {
            tally
                .errors
                .push("the plan has no event id or time to order it by".into());
            continue;
        };
        let marker = Marker::new(event_id, at);
        for address in &message.addresses {
            for decision in &message.plan.consents {
                if message.opt_outs_only && decision.value == ConsentValue::OptedIn {
                    tally.withheld += 1;
                    continue;
                }
                let Some(purpose_id) = context.catalog.purpose_of(&decision.target) else {
                    tally.errors.push(format!(
                        "{} is not a purpose or topic (with a parent purpose) in Dataverse",
                        decision.target
                    ));
                    continue;
                };
                let rows = by_key
                    .entry((ContactPointKey::of(address), decision.target))
                    .or_default();
                if rows.is_empty() {
                    rows.push(new_row(address, decision.target, purpose_id));
                }
                for row in rows.iter_mut() {
                    row.apply(&marker, decision.value, message.index, tally);
                }
            }
        }
    }
    let mut plan = WritePlan {
        tallies,
        ..WritePlan::default()
    };
    // One create per contact, owned by every message that needs it.
    let mut contact_owners: BTreeMap<Uuid, (NewContact, BTreeSet<usize>)> = BTreeMap::new();
    for message in messages {
        if let Some(contact) = &message.create_contact {
            contact_owners
                .entry(contact.id)
                .or_insert_with(|| (contact.clone(), BTreeSet::new()))
                .1
                .insert(message.index);
        }
    }
    for (contact, owners) in contact_owners.into_values() {
        plan.ops.push(WriteOp::CreateContact(contact));
        plan.owners.push(owners);
    }
    for (op, owners) in by_key
        .into_values()
        .flatten()
        .filter_map(|row| row.into_op(context.source))
    {
        plan.ops.push(op);
        plan.owners.push(owners);
    }
    plan
}

/// The target an existing row stands for: its topic, else its purpose. Rows
/// with neither are not consent this product manages.
fn row_target(row: &ConsentRow) -> Option<Target> {
    match (row.topic_id, row.purpose_id, row.consent_type) {
        (Some(topic), _, _) => Some(Target::Topic(topic)),
        (None, Some(purpose), None) => Some(Target::Purpose(purpose)),
        (None, Some(purpose), Some(ConsentType::Purpose)) => Some(Target::Purpose(purpose)),
        _ => None,
    }
}

fn new_row(address: &str, target: Target, purpose_id: Uuid) -> RowState {
    let key = format!("consent|{}|{target}", ContactPointKey::of(address));
    RowState {
        id: Uuid::new_v5(&CONSENT_ID_NAMESPACE, key.as_bytes()),
        contact_point: address.trim().to_string(),
        purpose_id,
        target,
        original: None,
        value: None,
        last: LastDecision::None,
        touched_by: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests;
