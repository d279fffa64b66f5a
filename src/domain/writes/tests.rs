//! The write rules of the README, one behaviour per test.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::domain::cpc::{CHANNEL_EMAIL, ConsentType, Purpose, SOURCE_INTERNAL, Topic};
use crate::domain::decision::{ConsentValue, Decision, Outcome};

/// This product's application user (`WhoAmI`).
const OWN_USER: Uuid = Uuid::from_u128(0xa99);
/// A person editing rows in Dynamics.
const AGENT: Uuid = Uuid::from_u128(0xcafe);

const PURPOSE: Uuid = Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0003);
const TOPIC: Uuid = Uuid::from_u128(0x23db_4a4d_ba9f_f011_bbd3_6045_bd19_4648);
const ORPHAN_TOPIC: Uuid = Uuid::from_u128(0x99);

fn catalog() -> Catalog {
    Catalog::new(
        vec![Purpose {
            id: PURPOSE,
            name: "Commercial".into(),
            active: true,
        }],
        vec![Topic {
            id: TOPIC,
            name: "Newsletter".into(),
            purpose_id: Some(PURPOSE),
            active: true,
        }],
    )
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn plan(event_id: &str, time: &str, decisions: &[(Target, ConsentValue)]) -> ConsentPlan {
    ConsentPlan {
        outcome: Outcome::Write,
        reason: None,
        event_id: Some(event_id.into()),
        regulation: Some("gdpr".into()),
        organization_user_id: Some("jane.doe@example.com".into()),
        occurred_at: Some(at(time)),
        consents: decisions
            .iter()
            .map(|(target, value)| Decision {
                target: *target,
                value: *value,
            })
            .collect(),
    }
}

fn message(index: usize, plan: &ConsentPlan) -> PlannedMessage<'_> {
    PlannedMessage {
        index,
        plan,
        addresses: vec!["jane.doe@example.com".into()],
        create_contact: None,
        opt_outs_only: false,
    }
}

fn row(
    id: u128,
    target: Target,
    value: ConsentValue,
    reason: Option<&str>,
    modified: &str,
) -> ConsentRow {
    ConsentRow {
        id: Uuid::from_u128(id),
        contact_point: "Jane.Doe@example.com".into(),
        channel: CHANNEL_EMAIL,
        consent_type: Some(if target.is_topic() {
            ConsentType::Topic
        } else {
            ConsentType::Purpose
        }),
        purpose_id: Some(PURPOSE),
        topic_id: target.is_topic().then(|| target.id()),
        value: Some(value),
        reason: reason.map(Into::into),
        state: 0,
        modified_on: at(modified),
        modified_by: Some(OWN_USER),
        etag: format!("W/\"{id}\""),
    }
}

fn ours(event_id: &str, time: &str) -> String {
    Marker::new(event_id, at(time)).to_reason()
}

fn run(messages: &[PlannedMessage<'_>], existing: &[ConsentRow]) -> WritePlan {
    plan_writes(
        messages,
        existing,
        PlanningContext {
            catalog: &catalog(),
            own_user: OWN_USER,
            source: SOURCE_INTERNAL,
        },
    )
}

/// Applies a plan's writes to rows the way Dataverse would (for sequences).
fn apply(rows: &mut Vec<ConsentRow>, plan: &WritePlan, now: DateTime<Utc>) {
    for op in &plan.ops {
        match op {
            WriteOp::CreateConsent(new) => rows.push(ConsentRow {
                id: new.id,
                contact_point: new.contact_point.clone(),
                channel: CHANNEL_EMAIL,
                consent_type: Some(new.consent_type),
                purpose_id: Some(new.purpose_id),
                topic_id: new.topic_id,
                value: Some(new.value),
                reason: Some(new.reason.clone()),
                state: 0,
                modified_on: now,
                modified_by: Some(OWN_USER),
                etag: "W/\"1\"".into(),
            }),
            WriteOp::UpdateConsent(update) => {
                let row = rows.iter_mut().find(|row| row.id == update.id).unwrap();
                row.value = Some(update.value);
                row.reason = Some(update.reason.clone());
                row.modified_on = now;
                row.modified_by = Some(OWN_USER);
                row.etag = format!("{}'", row.etag);
            }
            WriteOp::CreateContact(_) => {}
        }
    }
}

const P: Target = Target::Purpose(PURPOSE);
const T: Target = Target::Topic(TOPIC);
use ConsentValue::{OptedIn, OptedOut};

#[test]
fn missing_purpose_row_is_created_with_every_required_column() {
    let p = plan("ev-1", "2025-03-14T09:21:07.512Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &[]);
    let [WriteOp::CreateConsent(new)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(new.contact_point, "jane.doe@example.com");
    assert_eq!(new.consent_type, ConsentType::Purpose);
    assert_eq!(new.value, ConsentValue::OptedIn);
    assert_eq!(new.purpose_id, PURPOSE);
    assert_eq!(new.topic_id, None);
    assert_eq!(new.source, SOURCE_INTERNAL);
    assert_eq!(new.reason, ours("ev-1", "2025-03-14T09:21:07.512Z"));
    assert_eq!(writes.tallies[&0].created, 1);
}

#[test]
fn topic_row_binds_the_topics_parent_purpose() {
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(T, OptedOut)]);
    let writes = run(&[message(0, &p)], &[]);
    let [WriteOp::CreateConsent(new)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(
        (new.consent_type, new.purpose_id, new.topic_id),
        (ConsentType::Topic, PURPOSE, Some(TOPIC))
    );
    assert_eq!(new.value, ConsentValue::OptedOut);
}

#[test]
fn created_row_ids_are_stable_for_the_same_address_and_target() {
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let q = plan("ev-2", "2025-03-15T09:21:07Z", &[(P, OptedOut)]);
    let (a, b) = (run(&[message(0, &p)], &[]), run(&[message(0, &q)], &[]));
    let (WriteOp::CreateConsent(a), WriteOp::CreateConsent(b)) = (&a.ops[0], &b.ops[0]) else {
        panic!()
    };
    assert_eq!(a.id, b.id);
}

#[test]
fn every_duplicate_row_is_updated_active_or_not() {
    let mut inactive = row(2, P, ConsentValue::OptedIn, None, "2024-01-01T00:00:00Z");
    inactive.state = 1;
    let existing = [
        row(1, P, ConsentValue::OptedIn, None, "2024-02-01T00:00:00Z"),
        inactive,
    ];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedOut)]);
    let writes = run(&[message(0, &p)], &existing);
    let ids: Vec<Uuid> = writes
        .ops
        .iter()
        .map(|op| match op {
            WriteOp::UpdateConsent(update) => {
                assert_eq!(update.value, ConsentValue::OptedOut);
                update.id
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [Uuid::from_u128(1), Uuid::from_u128(2)]);
}

#[test]
fn rows_match_addresses_case_insensitively() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedIn,
        None,
        "2024-01-01T00:00:00Z",
    )];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedOut)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(
        matches!(writes.ops.as_slice(), [WriteOp::UpdateConsent(_)]),
        "{writes:?}"
    );
}

#[test]
fn newer_event_confirming_the_value_still_moves_the_marker() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedIn,
        Some(&ours("ev-1", "2025-03-14T09:21:07Z")),
        "2025-03-14T09:21:09Z",
    )];
    let p = plan("ev-2", "2025-04-01T00:00:00Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    let [WriteOp::UpdateConsent(update)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(update.value, ConsentValue::OptedIn);
    assert_eq!(update.reason, ours("ev-2", "2025-04-01T00:00:00Z"));
}

#[test]
fn older_event_than_the_rows_marker_is_stale_and_writes_nothing() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedOut,
        Some(&ours("ev-2", "2025-04-01T00:00:00Z")),
        "2025-04-01T00:00:02Z",
    )];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(writes.ops.is_empty(), "{writes:?}");
    assert_eq!(writes.tallies[&0].stale, 1);
}

#[test]
fn replayed_event_writes_nothing() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedIn,
        Some(&ours("ev-1", "2025-03-14T09:21:07Z")),
        "2025-03-14T09:21:09Z",
    )];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(writes.ops.is_empty(), "{writes:?}");
    assert_eq!(writes.tallies[&0].replayed, 1);
}

#[test]
fn row_written_by_others_after_the_event_wins() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedOut,
        Some("Unsubscribed from email"),
        "2025-03-15T00:00:00Z",
    )];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(writes.ops.is_empty(), "{writes:?}");
    assert_eq!(writes.tallies[&0].stale, 1);
}

#[test]
fn row_written_by_others_before_the_event_is_updated() {
    let existing = [row(
        1,
        P,
        ConsentValue::OptedOut,
        Some("Loaded from contacts"),
        "2025-01-01T00:00:00Z",
    )];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(
        matches!(writes.ops.as_slice(), [WriteOp::UpdateConsent(u)] if u.value == ConsentValue::OptedIn)
    );
}

#[test]
fn messages_of_one_batch_apply_in_event_time_order_into_one_write() {
    let newer = plan("ev-2", "2025-04-01T00:00:00Z", &[(P, OptedOut)]);
    let older = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &newer), message(1, &older)], &[]);
    let [WriteOp::CreateConsent(new)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(new.value, ConsentValue::OptedOut);
    assert_eq!(new.reason, ours("ev-2", "2025-04-01T00:00:00Z"));
    assert_eq!(writes.owners[0], BTreeSet::from([0, 1]));
}

#[test]
fn older_event_arriving_in_a_later_batch_cannot_undo_a_newer_choice() {
    let mut rows = Vec::new();
    let newer = plan("ev-2", "2025-04-01T00:00:00Z", &[(P, OptedOut)]);
    let first = run(&[message(0, &newer)], &rows);
    apply(&mut rows, &first, at("2025-04-01T00:00:05Z"));
    let older = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &older)], &rows);
    assert!(writes.ops.is_empty(), "{writes:?}");
    assert_eq!(rows[0].value, Some(ConsentValue::OptedOut));
}

#[test]
fn duplicate_messages_in_one_batch_write_once() {
    let p = plan(
        "ev-1",
        "2025-03-14T09:21:07Z",
        &[(P, OptedIn), (T, OptedIn)],
    );
    let writes = run(&[message(0, &p), message(1, &p)], &[]);
    assert_eq!(writes.ops.len(), 2);
    assert_eq!(writes.tallies[&1].replayed, 2);
}

#[test]
fn unknown_topic_is_a_permanent_error_for_its_message_only() {
    let bad = plan(
        "ev-1",
        "2025-03-14T09:21:07Z",
        &[(Target::Topic(ORPHAN_TOPIC), OptedIn)],
    );
    let good = plan("ev-2", "2025-03-14T09:21:08Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &bad), message(1, &good)], &[]);
    assert_eq!(writes.tallies[&0].errors.len(), 1);
    assert!(writes.tallies[&1].errors.is_empty());
    assert_eq!(writes.ops.len(), 1);
}

#[test]
fn each_address_of_a_user_gets_its_rows() {
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let mut m = message(0, &p);
    m.addresses = vec!["jane@example.com".into(), "jane.work@example.com".into()];
    let writes = run(&[m], &[]);
    assert_eq!(writes.ops.len(), 2);
}

#[test]
fn contact_to_create_comes_first_and_is_owned_by_its_messages() {
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let mut m = message(3, &p);
    m.create_contact = Some(NewContact {
        id: Uuid::from_u128(7),
        match_field: "emailaddress1".into(),
        match_value: "jane.doe@example.com".into(),
        contact_point_field: "emailaddress1".into(),
        contact_point: "jane.doe@example.com".into(),
    });
    let writes = run(&[m], &[]);
    assert!(matches!(writes.ops[0], WriteOp::CreateContact(_)));
    assert_eq!(writes.owners[0], BTreeSet::from([3]));
}

#[test]
fn rows_without_consent_type_are_read_by_their_lookups() {
    let mut legacy = row(1, T, ConsentValue::OptedIn, None, "2024-01-01T00:00:00Z");
    legacy.consent_type = None;
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(T, OptedOut)]);
    let writes = run(&[message(0, &p)], &[legacy]);
    assert!(
        matches!(writes.ops.as_slice(), [WriteOp::UpdateConsent(_)]),
        "{writes:?}"
    );
}

#[test]
fn replaying_a_batch_after_it_was_applied_writes_nothing() {
    let mut rows = Vec::new();
    let p = plan(
        "ev-1",
        "2025-03-14T09:21:07.512Z",
        &[(P, OptedIn), (T, OptedOut)],
    );
    let first = run(&[message(0, &p)], &rows);
    apply(&mut rows, &first, at("2025-03-14T09:21:09Z"));
    let again = run(&[message(0, &p)], &rows);
    assert!(again.ops.is_empty(), "{again:?}");
    assert_eq!(again.tallies[&0].replayed, 2);
}

#[test]
fn same_instant_events_are_ordered_by_event_id() {
    let mut rows = Vec::new();
    let b = plan("ev-b", "2025-03-14T09:21:07Z", &[(P, OptedOut)]);
    let a = plan("ev-a", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let first = run(&[message(0, &b)], &rows);
    apply(&mut rows, &first, at("2025-03-14T09:21:08Z"));
    assert!(run(&[message(0, &a)], &rows).ops.is_empty());
}

/// A row last written by `AGENT` in the Dynamics UI, which keeps the reason.
fn edited_in_dynamics(mut row: ConsentRow, value: ConsentValue, at_time: &str) -> ConsentRow {
    row.value = Some(value);
    row.modified_by = Some(AGENT);
    row.modified_on = at(at_time);
    row
}

#[test]
fn updates_carry_the_etag_the_row_was_read_with() {
    let existing = [row(1, P, OptedOut, None, "2025-01-01T00:00:00Z")];
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    let [WriteOp::UpdateConsent(update)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!(update.etag, "W/\"1\"");
}

#[test]
fn a_dynamics_edit_after_our_marker_is_judged_by_modifiedon_not_the_marker() {
    // We wrote opt-in at 09:00; a person unsubscribed at 11:00 (reason kept);
    // a Didomi event of 10:00 is newer than our marker but older than the edit.
    let ours_then = row(
        1,
        P,
        OptedIn,
        Some(&ours("ev-0", "2025-03-14T09:00:00Z")),
        "2025-03-14T09:00:01Z",
    );
    let existing = [edited_in_dynamics(
        ours_then,
        OptedOut,
        "2025-03-14T11:00:00Z",
    )];
    let p = plan("ev-1", "2025-03-14T10:00:00Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(
        writes.ops.is_empty(),
        "the unsubscribe must stand: {writes:?}"
    );
    assert_eq!(writes.tallies[&0].stale, 1);
}

#[test]
fn a_didomi_choice_in_the_same_second_as_a_dynamics_edit_is_stale() {
    let edited = edited_in_dynamics(
        row(1, P, OptedIn, None, "2025-03-14T09:00:00Z"),
        OptedOut,
        "2025-03-14T11:00:00Z",
    );
    let p = plan("ev-1", "2025-03-14T11:00:00.900Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &[edited]);
    assert!(writes.ops.is_empty(), "{writes:?}");
    assert_eq!(writes.tallies[&0].stale, 1);
}

#[test]
fn a_didomi_choice_in_the_second_after_a_dynamics_edit_is_applied() {
    let edited = edited_in_dynamics(
        row(1, P, OptedIn, None, "2025-03-14T09:00:00Z"),
        OptedOut,
        "2025-03-14T11:00:00Z",
    );
    let p = plan("ev-1", "2025-03-14T11:00:01Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &[edited]);
    assert_eq!(writes.tallies[&0].updated, 1, "{writes:?}");
}

#[test]
fn a_replay_of_our_event_after_a_dynamics_edit_writes_nothing() {
    // The edit kept our marker text: the event id matches, but the row is no
    // longer ours, and the old event must not undo the edit.
    let ours_then = row(
        1,
        P,
        OptedIn,
        Some(&ours("ev-0", "2025-03-14T09:00:00Z")),
        "2025-03-14T09:00:01Z",
    );
    let existing = [edited_in_dynamics(
        ours_then,
        OptedOut,
        "2025-03-14T11:00:00Z",
    )];
    let p = plan("ev-0", "2025-03-14T09:00:00Z", &[(P, OptedIn)]);
    let writes = run(&[message(0, &p)], &existing);
    assert!(writes.ops.is_empty(), "{writes:?}");
}

#[test]
fn a_row_with_our_marker_written_by_us_is_still_judged_by_the_marker() {
    let existing = [row(
        1,
        P,
        OptedIn,
        Some(&ours("ev-0", "2025-03-14T09:00:00Z")),
        "2025-03-14T12:00:00Z",
    )];
    // Newer than the marker, older than modifiedon: the marker decides.
    let p = plan("ev-1", "2025-03-14T10:00:00Z", &[(P, OptedOut)]);
    let writes = run(&[message(0, &p)], &existing);
    assert_eq!(writes.tallies[&0].updated, 1, "{writes:?}");
}

#[test]
fn without_a_contact_only_opt_outs_are_written() {
    let p = plan(
        "ev-1",
        "2025-03-14T09:21:07Z",
        &[(P, OptedOut), (T, OptedIn)],
    );
    let mut m = message(0, &p);
    m.opt_outs_only = true;
    let writes = run(&[m], &[]);
    let [WriteOp::CreateConsent(new)] = writes.ops.as_slice() else {
        panic!("{writes:?}")
    };
    assert_eq!((new.value, new.topic_id), (OptedOut, None));
    assert_eq!(writes.tallies[&0].withheld, 1);
}

#[test]
fn addresses_differing_beyond_ascii_case_never_share_rows() {
    let mut kelvin = row(1, P, OptedIn, None, "2025-01-01T00:00:00Z");
    kelvin.contact_point = "\u{212A}ate@x.com".into();
    let p = plan("ev-1", "2025-03-14T09:21:07Z", &[(P, OptedOut)]);
    let mut m = message(0, &p);
    m.addresses = vec!["kate@x.com".into()];
    let writes = run(&[m], &[kelvin]);
    let [WriteOp::CreateConsent(new)] = writes.ops.as_slice() else {
        panic!("the Kelvin-sign row must be left alone: {writes:?}")
    };
    assert_eq!(new.contact_point, "kate@x.com");
}
