//! What the reverse pass reads and posts through, besides its state: the
//! rows changed in Dataverse ([`ChangedRows`]) and Didomi's users and consent
//! events ([`DidomiEvents`]). The Dataverse and Didomi API clients implement
//! them (`adapters::reverse_ports`); the pass knows neither wire format.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::reverse::ChangedRow;

/// What the pass needs to know about an error of a port.
pub trait PortError: std::error::Error + Send + Sync + 'static {
    /// True when the same call may succeed later (throttling, outages, the deadline).
    fn is_retryable(&self) -> bool;

    /// True when an operator must fix the configuration (credentials, access).
    fn is_configuration(&self) -> bool {
        false
    }
}

/// The Contact Point Consent rows changed in Dynamics.
pub trait ChangedRows: Send + Sync {
    /// The port's error.
    type Error: PortError;

    /// This product's own application user (`WhoAmI`).
    fn own_user(&self, deadline: Instant)
    -> impl Future<Output = Result<Uuid, Self::Error>> + Send;

    /// Active Email rows modified at or after `since` by anyone but
    /// `own_user`, from one of `sources`, oldest first, every page read.
    fn changed_consent_rows(
        &self,
        since: DateTime<Utc>,
        own_user: Uuid,
        sources: &[i32],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<ChangedRow>, Self::Error>> + Send;
}

/// Didomi's users and consent events.
pub trait DidomiEvents: Send + Sync {
    /// The port's error.
    type Error: PortError;

    /// The user with this `organization_user_id` as Didomi returns it, or
    /// `None` when Didomi has no such user.
    fn user(
        &self,
        organization_user_id: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Option<Value>, Self::Error>> + Send;

    /// Posts the events (in as many requests as Didomi needs); returns the
    /// number of requests Didomi accepted. Success means every event was accepted.
    fn post_events(
        &self,
        events: &[Value],
        deadline: Instant,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}
