//! The port the sync service writes through: one round trip per bulk
//! operation, so a batch costs a constant number of requests however many
//! webhooks and mappings it holds (README, "What it does with a webhook").

use std::future::Future;

use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::cpc::{ConsentRow, Contact, Purpose, Topic, WriteOp};

/// What the service needs to know about a store error.
pub trait StoreError: std::error::Error + Send + Sync + 'static {
    /// True when the same request may succeed later (throttling, outages,
    /// timeouts, the deadline, a concurrent create).
    fn is_retryable(&self) -> bool;

    /// True when a create-only write found the record already there.
    fn is_already_exists(&self) -> bool;
}

/// Contacts and consent rows, read and written in bulk, and the environment
/// facts the write rules depend on.
pub trait ConsentStore: Send + Sync {
    /// The store's error type.
    type Error: StoreError;

    /// The application user this product writes as (`WhoAmI`): rows it did
    /// not write last were edited by someone else.
    fn own_user(&self, deadline: Instant)
    -> impl Future<Output = Result<Uuid, Self::Error>> + Send;

    /// Every purpose and topic (the catalogue the mappings are checked
    /// against, and where a topic's parent purpose comes from).
    fn purposes_and_topics(
        &self,
        deadline: Instant,
    ) -> impl Future<Output = Result<(Vec<Purpose>, Vec<Topic>), Self::Error>> + Send;

    /// Contacts whose `match_field` equals any of `values` (case-insensitively).
    fn find_contacts(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Contact>, Self::Error>> + Send;

    /// Every Email-channel consent row, active or not, of these addresses.
    fn consent_rows(
        &self,
        contact_points: &[String],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<ConsentRow>, Self::Error>> + Send;

    /// [`ConsentStore::find_contacts`] and [`ConsentStore::consent_rows`]
    /// together: a store that can send both queries in one round trip (the
    /// Dataverse client: one `$batch` of GETs) overrides this; the default
    /// runs them one after the other.
    fn contacts_and_rows(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        contact_points: &[String],
        deadline: Instant,
    ) -> impl Future<Output = Result<(Vec<Contact>, Vec<ConsentRow>), Self::Error>> + Send {
        async move {
            let contacts = self
                .find_contacts(match_field, point_field, values, deadline)
                .await?;
            let rows = self.consent_rows(contact_points, deadline).await?;
            Ok((contacts, rows))
        }
    }

    /// Executes the writes together; one result per op, in order.
    fn execute_writes(
        &self,
        ops: &[WriteOp],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Result<(), Self::Error>>, Self::Error>> + Send;
}
