//! Dynamics → Didomi (reverse sync, README "Dynamics → Didomi"): from a
//! Contact Point Consent row someone changed in Dynamics to the Didomi consent
//! event that says the same thing, or the typed reason it cannot be said.
//! Pure code: the caller reads the rows, the user's current Didomi state and
//! posts the event.
//!
//! Two steps, so the Didomi read happens only for rows worth posting:
//! [`plan_row`] decides from the row and the mappings alone; [`build_event`]
//! turns the change into the event body against the user's current state
//! (read-modify-write for preference values: the other values are kept).

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::cpc::ConsentRow;
use crate::domain::decision::{ConsentValue, Target};
use crate::domain::didomi::{Consents, PurposeChoice, SelectedValues};
use crate::domain::mapping::{Mapping, Selector};

/// The product name carried in `metadata.origin` and `delegate.id` of every
/// event this product posts; the forward path drops webhooks carrying it.
pub const ORIGIN: &str = "didomi-cpc-sync";

/// Default `properties.reverse_sync.sources`: the end-user sources
/// (Email - list-unsubscribe, Preference Center, Subscription Center,
/// Preference page).
pub const DEFAULT_SOURCES: [i32; 4] = [534_120_007, 534_120_004, 534_120_006, 534_120_001];

/// `properties.reverse_sync`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseSettings {
    /// `msdynmkt_source` values whose changes are sent to Didomi.
    pub sources: BTreeSet<i32>,
    /// Send opt-ins too (default: only opt-outs).
    pub opt_ins: bool,
}

impl Default for ReverseSettings {
    fn default() -> Self {
        Self {
            sources: DEFAULT_SOURCES.into_iter().collect(),
            opt_ins: false,
        }
    }
}

/// A consent row as the change query reads it: the row and its `msdynmkt_source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedRow {
    /// The row.
    pub row: ConsentRow,
    /// `msdynmkt_source`; `None` when the column is null.
    pub source: Option<i32>,
}

/// A row that is deliberately not sent (not an error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Written by this product's application user.
    #[error("written by this product's own application user")]
    OwnWrite,
    /// `msdynmkt_source` is not in `properties.reverse_sync.sources`.
    #[error("msdynmkt_source {0:?} is not in properties.reverse_sync.sources")]
    Source(Option<i32>),
    /// An opt-in while `properties.reverse_sync.opt_ins` is false.
    #[error("an opt-in, and properties.reverse_sync.opt_ins is false")]
    OptIn,
    /// The row is inactive (`statecode` 1): a superseded record, not the
    /// person's current choice.
    #[error("the row is inactive")]
    Inactive,
    /// `msdynmkt_value` is Not Set (or unknown).
    #[error("msdynmkt_value is Not Set")]
    NotSet,
    /// Didomi already holds the row's choice.
    #[error("Didomi already holds this choice")]
    AlreadyInDidomi,
}

/// A row that should reach Didomi but cannot be expressed as a Didomi event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotExpressible {
    /// The row names neither a purpose nor a topic.
    #[error("the row has neither a purpose nor a topic")]
    NoTarget,
    /// The row has no contact point value.
    #[error("the row has no contact point value")]
    NoContactPoint,
    /// `organization_user_id` is not the contact point (the contact match
    /// field differs from the contact point field), so the address does not
    /// name a Didomi user.
    #[error(
        "properties.contact_match_field differs from contact_point_field: the address is not a Didomi organization_user_id"
    )]
    UserIdIsNotTheAddress,
    /// No mapping feeds the row's purpose or topic.
    #[error("no mapping feeds {0}")]
    NoMapping(String),
    /// Several mappings feed the target: which Didomi choice changed is unknown.
    #[error("{target} is fed by {count} mappings; which Didomi choice changed is ambiguous")]
    SeveralMappings {
        /// `purpose:<guid>` or `topic:<guid>`.
        target: String,
        /// How many mappings feed it.
        count: usize,
    },
    /// The one mapping's selector has no single Didomi choice behind it.
    #[error(
        "{target} is fed by selector {selector:?}; only `<purposeId>` (purpose:) and `<purposeId>/<preferenceId>/<valueId>` (topic:) can be reversed"
    )]
    Selector {
        /// `purpose:<guid>` or `topic:<guid>`.
        target: String,
        /// The selector as configured.
        selector: String,
    },
}

/// The Didomi choice a row stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set a purpose's `enabled`.
    Purpose {
        /// Didomi purpose id.
        purpose: String,
        /// The new flag.
        enabled: bool,
    },
    /// Add (`selected`) or remove one value of a preference.
    Value {
        /// Didomi purpose id.
        purpose: String,
        /// Didomi preference id.
        preference: String,
        /// Didomi value id.
        value: String,
        /// `true` adds the value, `false` removes it.
        selected: bool,
    },
}

/// What [`plan_row`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowPlan {
    /// Send this change for this user (`organization_user_id`).
    Send {
        /// The Didomi `organization_user_id` (the row's contact point).
        user: String,
        /// The choice.
        change: Change,
    },
    /// Deliberately not sent.
    Ignored(Ignored),
    /// Cannot be sent; reported.
    NotExpressible(NotExpressible),
}

fn target_text(target: &Target) -> String {
    match target {
        Target::Purpose(id) => format!("purpose:{id}"),
        Target::Topic(id) => format!("topic:{id}"),
    }
}

fn selector_text(selector: &Selector) -> String {
    match selector {
        Selector::Purpose { purpose } => purpose.clone(),
        Selector::Exact {
            purpose,
            preference,
            value,
        } => format!("{purpose}/{preference}/{value}"),
        Selector::PreferenceValue { preference, value } => format!("{preference}/{value}"),
        Selector::Value { value } => value.clone(),
    }
}

/// Decides what one changed row means for Didomi. `own_user` is this
/// product's application user (`WhoAmI`); `user_id_is_address` is false when
/// `properties.contact_match_field` differs from `contact_point_field`.
pub fn plan_row(
    changed: &ChangedRow,
    mappings: &[Mapping],
    settings: &ReverseSettings,
    own_user: Uuid,
    user_id_is_address: bool,
) -> RowPlan {
    let row = &changed.row;
    if row.modified_by == Some(own_user) {
        return RowPlan::Ignored(Ignored::OwnWrite);
    }
    if !changed
        .source
        .is_some_and(|source| settings.sources.contains(&source))
    {
        return RowPlan::Ignored(Ignored::Source(changed.source));
    }
    if row.state != 0 {
        return RowPlan::Ignored(Ignored::Inactive);
    }
    let enabled = match row.value {
        None => return RowPlan::Ignored(Ignored::NotSet),
        Some(ConsentValue::OptedOut) => false,
        Some(ConsentValue::OptedIn) if !settings.opt_ins => {
            return RowPlan::Ignored(Ignored::OptIn);
        }
        Some(ConsentValue::OptedIn) => true,
    };
    let target = match (row.topic_id, row.purpose_id) {
        (Some(topic), _) => Target::Topic(topic),
        (None, Some(purpose)) => Target::Purpose(purpose),
        (None, None) => return RowPlan::NotExpressible(NotExpressible::NoTarget),
    };
    let user = row.contact_point.trim();
    if user.is_empty() {
        return RowPlan::NotExpressible(NotExpressible::NoContactPoint);
    }
    if !user_id_is_address {
        return RowPlan::NotExpressible(NotExpressible::UserIdIsNotTheAddress);
    }
    let feeding: Vec<&Mapping> = mappings.iter().filter(|m| m.target == target).collect();
    let mapping = match feeding.as_slice() {
        [] => return RowPlan::NotExpressible(NotExpressible::NoMapping(target_text(&target))),
        [one] => *one,
        more => {
            return RowPlan::NotExpressible(NotExpressible::SeveralMappings {
                target: target_text(&target),
                count: more.len(),
            });
        }
    };
    let change = match (&target, &mapping.selector) {
        (Target::Purpose(_), Selector::Purpose { purpose }) => Change::Purpose {
            purpose: purpose.clone(),
            enabled,
        },
        (
            Target::Topic(_),
            Selector::Exact {
                purpose,
                preference,
                value,
            },
        ) => Change::Value {
            purpose: purpose.clone(),
            preference: preference.clone(),
            value: value.clone(),
            selected: enabled,
        },
        (_, selector) => {
            return RowPlan::NotExpressible(NotExpressible::Selector {
                target: target_text(&target),
                selector: selector_text(selector),
            });
        }
    };
    RowPlan::Send {
        user: user.to_string(),
        change,
    }
}

/// The deterministic event id for a row at one `modifiedon`: the same edit
/// always gives the same id (Didomi never imports an id twice).
pub fn event_id(row_id: Uuid, modified_on: DateTime<Utc>) -> Uuid {
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:didomi-cpc-sync:reverse-sync");
    let name = format!(
        "{row_id}|{}",
        modified_on.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    Uuid::new_v5(&namespace, name.as_bytes())
}

/// The `POST /consents/events` body for `change`, given the user's current
/// consents (`None`: no such user in Didomi yet). `Err(AlreadyInDidomi)` when
/// Didomi holds the choice already.
pub fn build_event(
    row: &ConsentRow,
    user: &str,
    change: &Change,
    current: Option<&Consents>,
) -> Result<Value, Ignored> {
    let current_purpose =
        |id: &str| current.and_then(|consents| consents.purposes.iter().find(|p| p.id == id));
    let purpose = match change {
        Change::Purpose { purpose, enabled } => {
            if current_purpose(purpose).and_then(|p| p.enabled) == Some(*enabled) {
                return Err(Ignored::AlreadyInDidomi);
            }
            json!({"id": purpose, "enabled": enabled})
        }
        Change::Value {
            purpose,
            preference,
            value,
            selected,
        } => {
            let mut values: Vec<String> = current_purpose(purpose)
                .and_then(|p| p.selection(preference))
                .map(<[String]>::to_vec)
                .unwrap_or_default();
            let present = values.iter().any(|v| v == value);
            if present == *selected {
                return Err(Ignored::AlreadyInDidomi);
            }
            if *selected {
                values.push(value.clone());
            } else {
                values.retain(|v| v != value);
            }
            json!({"id": purpose, "values": {preference: {"value": values.join(",")}}})
        }
    };
    let created_at = row.modified_on.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(json!({
        "id": event_id(row.id, row.modified_on).to_string(),
        "created_at": created_at,
        "user": {"organization_user_id": user},
        "consents": {
            "purposes": [purpose],
            "vendors": {"enabled": [], "disabled": [], "enabled_li": [], "disabled_li": []},
        },
        "delegate": {"id": ORIGIN, "name": "Dynamics 365 (didomi-cpc-sync reverse sync)"},
        "metadata": {"origin": ORIGIN, "row": row.id.to_string()},
    }))
}

/// Applies a posted change to the user's consents held in memory, so the
/// next row of the same user in the same pass starts from what Didomi will
/// hold (two values removed in one pass both stay removed).
pub fn apply(consents: &mut Consents, change: &Change) {
    let id = match change {
        Change::Purpose { purpose, .. } | Change::Value { purpose, .. } => purpose,
    };
    let index = match consents.purposes.iter().position(|p| &p.id == id) {
        Some(index) => index,
        None => {
            consents.purposes.push(PurposeChoice {
                id: id.clone(),
                ..PurposeChoice::default()
            });
            consents.purposes.len() - 1
        }
    };
    let purpose = &mut consents.purposes[index];
    match change {
        Change::Purpose { enabled, .. } => purpose.enabled = Some(*enabled),
        Change::Value {
            preference,
            value,
            selected,
            ..
        } => {
            let mut values: Vec<String> = purpose
                .selection(preference)
                .map(<[String]>::to_vec)
                .unwrap_or_default();
            values.retain(|v| v != value);
            if *selected {
                values.push(value.clone());
            }
            purpose
                .values
                .insert(preference.clone(), SelectedValues::of(values));
        }
    }
}

/// True when a Didomi event's `metadata.origin` or `delegate.id` names this
/// product: an echo of a reverse-sync post.
pub fn is_own_echo(metadata_origin: Option<&str>, delegate_id: Option<&str>) -> bool {
    metadata_origin == Some(ORIGIN) || delegate_id == Some(ORIGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::didomi::Consents;

    const PURPOSE: &str = "11111111-1111-1111-1111-111111111111";
    const TOPIC: &str = "22222222-2222-2222-2222-222222222222";
    const UNSUBSCRIBE: i32 = 534_120_007;

    fn own() -> Uuid {
        Uuid::from_u128(0xaaaa)
    }

    fn person() -> Uuid {
        Uuid::from_u128(0xbbbb)
    }

    fn mapping(target: &str, selector: &str) -> Mapping {
        let target: Target = target.parse().unwrap();
        Mapping {
            selector: Selector::parse(selector, &target).unwrap(),
            target,
        }
    }

    fn mappings() -> Vec<Mapping> {
        vec![
            mapping(&format!("purpose:{PURPOSE}"), "newsletter"),
            mapping(&format!("topic:{TOPIC}"), "newsletter/topics/sports"),
        ]
    }

    fn row(topic: bool, value: Option<ConsentValue>, source: Option<i32>) -> ChangedRow {
        ChangedRow {
            row: ConsentRow {
                id: Uuid::from_u128(7),
                contact_point: "jane@example.com".into(),
                channel: crate::domain::cpc::CHANNEL_EMAIL,
                consent_type: None,
                purpose_id: Some(PURPOSE.parse().unwrap()),
                topic_id: topic.then(|| TOPIC.parse().unwrap()),
                value,
                reason: None,
                state: 0,
                modified_on: "2026-12-01T10:00:00Z".parse().unwrap(),
                modified_by: Some(person()),
                etag: "W/\"1\"".into(),
            },
            source,
        }
    }

    fn plan(changed: &ChangedRow, settings: &ReverseSettings) -> RowPlan {
        plan_row(changed, &mappings(), settings, own(), true)
    }

    fn consents(value: serde_json::Value) -> Consents {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_purpose_unsubscribe_disables_the_purpose() {
        let changed = row(false, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        let RowPlan::Send { user, change } = plan(&changed, &ReverseSettings::default()) else {
            panic!("expected a change");
        };
        assert_eq!(user, "jane@example.com");
        assert_eq!(
            change,
            Change::Purpose {
                purpose: "newsletter".into(),
                enabled: false
            }
        );
        let event = build_event(&changed.row, &user, &change, None).unwrap();
        assert_eq!(
            event["consents"]["purposes"],
            json!([{"id": "newsletter", "enabled": false}])
        );
        assert_eq!(event["created_at"], "2026-12-01T10:00:00Z");
        assert_eq!(event["user"]["organization_user_id"], "jane@example.com");
        assert_eq!(event["metadata"]["origin"], ORIGIN);
        assert_eq!(event["metadata"]["row"], Uuid::from_u128(7).to_string());
    }

    #[test]
    fn a_topic_opt_out_removes_only_that_value() {
        let changed = row(true, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        let RowPlan::Send { user, change } = plan(&changed, &ReverseSettings::default()) else {
            panic!("expected a change");
        };
        let current = consents(json!({"purposes": [{"id": "newsletter", "enabled": true,
            "values": {"topics": {"value": "news,sports,music"}, "other": {"value": "x"}}}]}));
        let event = build_event(&changed.row, &user, &change, Some(&current)).unwrap();
        assert_eq!(
            event["consents"]["purposes"],
            json!([{"id": "newsletter", "values": {"topics": {"value": "news,music"}}}])
        );
    }

    #[test]
    fn a_topic_opt_in_adds_the_value_when_opt_ins_are_on() {
        let changed = row(true, Some(ConsentValue::OptedIn), Some(UNSUBSCRIBE));
        let settings = ReverseSettings {
            opt_ins: true,
            ..ReverseSettings::default()
        };
        let RowPlan::Send { user, change } = plan(&changed, &settings) else {
            panic!("expected a change");
        };
        let current = consents(json!({"purposes": [{"id": "newsletter",
            "values": {"topics": {"value": "news"}}}]}));
        let event = build_event(&changed.row, &user, &change, Some(&current)).unwrap();
        assert_eq!(
            event["consents"]["purposes"][0]["values"]["topics"]["value"],
            "news,sports"
        );
    }

    #[test]
    fn what_didomi_holds_already_is_not_posted() {
        let changed = row(true, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        let RowPlan::Send { user, change } = plan(&changed, &ReverseSettings::default()) else {
            panic!("expected a change");
        };
        let current = consents(json!({"purposes": [{"id": "newsletter",
            "values": {"topics": {"value": "news"}}}]}));
        assert_eq!(
            build_event(&changed.row, &user, &change, Some(&current)),
            Err(Ignored::AlreadyInDidomi)
        );
        let purpose = Change::Purpose {
            purpose: "newsletter".into(),
            enabled: false,
        };
        let current = consents(json!({"purposes": [{"id": "newsletter", "enabled": false}]}));
        assert_eq!(
            build_event(&changed.row, &user, &purpose, Some(&current)),
            Err(Ignored::AlreadyInDidomi)
        );
    }

    #[test]
    fn own_writes_unlisted_sources_inactive_rows_opt_ins_and_not_set_are_ignored() {
        let settings = ReverseSettings::default();
        let mut ours = row(false, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        ours.row.modified_by = Some(own());
        assert_eq!(plan(&ours, &settings), RowPlan::Ignored(Ignored::OwnWrite));
        let internal = row(false, Some(ConsentValue::OptedOut), Some(534_120_000));
        assert_eq!(
            plan(&internal, &settings),
            RowPlan::Ignored(Ignored::Source(Some(534_120_000)))
        );
        let null_source = row(false, Some(ConsentValue::OptedOut), None);
        assert_eq!(
            plan(&null_source, &settings),
            RowPlan::Ignored(Ignored::Source(None))
        );
        let opt_in = row(false, Some(ConsentValue::OptedIn), Some(UNSUBSCRIBE));
        assert_eq!(plan(&opt_in, &settings), RowPlan::Ignored(Ignored::OptIn));
        let mut inactive = row(false, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        inactive.row.state = 1;
        assert_eq!(
            plan(&inactive, &settings),
            RowPlan::Ignored(Ignored::Inactive)
        );
        let not_set = row(false, None, Some(UNSUBSCRIBE));
        assert_eq!(plan(&not_set, &settings), RowPlan::Ignored(Ignored::NotSet));
    }

    #[test]
    fn rows_without_a_reversible_mapping_are_not_expressible() {
        let settings = ReverseSettings::default();
        let changed = row(true, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        let bare = vec![mapping(&format!("topic:{TOPIC}"), "sports")];
        assert!(matches!(
            plan_row(&changed, &bare, &settings, own(), true),
            RowPlan::NotExpressible(NotExpressible::Selector { .. })
        ));
        assert!(matches!(
            plan_row(&changed, &[], &settings, own(), true),
            RowPlan::NotExpressible(NotExpressible::NoMapping(_))
        ));
        let two = vec![
            mapping(&format!("topic:{TOPIC}"), "a/b/c"),
            mapping(&format!("topic:{TOPIC}"), "a/b/d"),
        ];
        assert!(matches!(
            plan_row(&changed, &two, &settings, own(), true),
            RowPlan::NotExpressible(NotExpressible::SeveralMappings { count: 2, .. })
        ));
        assert_eq!(
            plan_row(&changed, &mappings(), &settings, own(), false),
            RowPlan::NotExpressible(NotExpressible::UserIdIsNotTheAddress)
        );
        let mut orphan = changed.clone();
        orphan.row.purpose_id = None;
        orphan.row.topic_id = None;
        assert_eq!(
            plan(&orphan, &settings),
            RowPlan::NotExpressible(NotExpressible::NoTarget)
        );
    }

    #[test]
    fn the_event_id_is_deterministic_per_row_and_modifiedon() {
        let at: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let later: DateTime<Utc> = "2026-12-01T10:00:01Z".parse().unwrap();
        let id = Uuid::from_u128(7);
        assert_eq!(event_id(id, at), event_id(id, at));
        assert_ne!(event_id(id, at), event_id(id, later));
        assert_ne!(event_id(id, at), event_id(Uuid::from_u128(8), at));
        assert_eq!(event_id(id, at).get_version_num(), 5);
    }

    #[test]
    fn two_values_removed_in_one_pass_both_stay_removed() {
        let changed = row(true, Some(ConsentValue::OptedOut), Some(UNSUBSCRIBE));
        let mut current = consents(json!({"purposes": [{"id": "newsletter",
            "values": {"topics": {"value": "news,sports,music"}}}]}));
        let remove = |value: &str| Change::Value {
            purpose: "newsletter".into(),
            preference: "topics".into(),
            value: value.into(),
            selected: false,
        };
        let first = build_event(
            &changed.row,
            "jane@example.com",
            &remove("sports"),
            Some(&current),
        )
        .unwrap();
        apply(&mut current, &remove("sports"));
        let second = build_event(
            &changed.row,
            "jane@example.com",
            &remove("music"),
            Some(&current),
        )
        .unwrap();
        assert_eq!(
            first["consents"]["purposes"][0]["values"]["topics"]["value"],
            "news,music"
        );
        assert_eq!(
            second["consents"]["purposes"][0]["values"]["topics"]["value"],
            "news"
        );
        let mut empty = Consents::default();
        apply(
            &mut empty,
            &Change::Purpose {
                purpose: "p".into(),
                enabled: false,
            },
        );
        assert_eq!(empty.purposes[0].enabled, Some(false));
    }

    #[test]
    fn echoes_are_recognised() {
        assert!(is_own_echo(Some(ORIGIN), None));
        assert!(is_own_echo(None, Some(ORIGIN)));
        assert!(!is_own_echo(Some("dynamics"), None));
        assert!(!is_own_echo(None, None));
    }
}
