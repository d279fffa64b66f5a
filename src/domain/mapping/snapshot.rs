//! From one Didomi user's current state (the API's `GET /consents/users`, a
//! batch export line, or a `didomi-cpc-sync.snapshot` message) to a consent
//! plan, with the same rules as webhooks: decisions from the whole state, the
//! same filters except the webhook type (a snapshot is always accepted), and
//! the user's last update as the decision time. The event id is derived from
//! the user and that time, so backfilling the same state twice is a replay
//! that writes nothing, and a newer row is never overwritten by the ordering
//! rules of the write planner.

use chrono::SecondsFormat;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Draft, MappingError, MappingRules, decide_all, finish_filtered, present, resolve_regulation,
};
use crate::domain::decision::ConsentPlan;
use crate::domain::didomi::{DidomiUser, SNAPSHOT_TYPE};

/// Namespace of snapshot event ids (UUID v5 of user id and update time).
const SNAPSHOT_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_4e8e_8b1d_4c55_9a53_2d0e_7f1b_c003);

/// The deterministic event id of a user's state: `snapshot-<uuid v5 of
/// (user id, updated_at to the millisecond)>`; `None` without `updated_at`.
pub fn snapshot_event_id(user: &DidomiUser) -> Option<String> {
    let at = user.updated_at?;
    let key = format!(
        "{}|{}",
        user.id,
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    Some(format!(
        "snapshot-{}",
        Uuid::new_v5(&SNAPSHOT_NAMESPACE, key.as_bytes())
    ))
}

/// Plans one user's whole current state. `regulation` is the envelope's,
/// when the user came in a snapshot message.
pub fn plan_snapshot(
    regulation: Option<&str>,
    user: &DidomiUser,
    rules: &MappingRules,
) -> Result<ConsentPlan, MappingError> {
    let draft = Draft {
        event_id: snapshot_event_id(user),
        regulation: Some(resolve_regulation(regulation, user.regulation.as_deref())),
        organization_user_id: present(user.organization_user_id.as_deref()),
        occurred_at: user.updated_at,
        status: None,
    };
    let decisions = || decide_all(&rules.mappings, &user.consents, &rules.value_owners);
    finish_filtered(draft, rules, None, "updated_at", decisions)
}

/// The SQS message body carrying one user's state to the function: a
/// webhook-shaped envelope of this product's own type.
pub fn snapshot_envelope(user: &Value) -> Value {
    json!({"type": SNAPSHOT_TYPE, "parameters": {"entity": user}})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;
    use crate::domain::decision::{ConsentValue, Outcome, Target};
    use crate::domain::mapping::{ValueOwners, mappings_for_test, plan_value};

    const PURPOSE: &str = "purpose:10000000-0000-0000-0000-000000000003";
    const NEWS: &str = "topic:23db4a4d-ba9f-f011-bbd3-6045bd194648";
    const OFFERS: &str = "topic:5b1c9e1a-7f3d-4c2a-9e8b-2d4f6a8c0e13";

    /// The fixture mappings, with no webhook type enabled at all.
    fn rules() -> MappingRules {
        MappingRules {
            mappings: mappings_for_test(&[
                (PURPOSE, "marketing"),
                (NEWS, "marketing/topics/v-news"),
                (OFFERS, "topics/v-offers"),
            ]),
            regulations: vec!["gdpr".into()],
            webhook_types: BTreeSet::new(),
            value_owners: ValueOwners::new(),
        }
    }

    fn user_json(edit: impl FnOnce(&mut Value)) -> Value {
        let mut user = json!({
            "id": "7c1e2a44", "organization_user_id": "jane.doe@example.com", "version": 4,
            "updated_at": "2025-04-02T16:05:44.120Z",
            "consents": {"purposes": [{"id": "marketing", "enabled": true,
                "values": {"topics": {"value": "v-news"}}}]}});
        edit(&mut user);
        user
    }

    fn user(edit: impl FnOnce(&mut Value)) -> DidomiUser {
        serde_json::from_value(user_json(edit)).unwrap()
    }

    fn value_of(plan: &ConsentPlan, target: &str) -> Option<ConsentValue> {
        let target: Target = target.parse().unwrap();
        plan.consents
            .iter()
            .find(|d| d.target == target)
            .map(|d| d.value)
    }

    #[test]
    fn decisions_come_from_the_whole_state() {
        let plan = plan_snapshot(None, &user(|_| {}), &rules()).unwrap();
        assert_eq!(plan.outcome, Outcome::Write);
        assert_eq!(value_of(&plan, PURPOSE), Some(ConsentValue::OptedIn));
        assert_eq!(value_of(&plan, NEWS), Some(ConsentValue::OptedIn));
        assert_eq!(value_of(&plan, OFFERS), Some(ConsentValue::OptedOut));
    }

    #[test]
    fn decision_time_is_the_users_last_update() {
        let plan = plan_snapshot(None, &user(|_| {}), &rules()).unwrap();
        assert_eq!(
            plan.occurred_at.unwrap().to_rfc3339(),
            "2025-04-02T16:05:44.120+00:00"
        );
    }

    #[test]
    fn the_same_state_always_gets_the_same_event_id() {
        let first = plan_snapshot(None, &user(|_| {}), &rules()).unwrap();
        let again = plan_snapshot(None, &user(|_| {}), &rules()).unwrap();
        assert_eq!(first.event_id, again.event_id);
        assert!(first.event_id.unwrap().starts_with("snapshot-"));
    }

    #[test]
    fn a_later_update_of_the_same_user_gets_another_event_id() {
        let first = snapshot_event_id(&user(|_| {}));
        let later = snapshot_event_id(&user(|u| u["updated_at"] = json!("2025-05-01T00:00:00Z")));
        assert_ne!(first, later);
    }

    #[test]
    fn snapshots_are_accepted_whatever_webhook_types_says() {
        assert!(rules().webhook_types.is_empty());
        assert!(
            plan_snapshot(None, &user(|_| {}), &rules())
                .unwrap()
                .is_write()
        );
    }

    #[test]
    fn a_user_without_organization_user_id_is_skipped() {
        let plan = plan_snapshot(
            None,
            &user(|u| {
                u.as_object_mut()
                    .unwrap()
                    .remove("organization_user_id")
                    .map(drop)
                    .unwrap()
            }),
            &rules(),
        )
        .unwrap();
        assert_eq!(plan.outcome, Outcome::Skip);
        assert!(
            plan.reason
                .unwrap()
                .to_string()
                .contains("organization_user_id")
        );
    }

    #[test]
    fn a_regulation_outside_the_allow_list_is_skipped() {
        let plan = plan_snapshot(Some("cpra"), &user(|_| {}), &rules()).unwrap();
        assert_eq!(plan.outcome, Outcome::Skip);
        assert!(plan.reason.unwrap().to_string().contains("cpra"));
    }

    #[test]
    fn a_state_deciding_nothing_mapped_is_skipped() {
        let plan = plan_snapshot(
            None,
            &user(|u| u["consents"] = json!({"purposes": [{"id": "other", "enabled": true}]})),
            &rules(),
        )
        .unwrap();
        assert_eq!(
            plan.reason.map(|reason| reason.to_string()).as_deref(),
            Some("nothing in the event matches a mapping")
        );
    }

    #[test]
    fn a_user_without_updated_at_cannot_be_ordered() {
        let err = plan_snapshot(
            None,
            &user(|u| {
                u.as_object_mut()
                    .unwrap()
                    .remove("updated_at")
                    .map(drop)
                    .unwrap()
            }),
            &rules(),
        )
        .unwrap_err();
        assert_eq!(err, MappingError::MissingTime { path: "updated_at" });
    }

    #[test]
    fn the_snapshot_message_plans_exactly_like_the_user_it_carries() {
        let json = user_json(|_| {});
        let via_message = plan_value(snapshot_envelope(&json), &rules()).unwrap();
        let direct = plan_snapshot(None, &serde_json::from_value(json).unwrap(), &rules()).unwrap();
        assert_eq!(via_message, direct);
    }
}
