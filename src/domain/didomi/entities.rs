//! The two entity kinds a webhook carries: consent events (`event.*`) and users
//! (`user.*`), with only the fields this product reads. Unknown fields are
//! ignored, as Didomi adds fields over time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::consents::Consents;
use super::time;

/// A consent event: a partial set of choices a user just made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ConsentEvent {
    /// Didomi's event id (unique per event).
    pub id: String,
    /// The Didomi organization.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// When the choice was made (may be in the past for imports).
    #[serde(default, deserialize_with = "time::optional")]
    pub created_at: Option<DateTime<Utc>>,
    /// When Didomi last changed the event (e.g. its approval).
    #[serde(default, deserialize_with = "time::optional")]
    pub updated_at: Option<DateTime<Utc>>,
    /// `confirmed` (also when absent) or `pending_approval`.
    #[serde(default)]
    pub status: Option<EventStatus>,
    /// The event's own regulation (`gdpr`, `cpra`, …).
    #[serde(default)]
    pub regulation: Option<String>,
    /// Who made the choice.
    #[serde(default)]
    pub user: EventUser,
    /// The choices.
    #[serde(default)]
    pub consents: Consents,
    /// The event's free-form `metadata` (reverse-sync posts carry `origin`).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// The `delegate` that made the change on the user's behalf.
    #[serde(default)]
    pub delegate: Option<serde_json::Value>,
}

impl ConsentEvent {
    /// True when this product posted the event (reverse sync): its
    /// `metadata.origin` or `delegate.id` is [`crate::domain::reverse::ORIGIN`].
    pub fn is_own_echo(&self) -> bool {
        let text = |value: &Option<serde_json::Value>, key: &str| {
            value
                .as_ref()
                .and_then(|v| v.get(key))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        crate::domain::reverse::is_own_echo(
            text(&self.metadata, "origin").as_deref(),
            text(&self.delegate, "id").as_deref(),
        )
    }

    /// The event's status, `confirmed` when Didomi leaves it out.
    pub fn effective_status(&self) -> EventStatus {
        self.status.clone().unwrap_or(EventStatus::Confirmed)
    }
}

/// The user block of a consent event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EventUser {
    /// Didomi's user id (random for web visitors).
    #[serde(default)]
    pub id: Option<String>,
    /// The organization's own id for the user (typically the email address);
    /// absent for anonymous cookie-banner traffic.
    #[serde(default)]
    pub organization_user_id: Option<String>,
}

/// The approval state of a consent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventStatus {
    /// Applied to the user's consent status.
    Confirmed,
    /// Waiting for approval; a later `event.updated` confirms it.
    PendingApproval,
    /// A status this product does not know; treated as not confirmed.
    Other(String),
}

impl<'de> Deserialize<'de> for EventStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(match raw.as_str() {
            "confirmed" => EventStatus::Confirmed,
            "pending_approval" => EventStatus::PendingApproval,
            _ => EventStatus::Other(raw),
        })
    }
}

/// A Didomi user: the merged, latest consent status for one regulation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DidomiUser {
    /// Didomi's user id.
    pub id: String,
    /// The organization's own id for the user.
    #[serde(default)]
    pub organization_user_id: Option<String>,
    /// Optimistic-locking version, incremented on each change.
    #[serde(default)]
    pub version: Option<u64>,
    /// When Didomi last changed the user.
    #[serde(default, deserialize_with = "time::optional")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The user's regulation, when Didomi states it on the entity.
    #[serde(default)]
    pub regulation: Option<String>,
    /// The full consent state.
    #[serde(default)]
    pub consents: Consents,
}

/// The `source` of a `user.updated`: the consent event that caused the change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SourceRef {
    /// The triggering event's id.
    #[serde(default)]
    pub id: Option<String>,
    /// When the triggering event was created.
    #[serde(default, deserialize_with = "time::optional")]
    pub created_at: Option<DateTime<Utc>>,
}
