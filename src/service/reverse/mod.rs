//! One pass of the reverse sync, Dynamics → Didomi (README, "Dynamics →
//! Didomi (reverse sync)"), shared by `cpc-sync reverse-sync --once` and the
//! scheduled function. It takes the state lock, reads the active Email
//! consent rows changed since the watermark by anyone but this product's
//! application user, from a listed `msdynmkt_source` (the domain checks both
//! again), turns each into a Didomi consent event ([`crate::domain::reverse`])
//! against the user's current Didomi state, posts them, and only then moves
//! the watermark (conditionally: a watermark someone else moved meanwhile is
//! never overwritten). A failed pass keeps the old watermark, so the next
//! one reads the same rows again; deterministic event ids keep that from
//! importing anything twice.

mod ports;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::IntegrationConfig;
use crate::domain::didomi::{Consents, DidomiUser};
use crate::domain::reverse::{self, RowPlan};
use crate::redact::mask_personal_in;

pub use ports::{ChangedRows, DidomiEvents, PortError};
pub use state::{Held, NoWatermark, StateError, Watermark, WatermarkStore, holder_name};

/// Rows modified this long before the watermark are read again: `modifiedon`
/// has whole seconds, and a row written in the watermark's second may not
/// have been visible yet. Re-read rows give the same event ids and are
/// dropped when Didomi already holds their choice.
pub const OVERLAP: Duration = Duration::from_secs(5);

/// How long the lock outlives the pass's deadline: a pass that is cut off
/// (a timeout, a crash) leaves a lock that the next one takes over once the
/// lease is over.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How one pass runs.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// Print the events instead of posting them; the watermark stays.
    pub dry_run: bool,
    /// Who runs the pass (the lock's holder, with a random suffix): e.g.
    /// `cli` or `lambda`.
    pub holder: String,
    /// When the pass must be done; the lease lasts until then plus [`LEASE_MARGIN`].
    pub deadline: Instant,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReverseSummary {
    /// Rows read from Dataverse.
    pub rows: u64,
    /// Events posted (or printed, in a dry run).
    pub events: u64,
    /// `POST /consents/events` requests that Didomi accepted.
    pub posts: u64,
    /// Rows not sent on purpose, by reason.
    pub ignored: BTreeMap<String, u64>,
    /// Rows that cannot be expressed as a Didomi event (each also reported).
    pub not_expressible: u64,
    /// The watermark the pass started from.
    pub watermark_before: Option<DateTime<Utc>>,
    /// The watermark after the pass (unchanged in a dry run or on failure).
    pub watermark_after: Option<DateTime<Utc>>,
}

/// Why a pass failed; the watermark was not moved. [`ReverseError::is_retryable`]
/// says whether the next pass (the next schedule) can succeed unaided.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    /// Reading Dataverse failed.
    #[error("reading Dataverse: {message}")]
    Dataverse {
        /// What went wrong.
        message: String,
        /// Whether a later pass may succeed.
        retryable: bool,
    },
    /// Reading or posting to Didomi failed.
    #[error("Didomi: {message}")]
    Didomi {
        /// What went wrong.
        message: String,
        /// Whether a later pass may succeed.
        retryable: bool,
        /// Whether the Didomi API key or organization must be fixed.
        configuration: bool,
    },
    /// A Didomi user does not parse: posting values computed from a guessed
    /// state could drop the user's other choices.
    #[error("Didomi: the user does not parse: {0}")]
    UnreadableUser(String),
    /// The watermark or the lock.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

impl ReverseError {
    /// True when the next pass can succeed without anyone fixing anything
    /// (throttling, outages, a held lock, a conflict).
    pub fn is_retryable(&self) -> bool {
        match self {
            ReverseError::Dataverse { retryable, .. } | ReverseError::Didomi { retryable, .. } => {
                *retryable
            }
            ReverseError::UnreadableUser(_) | ReverseError::Output(_) => false,
            ReverseError::State(error) => error.is_retryable(),
        }
    }

    /// True for errors an operator fixes in the configuration.
    pub fn is_configuration(&self) -> bool {
        match self {
            ReverseError::Didomi { configuration, .. } => *configuration,
            ReverseError::State(StateError::Invalid(_)) => true,
            _ => false,
        }
    }

    /// A short category for logs and Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReverseError::Dataverse { .. } => "DataverseFailed",
            ReverseError::Didomi { .. } | ReverseError::UnreadableUser(_) => "DidomiFailed",
            ReverseError::State(StateError::Locked { .. }) => "PassAlreadyRunning",
            ReverseError::State(StateError::Conflict { .. }) => "WatermarkConflict",
            ReverseError::State(_) => "StateFailed",
            ReverseError::Output(_) => "OutputFailed",
        }
    }

    fn dataverse(error: impl PortError) -> Self {
        ReverseError::Dataverse {
            message: error.to_string(),
            retryable: error.is_retryable(),
        }
    }

    fn didomi(error: impl PortError) -> Self {
        ReverseError::Didomi {
            message: error.to_string(),
            retryable: error.is_retryable(),
            configuration: error.is_configuration(),
        }
    }
}

/// What one pass works with: where the changed rows come from, Didomi, the
/// watermark and lock, the configuration, and this product's application
/// user (`WhoAmI`), whose own writes are never sent back.
pub struct Pass<'a, R, D, S> {
    /// The changed Contact Point Consent rows (Dataverse).
    pub rows: &'a R,
    /// Didomi's users and consent events.
    pub didomi: &'a D,
    /// The watermark and the lock.
    pub state: &'a S,
    /// The integration document (mappings, `properties.reverse_sync`).
    pub config: &'a IntegrationConfig,
    /// This product's application user.
    pub own_user: Uuid,
}

impl<'a, R, D, S> Pass<'a, R, D, S> {
    /// The same pass, keeping its watermark and lock in `state` instead.
    pub fn with_state<T>(&self, state: &'a T) -> Pass<'a, R, D, T> {
        Pass {
            rows: self.rows,
            didomi: self.didomi,
            state,
            config: self.config,
            own_user: self.own_user,
        }
    }
}

impl<R, D, S> Pass<'_, R, D, S>
where
    R: ChangedRows,
    D: DidomiEvents,
    S: WatermarkStore,
{
    /// Runs the pass: lock, read, post, advance, release. `out` gets one
    /// JSON line per event (dry run) and one per row that cannot be expressed.
    pub async fn run(
        &self,
        options: &PassOptions,
        out: &mut (dyn Write + Send),
    ) -> Result<ReverseSummary, ReverseError> {
        let lease = options
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_add(LEASE_MARGIN);
        let held = self
            .state
            .lock(&holder_name(&options.holder), lease)
            .await?;
        let result = self.under_lock(&held, options, out).await;
        if let Err(error) = self.state.release(&held).await {
            // The lease ends on its own; the next pass takes it over then.
            warn!(error = %error, "could not release the reverse-sync lock; it expires at the end of its lease");
        }
        result
    }

    async fn under_lock(
        &self,
        held: &Held,
        options: &PassOptions,
        out: &mut (dyn Write + Send),
    ) -> Result<ReverseSummary, ReverseError> {
        let Pass {
            rows,
            didomi,
            state,
            config,
            own_user,
        } = *self;
        let deadline = options.deadline;
        let before = held.watermark.as_ref().map(|w| w.modifiedon);
        let since = before
            .map(|at| at - chrono::Duration::from_std(OVERLAP).unwrap_or_default())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let settings = &config.properties.reverse_sync;
        let sources: Vec<i32> = settings.sources.iter().copied().collect();
        let changed = rows
            .changed_consent_rows(since, own_user, &sources, deadline)
            .await
            .map_err(ReverseError::dataverse)?;
        let user_id_is_address =
            config.properties.contact_match_field == config.properties.contact_point_field;
        let mut summary = ReverseSummary {
            rows: changed.len() as u64,
            watermark_before: before,
            watermark_after: before,
            ..ReverseSummary::default()
        };
        let mut users: HashMap<String, Option<Consents>> = HashMap::new();
        let mut events: Vec<Value> = Vec::new();
        let mut newest = before;
        for changed in &changed {
            newest = newest.max(Some(changed.row.modified_on));
            let plan = reverse::plan_row(
                changed,
                &config.rules.mappings,
                settings,
                own_user,
                user_id_is_address,
            );
            let (user, change) = match plan {
                RowPlan::Send { user, change } => (user, change),
                RowPlan::Ignored(reason) => {
                    *summary.ignored.entry(ignored_key(&reason)).or_default() += 1;
                    continue;
                }
                RowPlan::NotExpressible(reason) => {
                    summary.not_expressible += 1;
                    warn!(row = %changed.row.id, reason = %reason, "a changed row cannot be expressed as a Didomi event; not sent");
                    let line =
                        json!({"row": changed.row.id, "not_expressible": reason.to_string()});
                    writeln!(out, "{line}")?;
                    continue;
                }
            };
            if !users.contains_key(&user) {
                let current = match didomi
                    .user(&user, deadline)
                    .await
                    .map_err(ReverseError::didomi)?
                {
                    None => None,
                    Some(value) => Some(
                        serde_json::from_value::<DidomiUser>(value)
                            .map_err(|err| ReverseError::UnreadableUser(err.to_string()))?
                            .consents,
                    ),
                };
                users.insert(user.clone(), current);
            }
            let current = users.get_mut(&user).expect("inserted above");
            match reverse::build_event(&changed.row, &user, &change, current.as_ref()) {
                Ok(event) => {
                    reverse::apply(current.get_or_insert_with(Consents::default), &change);
                    if options.dry_run {
                        writeln!(out, "{event}")?;
                    }
                    events.push(event);
                }
                Err(reason) => {
                    *summary.ignored.entry(ignored_key(&reason)).or_default() += 1;
                }
            }
        }
        summary.events = events.len() as u64;
        if options.dry_run {
            return Ok(summary);
        }
        summary.posts = didomi
            .post_events(&events, deadline)
            .await
            .map_err(ReverseError::didomi)? as u64;
        if let Some(newest) = newest
            && Some(newest) != before
        {
            state
                .advance(held, &Watermark { modifiedon: newest })
                .await?;
        }
        summary.watermark_after = newest;
        info!(
            rows = summary.rows,
            events = summary.events,
            posts = summary.posts,
            not_expressible = summary.not_expressible,
            watermark = newest
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default(),
            "reverse sync pass done"
        );
        Ok(summary)
    }
}

/// The error as a log line may carry it: addresses masked.
pub fn loggable(error: &ReverseError) -> String {
    mask_personal_in(&error.to_string())
}

fn ignored_key(reason: &reverse::Ignored) -> String {
    match reason {
        reverse::Ignored::OwnWrite => "own_write",
        reverse::Ignored::Source(_) => "source_not_listed",
        reverse::Ignored::OptIn => "opt_in",
        reverse::Ignored::Inactive => "inactive",
        reverse::Ignored::NotSet => "not_set",
        reverse::Ignored::AlreadyInDidomi => "already_in_didomi",
    }
    .to_string()
}

#[cfg(test)]
mod tests;
