//! The Contact Point Consent schema as the product's rules see it: the
//! records this product reads and writes, as plain data, and the option values
//! of `msdynmkt_contactpointconsent4`. Shared by the pure write planner and the
//! Web API client; no I/O here. Table, column and navigation-property names are
//! wire details and live in `adapters::dataverse::wire`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::decision::ConsentValue;

/// `msdynmkt_contactpointtype`: Email.
pub const CHANNEL_EMAIL: i32 = 534_120_000;
/// `msdynmkt_contactpointconsenttype`: Purpose.
pub const CONSENT_TYPE_PURPOSE: i32 = 534_120_000;
/// `msdynmkt_contactpointconsenttype`: Topic.
pub const CONSENT_TYPE_TOPIC: i32 = 534_120_001;
/// `msdynmkt_value`: Not Set.
pub const CONSENT_NOT_SET: i32 = 534_120_000;
/// `msdynmkt_value`: Opted In.
pub const CONSENT_OPTED_IN: i32 = 534_120_001;
/// `msdynmkt_value`: Opted Out.
pub const CONSENT_OPTED_OUT: i32 = 534_120_002;
/// `msdynmkt_logicalreason`: No reasons (what Microsoft's own flow writes).
pub const LOGICAL_REASON_NONE: i32 = 534_119_999;
/// `msdynmkt_source` options, 534120000 (Internal) to 534120007 (Email - list-unsubscribe).
pub const SOURCE_OPTIONS: [(i32, &str); 8] = [
    (534_120_000, "internal"),
    (534_120_001, "preference_page"),
    (534_120_002, "text_message"),
    (534_120_003, "loaded"),
    (534_120_004, "preference_center"),
    (534_120_005, "realtime_marketing_form"),
    (534_120_006, "subscription_center"),
    (534_120_007, "email_list_unsubscribe"),
];
/// `msdynmkt_source`: Internal, the default (Microsoft's own flow writes it).
pub const SOURCE_INTERNAL: i32 = 534_120_000;
/// Maximum length of `msdynmkt_reason` (Reason Description).
pub const REASON_MAX_LEN: usize = 500;
/// Maximum length of `msdynmkt_contactpointvalue`.
pub const CONTACT_POINT_MAX_LEN: usize = 400;

/// `msdynmkt_contactpointconsenttype`: whether a row grants a purpose or a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentType {
    /// Consent to a purpose (commercial or transactional communication).
    Purpose,
    /// Consent to a topic within a purpose.
    Topic,
}

impl ConsentType {
    /// The option value Dataverse stores.
    pub fn option_value(self) -> i32 {
        match self {
            ConsentType::Purpose => CONSENT_TYPE_PURPOSE,
            ConsentType::Topic => CONSENT_TYPE_TOPIC,
        }
    }

    /// The inverse of [`ConsentType::option_value`]; `None` for anything else.
    pub fn from_option_value(value: i32) -> Option<Self> {
        match value {
            CONSENT_TYPE_PURPOSE => Some(ConsentType::Purpose),
            CONSENT_TYPE_TOPIC => Some(ConsentType::Topic),
            _ => None,
        }
    }
}

/// The identity of a contact point (an email address) for comparisons: the
/// one place that decides which spellings are the same address. The key
/// folds ASCII case, as mail systems do for the domain and in practice for
/// the local part; the address itself is always written as Dataverse spelt it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactPointKey(String);

impl ContactPointKey {
    /// The key of `address`: surrounding whitespace dropped, case folded.
    ///
    /// Only ASCII letters are folded: Dataverse's collation also folds
    /// accents and other scripts, but two addresses that differ there are
    /// different mailboxes (the Kelvin sign `\u{212A}` is not `K`), so they
    /// never share rows.
    pub fn of(address: &str) -> Self {
        Self(address.trim().to_ascii_lowercase())
    }

    /// The folded form, for deterministic ids and sorting.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContactPointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when `id` has the shape of an email address: one `@`, a local part
/// of at most 64 characters without spaces or control characters, and a
/// domain of dot-separated labels of letters, digits and hyphens. Only such an
/// id may become a contact point of its own (a created contact, or opt-outs
/// written without a contact); anything else is an id of some other system.
pub fn is_email_address(id: &str) -> bool {
    let Some((local, domain)) = id.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.chars().count() <= 64
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@');
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 255
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// A purpose as read from `msdynmkt_purposes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    /// `msdynmkt_purposeid`.
    pub id: Uuid,
    /// `msdynmkt_name`.
    pub name: String,
    /// `statecode == 0`.
    pub active: bool,
}

/// A topic as read from `msdynmkt_topics`, with its parent purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// `msdynmkt_topicid`.
    pub id: Uuid,
    /// `msdynmkt_name`.
    pub name: String,
    /// `_msdynmkt_purposeid_value`: the parent purpose (a topic row must bind it).
    pub purpose_id: Option<Uuid>,
    /// `statecode == 0`.
    pub active: bool,
}

/// A contact found by the match field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// `contactid`.
    pub id: Uuid,
    /// The value of the match field (what `organization_user_id` matched).
    pub match_value: Option<String>,
    /// The value of the contact point field (the address consent belongs to).
    pub contact_point: Option<String>,
}

/// An existing Contact Point Consent row (active or inactive: CI-J enforces both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRow {
    /// `msdynmkt_contactpointconsent4id`.
    pub id: Uuid,
    /// `msdynmkt_contactpointvalue`.
    pub contact_point: String,
    /// `msdynmkt_contactpointtype` (channel); only Email rows are read.
    pub channel: i32,
    /// `msdynmkt_contactpointconsenttype` (Purpose/Topic); may be null or
    /// unknown on rows written by others.
    pub consent_type: Option<ConsentType>,
    /// `_msdynmkt_purposeid_value`.
    pub purpose_id: Option<Uuid>,
    /// `_msdynmkt_topicid_value`.
    pub topic_id: Option<Uuid>,
    /// `msdynmkt_value`; `None` for Not Set (or a value this product does not know).
    pub value: Option<ConsentValue>,
    /// `msdynmkt_reason` (where this product keeps its ordering marker).
    pub reason: Option<String>,
    /// `statecode` (0 active, 1 inactive).
    pub state: i32,
    /// `modifiedon` (server write time, whole seconds).
    pub modified_on: DateTime<Utc>,
    /// `_modifiedby_value`: the systemuser who wrote the row last. A row last
    /// written by anyone but this product's application user was edited in
    /// Dynamics (preference centre, unsubscribe link, an agent).
    pub modified_by: Option<Uuid>,
    /// `@odata.etag`: the row's version, sent back as `If-Match` so an update
    /// planned from this read cannot overwrite a newer write.
    pub etag: String,
}

/// A Contact Point Consent row to create: every ApplicationRequired column.
///
/// The id is chosen by the planner and the row is created with a create-only
/// upsert (`PATCH …(<id>)` + `If-None-Match: *`), so a retried create can never
/// make a second row: the repeat answers 412 instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewConsent {
    /// `msdynmkt_contactpointconsent4id`, chosen by the planner.
    pub id: Uuid,
    /// `msdynmkt_contactpointvalue`: the email address as stored on the contact.
    pub contact_point: String,
    /// `msdynmkt_contactpointconsenttype`: Purpose or Topic.
    pub consent_type: ConsentType,
    /// `msdynmkt_value`.
    pub value: ConsentValue,
    /// Bound through `msdynmkt_purposeId@odata.bind`; for a topic row, the topic's parent.
    pub purpose_id: Uuid,
    /// Bound through `msdynmkt_topicId@odata.bind` for topic rows.
    pub topic_id: Option<Uuid>,
    /// `msdynmkt_source`.
    pub source: i32,
    /// `msdynmkt_reason`: the ordering marker.
    pub reason: String,
}

/// The columns rewritten on an existing consent row (`PATCH` with
/// `If-Match: <etag>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentUpdate {
    /// The row to update.
    pub id: Uuid,
    /// The version the update was planned from; Dataverse answers 412 when the
    /// row changed since, and the message is retried from a fresh read.
    pub etag: String,
    /// `msdynmkt_value`.
    pub value: ConsentValue,
    /// `msdynmkt_source`.
    pub source: i32,
    /// `msdynmkt_reason`: the ordering marker.
    pub reason: String,
}

/// A contact to create when `upsert_mode` is on and none matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewContact {
    /// `contactid`, chosen by the planner (created with `If-None-Match: *` too).
    pub id: Uuid,
    /// The match field's logical name (default `emailaddress1`).
    pub match_field: String,
    /// The value for the match field (`organization_user_id`).
    pub match_value: String,
    /// The contact point field's logical name, when it differs from the match field.
    pub contact_point_field: String,
    /// The address written into the contact point field.
    pub contact_point: String,
}

/// One write of a `$batch`, in the order the planner emits them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `PATCH contacts(<id>)` with `If-None-Match: *` (create only).
    CreateContact(NewContact),
    /// `PATCH msdynmkt_contactpointconsent4s(<id>)` with `If-None-Match: *` (create only).
    CreateConsent(NewConsent),
    /// `PATCH msdynmkt_contactpointconsent4s(<id>)` with `If-Match: <etag>`.
    UpdateConsent(ConsentUpdate),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tagged_addresses_are_email_addresses() {
        for id in [
            "jane.doe@example.com",
            "o'brien+news@example.com",
            "a@b.co",
            "ana@münchen.de",
        ] {
            assert!(is_email_address(id), "{id}");
        }
    }

    #[test]
    fn crm_ids_and_injection_attempts_are_not_email_addresses() {
        for id in [
            "crm-4711",
            "a@b.com' or contains(emailaddress1,'@')",
            "x@y",
            "@example.com",
            "jane@@example.com",
            "jane doe@example.com",
            "jane@exa_mple.com",
            "jane@-example.com",
        ] {
            assert!(!is_email_address(id), "{id}");
        }
    }

    #[test]
    fn contact_point_keys_fold_ascii_case_only() {
        assert_eq!(
            ContactPointKey::of(" Jane@Example.COM "),
            ContactPointKey::of("jane@example.com")
        );
        assert_ne!(
            ContactPointKey::of("\u{212A}ate@x.com"),
            ContactPointKey::of("kate@x.com")
        );
        assert_ne!(
            ContactPointKey::of("ÉMILE@x.com"),
            ContactPointKey::of("émile@x.com")
        );
    }
}
