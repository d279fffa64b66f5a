//! `cpc-sync backfill`: every Didomi user's current state, from the API or a
//! batch export, planned with the snapshot rules and then printed
//! (`--dry-run`), written through the sync service (`--direct`) or sent to
//! the function's queue as snapshot messages (`--queue-url`). Resumable with
//! a checkpoint; a JSON summary at the end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::checkpoint::{self, Checkpoint, CheckpointError};
use super::progress::Progress;
use super::source::{Position, SourceError, SourceItem, UserSource};
use crate::adapters::dataverse::DataverseClient;
use crate::adapters::sqs::SqsSender;
use crate::domain::decision::ConsentPlan;
use crate::domain::didomi::DidomiUser;
use crate::domain::mapping::{MappingRules, plan_snapshot, snapshot_envelope};
use crate::redact::mask_identifier;
use crate::service::{MessageOutcome, SyncService};

/// Longest one page (read, plan, write) may take before its unfinished work
/// counts as failed and the run stops at that page.
pub const PAGE_BUDGET: Duration = Duration::from_secs(300);

/// Where planned users go.
pub enum Sink {
    /// Print one plan line per user (as `cpc-sync plan` does).
    DryRun(Box<dyn Write + Send>),
    /// Write through the sync service from this process.
    Direct(SyncService<DataverseClient>),
    /// Send each user as a snapshot message for the deployed function.
    Queue(SqsSender),
}

impl Sink {
    fn mode(&self) -> &'static str {
        match self {
            Sink::DryRun(_) => "dry_run",
            Sink::Direct(_) => "direct",
            Sink::Queue(_) => "queue",
        }
    }
}

/// The counts printed at the end (and kept in the checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSummary {
    /// `dry_run`, `direct` or `queue`.
    pub mode: String,
    /// `api` or `export:<dir>`.
    pub source: String,
    /// Users (and malformed lines) read.
    pub users_read: u64,
    /// Users whose plan writes something.
    pub planned: u64,
    /// Users not planned or not written, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Snapshot messages sent (`--queue-url`).
    pub enqueued: u64,
    /// Users with at least one row created or updated (`--direct`).
    pub written: u64,
    /// Users whose rows already held this state, or something newer (`--direct`).
    pub unchanged: u64,
    /// Users that could not be planned, sent or written (malformed included).
    pub failed: u64,
    /// Export lines that are not users.
    pub malformed: u64,
    /// Pages completed.
    pub pages: u64,
    /// Whether the whole source was read.
    pub complete: bool,
    /// The first [`MAX_LISTED_FAILURES`] failures, each with where it happened.
    pub failures: Vec<FailureNote>,
}

/// How many failures the summary lists (all are counted, and printed on stderr).
pub const MAX_LISTED_FAILURES: usize = 100;

/// One failed user or line: where, and why (addresses masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureNote {
    /// `path:line`, `API page N` or a masked user.
    pub at: String,
    /// What went wrong.
    pub error: String,
}

impl BackfillSummary {
    /// Counts a failure, prints it on stderr and lists it while there is room.
    pub fn fail(&mut self, at: String, error: String) {
        self.failed += 1;
        eprintln!("cpc-sync: {at}: {error}");
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(FailureNote { at, error });
        }
    }
}

/// Why the backfill stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The source failed (the checkpoint stays before that page).
    #[error("reading users: {0}")]
    Source(#[from] SourceError),
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing dry-run lines failed.
    #[error("writing the plans: {0}")]
    Output(std::io::Error),
    /// A page had failures a later run could fix (throttling, an outage); the
    /// checkpoint stays before that page.
    #[error(
        "{failed} user(s) of page {page} failed with a retryable error; run again (with the same --checkpoint) to resume at that page"
    )]
    RetryableFailures {
        /// The page number (from 1, counted over the whole walk).
        page: u64,
        /// Failed users.
        failed: u64,
    },
}

impl BackfillError {
    /// Whether the operator must fix the configuration (exit status 2).
    pub fn is_configuration(&self) -> bool {
        matches!(self, BackfillError::Source(err) if err.is_configuration())
            || matches!(
                self,
                BackfillError::Checkpoint(CheckpointError::Invalid { .. })
            )
    }
}

/// How to run.
pub struct BackfillOptions {
    /// `--checkpoint FILE`.
    pub checkpoint: Option<PathBuf>,
    /// Show progress on stderr.
    pub progress: bool,
}

/// A run's summary and, when it stopped early, why.
pub struct BackfillRun {
    /// The counts.
    pub summary: BackfillSummary,
    /// `None` when every page was done.
    pub error: Option<BackfillError>,
}

/// Reads the position to start from: the checkpoint's, when it exists.
pub fn resume_position(
    options: &BackfillOptions,
    source_label: &str,
) -> Result<Option<Checkpoint<BackfillSummary>>, CheckpointError> {
    match &options.checkpoint {
        Some(path) => checkpoint::load(path, source_label),
        None => Ok(None),
    }
}

/// Runs the backfill over `source` (already positioned at the checkpoint, if
/// any) into `sink`; `resumed` carries the checkpoint's counts.
pub async fn run(
    mut source: UserSource,
    rules: &MappingRules,
    mut sink: Sink,
    options: &BackfillOptions,
    resumed: Option<BackfillSummary>,
) -> BackfillRun {
    let mut summary = resumed.unwrap_or_else(|| BackfillSummary {
        source: source.label(),
        ..BackfillSummary::default()
    });
    summary.mode = sink.mode().into();
    let mut progress = Progress::new("backfill", options.progress);
    let error = loop {
        let deadline = Instant::now() + PAGE_BUDGET;
        let page = match source.next_page(deadline).await {
            Ok(Some(page)) => page,
            Ok(None) => {
                summary.complete = true;
                // Exports only learn they are done when the next read is empty.
                if let Some(path) = &options.checkpoint {
                    let saved = checkpoint::save(
                        path,
                        &Checkpoint {
                            version: 1,
                            source: summary.source.clone(),
                            position: Position::Finished,
                            summary: summary.clone(),
                        },
                    );
                    if let Err(err) = saved {
                        break Some(err.into());
                    }
                }
                break None;
            }
            Err(err) => break Some(BackfillError::Source(err)),
        };
        let mut page_summary = summary.clone();
        let retryable =
            match process_page(&page.items, rules, &mut sink, &mut page_summary, deadline).await {
                Ok(retryable) => retryable,
                Err(err) => break Some(err),
            };
        if retryable > 0 {
            summary = page_summary;
            break Some(BackfillError::RetryableFailures {
                page: summary.pages + 1,
                failed: retryable,
            });
        }
        summary = page_summary;
        summary.pages += 1;
        summary.complete = page.next == Position::Finished;
        if let Some(path) = &options.checkpoint {
            let saved = checkpoint::save(
                path,
                &Checkpoint {
                    version: 1,
                    source: summary.source.clone(),
                    position: page.next.clone(),
                    summary: summary.clone(),
                },
            );
            if let Err(err) = saved {
                break Some(err.into());
            }
        }
        progress.update(summary.users_read, source.fraction_done());
        if summary.complete {
            break None;
        }
    };
    progress.finish(summary.users_read, source.fraction_done());
    BackfillRun { summary, error }
}

/// Plans and sinks one page; returns how many users failed retryably.
async fn process_page(
    items: &[SourceItem],
    rules: &MappingRules,
    sink: &mut Sink,
    summary: &mut BackfillSummary,
    deadline: Instant,
) -> Result<u64, BackfillError> {
    let mut planned: Vec<(ConsentPlan, &serde_json::Value)> = Vec::new();
    for item in items {
        summary.users_read += 1;
        match item {
            SourceItem::Malformed { origin, error } => {
                summary.malformed += 1;
                summary.fail(origin.clone(), error.clone());
            }
            SourceItem::User { origin, user } => {
                match serde_json::from_value::<DidomiUser>(user.clone()) {
                    Err(err) => {
                        summary.fail(
                            origin.clone(),
                            format!(
                                "the user cannot be read: {}",
                                crate::redact::mask_emails_in(&err.to_string())
                            ),
                        );
                    }
                    Ok(parsed) => match plan_snapshot(None, &parsed, rules) {
                        Err(err) => {
                            summary.fail(
                                format!("{origin}: user {}", mask_identifier(&parsed.id)),
                                err.to_string(),
                            );
                        }
                        Ok(plan) if !plan.is_write() => {
                            let reason = plan
                                .reason
                                .map_or_else(|| "nothing to write".into(), |r| r.to_string());
                            *summary.skipped.entry(reason).or_default() += 1;
                        }
                        Ok(plan) => {
                            summary.planned += 1;
                            planned.push((plan, user));
                        }
                    },
                }
            }
        }
    }
    if planned.is_empty() {
        return Ok(0);
    }
    match sink {
        Sink::DryRun(out) => {
            for (plan, _) in &planned {
                let line = serde_json::to_string(plan).expect("plans serialise");
                writeln!(out, "{line}").map_err(BackfillError::Output)?;
            }
            Ok(0)
        }
        Sink::Direct(service) => {
            let items: Vec<_> = planned.iter().map(|(plan, _)| Ok(plan.clone())).collect();
            let outcomes = service.process(&items, deadline).await;
            let mut retryable = 0;
            for ((plan, _), outcome) in planned.iter().zip(outcomes) {
                match outcome {
                    MessageOutcome::Written {
                        created, updated, ..
                    } => {
                        if created + updated > 0 {
                            summary.written += 1;
                        } else {
                            summary.unchanged += 1;
                        }
                    }
                    MessageOutcome::Skipped { reason } => {
                        *summary.skipped.entry(reason.to_string()).or_default() += 1;
                    }
                    MessageOutcome::Failed {
                        error,
                        retryable: again,
                    } => {
                        if again {
                            retryable += 1;
                        }
                        summary.fail(user_label(plan), crate::redact::mask_emails_in(&error));
                    }
                }
            }
            Ok(retryable)
        }
        Sink::Queue(sender) => {
            let bodies: Vec<String> = planned
                .iter()
                .map(|(_, user)| snapshot_envelope(user).to_string())
                .collect();
            let mut retryable = 0;
            for ((plan, _), result) in planned.iter().zip(sender.send_all(&bodies).await) {
                match result {
                    Ok(()) => summary.enqueued += 1,
                    Err(err) => {
                        if err.retryable {
                            retryable += 1;
                        }
                        summary.fail(user_label(plan), err.to_string());
                    }
                }
            }
            Ok(retryable)
        }
    }
}

/// `user u:1a2b…@example.com`: a plan's user, masked.
fn user_label(plan: &ConsentPlan) -> String {
    format!(
        "user {}",
        mask_identifier(plan.organization_user_id.as_deref().unwrap_or("?"))
    )
}
