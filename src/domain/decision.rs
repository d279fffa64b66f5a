//! The vocabulary shared by every stage: Dynamics targets, consent values and
//! the per-webhook plan that the mapping stage produces (README, "Mapping rules" and "Dry run").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::domain::cpc::CONTACT_POINT_MAX_LEN;
use crate::domain::didomi::WebhookKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Dynamics consent target: a `msdynmkt_purpose` or a `msdynmkt_topic` row,
/// written as `purpose:<guid>` / `topic:<guid>` in the Didomi configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A purpose (`msdynmkt_purposeid`).
    Purpose(Uuid),
    /// A topic (`msdynmkt_topicid`); its parent purpose is read from Dataverse.
    Topic(Uuid),
}

impl Target {
    /// The GUID of the purpose or topic.
    pub fn id(&self) -> Uuid {
        match self {
            Target::Purpose(id) | Target::Topic(id) => *id,
        }
    }

    /// True for `topic:` targets.
    pub fn is_topic(&self) -> bool {
        matches!(self, Target::Topic(_))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Purpose(id) => write!(f, "purpose:{}", id.hyphenated()),
            Target::Topic(id) => write!(f, "topic:{}", id.hyphenated()),
        }
    }
}

/// Why a mapping id is not a valid [`Target`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetParseError {
    /// The id does not start with `purpose:` or `topic:`.
    #[error("must start with `purpose:` or `topic:` (got {0:?})")]
    UnknownKind(String),
    /// The part after the prefix is not a hyphenated GUID.
    #[error("`{0}` is not a GUID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    BadGuid(String),
}

impl FromStr for Target {
    type Err = TargetParseError;

    /// Parses exactly `purpose:<guid>` or `topic:<guid>`, with the GUID in its
    /// 36-character hyphenated form (any case); nothing else is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, guid) = s
            .split_once(':')
            .ok_or_else(|| TargetParseError::UnknownKind(s.to_string()))?;
        let id = parse_hyphenated_guid(guid)
            .ok_or_else(|| TargetParseError::BadGuid(guid.to_string()))?;
        match kind {
            "purpose" => Ok(Target::Purpose(id)),
            "topic" => Ok(Target::Topic(id)),
            other => Err(TargetParseError::UnknownKind(other.to_string())),
        }
    }
}

/// Parses a GUID only in its canonical 8-4-4-4-12 form (no braces, no `urn:`).
pub fn parse_hyphenated_guid(s: &str) -> Option<Uuid> {
    let well_formed = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if well_formed {
        Uuid::parse_str(s).ok()
    } else {
        None
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// A user's decision on one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentValue {
    /// The user agreed.
    OptedIn,
    /// The user declined or withdrew.
    OptedOut,
}

impl ConsentValue {
    /// The `msdynmkt_value` option (`msdynmkt_consentvalue` global choice).
    pub fn option_value(self) -> i32 {
        match self {
            ConsentValue::OptedIn => crate::domain::cpc::CONSENT_OPTED_IN,
            ConsentValue::OptedOut => crate::domain::cpc::CONSENT_OPTED_OUT,
        }
    }

    /// The inverse of [`ConsentValue::option_value`]; `None` for "Not Set" or
    /// anything unknown.
    pub fn from_option_value(value: i32) -> Option<Self> {
        match value {
            crate::domain::cpc::CONSENT_OPTED_IN => Some(ConsentValue::OptedIn),
            crate::domain::cpc::CONSENT_OPTED_OUT => Some(ConsentValue::OptedOut),
            _ => None,
        }
    }
}

/// One decided target of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// The Dynamics purpose or topic.
    pub target: Target,
    /// What the user chose for it.
    pub value: ConsentValue,
}

/// Why a webhook leads to no write. Each is acknowledged and logged, never
/// retried: the same webhook would be skipped again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The type is not listed in `properties.webhook_types`.
    TypeNotEnabled(WebhookKind),
    /// `event.deleted` / `user.deleted`.
    Deleted(WebhookKind),
    /// A type Didomi may add in the future.
    UnknownType(String),
    /// Anonymous traffic (cookie banner): no contact to match.
    NoOrganizationUserId,
    /// The event waits for approval.
    PendingApproval,
    /// A status other than `confirmed`/`pending_approval`.
    StatusNotConfirmed(String),
    /// The regulation is outside `properties.regulations`.
    RegulationNotAllowed {
        /// The event's regulation.
        regulation: String,
        /// The allow-list.
        allowed: Vec<String>,
    },
    /// No mapping selects anything the event decides.
    NothingMapped,
    /// `user.updated`: no mapped decision differs between old and new state.
    NothingChanged,
    /// No contact matches `organization_user_id` and `upsert_mode` is off.
    NoContact {
        /// The contact column compared.
        match_field: String,
    },
    /// The matching contacts hold no address in the contact point field.
    NoContactPoint {
        /// The contact point column.
        point_field: String,
    },
    /// `upsert_mode` would create a contact, but the id is not an address.
    UpsertNeedsEmail {
        /// The contact point column the id would be written to.
        point_field: String,
    },
    /// The contact's address is longer than Dataverse's column allows.
    ContactPointTooLong {
        /// The contact point column.
        point_field: String,
        /// The address's length in characters.
        length: usize,
    },
    /// The event is this product's own reverse-sync post coming back
    /// (`metadata.origin` or `delegate.id` names it): Dynamics holds it already.
    OwnEcho,
}

impl SkipReason {
    /// A short, stable category for metrics and log queries: `type`,
    /// `anonymous`, `pending_approval`, `status`, `regulation`, `unmapped`,
    /// `no_contact` or `echo`.
    pub fn category(&self) -> &'static str {
        match self {
            SkipReason::TypeNotEnabled(_) | SkipReason::Deleted(_) | SkipReason::UnknownType(_) => {
                "type"
            }
            SkipReason::NoOrganizationUserId => "anonymous",
            SkipReason::PendingApproval => "pending_approval",
            SkipReason::StatusNotConfirmed(_) => "status",
            SkipReason::RegulationNotAllowed { .. } => "regulation",
            SkipReason::NothingMapped | SkipReason::NothingChanged => "unmapped",
            SkipReason::OwnEcho => "echo",
            SkipReason::NoContact { .. }
            | SkipReason::NoContactPoint { .. }
            | SkipReason::UpsertNeedsEmail { .. }
            | SkipReason::ContactPointTooLong { .. } => "no_contact",
        }
    }
}

impl Serialize for SkipReason {
    /// The sentence of [`fmt::Display`]: what `cpc-sync plan` prints as `reason`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TypeNotEnabled(kind) => {
                write!(f, "webhook type {kind} is not enabled in properties.webhook_types")
            }
            SkipReason::Deleted(kind) => write!(
                f,
                "{kind} is acknowledged without writes: consent rows are an audit trail and are never deleted"
            ),
            SkipReason::UnknownType(name) => {
                write!(f, "unknown webhook type {name:?} is acknowledged without writes")
            }
            SkipReason::NoOrganizationUserId => f.write_str(
                "no organization_user_id: anonymous consent (e.g. cookie banner) cannot be matched to a contact",
            ),
            SkipReason::PendingApproval => f.write_str(
                "status pending_approval: written once an event.updated confirms it",
            ),
            SkipReason::StatusNotConfirmed(status) => {
                write!(f, "status {status:?} is not confirmed")
            }
            SkipReason::RegulationNotAllowed { regulation, allowed } => write!(
                f,
                "regulation {regulation} is not in properties.regulations [{}]",
                allowed.join(", ")
            ),
            SkipReason::NothingMapped => f.write_str("nothing in the event matches a mapping"),
            SkipReason::OwnEcho => f.write_str(
                "the event is this product's own reverse-sync post (metadata.origin didomi-cpc-sync): Dynamics holds it already",
            ),
            SkipReason::NothingChanged => {
                f.write_str("no mapped consent changed between old_entity and new_entity")
            }
            SkipReason::NoContact { match_field } => write!(
                f,
                "no contact has {match_field} equal to organization_user_id, and upsert_mode is off"
            ),
            SkipReason::NoContactPoint { point_field } => write!(
                f,
                "the matching contact has no {point_field}: consent belongs to an address and there is none"
            ),
            SkipReason::UpsertNeedsEmail { point_field } => write!(
                f,
                "upsert_mode creates contacts only for an organization_user_id that is an email address (it becomes {point_field})"
            ),
            SkipReason::ContactPointTooLong { point_field, length } => write!(
                f,
                "the contact's {point_field} is {length} characters, over Dataverse's {CONTACT_POINT_MAX_LEN}"
            ),
        }
    }
}

/// Whether a webhook leads to writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one decision must reach Dataverse.
    Write,
    /// Nothing to write; `reason` says why.
    Skip,
}

/// The result of the mapping stage for one webhook (README, "Where the document comes from"): the JSON line
/// `cpc-sync plan` prints and the input of the Dataverse write planner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentPlan {
    /// `write` or `skip`.
    pub outcome: Outcome,
    /// Why a webhook is skipped (`null` for writes).
    pub reason: Option<SkipReason>,
    /// The Didomi event id the decisions come from (for `user.*` webhooks, the
    /// triggering event's id when Didomi sends it).
    pub event_id: Option<String>,
    /// The regulation the event belongs to (lower case, default `gdpr`).
    pub regulation: Option<String>,
    /// The Didomi `organization_user_id` (the contact match value).
    pub organization_user_id: Option<String>,
    /// When the user made the choice (the event's `created_at`).
    pub occurred_at: Option<DateTime<Utc>>,
    /// The decisions, one per target, sorted by target.
    pub consents: Vec<Decision>,
}

impl ConsentPlan {
    /// True when the plan carries decisions to write.
    pub fn is_write(&self) -> bool {
        self.outcome == Outcome::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_round_trips_through_its_config_form() {
        let raw = "topic:23db4a4d-ba9f-f011-bbd3-6045bd194648";
        let target: Target = raw.parse().unwrap();
        assert!(target.is_topic());
        assert_eq!(target.to_string(), raw);
    }

    #[test]
    fn target_guid_is_normalised_to_lower_case() {
        let target: Target = "purpose:10000000-0000-0000-0000-00000000000A"
            .parse()
            .unwrap();
        assert_eq!(
            target.to_string(),
            "purpose:10000000-0000-0000-0000-00000000000a"
        );
    }

    #[test]
    fn target_rejects_unknown_kind() {
        assert_eq!(
            "channel:10000000-0000-0000-0000-000000000003".parse::<Target>(),
            Err(TargetParseError::UnknownKind("channel".into()))
        );
    }

    #[test]
    fn target_rejects_braced_and_simple_guids() {
        for raw in [
            "purpose:{10000000-0000-0000-0000-000000000003}",
            "purpose:10000000000000000000000000000003",
            "purpose:",
            "purpose:10000000-0000-0000-0000-00000000000g",
        ] {
            assert!(
                matches!(raw.parse::<Target>(), Err(TargetParseError::BadGuid(_))),
                "{raw}"
            );
        }
    }

    #[test]
    fn consent_values_use_dataverse_option_numbers() {
        assert_eq!(ConsentValue::OptedIn.option_value(), 534_120_001);
        assert_eq!(ConsentValue::OptedOut.option_value(), 534_120_002);
        assert_eq!(ConsentValue::from_option_value(534_120_000), None);
    }
}
