//! The port the sync service writes through: three operations, one round
//! trip each, so a batch costs a constant number of requests (DESIGN §4).

use std::future::Future;

use tokio::time::Instant;

use crate::domain::cpc::{ConsentRow, Contact, WriteOp};

/// What the service needs to know about a store error.
pub trait StoreError: std::error::Error + Send + Sync + 'static {
    /// True when the same request may succeed later (throttling, outages,
    /// timeouts, the deadline, a concurrent create).
    fn is_retryable(&self) -> bool;

    /// True when a create-only write found the record already there.
    fn is_already_exists(&self) -> bool;
}

/// Contacts and consent rows, read and written in bulk.
pub trait ConsentStore: Send + Sync {
    /// The store's error type.
    type Error: StoreError;

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

    /// Executes the writes together; one result per op, in order.
    fn execute_writes(
        &self,
        ops: &[WriteOp],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Result<(), Self::Error>>, Self::Error>> + Send;
}
