//! The write planner (DESIGN §4): from the consent plans of a batch and the
//! rows Dataverse already holds to the smallest set of writes. Pure code.
//!
//! Rules: every existing row for (address, channel Email, purpose or topic)
//! counts, active or not; none → create one with every ApplicationRequired
//! column; some → update each, but only for a decision newer than the row's
//! last one (our marker's time, or `modifiedon` for rows written by others);
//! a newer decision that confirms the value still moves the marker forward, so
//! an older event arriving later cannot undo it; a replayed event writes
//! nothing; rows are never deactivated or deleted. Several messages of one
//! batch touching one row collapse into a single write of the final state.

mod catalog;
mod contacts;
mod marker;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
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

/// Namespace for the ids of consent rows this product creates: concurrent
/// invocations creating the same row choose the same id, and the create-only
/// write of the second answers 412 instead of making a duplicate.
const CONSENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_4e8e_8b1d_4c55_9a53_2d0e_7f1b_c002);

/// A row's identity for the rules: address (case-insensitive) and target.
type RowKey = (ContactPointKey, Target);

/// A row as the planner sees it while applying the batch in event order.
#[derive(Clone, Debug)]
struct RowState {
    id: Uuid,
    contact_point: String,
    purpose_id: Uuid,
    target: Target,
    original: Option<(Option<ConsentValue>, Option<String>)>,
    value: Option<ConsentValue>,
    marker: Option<Marker>,
    modified_on: DateTime<Utc>,
    touched_by: BTreeSet<usize>,
}

impl RowState {
    fn existing(row: &ConsentRow, target: Target) -> Self {
        Self {
            id: row.id,
            contact_point: row.contact_point.clone(),
            purpose_id: row.purpose_id.unwrap_or_else(|| target.id()),
            target,
            original: Some((row.value, row.reason.clone())),
            value: row.value,
            marker: row.reason.as_deref().and_then(Marker::parse),
            modified_on: row.modified_on,
            touched_by: BTreeSet::new(),
        }
    }

    /// Whether `marker` decides after the row's last decision.
    fn is_older_than(&self, marker: &Marker) -> bool {
        match &self.marker {
            Some(ours) => marker > ours,
            // Written by someone else: only a choice made after that write wins.
            None => marker.at > self.modified_on,
        }
    }
}

/// Plans the writes of a batch.
///
/// `existing` are the Email-channel rows of every address in `messages`
/// (one query); `source` is the `msdynmkt_source` to write.
pub fn plan_writes(
    messages: &[PlannedMessage<'_>],
    existing: &[ConsentRow],
    catalog: &Catalog,
    source: i32,
) -> WritePlan {
    let mut by_key: BTreeMap<RowKey, Vec<RowState>> = BTreeMap::new();
    for row in existing {
        if let Some(target) = row_target(row) {
            by_key
                .entry((ContactPointKey::of(&row.contact_point), target))
                .or_default()
                .push(RowState::existing(row, target));
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
                let Some(purpose_id) = catalog.purpose_of(&decision.target) else {
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
                let value = decision.value;
                for row in rows.iter_mut() {
                    if row
                        .marker
                        .as_ref()
                        .is_some_and(|ours| ours.event_id == marker.event_id)
                    {
                        tally.replayed += 1;
                    } else if row.original.is_some() && !row.is_older_than(&marker) {
                        tally.stale += 1;
                    } else {
                        if row.original.is_none() && row.touched_by.is_empty() {
                            tally.created += 1;
                        } else {
                            tally.updated += 1;
                        }
                        row.value = Some(value);
                        row.marker = Some(marker.clone());
                        row.touched_by.insert(message.index);
                    }
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
    for row in by_key
        .into_values()
        .flatten()
        .filter(|row| !row.touched_by.is_empty())
    {
        let reason = row
            .marker
            .as_ref()
            .map(Marker::to_reason)
            .unwrap_or_default();
        // Every touched row was given a value above.
        let Some(value) = row.value else { continue };
        let op = match &row.original {
            None => WriteOp::CreateConsent(NewConsent {
                id: row.id,
                contact_point: row.contact_point.clone(),
                consent_type: if row.target.is_topic() {
                    ConsentType::Topic
                } else {
                    ConsentType::Purpose
                },
                value,
                purpose_id: row.purpose_id,
                topic_id: row.target.is_topic().then(|| row.target.id()),
                source,
                reason,
            }),
            Some((old_value, old_reason))
                if *old_value == row.value && old_reason.as_deref() == Some(reason.as_str()) =>
            {
                continue;
            }
            Some(_) => WriteOp::UpdateConsent(ConsentUpdate {
                id: row.id,
                value,
                source,
                reason,
            }),
        };
        plan.ops.push(op);
        plan.owners.push(row.touched_by);
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
        marker: None,
        modified_on: DateTime::<Utc>::MIN_UTC,
        touched_by: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests;
