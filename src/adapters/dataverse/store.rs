//! [`ConsentStore`] over the Dataverse Web API client.

use tokio::time::Instant;
use uuid::Uuid;

use crate::adapters::dataverse::{DataverseClient, DataverseError, ErrorKind};
use crate::domain::cpc::{ConsentRow, Contact, Purpose, Topic, WriteOp};
use crate::service::{ConsentStore, StoreError};

impl StoreError for DataverseError {
    /// A later delivery may succeed unless Dataverse refused the write's
    /// content: outages retry, and so does what an operator fixes (the app
    /// user's roles, a missing column), backing off in the queue meanwhile.
    fn is_retryable(&self) -> bool {
        !DataverseError::is_permanent(self)
    }

    fn is_already_exists(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Http {
                status: 412,
                create_only: true,
                ..
            }
        )
    }
}

impl ConsentStore for DataverseClient {
    type Error = DataverseError;

    async fn own_user(&self, deadline: Instant) -> Result<Uuid, DataverseError> {
        self.who_am_i(deadline).await
    }

    async fn purposes_and_topics(
        &self,
        deadline: Instant,
    ) -> Result<(Vec<Purpose>, Vec<Topic>), DataverseError> {
        tokio::try_join!(self.purposes(deadline), self.topics(deadline))
    }

    async fn find_contacts(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        deadline: Instant,
    ) -> Result<Vec<Contact>, DataverseError> {
        DataverseClient::find_contacts(self, match_field, point_field, values, deadline).await
    }

    async fn consent_rows(
        &self,
        contact_points: &[String],
        deadline: Instant,
    ) -> Result<Vec<ConsentRow>, DataverseError> {
        DataverseClient::consent_rows(self, contact_points, deadline).await
    }

    async fn contacts_and_rows(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        contact_points: &[String],
        deadline: Instant,
    ) -> Result<(Vec<Contact>, Vec<ConsentRow>), DataverseError> {
        DataverseClient::contacts_and_rows(
            self,
            match_field,
            point_field,
            values,
            contact_points,
            deadline,
        )
        .await
    }

    async fn execute_writes(
        &self,
        ops: &[WriteOp],
        deadline: Instant,
    ) -> Result<Vec<Result<(), DataverseError>>, DataverseError> {
        DataverseClient::execute_writes(self, ops, deadline).await
    }
}
