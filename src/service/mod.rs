//! The sync service: a batch of consent plans in, one outcome per message out.
//!
//! One batch is a fixed sequence of steps, each one bulk round trip through
//! the [`ConsentStore`] port: find the contacts of every user, read every
//! consent row of their addresses, plan with [`crate::domain::writes`], and
//! write everything in one `$batch`. A failure only fails the messages whose
//! reads or writes it concerns: a set query that Dataverse refuses is retried
//! per user to find the one message that caused it.

mod metadata;
pub mod reverse;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::config::IntegrationConfig;
use crate::domain::cpc::{ConsentRow, Contact, ContactPointKey, WriteOp};
use crate::domain::decision::{ConsentPlan, ConsentValue, SkipReason};
use crate::domain::mapping::RejectedWebhook;
use crate::domain::mapping::sanity::check_plan;
use crate::domain::writes::{
    ContactPoints, PlannedMessage, PlanningContext, Tally, WritePlan, contact_points, plan_writes,
};

pub(crate) use metadata::describe as describe_problems;
pub use metadata::{Metadata, MetadataError};
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
    metadata: metadata::MetadataCell,
}

/// The outcome slots of a batch: `None` until a step decides the message.
type Slots = [Option<MessageOutcome>];

impl<S: ConsentStore> SyncService<S> {
    /// A service writing through `store` with the validated configuration.
    /// The environment's [`Metadata`] is read on first use (or by
    /// [`SyncService::metadata`] at start-up) and kept once read.
    pub fn new(store: S, config: Arc<IntegrationConfig>) -> Self {
        Self {
            store,
            config,
            metadata: metadata::MetadataCell::default(),
        }
    }

    /// A service whose metadata is already known (tests, tools).
    pub fn with_metadata(self, metadata: Metadata) -> Self {
        self.metadata.set(metadata);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &IntegrationConfig {
        &self.config
    }

    /// The store in use.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The environment's metadata, read once: the catalogue of purposes and
    /// topics (every mapped target must exist) and this product's
    /// application user. Failures are not kept: the next call reads again.
    pub async fn metadata(
        &self,
        deadline: Instant,
    ) -> Result<Arc<Metadata>, MetadataError<S::Error>> {
        self.metadata
            .get_or_load(&self.store, &self.config.targets(), deadline)
            .await
    }

    /// Processes a batch: `items[i]` is message `i`'s plan or why it was
    /// rejected; the result has one outcome per item, in order. Nothing here
    /// waits past `deadline`: what cannot finish is failed as retryable.
    pub async fn process(
        &self,
        items: &[Result<ConsentPlan, RejectedWebhook>],
        deadline: Instant,
    ) -> Vec<MessageOutcome> {
        let mut outcomes: Vec<Option<MessageOutcome>> =
            items.iter().map(|item| self.triage(item)).collect();
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

    /// The outcome a message has before any I/O, if it has one: rejected,
    /// skipped, or a plan that can never be written.
    fn triage(&self, item: &Result<ConsentPlan, RejectedWebhook>) -> Option<MessageOutcome> {
        let plan = match item {
            Err(rejected) => return Some(MessageOutcome::failed(rejected.to_string(), false)),
            Ok(plan) => plan,
        };
        if !plan.is_write() {
            return Some(MessageOutcome::Skipped {
                reason: plan.reason.clone().unwrap_or(SkipReason::NothingMapped),
            });
        }
        let skew =
            chrono::Duration::seconds(i64::from(self.config.properties.max_clock_skew_seconds));
        check_plan(plan, Utc::now(), skew)
            .err()
            .map(|problem| MessageOutcome::failed(problem.to_string(), false))
    }

    async fn write(
        &self,
        pending: &[(usize, &ConsentPlan)],
        outcomes: &mut Slots,
        deadline: Instant,
    ) {
        let metadata = match self.metadata(deadline).await {
            Ok(metadata) => metadata,
            Err(err) => {
                let retryable = err.is_retryable();
                for (index, _) in pending {
                    outcomes[*index] = Some(MessageOutcome::failed(err.to_string(), retryable));
                }
                return;
            }
        };
        let Some((mut messages, rows)) = self.read(pending, outcomes, deadline).await else {
            return;
        };
        // A message whose rows could not be read is decided; planning it
        // without its rows would create duplicates.
        messages.retain(|message| outcomes[message.index].is_none());
        let plan = plan_writes(
            &messages,
            &rows,
            PlanningContext {
                catalog: &metadata.catalog,
                own_user: metadata.own_user,
                source: self.config.properties.consent_source,
            },
        );
        let failures = self.execute(&plan, deadline).await;
        for message in &messages {
            outcomes[message.index] = Some(settle(
                message,
                &plan,
                &failures,
                &self.config.contacts.match_field,
            ));
        }
    }

    /// Steps 1 and 2, in one round trip when the contacts' addresses are the
    /// users themselves (`contact_match_field` = `contact_point_field`, the
    /// default): the contact query and the consent-row query for the users'
    /// `organization_user_id`s go together ([`ConsentStore::contacts_and_rows`]).
    /// Dataverse matches both case-insensitively; addresses whose
    /// [`ContactPointKey`] is not among the users' (a contact stored with
    /// another spelling Dataverse still matched) are read in a second query.
    /// A set the store refuses for good falls back to the step-by-step path,
    /// which finds the one message that caused it.
    async fn read<'a>(
        &self,
        pending: &[(usize, &'a ConsentPlan)],
        outcomes: &mut Slots,
        deadline: Instant,
    ) -> Option<(Vec<PlannedMessage<'a>>, Vec<ConsentRow>)> {
        let settings = &self.config.contacts;
        let users = distinct(
            pending
                .iter()
                .filter_map(|(_, plan)| plan.organization_user_id.clone()),
        );
        if settings.match_field != settings.point_field || users.is_empty() {
            let messages = self.resolve_contacts(pending, outcomes, deadline).await?;
            let rows = self
                .read_rows(&messages, &BTreeSet::new(), outcomes, deadline)
                .await?;
            return Some((messages, rows));
        }
        let together = self
            .store
            .contacts_and_rows(
                &settings.match_field,
                &settings.point_field,
                &users,
                &users,
                deadline,
            )
            .await;
        let (contacts, mut rows) = match together {
            Ok(found) => found,
            Err(err) if err.is_retryable() => {
                for (index, _) in pending {
                    outcomes[*index] = Some(MessageOutcome::failed(
                        format!("finding contacts: {err}"),
                        true,
                    ));
                }
                return None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "the combined query was refused; reading step by step");
                let messages = self.resolve_contacts(pending, outcomes, deadline).await?;
                let rows = self
                    .read_rows(&messages, &BTreeSet::new(), outcomes, deadline)
                    .await?;
                return Some((messages, rows));
            }
        };
        let messages = self.assign_contacts(pending, &contacts, &BTreeMap::new(), outcomes)?;
        let known: BTreeSet<ContactPointKey> =
            users.iter().map(|u| ContactPointKey::of(u)).collect();
        rows.extend(
            self.read_rows(&messages, &known, outcomes, deadline)
                .await?,
        );
        Some((messages, rows))
    }

    /// Step 1: the contacts of every user, and so the addresses each
    /// message's decisions belong to. Messages that need no write after all
    /// are decided here; the rest come back ready for row planning.
    async fn resolve_contacts<'a>(
        &self,
        pending: &[(usize, &'a ConsentPlan)],
        outcomes: &mut Slots,
        deadline: Instant,
    ) -> Option<Vec<PlannedMessage<'a>>> {
        let settings = &self.config.contacts;
        let users = distinct(
            pending
                .iter()
                .filter_map(|(_, plan)| plan.organization_user_id.clone()),
        );
        let (contacts, failed) = isolate(&users, |values| async move {
            self.store
                .find_contacts(
                    &settings.match_field,
                    &settings.point_field,
                    &values,
                    deadline,
                )
                .await
        })
        .await;
        self.assign_contacts(pending, &contacts, &failed, outcomes)
    }

    /// The addresses of each message from the contacts found; messages that
    /// need no write after all (or whose contacts could not be read) are
    /// decided here.
    fn assign_contacts<'a>(
        &self,
        pending: &[(usize, &'a ConsentPlan)],
        contacts: &[Contact],
        failed: &BTreeMap<ContactPointKey, (String, bool)>,
        outcomes: &mut Slots,
    ) -> Option<Vec<PlannedMessage<'a>>> {
        let settings = &self.config.contacts;
        let mut messages = Vec::new();
        for (index, plan) in pending {
            let user = plan.organization_user_id.as_deref().unwrap_or_default();
            if let Some((error, retryable)) = failed.get(&ContactPointKey::of(user)) {
                outcomes[*index] = Some(MessageOutcome::failed(
                    format!("finding contacts: {error}"),
                    *retryable,
                ));
                continue;
            }
            match contact_points(user, contacts, settings) {
                ContactPoints::Skip(reason) => {
                    outcomes[*index] = Some(MessageOutcome::Skipped { reason })
                }
                // Only opt-ins, and no contact: nothing to read or write.
                ContactPoints::Found {
                    opt_outs_only: true,
                    ..
                } if !plan
                    .consents
                    .iter()
                    .any(|decision| decision.value == ConsentValue::OptedOut) =>
                {
                    outcomes[*index] = Some(MessageOutcome::Skipped {
                        reason: SkipReason::NoContact {
                            match_field: settings.match_field.clone(),
                        },
                    })
                }
                ContactPoints::Found {
                    addresses,
                    create,
                    opt_outs_only,
                } => messages.push(PlannedMessage {
                    index: *index,
                    plan,
                    addresses,
                    create_contact: create,
                    opt_outs_only,
                }),
            }
        }
        (!messages.is_empty()).then_some(messages)
    }

    /// Step 2: every consent row of the messages' addresses, except those
    /// whose key is in `known` (already read). Messages whose addresses
    /// could not be read are failed; `None` when none is left.
    async fn read_rows(
        &self,
        messages: &[PlannedMessage<'_>],
        known: &BTreeSet<ContactPointKey>,
        outcomes: &mut Slots,
        deadline: Instant,
    ) -> Option<Vec<ConsentRow>> {
        let addresses = distinct(
            messages
                .iter()
                .flat_map(|message| message.addresses.iter().cloned())
                .filter(|address| !known.contains(&ContactPointKey::of(address))),
        );
        let (rows, failed) = isolate(&addresses, |values| async move {
            self.store.consent_rows(&values, deadline).await
        })
        .await;
        let mut any_left = false;
        for message in messages {
            let failure = message
                .addresses
                .iter()
                .find_map(|address| failed.get(&ContactPointKey::of(address)));
            match failure {
                Some((error, retryable)) => {
                    outcomes[message.index] = Some(MessageOutcome::failed(
                        format!("reading consent rows: {error}"),
                        *retryable,
                    ))
                }
                None => any_left = true,
            }
        }
        any_left.then_some(rows)
    }

    /// Step 3: the writes, in one `$batch`. Returns the failures per message.
    async fn execute(&self, plan: &WritePlan, deadline: Instant) -> Failures {
        let mut failures = Failures::new();
        if plan.ops.is_empty() {
            return failures;
        }
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
        failures
    }
}

/// Write failures per message index: `(message, retryable)`.
type Failures = BTreeMap<usize, Vec<(String, bool)>>;

/// Step 4: one message's outcome from its tally and its writes' failures.
fn settle(
    message: &PlannedMessage<'_>,
    plan: &WritePlan,
    failures: &Failures,
    match_field: &str,
) -> MessageOutcome {
    let tally: Tally = plan
        .tallies
        .get(&message.index)
        .cloned()
        .unwrap_or_default();
    let mut errors: Vec<(String, bool)> = tally
        .errors
        .iter()
        .map(|error| (error.clone(), false))
        .collect();
    errors.extend(failures.get(&message.index).cloned().unwrap_or_default());
    if !errors.is_empty() {
        let retryable = errors.iter().any(|(_, retryable)| *retryable);
        let text: Vec<String> = errors.into_iter().map(|(error, _)| error).collect();
        return MessageOutcome::failed(text.join("; "), retryable);
    }
    let decided = tally.created + tally.updated + tally.stale + tally.replayed;
    if decided == 0 && tally.withheld > 0 {
        // Only opt-ins, and no contact has the address: nothing to write yet.
        return MessageOutcome::Skipped {
            reason: SkipReason::NoContact {
                match_field: match_field.to_string(),
            },
        };
    }
    MessageOutcome::Written {
        created: tally.created,
        updated: tally.updated,
        stale: tally.stale,
        replayed: tally.replayed,
    }
}

/// Runs a set query over `values`; when Dataverse refuses the set with a
/// non-retryable error, runs it once per value so only the value that causes
/// it fails. Returns the rows of the values that succeeded and the error of
/// each value that failed, keyed by [`ContactPointKey`].
async fn isolate<T, E, F, Fut>(
    values: &[String],
    query: F,
) -> (Vec<T>, BTreeMap<ContactPointKey, (String, bool)>)
where
    E: StoreError,
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
{
    let mut failed = BTreeMap::new();
    if values.is_empty() {
        return (Vec::new(), failed);
    }
    let err = match query(values.to_vec()).await {
        Ok(rows) => return (rows, failed),
        Err(err) => err,
    };
    if err.is_retryable() || values.len() == 1 {
        let failure = (err.to_string(), err.is_retryable());
        for value in values {
            failed.insert(ContactPointKey::of(value), failure.clone());
        }
        return (Vec::new(), failed);
    }
    tracing::warn!(
        values = values.len(),
        "a set query was refused; querying each value alone to find the cause"
    );
    let singles = join_all(values.iter().map(|value| query(vec![value.clone()]))).await;
    let mut rows = Vec::new();
    for (value, result) in values.iter().zip(singles) {
        match result {
            Ok(found) => rows.extend(found),
            Err(err) => {
                failed.insert(
                    ContactPointKey::of(value),
                    (err.to_string(), err.is_retryable()),
                );
            }
        }
    }
    (rows, failed)
}

/// Values without duplicate keys, first spelling kept, sorted for stable
/// request URLs.
fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for value in values {
        seen.entry(ContactPointKey::of(&value)).or_insert(value);
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests;
