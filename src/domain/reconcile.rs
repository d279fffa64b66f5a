//! Reconcile (pure): what Didomi's current state implies for each (address,
//! target) compared with the Contact Point Consent rows Dataverse holds, as
//! one class per pair. The write planner's notion of time is used: a row's
//! decision time is its marker's time when this product's application user
//! wrote it last, else `modifiedon` (whole seconds, so a Dynamics edit in the
//! same second wins); Didomi's is the user's last update.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::cpc::{ConsentRow, ConsentType};
use crate::domain::decision::{ConsentPlan, ConsentValue, Target};
use crate::domain::writes::Marker;

/// How one (address, target) compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// One row, holding Didomi's decision.
    InSync,
    /// Didomi decided, Dataverse has no row for the address and target.
    MissingInDynamics,
    /// One row with another value, decided before Didomi's last update: the
    /// sync would overwrite it.
    DiffersDidomiNewer,
    /// One row with another value, decided after Didomi's last update (for
    /// example in the Dynamics preference centre): kept, and a candidate to
    /// send back to Didomi.
    DiffersDynamicsNewer,
    /// More than one row for the address and target (active or not).
    DuplicateRows,
    /// No contact matches `organization_user_id`, no row exists for it, and
    /// the write rules would not write this decision without a contact.
    NoContact,
    /// Didomi's state decides nothing for this target.
    Undecided,
}

impl DriftClass {
    /// Every class, in report order.
    pub const ALL: [DriftClass; 7] = [
        DriftClass::InSync,
        DriftClass::MissingInDynamics,
        DriftClass::DiffersDidomiNewer,
        DriftClass::DiffersDynamicsNewer,
        DriftClass::DuplicateRows,
        DriftClass::NoContact,
        DriftClass::Undecided,
    ];

    /// The snake_case name used in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::InSync => "in_sync",
            DriftClass::MissingInDynamics => "missing_in_dynamics",
            DriftClass::DiffersDidomiNewer => "differs_didomi_newer",
            DriftClass::DiffersDynamicsNewer => "differs_dynamics_newer",
            DriftClass::DuplicateRows => "duplicate_rows",
            DriftClass::NoContact => "no_contact",
            DriftClass::Undecided => "undecided",
        }
    }

    /// Dataverse disagrees with Didomi about a row (the exit status 3
    /// classes). `no_contact` and `undecided` are reported but are not drift
    /// of the rows: there is nothing to compare.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            DriftClass::MissingInDynamics
                | DriftClass::DiffersDidomiNewer
                | DriftClass::DiffersDynamicsNewer
                | DriftClass::DuplicateRows
        )
    }

    /// What `--repair` writes: only where Didomi is right and newer.
    pub fn is_repairable(self) -> bool {
        matches!(
            self,
            DriftClass::MissingInDynamics | DriftClass::DiffersDidomiNewer
        )
    }
}

impl fmt::Display for DriftClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The comparison of one (address, target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The class.
    pub class: DriftClass,
    /// Didomi's `organization_user_id`.
    pub organization_user_id: String,
    /// The address compared (the contact's; `organization_user_id` itself when no contact matches).
    pub address: String,
    /// The Dynamics purpose or topic.
    pub target: Target,
    /// What Didomi's state implies.
    pub didomi: Option<ConsentValue>,
    /// When Didomi last updated the user.
    pub didomi_at: Option<DateTime<Utc>>,
    /// The row's value when there is exactly one row (`None`: Not Set or no row).
    pub dynamics: Option<ConsentValue>,
    /// The row's decision time (marker time, else `modifiedon`).
    pub dynamics_at: Option<DateTime<Utc>>,
    /// Rows found for the address and target.
    pub rows: usize,
}

/// The addresses a user's consent belongs to, as resolved from the contacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// The matching contacts' addresses.
    Contacts(Vec<String>),
    /// No contact matches: rows may still exist for `organization_user_id`.
    NoContact {
        /// The write rules write opt-outs for the address anyway
        /// (`properties.write_opt_outs_without_contact` and an email address).
        opt_outs_written: bool,
    },
}

/// The target a row stands for: its topic, else its purpose (same rule as the
/// write planner).
pub fn row_target(row: &ConsentRow) -> Option<Target> {
    match (row.topic_id, row.purpose_id, row.consent_type) {
        (Some(topic), _, _) => Some(Target::Topic(topic)),
        (None, Some(purpose), None) => Some(Target::Purpose(purpose)),
        (None, Some(purpose), Some(ConsentType::Purpose)) => Some(Target::Purpose(purpose)),
        _ => None,
    }
}

/// When a row's value was decided, and whether this product decided it: its
/// marker's time when `own_user` wrote it last, else `modifiedon`.
pub fn row_decided_at(row: &ConsentRow, own_user: Uuid) -> (DateTime<Utc>, bool) {
    match row.reason.as_deref().and_then(Marker::parse) {
        Some(marker) if row.modified_by == Some(own_user) => (marker.at, true),
        _ => (row.modified_on, false),
    }
}

/// Whether Didomi's update at `didomi` is newer than the row's decision, as
/// the write planner decides it (whole seconds against foreign rows).
fn didomi_is_newer(didomi: DateTime<Utc>, (row, ours): (DateTime<Utc>, bool)) -> bool {
    if ours {
        didomi.trunc_subsecs(3) > row
    } else {
        didomi.trunc_subsecs(0) > row.trunc_subsecs(0)
    }
}

/// Classifies every (address, target) of one user. `plan` is the user's
/// snapshot plan (a write, or a skip because nothing is mapped), `targets`
/// every mapped target, `rows` at least every row of the user's addresses,
/// `own_user` this product's application user (`WhoAmI`).
pub fn classify_user(
    plan: &ConsentPlan,
    targets: &BTreeSet<Target>,
    addresses: &Addresses,
    rows: &[ConsentRow],
    own_user: Uuid,
) -> Vec<Finding> {
    let Some(user) = plan.organization_user_id.as_deref() else {
        return Vec::new();
    };
    let (addresses, contact, opt_outs_written) = match addresses {
        Addresses::Contacts(found) => (found.clone(), true, false),
        Addresses::NoContact { opt_outs_written } => {
            (vec![user.to_string()], false, *opt_outs_written)
        }
    };
    let mut findings = Vec::new();
    for address in &addresses {
        let lowered = address.trim().to_lowercase();
        for target in targets {
            let decision = plan
                .consents
                .iter()
                .find(|decision| decision.target == *target)
                .map(|decision| decision.value);
            let matching: Vec<&ConsentRow> = rows
                .iter()
                .filter(|row| row.contact_point.trim().to_lowercase() == lowered)
                .filter(|row| row_target(row) == Some(*target))
                .collect();
            let single = (matching.len() == 1).then(|| matching[0]);
            let dynamics = single.and_then(|row| row.value);
            let decided = single.map(|row| row_decided_at(row, own_user));
            let written_without_contact =
                opt_outs_written && decision == Some(ConsentValue::OptedOut);
            let class = match (decision, matching.len()) {
                (None, _) => DriftClass::Undecided,
                (Some(_), 0) if !contact && !written_without_contact => DriftClass::NoContact,
                (Some(_), 0) => DriftClass::MissingInDynamics,
                (Some(_), 1) if dynamics == decision => DriftClass::InSync,
                (Some(_), 1) => match (plan.occurred_at, decided) {
                    (Some(didomi), Some(row)) if didomi_is_newer(didomi, row) => {
                        DriftClass::DiffersDidomiNewer
                    }
                    _ => DriftClass::DiffersDynamicsNewer,
                },
                (Some(_), _) => DriftClass::DuplicateRows,
            };
            findings.push(Finding {
                class,
                organization_user_id: user.to_string(),
                address: address.clone(),
                target: *target,
                didomi: decision,
                didomi_at: plan.occurred_at,
                dynamics,
                dynamics_at: decided.map(|(at, _)| at),
                rows: matching.len(),
            });
        }
    }
    findings
}

/// The part of `plan` that `--repair` may write: its decisions for the
/// targets found repairable on some address. `None` when there are none.
pub fn repair_plan(plan: &ConsentPlan, findings: &[Finding]) -> Option<ConsentPlan> {
    let repairable: BTreeSet<Target> = findings
        .iter()
        .filter(|finding| finding.class.is_repairable())
        .map(|finding| finding.target)
        .collect();
    if repairable.is_empty() {
        return None;
    }
    let mut repair = plan.clone();
    repair
        .consents
        .retain(|decision| repairable.contains(&decision.target));
    Some(repair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::{Decision, Outcome};
    use uuid::Uuid;

    const PURPOSE: Uuid = Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0003);
    const TOPIC: Uuid = Uuid::from_u128(0x23db_4a4d_ba9f_f011_bbd3_6045_bd19_4648);
    const OWN: Uuid = Uuid::from_u128(0xa11ce);
    const SOMEONE: Uuid = Uuid::from_u128(0xb0b);

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn plan(decisions: &[(Target, ConsentValue)]) -> ConsentPlan {
        ConsentPlan {
            outcome: Outcome::Write,
            reason: None,
            event_id: Some("snapshot-1".into()),
            regulation: Some("gdpr".into()),
            organization_user_id: Some("jane@example.com".into()),
            occurred_at: Some(at("2025-06-01T12:00:00Z")),
            consents: decisions
                .iter()
                .map(|(target, value)| Decision {
                    target: *target,
                    value: *value,
                })
                .collect(),
        }
    }

    fn row(value: ConsentValue, modified: &str, reason: Option<&str>) -> ConsentRow {
        ConsentRow {
            id: Uuid::new_v4(),
            contact_point: "Jane@Example.com".into(),
            channel: 534_120_000,
            consent_type: Some(ConsentType::Purpose),
            purpose_id: Some(PURPOSE),
            topic_id: None,
            value: Some(value),
            reason: reason.map(str::to_string),
            state: 0,
            modified_on: at(modified),
            modified_by: Some(SOMEONE),
            etag: "W/\"1\"".into(),
        }
    }

    fn targets() -> BTreeSet<Target> {
        BTreeSet::from([Target::Purpose(PURPOSE)])
    }

    fn class_of(plan: &ConsentPlan, addresses: Addresses, rows: &[ConsentRow]) -> DriftClass {
        let findings = classify_user(plan, &targets(), &addresses, rows, OWN);
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings[0].class
    }

    fn no_contact() -> Addresses {
        Addresses::NoContact {
            opt_outs_written: false,
        }
    }

    fn contacts() -> Addresses {
        Addresses::Contacts(vec!["jane@example.com".into()])
    }

    use ConsentValue::{OptedIn, OptedOut};

    #[test]
    fn one_row_with_didomis_value_is_in_sync_whatever_the_case_of_the_address() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        let rows = [row(OptedIn, "2024-01-01T00:00:00Z", None)];
        assert_eq!(class_of(&plan, contacts(), &rows), DriftClass::InSync);
    }

    #[test]
    fn no_row_for_a_decided_target_is_missing_in_dynamics() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        assert_eq!(
            class_of(&plan, contacts(), &[]),
            DriftClass::MissingInDynamics
        );
    }

    #[test]
    fn an_older_row_with_another_value_differs_with_didomi_newer() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        let rows = [row(OptedIn, "2024-01-01T00:00:00Z", None)];
        assert_eq!(
            class_of(&plan, contacts(), &rows),
            DriftClass::DiffersDidomiNewer
        );
    }

    #[test]
    fn a_row_changed_in_dynamics_after_didomis_update_differs_with_dynamics_newer() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        let rows = [row(
            OptedOut,
            "2025-09-01T00:00:00Z",
            Some("Subscription center"),
        )];
        assert_eq!(
            class_of(&plan, contacts(), &rows),
            DriftClass::DiffersDynamicsNewer
        );
    }

    #[test]
    fn our_marker_time_not_modifiedon_dates_a_row_we_wrote() {
        // Written late (modifiedon 2025-09) for a choice made in 2025-01.
        let marker = Marker::new("ev-1", at("2025-01-01T00:00:00Z")).to_reason();
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        let mut ours = row(OptedIn, "2025-09-01T00:00:00Z", Some(&marker));
        ours.modified_by = Some(OWN);
        assert_eq!(
            class_of(&plan, contacts(), &[ours]),
            DriftClass::DiffersDidomiNewer
        );
    }

    #[test]
    fn a_marker_left_by_someone_elses_edit_does_not_date_the_row() {
        // A UI edit keeps the reason text: modifiedon decides.
        let marker = Marker::new("ev-1", at("2025-01-01T00:00:00Z")).to_reason();
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        let rows = [row(OptedIn, "2025-09-01T00:00:00Z", Some(&marker))];
        assert_eq!(
            class_of(&plan, contacts(), &rows),
            DriftClass::DiffersDynamicsNewer
        );
    }

    #[test]
    fn an_opt_out_the_rules_write_without_a_contact_is_missing_not_no_contact() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        let addresses = Addresses::NoContact {
            opt_outs_written: true,
        };
        assert_eq!(
            class_of(&plan, addresses, &[]),
            DriftClass::MissingInDynamics
        );
    }

    #[test]
    fn two_rows_for_one_address_and_target_are_duplicate_rows() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        let rows = [
            row(OptedIn, "2024-01-01T00:00:00Z", None),
            row(OptedIn, "2023-01-01T00:00:00Z", None),
        ];
        assert_eq!(
            class_of(&plan, contacts(), &rows),
            DriftClass::DuplicateRows
        );
    }

    #[test]
    fn no_contact_and_no_row_is_no_contact() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        assert_eq!(class_of(&plan, no_contact(), &[]), DriftClass::NoContact);
    }

    #[test]
    fn rows_for_the_address_count_even_without_a_contact() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedOut)]);
        let rows = [row(OptedOut, "2024-01-01T00:00:00Z", None)];
        assert_eq!(class_of(&plan, no_contact(), &rows), DriftClass::InSync);
    }

    #[test]
    fn a_target_didomi_does_not_decide_is_undecided() {
        let plan = plan(&[]);
        assert_eq!(class_of(&plan, contacts(), &[]), DriftClass::Undecided);
    }

    #[test]
    fn topic_rows_are_not_counted_for_their_parent_purpose() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        let mut topic_row = row(OptedIn, "2024-01-01T00:00:00Z", None);
        topic_row.topic_id = Some(TOPIC);
        assert_eq!(
            class_of(&plan, contacts(), &[topic_row]),
            DriftClass::MissingInDynamics
        );
    }

    #[test]
    fn repair_keeps_only_the_repairable_targets() {
        let plan = plan(&[
            (Target::Purpose(PURPOSE), OptedIn),
            (Target::Topic(TOPIC), OptedOut),
        ]);
        let all = BTreeSet::from([Target::Purpose(PURPOSE), Target::Topic(TOPIC)]);
        let rows = [row(OptedOut, "2025-09-01T00:00:00Z", None)];
        let findings = classify_user(&plan, &all, &contacts(), &rows, OWN);
        let repair = repair_plan(&plan, &findings).unwrap();
        assert_eq!(repair.consents.len(), 1);
        assert_eq!(repair.consents[0].target, Target::Topic(TOPIC));
    }

    #[test]
    fn nothing_repairable_gives_no_repair() {
        let plan = plan(&[(Target::Purpose(PURPOSE), OptedIn)]);
        let rows = [row(OptedOut, "2025-09-01T00:00:00Z", None)];
        let findings = classify_user(&plan, &targets(), &contacts(), &rows, OWN);
        assert_eq!(repair_plan(&plan, &findings), None);
    }

    #[test]
    fn only_row_disagreements_are_drift() {
        let drift: Vec<&str> = DriftClass::ALL
            .iter()
            .filter(|class| class.is_drift())
            .map(|class| class.as_str())
            .collect();
        assert_eq!(
            drift,
            [
                "missing_in_dynamics",
                "differs_didomi_newer",
                "differs_dynamics_newer",
                "duplicate_rows"
            ]
        );
    }
}
