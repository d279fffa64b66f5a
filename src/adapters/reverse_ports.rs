//! The Dataverse and Didomi API clients as the reverse pass's ports
//! ([`crate::service::reverse::ChangedRows`], [`crate::service::reverse::DidomiEvents`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::adapters::dataverse::{DataverseClient, DataverseError};
use crate::adapters::didomi_api::{DidomiApiClient, DidomiApiError};
use crate::domain::reverse::ChangedRow;
use crate::service::reverse::{ChangedRows, DidomiEvents, PortError};

impl PortError for DataverseError {
    fn is_retryable(&self) -> bool {
        DataverseError::is_retryable(self)
    }
}

impl PortError for DidomiApiError {
    fn is_retryable(&self) -> bool {
        DidomiApiError::is_retryable(self)
    }

    fn is_configuration(&self) -> bool {
        DidomiApiError::is_configuration(self)
    }
}

impl ChangedRows for DataverseClient {
    type Error = DataverseError;

    async fn own_user(&self, deadline: Instant) -> Result<Uuid, DataverseError> {
        self.who_am_i(deadline).await
    }

    async fn changed_consent_rows(
        &self,
        since: DateTime<Utc>,
        own_user: Uuid,
        sources: &[i32],
        deadline: Instant,
    ) -> Result<Vec<ChangedRow>, DataverseError> {
        DataverseClient::changed_consent_rows(self, since, own_user, sources, deadline).await
    }
}

impl DidomiEvents for DidomiApiClient {
    type Error = DidomiApiError;

    async fn user(
        &self,
        organization_user_id: &str,
        deadline: Instant,
    ) -> Result<Option<Value>, DidomiApiError> {
        self.user_by_organization_user_id(organization_user_id, deadline)
            .await
    }

    async fn post_events(
        &self,
        events: &[Value],
        deadline: Instant,
    ) -> Result<usize, DidomiApiError> {
        DidomiApiClient::post_events(self, events, deadline).await
    }
}
