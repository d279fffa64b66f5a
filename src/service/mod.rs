//! The sync service: a batch of consent plans in, one outcome per message out.
//! It reads contacts and consent rows in one query each, plans with
//! [`crate::domain::writes`], and writes everything in one `$batch`, so a batch of up
//! to 10 webhooks costs three sequential Dataverse round trips (plus a token
//! and start-up metadata, both cached). A failure only fails the messages
//! whose writes it concerns.

mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::IntegrationConfig;
use crate::domain::cpc::{ContactPointKey, WriteOp};
use crate::domain::decision::{ConsentPlan, SkipReason};
use crate::domain::mapping::RejectedWebhook;
use crate::domain::writes::{
    Catalog, ContactPoints, ContactSettings, PlannedMessage, contact_points, plan_writes,
};

pub use store::{ConsentStore, StoreError};

/// What happened to one message of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Its decisions reached Dataverse (or were already there).
    Written {
        /// Rows created for it.
        created: usize,
        /// Rows updated for it.
        updated: usize,
        /// Decisions older than what a row holds (not applied).
        stale: usize,
        /// Decisions already written by this same event.
        replayed: usize,
    },
    /// Nothing to write; acknowledged with this reason.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
    /// Not done; the queue should deliver it again (or park it in the DLQ).
    Failed {
        /// What went wrong.
        error: String,
        /// Whether a later attempt could succeed.
        retryable: bool,
    },
}

impl MessageOutcome {
    /// True for [`MessageOutcome::Failed`].
    pub fn is_failure(&self) -> bool {
        matches!(self, MessageOutcome::Failed { .. })
    }

    fn failed(error: impl Into<String>, retryable: bool) -> Self {
        MessageOutcome::Failed {
            error: error.into(),
            retryable,
        }
    }
}

/// Applies consent plans to Dataverse through a [`ConsentStore`].
pub struct SyncService<S> {
    store: S,
    config: Arc<IntegrationConfig>,
    catalog: Arc<Catalog>,
}

impl<S: ConsentStore> SyncService<S> {
    /// A service writing through `store` with the validated configuration and
    /// the purposes/topics read at start.
    pub fn new(store: S, config: Arc<IntegrationConfig>, catalog: Arc<Catalog>) -> Self {
        Self {
            store,
            config,
            catalog,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &IntegrationConfig {
        &self.config
    }

    /// Processes a batch: `items[i]` is message `i`'s plan or why it was
    /// rejected; the result has one outcome per item, in order. Nothing here
    /// waits past `deadline`: what cannot finish is failed as retryable.
    pub async fn process(
        &self,
        items: &[Result<ConsentPlan, RejectedWebhook>],
        deadline: Instant,
    ) -> Vec<MessageOutcome> {
        let mut outcomes: Vec<Option<MessageOutcome>> = items
            .iter()
            .map(|item| match item {
                Err(rejected) => Some(MessageOutcome::failed(rejected.to_string(), false)),
                Ok(plan) if !plan.is_write() => Some(MessageOutcome::Skipped {
                    reason: plan.reason.clone().unwrap_or(SkipReason::NothingMapped),
                }),
                Ok(_) => None,
            })
            .collect();
        let pending: Vec<(usize, &ConsentPlan)> = items
            .iter()
            .enumerate()
            .filter(|(index, _)| outcomes[*index].is_none())
            .filter_map(|(index, item)| item.as_ref().ok().map(|plan| (index, plan)))
            .collect();
        if !pending.is_empty() {
            self.write(&pending, &mut outcomes, deadline).await;
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .unwrap_or_else(|| MessageOutcome::failed("internal error: no outcome", true))
            })
            .collect()
    }

    async fn write(
        &self,
        pending: &[(usize, &ConsentPlan)],
        outcomes: &mut [Option<MessageOutcome>],
        deadline: Instant,
    ) {
        let properties = &self.config.properties;
        let fail_all = |outcomes: &mut [Option<MessageOutcome>], what: &str, err: &S::Error| {
            for (index, _) in pending {
                outcomes[*index] = Some(MessageOutcome::failed(
                    format!("{what}: {err}"),
                    err.is_retryable(),
                ));
            }
        };
        let users = distinct(
            pending
                .iter()
                .filter_map(|(_, plan)| plan.organization_user_id.clone()),
        );
        let contacts = match self
            .store
            .find_contacts(
                &properties.contact_match_field,
                &properties.contact_point_field,
                &users,
                deadline,
            )
            .await
        {
            Ok(contacts) => contacts,
            Err(err) => return fail_all(outcomes, "finding contacts", &err),
        };
        let settings = ContactSettings {
            match_field: properties.contact_match_field.clone(),
            point_field: properties.contact_point_field.clone(),
            upsert_mode: self.config.upsert_mode,
        };
        let mut messages = Vec::new();
        for (index, plan) in pending {
            let user = plan.organization_user_id.as_deref().unwrap_or_default();
            match contact_points(user, &contacts, &settings) {
                ContactPoints::Skip(reason) => {
                    outcomes[*index] = Some(MessageOutcome::Skipped { reason })
                }
                ContactPoints::Found { addresses, create } => messages.push(PlannedMessage {
                    index: *index,
                    plan,
                    addresses,
                    create_contact: create,
                }),
            }
        }
        if messages.is_empty() {
            return;
        }
        let addresses = distinct(
            messages
                .iter()
                .flat_map(|message| message.addresses.iter().cloned()),
        );
        let rows = match self.store.consent_rows(&addresses, deadline).await {
            Ok(rows) => rows,
            Err(err) => {
                for message in &messages {
                    outcomes[message.index] = Some(MessageOutcome::failed(
                        format!("reading consent rows: {err}"),
                        err.is_retryable(),
                    ));
                }
                return;
            }
        };
        let plan = plan_writes(&messages, &rows, &self.catalog, properties.consent_source);
        let mut failures: BTreeMap<usize, Vec<(String, bool)>> = BTreeMap::new();
        if !plan.ops.is_empty() {
            match self.store.execute_writes(&plan.ops, deadline).await {
                Ok(results) => {
                    for ((op, owners), result) in plan.ops.iter().zip(&plan.owners).zip(results) {
                        let Err(err) = result else { continue };
                        // A contact that already exists is what a create-only write wants.
                        if matches!(op, WriteOp::CreateContact(_)) && err.is_already_exists() {
                            continue;
                        }
                        for owner in owners {
                            failures
                                .entry(*owner)
                                .or_default()
                                .push((err.to_string(), err.is_retryable()));
                        }
                    }
                }
                Err(err) => {
                    let owners: BTreeSet<usize> = plan.owners.iter().flatten().copied().collect();
                    for owner in owners {
                        failures
                            .entry(owner)
                            .or_default()
                            .push((format!("writing consent: {err}"), err.is_retryable()));
                    }
                }
            }
        }
        for message in &messages {
            let tally = plan
                .tallies
                .get(&message.index)
                .cloned()
                .unwrap_or_default();
            let mut errors: Vec<(String, bool)> = tally
                .errors
                .iter()
                .map(|error| (error.clone(), false))
                .collect();
            errors.extend(failures.remove(&message.index).unwrap_or_default());
            outcomes[message.index] = Some(if errors.is_empty() {
                MessageOutcome::Written {
                    created: tally.created,
                    updated: tally.updated,
                    stale: tally.stale,
                    replayed: tally.replayed,
                }
            } else {
                let retryable = errors.iter().any(|(_, retryable)| *retryable);
                let text: Vec<String> = errors.into_iter().map(|(error, _)| error).collect();
                MessageOutcome::failed(text.join("; "), retryable)
            });
        }
    }
}

/// Values without case-insensitive duplicates, first spelling kept, sorted
/// for stable request URLs.
fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for value in values {
        seen.entry(ContactPointKey::of(&value)).or_insert(value);
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests;
