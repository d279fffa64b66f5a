//! `cpc-sync reverse-sync --once`: one pass of Dynamics → Didomi (README,
//! "Dynamics → Didomi (reverse sync)"). Reads the active Email consent rows
//! changed since the watermark by anyone but this product's application
//! user, from a listed `msdynmkt_source` (the domain checks both again), turns
//! each into a Didomi consent event ([`crate::domain::reverse`]) against the
//! user's current Didomi state, and posts them. The watermark advances only
//! after Didomi accepted every event of the pass; a failed pass keeps it.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::adapters::dataverse::{DataverseClient, DataverseError};
use crate::adapters::didomi_api::{DidomiApiClient, DidomiApiError};
use crate::config::IntegrationConfig;
use crate::domain::didomi::{Consents, DidomiUser};
use crate::domain::reverse::{self, RowPlan};

/// Rows modified this long before the watermark are read again: `modifiedon`
/// has whole seconds, and a row written in the watermark's second may not
/// have been visible yet. Re-read rows give the same event ids and are
/// dropped when Didomi already holds their choice.
pub const OVERLAP: Duration = Duration::from_secs(5);

/// How one pass runs.
#[derive(Clone, Debug, Default)]
pub struct ReverseOptions {
    /// Print the events instead of posting them; the watermark stays.
    pub dry_run: bool,
    /// The watermark file; without one every pass starts from the beginning.
    pub watermark: Option<PathBuf>,
}

/// The watermark file: the newest `modifiedon` a successful pass read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Rows modified at or after this (less [`OVERLAP`]) are read next time.
    pub modifiedon: DateTime<Utc>,
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

/// Why a pass failed; the watermark was not moved.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    /// Reading Dataverse failed.
    #[error("reading Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
    /// Reading or posting to Didomi failed.
    #[error("Didomi: {0}")]
    Didomi(#[from] DidomiApiError),
    /// The watermark file cannot be read or written.
    #[error("watermark {path}: {message}")]
    Watermark {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Output(#[from] std::io::Error),
}

impl ReverseError {
    /// True for errors an operator fixes in the configuration.
    pub fn is_configuration(&self) -> bool {
        match self {
            ReverseError::Didomi(err) => err.is_configuration(),
            ReverseError::Watermark { .. } => true,
            _ => false,
        }
    }
}

/// Reads the watermark file; a missing file is no watermark.
pub fn read_watermark(path: &Path) -> Result<Option<Watermark>, ReverseError> {
    let error = |message: String| ReverseError::Watermark {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| error(format!("is not a watermark: {err}"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(error(err.to_string())),
    }
}

/// Writes the watermark file atomically (a temporary file, then a rename).
pub fn write_watermark(path: &Path, watermark: &Watermark) -> Result<(), ReverseError> {
    let error = |message: String| ReverseError::Watermark {
        path: path.display().to_string(),
        message,
    };
    let text = serde_json::to_string(watermark).map_err(|err| error(err.to_string()))?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(|err| error(err.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|err| error(err.to_string()))
}

/// One pass. `out` gets one JSON line per event (dry run) and one JSON line
/// per row that cannot be expressed; `own_user` is this product's
/// application user (`WhoAmI`).
pub async fn run_once(
    dataverse: &DataverseClient,
    didomi: &DidomiApiClient,
    config: &IntegrationConfig,
    own_user: Uuid,
    options: &ReverseOptions,
    out: &mut dyn Write,
) -> Result<ReverseSummary, ReverseError> {
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    let before = match &options.watermark {
        Some(path) => read_watermark(path)?.map(|w| w.modifiedon),
        None => None,
    };
    let since = before
        .map(|at| at - chrono::Duration::from_std(OVERLAP).unwrap_or_default())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let settings = &config.properties.reverse_sync;
    let sources: Vec<i32> = settings.sources.iter().copied().collect();
    let rows = dataverse
        .changed_consent_rows(since, own_user, &sources, deadline)
        .await?;
    let user_id_is_address =
        config.properties.contact_match_field == config.properties.contact_point_field;
    let mut summary = ReverseSummary {
        rows: rows.len() as u64,
        watermark_before: before,
        watermark_after: before,
        ..ReverseSummary::default()
    };
    let mut users: HashMap<String, Option<Consents>> = HashMap::new();
    let mut events: Vec<Value> = Vec::new();
    let mut newest = before;
    for changed in &rows {
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
                let line = json!({"row": changed.row.id, "not_expressible": reason.to_string()});
                writeln!(out, "{line}")?;
                continue;
            }
        };
        if !users.contains_key(&user) {
            // A user that does not parse stops the pass: posting values
            // computed from a guessed state could drop the user's others.
            let current = match didomi.user_by_organization_user_id(&user, deadline).await? {
                None => None,
                Some(value) => Some(
                    serde_json::from_value::<DidomiUser>(value)
                        .map_err(|err| DidomiApiError::Protocol {
                            operation: "GET /consents/users?organization_user_id".into(),
                            message: format!("the user does not parse: {err}"),
                        })?
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
    summary.posts = didomi.post_events(&events, deadline).await? as u64;
    if let (Some(path), Some(newest)) = (&options.watermark, newest) {
        write_watermark(path, &Watermark { modifiedon: newest })?;
    }
    summary.watermark_after = newest;
    tracing::info!(
        rows = summary.rows,
        events = summary.events,
        watermark = newest
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default(),
        "reverse sync pass done"
    );
    Ok(summary)
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
