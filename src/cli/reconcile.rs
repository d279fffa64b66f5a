//! `cpc-sync reconcile`: for every Didomi user (API or export) and every
//! mapped target, the decision Didomi's current state implies compared with
//! the rows Dataverse holds for the address, classified by
//! [`crate::domain::reconcile`]. Dataverse is read in sets: per page of
//! users one query for the contacts and one for their consent rows (plus,
//! with `--repair`, the sync service's own reads and `$batch`, and one
//! re-read of the rows), whatever the page size.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::progress::Progress;
use super::source::{SourceError, SourceItem, UserSource};
use crate::adapters::dataverse::{DataverseClient, DataverseError};
use crate::config::IntegrationConfig;
use crate::domain::decision::{ConsentPlan, ConsentValue, Target};
use crate::domain::didomi::DidomiUser;
use crate::domain::mapping::plan_snapshot;
use crate::domain::reconcile::{Addresses, DriftClass, Finding, classify_user, repair_plan};
use crate::domain::writes::{ContactPoints, ContactSettings, contact_points};
use crate::redact::mask_identifier;
use crate::service::{MessageOutcome, SyncService};

/// Longest one page (read, compare, repair) may take.
pub const PAGE_BUDGET: Duration = Duration::from_secs(300);

/// How to run.
pub struct ReconcileOptions {
    /// Print addresses in clear (`--show-addresses`); masked otherwise.
    pub show_addresses: bool,
    /// Show progress on stderr.
    pub progress: bool,
}

/// Counts per class, every class listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCounts(pub BTreeMap<DriftClass, u64>);

impl Default for ClassCounts {
    fn default() -> Self {
        Self(DriftClass::ALL.iter().map(|class| (*class, 0)).collect())
    }
}

impl ClassCounts {
    fn add(&mut self, class: DriftClass) {
        *self.0.entry(class).or_default() += 1;
    }

    /// The count of one class.
    pub fn get(&self, class: DriftClass) -> u64 {
        self.0.get(&class).copied().unwrap_or_default()
    }

    /// Pairs whose rows disagree with Didomi (exit status 3 when not zero).
    pub fn drift(&self) -> u64 {
        self.0
            .iter()
            .filter(|(class, _)| class.is_drift())
            .map(|(_, count)| count)
            .sum()
    }
}

impl Serialize for ClassCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(class, count)| (class.as_str(), count)))
    }
}

/// What a run found (and repaired).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Users (and malformed lines) read.
    pub users_read: u64,
    /// Users compared (with `organization_user_id`, allowed regulation).
    pub users_compared: u64,
    /// Users not compared, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Users or lines that could not be read or planned.
    pub failed: u64,
    /// (address, target) classes as found.
    pub before: ClassCounts,
    /// The classes after `--repair` re-read the rows; `None` without it.
    pub after: Option<ClassCounts>,
    /// Users whose repair was written.
    pub repaired_users: u64,
    /// Users whose repair failed.
    pub repair_failed: u64,
    /// Pages read.
    pub pages: u64,
}

impl ReconcileReport {
    /// The counts that decide the exit status: after repair when it ran.
    pub fn final_counts(&self) -> &ClassCounts {
        self.after.as_ref().unwrap_or(&self.before)
    }

    /// The summary table printed on stderr.
    pub fn table(&self) -> String {
        let mut text = format!("{:<24}{:>10}", "class", "pairs");
        if self.after.is_some() {
            text.push_str(&format!("{:>16}", "after repair"));
        }
        text.push('\n');
        for class in DriftClass::ALL {
            text.push_str(&format!(
                "{:<24}{:>10}",
                class.as_str(),
                self.before.get(class)
            ));
            if let Some(after) = &self.after {
                text.push_str(&format!("{:>16}", after.get(class)));
            }
            text.push('\n');
        }
        text.push_str(&format!(
            "users read {}, compared {}, skipped {}, failed {}",
            self.users_read,
            self.users_compared,
            self.skipped.values().sum::<u64>(),
            self.failed
        ));
        if self.after.is_some() {
            text.push_str(&format!(
                "; repaired {} user(s), {} repair(s) failed",
                self.repaired_users, self.repair_failed
            ));
        }
        text
    }
}

/// Why the reconcile stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading Didomi failed.
    #[error("reading users: {0}")]
    Source(#[from] SourceError),
    /// Reading Dataverse failed.
    #[error("reading Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
    /// The purposes, topics or application user could not be read.
    #[error("{0}")]
    Metadata(String),
    /// Writing the drift lines failed.
    #[error("writing the drift lines: {0}")]
    Output(#[from] std::io::Error),
}

impl ReconcileError {
    /// Whether the operator must fix the configuration (exit status 2).
    pub fn is_configuration(&self) -> bool {
        matches!(self, ReconcileError::Source(err) if err.is_configuration())
    }
}

/// One drift line of the output.
#[derive(Serialize)]
struct DriftLine {
    class: &'static str,
    organization_user_id: String,
    address: String,
    target: Target,
    didomi: Option<ConsentValue>,
    didomi_at: Option<DateTime<Utc>>,
    dynamics: Option<ConsentValue>,
    dynamics_at: Option<DateTime<Utc>>,
    rows: usize,
}

fn line(finding: &Finding, show_addresses: bool) -> DriftLine {
    let shown = |value: &str| {
        if show_addresses {
            value.to_string()
        } else {
            mask_identifier(value)
        }
    };
    DriftLine {
        class: finding.class.as_str(),
        organization_user_id: shown(&finding.organization_user_id),
        address: shown(&finding.address),
        target: finding.target,
        didomi: finding.didomi,
        didomi_at: finding.didomi_at,
        dynamics: finding.dynamics,
        dynamics_at: finding.dynamics_at,
        rows: finding.rows,
    }
}

/// Compares every user of `source` with the rows `service`'s store holds;
/// writes one JSON line per drifting (address, target), and per
/// `no_contact` one, to `out`; with `repair`, writes the repairable
/// decisions through `service` and re-reads.
pub async fn run(
    mut source: UserSource,
    service: &SyncService<DataverseClient>,
    repair: bool,
    out: &mut dyn Write,
    options: &ReconcileOptions,
) -> Result<ReconcileReport, ReconcileError> {
    let config = service.config();
    let client = service.store();
    // Rows this product's application user wrote last carry a marker that dates them.
    let own_user = service
        .metadata(Instant::now() + PAGE_BUDGET)
        .await
        .map_err(|err| ReconcileError::Metadata(err.to_string()))?
        .own_user;
    let repair = repair.then_some(service);
    let mut report = ReconcileReport {
        after: repair.map(|_| ClassCounts::default()),
        ..ReconcileReport::default()
    };
    let targets = config.targets();
    let mut progress = Progress::new("reconcile", options.progress);
    loop {
        let deadline = Instant::now() + PAGE_BUDGET;
        let Some(page) = source.next_page(deadline).await? else {
            break;
        };
        report.pages += 1;
        let plans = plan_page(&page.items, config, &mut report);
        if !plans.is_empty() {
            compare_page(
                &plans,
                &targets,
                config,
                client,
                own_user,
                repair,
                out,
                options,
                &mut report,
                deadline,
            )
            .await?;
        }
        progress.update(report.users_read, source.fraction_done());
    }
    progress.finish(report.users_read, source.fraction_done());
    out.flush()?;
    Ok(report)
}

/// The comparable users' plans of a page; the rest counted.
fn plan_page(
    items: &[SourceItem],
    config: &IntegrationConfig,
    report: &mut ReconcileReport,
) -> Vec<ConsentPlan> {
    let rules = &config.rules;
    let mut plans = Vec::new();
    for item in items {
        report.users_read += 1;
        let (origin, user) = match item {
            SourceItem::Malformed { origin, error } => {
                report.failed += 1;
                eprintln!("cpc-sync: {origin}: skipped: {error}");
                continue;
            }
            SourceItem::User { origin, user } => (origin, user),
        };
        let plan = serde_json::from_value::<DidomiUser>(user.clone())
            .map_err(|err| err.to_string())
            .and_then(|user| plan_snapshot(None, &user, rules).map_err(|err| err.to_string()));
        match plan {
            Err(err) => {
                report.failed += 1;
                // serde may quote a value, an address among them.
                eprintln!(
                    "cpc-sync: {origin}: {}",
                    crate::redact::mask_emails_in(&err)
                );
            }
            Ok(plan) => {
                let comparable = plan.organization_user_id.is_some()
                    && plan
                        .regulation
                        .as_ref()
                        .is_some_and(|regulation| rules.regulations.contains(regulation));
                if comparable {
                    report.users_compared += 1;
                    plans.push(plan);
                } else {
                    let reason = plan
                        .reason
                        .map_or_else(|| "not comparable".into(), |r| r.to_string());
                    *report.skipped.entry(reason).or_default() += 1;
                }
            }
        }
    }
    plans
}

#[allow(clippy::too_many_arguments)]
async fn compare_page(
    plans: &[ConsentPlan],
    targets: &BTreeSet<Target>,
    config: &IntegrationConfig,
    client: &DataverseClient,
    own_user: Uuid,
    repair: Option<&SyncService<DataverseClient>>,
    out: &mut dyn Write,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
    deadline: Instant,
) -> Result<(), ReconcileError> {
    let properties = &config.properties;
    let users: Vec<String> = plans
        .iter()
        .filter_map(|plan| plan.organization_user_id.clone())
        .collect();
    let contacts = client
        .find_contacts(
            &properties.contact_match_field,
            &properties.contact_point_field,
            &users,
            deadline,
        )
        .await?;
    let settings = ContactSettings {
        match_field: properties.contact_match_field.clone(),
        point_field: properties.contact_point_field.clone(),
        upsert_mode: false,
        opt_outs_without_contact: properties.write_opt_outs_without_contact,
    };
    let resolved: Vec<Addresses> = plans
        .iter()
        .map(|plan| {
            let user = plan.organization_user_id.as_deref().unwrap_or_default();
            match contact_points(user, &contacts, &settings) {
                ContactPoints::Found {
                    opt_outs_only: true,
                    ..
                } => Addresses::NoContact {
                    opt_outs_written: true,
                },
                ContactPoints::Found { addresses, .. } => Addresses::Contacts(addresses),
                ContactPoints::Skip(_) => Addresses::NoContact {
                    opt_outs_written: false,
                },
            }
        })
        .collect();
    let addresses: Vec<String> = plans
        .iter()
        .zip(&resolved)
        .flat_map(|(plan, resolved)| match resolved {
            Addresses::Contacts(found) => found.clone(),
            Addresses::NoContact { .. } => plan.organization_user_id.clone().into_iter().collect(),
        })
        .collect();
    let rows = client.consent_rows(&addresses, deadline).await?;
    let mut repairs = Vec::new();
    let mut classified = Vec::new();
    for (plan, resolved) in plans.iter().zip(&resolved) {
        let findings = classify_user(plan, targets, resolved, &rows, own_user);
        for finding in &findings {
            report.before.add(finding.class);
            // Drift and missing contacts are listed; in_sync and undecided
            // pairs (nothing to compare) are only counted.
            if finding.class.is_drift() || finding.class == DriftClass::NoContact {
                let text = serde_json::to_string(&line(finding, options.show_addresses))
                    .expect("drift lines serialise");
                writeln!(out, "{text}")?;
            }
        }
        if repair.is_some()
            && let Some(fix) = repair_plan(plan, &findings)
        {
            repairs.push(fix);
        }
        classified.push(findings);
    }
    let (Some(service), Some(after)) = (repair, report.after.as_mut()) else {
        return Ok(());
    };
    if repairs.is_empty() {
        for finding in classified.iter().flatten() {
            after.add(finding.class);
        }
        return Ok(());
    }
    let items: Vec<_> = repairs.iter().map(|plan| Ok(plan.clone())).collect();
    for (plan, outcome) in repairs.iter().zip(service.process(&items, deadline).await) {
        match outcome {
            MessageOutcome::Written { .. } => report.repaired_users += 1,
            MessageOutcome::Skipped { reason } => eprintln!(
                "cpc-sync: repair of {}: skipped: {reason}",
                mask_identifier(plan.organization_user_id.as_deref().unwrap_or("?"))
            ),
            MessageOutcome::Failed { error, .. } => {
                report.repair_failed += 1;
                eprintln!(
                    "cpc-sync: repair of {} failed: {}",
                    mask_identifier(plan.organization_user_id.as_deref().unwrap_or("?")),
                    crate::redact::mask_emails_in(&error)
                );
            }
        }
    }
    let rows = client.consent_rows(&addresses, deadline).await?;
    for (plan, resolved) in plans.iter().zip(&resolved) {
        for finding in classify_user(plan, targets, resolved, &rows, own_user) {
            after.add(finding.class);
        }
    }
    Ok(())
}
