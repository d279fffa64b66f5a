//! The mapping rules of the README, one behaviour per test.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::domain::decision::{ConsentValue::*, Outcome};
use crate::domain::didomi::parse_webhook_value;

const P1: &str = "purpose:10000000-0000-0000-0000-000000000003";
const P2: &str = "purpose:20000000-0000-0000-0000-000000000004";
const T1: &str = "topic:23db4a4d-ba9f-f011-bbd3-6045bd194648";

fn rules(mappings: &[(&str, &str)]) -> MappingRules {
    MappingRules {
        mappings: mappings_for_test(mappings),
        regulations: vec!["gdpr".into()],
        webhook_types: ["event.created", "event.updated"]
            .iter()
            .map(|t| WebhookKind::parse(t))
            .collect(),
        value_owners: ValueOwners::new(),
    }
}

fn event(purposes: Value) -> Value {
    json!({"type": "event.created", "parameters": {"entity": {
        "id": "ev-1", "created_at": "2025-03-14T09:21:07.512Z", "status": "confirmed",
        "user": {"id": "u-1", "organization_user_id": "jane.doe@example.com"},
        "consents": {"purposes": purposes, "vendors": {"enabled": [], "disabled": []}}}}})
}

fn plan(webhook: Value, rules: &MappingRules) -> ConsentPlan {
    plan_webhook(&parse_webhook_value(webhook).unwrap(), rules).unwrap()
}

/// The decision for `target`, or `None` when the plan has none for it.
fn decision(plan: &ConsentPlan, target: &str) -> Option<ConsentValue> {
    let target: Target = target.parse().unwrap();
    plan.consents
        .iter()
        .find(|d| d.target == target)
        .map(|d| d.value)
}

fn skip_reason(plan: &ConsentPlan) -> String {
    assert_eq!(plan.outcome, Outcome::Skip, "{plan:?}");
    plan.reason.as_ref().unwrap().to_string()
}

// --- `<purposeId>` ---------------------------------------------------------

#[test]
fn purpose_selector_enabled_true_opts_in() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": true}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(decision(&p, P1), Some(OptedIn));
}

#[test]
fn purpose_selector_enabled_false_opts_out() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": false}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(decision(&p, P1), Some(OptedOut));
}

#[test]
fn purpose_selector_enabled_null_is_no_decision() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": null}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn purpose_selector_enabled_absent_is_no_decision() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {}}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn purpose_selector_purpose_absent_from_event_is_no_decision() {
    let p = plan(
        event(json!([{"id": "other", "enabled": true}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

// --- `<purposeId>/<preferenceId>/<valueId>` ----------------------------------

#[test]
fn exact_selector_value_in_list_opts_in() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news,offers"}}}])),
        &rules(&[(T1, "marketing/topics/offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedIn));
}

#[test]
fn exact_selector_preference_present_without_value_opts_out() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news"}}}])),
        &rules(&[(T1, "marketing/topics/offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedOut));
}

#[test]
fn exact_selector_empty_string_is_an_empty_selection_and_opts_out() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": ""}}}])),
        &rules(&[(T1, "marketing/topics/offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedOut));
}

#[test]
fn exact_selector_preference_absent_is_no_decision() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"frequency": {"value": "weekly"}}}])),
        &rules(&[(T1, "marketing/topics/offers")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn exact_selector_ignores_the_same_preference_under_another_purpose() {
    let p = plan(
        event(json!([{"id": "other", "values": {"topics": {"value": "offers"}}}])),
        &rules(&[(T1, "marketing/topics/offers")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

// --- `<preferenceId>/<valueId>` ---------------------------------------------

#[test]
fn preference_value_selector_matches_under_any_purpose() {
    let p = plan(
        event(json!([{"id": "other", "values": {"topics": {"value": "offers"}}}])),
        &rules(&[(T1, "topics/offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedIn));
}

#[test]
fn preference_value_selector_present_without_value_opts_out() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news"}}}])),
        &rules(&[(T1, "topics/offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedOut));
}

#[test]
fn preference_value_selector_preference_absent_is_no_decision() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": null}])),
        &rules(&[(T1, "topics/offers")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

// --- `<valueId>` (bare) -------------------------------------------------------

#[test]
fn bare_value_selector_present_in_any_preference_opts_in() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news,offers"}}}])),
        &rules(&[(T1, "offers")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedIn));
}

#[test]
fn bare_value_selector_absent_with_unknown_owner_is_no_decision() {
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news"}}}])),
        &rules(&[(T1, "offers")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn bare_value_selector_with_configured_owner_opts_out() {
    let mut rules = rules(&[(T1, "offers")]);
    rules.value_owners.insert("offers".into(), "topics".into());
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": "news"}}}])),
        &rules,
    );
    assert_eq!(decision(&p, T1), Some(OptedOut));
}

#[test]
fn bare_value_selector_with_configured_owner_absent_is_no_decision() {
    let mut rules = rules(&[(T1, "offers")]);
    rules.value_owners.insert("offers".into(), "topics".into());
    let p = plan(
        event(json!([{"id": "marketing", "values": {"frequency": {"value": "weekly"}}}])),
        &rules,
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn one_segment_selector_names_a_purpose_on_purpose_mappings() {
    let target: Target = P1.parse().unwrap();
    assert_eq!(
        Selector::parse("offers", &target),
        Ok(Selector::Purpose {
            purpose: "offers".into()
        })
    );
}

#[test]
fn one_segment_selector_names_a_value_on_topic_mappings() {
    let target: Target = T1.parse().unwrap();
    assert_eq!(
        Selector::parse("offers", &target),
        Ok(Selector::Value {
            value: "offers".into()
        })
    );
}

#[test]
fn slash_selectors_mean_the_same_whatever_the_target() {
    let purpose: Target = P1.parse().unwrap();
    let topic: Target = T1.parse().unwrap();
    assert_eq!(
        Selector::parse("a/b", &purpose),
        Selector::parse("a/b", &topic)
    );
    assert_eq!(
        Selector::parse("a/b/c", &purpose),
        Selector::parse("a/b/c", &topic)
    );
}

// --- several selectors on one target -----------------------------------------

#[test]
fn several_selectors_any_opted_in_makes_the_target_opted_in() {
    let p = plan(
        event(
            json!([{"id": "marketing", "enabled": false}, {"id": "newsletter", "enabled": true}]),
        ),
        &rules(&[(P1, "marketing"), (P1, "newsletter")]),
    );
    assert_eq!(decision(&p, P1), Some(OptedIn));
}

#[test]
fn several_selectors_all_opted_out_make_the_target_opted_out() {
    let p = plan(
        event(
            json!([{"id": "marketing", "enabled": false}, {"id": "newsletter", "enabled": false}]),
        ),
        &rules(&[(P1, "marketing"), (P1, "newsletter")]),
    );
    assert_eq!(decision(&p, P1), Some(OptedOut));
}

#[test]
fn several_selectors_undecided_ones_do_not_count() {
    let p = plan(
        event(
            json!([{"id": "marketing", "enabled": false}, {"id": "newsletter", "enabled": null}]),
        ),
        &rules(&[(P1, "marketing"), (P1, "newsletter")]),
    );
    assert_eq!(decision(&p, P1), Some(OptedOut));
}

#[test]
fn each_target_gets_one_decision_sorted_by_target() {
    let p = plan(
        event(
            json!([{"id": "marketing", "enabled": true, "values": {"topics": {"value": "offers"}}},
                     {"id": "sms", "enabled": false}]),
        ),
        &rules(&[(P2, "sms"), (T1, "topics/offers"), (P1, "marketing")]),
    );
    let targets: Vec<String> = p.consents.iter().map(|d| d.target.to_string()).collect();
    assert_eq!(targets, [P1, P2, T1]);
}

// --- filters ------------------------------------------------------------------

#[test]
fn event_without_organization_user_id_is_skipped() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]["user"] = json!({"id": "anonymous-uuid"});
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(
        skip_reason(&p),
        SkipReason::NoOrganizationUserId.to_string()
    );
}

#[test]
fn blank_organization_user_id_counts_as_missing() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]["user"]["organization_user_id"] = json!("  ");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(
        skip_reason(&p),
        SkipReason::NoOrganizationUserId.to_string()
    );
}

#[test]
fn pending_approval_event_is_skipped() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]["status"] = json!("pending_approval");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(skip_reason(&p), SkipReason::PendingApproval.to_string());
}

#[test]
fn unknown_status_is_skipped_not_written() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]["status"] = json!("rejected");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert!(skip_reason(&p).contains("rejected"));
}

#[test]
fn missing_status_counts_as_confirmed() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    assert!(plan(webhook, &rules(&[(P1, "marketing")])).is_write());
}

#[test]
fn regulation_outside_the_allow_list_is_skipped() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": false}]));
    webhook["regulation"] = json!("cpra");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(
        skip_reason(&p),
        "regulation cpra is not in properties.regulations [gdpr]"
    );
}

#[test]
fn envelope_regulation_wins_over_the_entity_regulation() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["regulation"] = json!("CPRA");
    webhook["parameters"]["entity"]["regulation"] = json!("gdpr");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(p.regulation.as_deref(), Some("cpra"));
    assert_eq!(p.outcome, Outcome::Skip);
}

#[test]
fn entity_regulation_applies_when_the_envelope_has_none() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]["regulation"] = json!("cpra");
    let p = plan(webhook, &rules(&[(P1, "marketing")]));
    assert_eq!(p.regulation.as_deref(), Some("cpra"));
}

#[test]
fn missing_regulation_defaults_to_gdpr() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": true}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(p.regulation.as_deref(), Some("gdpr"));
    assert!(p.is_write());
}

#[test]
fn allow_listed_non_gdpr_regulation_is_written() {
    let mut rules = rules(&[(P1, "marketing")]);
    rules.regulations = vec!["cpra".into()];
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["regulation"] = json!("cpra");
    assert!(plan(webhook, &rules).is_write());
}

#[test]
fn event_matching_no_mapping_is_skipped() {
    let p = plan(
        event(json!([{"id": "cookies", "enabled": true}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::NothingMapped.to_string());
}

#[test]
fn write_plan_carries_event_identity_and_time() {
    let p = plan(
        event(json!([{"id": "marketing", "enabled": true}])),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(p.event_id.as_deref(), Some("ev-1"));
    assert_eq!(
        p.organization_user_id.as_deref(),
        Some("jane.doe@example.com")
    );
    assert_eq!(
        p.occurred_at.unwrap().to_rfc3339(),
        "2025-03-14T09:21:07.512+00:00"
    );
    assert_eq!(p.reason, None);
}

#[test]
fn write_without_created_at_is_an_error_naming_the_field() {
    let mut webhook = event(json!([{"id": "marketing", "enabled": true}]));
    webhook["parameters"]["entity"]
        .as_object_mut()
        .unwrap()
        .remove("created_at");
    let err = plan_webhook(
        &parse_webhook_value(webhook).unwrap(),
        &rules(&[(P1, "marketing")]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        MappingError::MissingTime {
            path: "parameters.entity.created_at"
        }
    );
}

#[test]
fn thousands_of_preference_values_are_handled() {
    let many: Vec<String> = (0..5000).map(|i| format!("v-{i}")).collect();
    let p = plan(
        event(json!([{"id": "marketing", "values": {"topics": {"value": many.join(",")}}}])),
        &rules(&[(T1, "topics/v-4999")]),
    );
    assert_eq!(decision(&p, T1), Some(OptedIn));
}

// --- webhook types --------------------------------------------------------------

fn updated_event(status: &str) -> Value {
    let entity = |status: &str| {
        json!({"id": "ev-1", "created_at": "2025-06-01T10:00:00Z", "status": status,
               "user": {"id": "u-1", "organization_user_id": "jane.doe@example.com"},
               "consents": {"purposes": [{"id": "marketing", "enabled": true}]}})
    };
    json!({"type": "event.updated", "parameters": {"source": {"id": "ev-1"},
        "old_entity": entity("pending_approval"), "new_entity": entity(status)}})
}

#[test]
fn event_updated_to_confirmed_is_written() {
    let p = plan(updated_event("confirmed"), &rules(&[(P1, "marketing")]));
    assert_eq!(decision(&p, P1), Some(OptedIn));
}

#[test]
fn event_updated_still_pending_is_skipped() {
    let p = plan(
        updated_event("pending_approval"),
        &rules(&[(P1, "marketing")]),
    );
    assert_eq!(skip_reason(&p), SkipReason::PendingApproval.to_string());
}

fn user_state(values: &str, enabled: Value, version: u64) -> Value {
    json!({"id": "u-1", "organization_user_id": "jane.doe@example.com", "version": version,
           "updated_at": "2025-04-02T16:05:44.120Z",
           "consents": {"purposes": [{"id": "marketing", "enabled": enabled,
               "values": {"topics": {"value": values}}}]}})
}

fn user_updated(old: Value, new: Value) -> Value {
    json!({"type": "user.updated", "parameters": {
        "source": {"id": "ev-2", "created_at": "2025-04-02T16:05:44.031Z"},
        "old_entity": old, "new_entity": new}})
}

fn with_user_types(mut rules: MappingRules) -> MappingRules {
    rules
        .webhook_types
        .extend([WebhookKind::UserCreated, WebhookKind::UserUpdated]);
    rules
}

#[test]
fn user_updated_is_off_by_default() {
    let webhook = user_updated(
        user_state("news", json!(true), 1),
        user_state("offers", json!(true), 2),
    );
    let p = plan(webhook, &rules(&[(T1, "topics/offers")]));
    assert_eq!(
        skip_reason(&p),
        SkipReason::TypeNotEnabled(WebhookKind::UserUpdated).to_string()
    );
}

#[test]
fn user_updated_writes_only_what_changed() {
    let rules = with_user_types(rules(&[(P1, "marketing"), (T1, "topics/offers")]));
    let webhook = user_updated(
        user_state("news", json!(true), 1),
        user_state("news,offers", json!(true), 2),
    );
    let p = plan(webhook, &rules);
    assert_eq!(
        p.consents,
        vec![Decision {
            target: T1.parse().unwrap(),
            value: OptedIn
        }]
    );
    assert_eq!(p.event_id.as_deref(), Some("ev-2"));
    assert_eq!(
        p.occurred_at.unwrap().to_rfc3339(),
        "2025-04-02T16:05:44.031+00:00"
    );
}

#[test]
fn user_updated_learns_a_bare_value_owner_from_the_old_state() {
    let rules = with_user_types(rules(&[(T1, "offers")]));
    let webhook = user_updated(
        user_state("news,offers", json!(true), 1),
        user_state("news", json!(true), 2),
    );
    let p = plan(webhook, &rules);
    assert_eq!(decision(&p, T1), Some(OptedOut));
}

#[test]
fn user_updated_without_mapped_changes_is_skipped() {
    let rules = with_user_types(rules(&[(P1, "marketing")]));
    let webhook = user_updated(
        user_state("news", json!(true), 1),
        user_state("offers", json!(true), 2),
    );
    let p = plan(webhook, &rules);
    assert_eq!(skip_reason(&p), SkipReason::NothingChanged.to_string());
}

#[test]
fn user_updated_without_source_falls_back_to_user_version_and_time() {
    let rules = with_user_types(rules(&[(P1, "marketing")]));
    let mut webhook = user_updated(
        user_state("", json!(true), 1),
        user_state("", json!(false), 7),
    );
    webhook["parameters"]
        .as_object_mut()
        .unwrap()
        .remove("source");
    let p = plan(webhook, &rules);
    assert_eq!(p.event_id.as_deref(), Some("user:u-1:v7"));
    assert_eq!(
        p.occurred_at.unwrap().to_rfc3339(),
        "2025-04-02T16:05:44.120+00:00"
    );
    assert_eq!(decision(&p, P1), Some(OptedOut));
}

#[test]
fn user_created_writes_the_full_state_when_enabled() {
    let rules = with_user_types(rules(&[(P1, "marketing"), (T1, "topics/offers")]));
    let webhook = json!({"type": "user.created", "parameters": {"entity": user_state("offers", json!(true), 1)}});
    let p = plan(webhook, &rules);
    assert_eq!(decision(&p, P1), Some(OptedIn));
    assert_eq!(decision(&p, T1), Some(OptedIn));
}

#[test]
fn deleted_webhooks_are_acknowledged_without_writes() {
    for kind in ["event.deleted", "user.deleted"] {
        let webhook = json!({"type": kind, "parameters": {"entity": {"id": "x-1"}}});
        let p = plan(webhook, &rules(&[(P1, "marketing")]));
        assert!(skip_reason(&p).contains("never deleted"), "{kind}");
        assert_eq!(p.event_id.as_deref(), Some("x-1"));
    }
}

#[test]
fn unknown_webhook_type_is_acknowledged_without_writes() {
    let p = plan(
        json!({"type": "notice.published", "parameters": {}}),
        &rules(&[(P1, "marketing")]),
    );
    assert!(skip_reason(&p).contains("notice.published"));
}

#[test]
fn event_created_can_be_disabled() {
    let mut rules = rules(&[(P1, "marketing")]);
    rules.webhook_types = BTreeSet::from([WebhookKind::EventUpdated]);
    let p = plan(event(json!([{"id": "marketing", "enabled": true}])), &rules);
    assert_eq!(
        skip_reason(&p),
        SkipReason::TypeNotEnabled(WebhookKind::EventCreated).to_string()
    );
}

// --- selector validation -----------------------------------------------------------

#[test]
fn empty_selector_is_rejected() {
    assert_eq!(
        Selector::parse("", &P1.parse().unwrap()),
        Err(SelectorError::Empty)
    );
}

#[test]
fn selector_with_empty_part_is_rejected() {
    let err = Selector::parse("marketing//offers", &T1.parse().unwrap()).unwrap_err();
    assert_eq!(
        err,
        SelectorError::BadSegment {
            index: 2,
            segment: String::new()
        }
    );
}

#[test]
fn selector_with_four_parts_is_rejected() {
    assert_eq!(
        Selector::parse("a/b/c/d", &T1.parse().unwrap()),
        Err(SelectorError::TooManySegments(4))
    );
}

#[test]
fn selector_with_comma_is_rejected() {
    assert!(matches!(
        Selector::parse("news,offers", &T1.parse().unwrap()),
        Err(SelectorError::BadSegment { .. })
    ));
}

/// A `user.updated` webhook with no `source` and states without `version`.
fn versionless_user_updated(updated_at: &str) -> Value {
    let state = |values: &str| {
        let mut state = user_state(values, json!(true), 0);
        let object = state.as_object_mut().unwrap();
        object.remove("version");
        object.insert("updated_at".into(), json!(updated_at));
        state
    };
    json!({"type": "user.updated", "parameters": {
        "old_entity": state("news"), "new_entity": state("news,offers")}})
}

#[test]
fn versionless_user_updates_of_different_times_get_different_event_ids() {
    let rules = with_user_types(rules(&[(T1, "topics/offers")]));
    let first = plan(versionless_user_updated("2025-04-02T16:05:44.120Z"), &rules);
    let later = plan(versionless_user_updated("2025-04-03T08:00:00.000Z"), &rules);
    assert_ne!(
        first.event_id, later.event_id,
        "they are two choices, not a replay"
    );
    let again = plan(versionless_user_updated("2025-04-02T16:05:44.120Z"), &rules);
    assert_eq!(first.event_id, again.event_id, "the same state is a replay");
}

// --- loop guard ---------------------------------------------------------------

#[test]
fn our_own_reverse_sync_posts_coming_back_write_nothing() {
    let rules = rules(&[(P1, "marketing")]);
    let mut echo = event(json!([{"id": "marketing", "enabled": false}]));
    echo["parameters"]["entity"]["metadata"] = json!({"origin": "didomi-cpc-sync", "row": "r"});
    assert_eq!(
        skip_reason(&plan(echo, &rules)),
        SkipReason::OwnEcho.to_string()
    );
    let mut delegated = event(json!([{"id": "marketing", "enabled": false}]));
    delegated["parameters"]["entity"]["delegate"] = json!({"id": "didomi-cpc-sync"});
    assert_eq!(
        skip_reason(&plan(delegated, &rules)),
        SkipReason::OwnEcho.to_string()
    );
    let mut other = event(json!([{"id": "marketing", "enabled": false}]));
    other["parameters"]["entity"]["metadata"] = json!({"origin": "dynamics"});
    assert_eq!(plan(other, &rules).outcome, Outcome::Write);
}
