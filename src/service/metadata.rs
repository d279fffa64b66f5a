//! What the write rules need to know about the environment before the first
//! write, read once and kept: the purposes and topics (every mapped target
//! must exist, and a topic row binds its parent purpose) and the application
//! user this product writes as (rows anyone else wrote last were edited in
//! Dynamics). A failed read is not kept, so a Dataverse that is down at
//! start-up delays the first writes instead of stopping the function.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio::time::Instant;
use uuid::Uuid;

use super::store::{ConsentStore, StoreError};
use crate::domain::decision::Target;
use crate::domain::writes::{Catalog, TargetProblem};

/// The environment facts the write rules depend on.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// Purposes and topics.
    pub catalog: Catalog,
    /// This product's application user (`WhoAmI`).
    pub own_user: Uuid,
    /// Problems with mapped targets that do not stop writes (inactive ones).
    pub notes: Vec<TargetProblem>,
}

/// Why the metadata could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError<E: StoreError> {
    /// Dataverse refused or failed the reads.
    #[error("reading purposes, topics and the application user from Dataverse: {0}")]
    Store(E),
    /// Mapped purposes or topics that do not exist in the environment.
    #[error("mappings name targets Dataverse does not have: {}", describe(.0))]
    UnknownTargets(Vec<TargetProblem>),
}

impl<E: StoreError> MetadataError<E> {
    /// True when a later read may succeed. Unknown targets count as
    /// retryable for messages: creating the purpose in Dynamics fixes them
    /// without a redeploy, and the queue keeps the messages meanwhile.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetadataError::Store(err) => err.is_retryable(),
            MetadataError::UnknownTargets(_) => true,
        }
    }
}

/// The problems as one line: `<target>: <problem>; …`.
pub(crate) fn describe(problems: &[TargetProblem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{}: {}", problem.target, problem.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The metadata once read.
#[derive(Default)]
pub(super) struct MetadataCell(OnceCell<Arc<Metadata>>);

impl MetadataCell {
    /// Stores metadata known in advance.
    pub(super) fn set(&self, metadata: Metadata) {
        // A second set is ignored: the first one is what every batch used.
        let _ = self.0.set(Arc::new(metadata));
    }

    /// The metadata, reading it (concurrent callers share one read) if it
    /// is not known yet.
    pub(super) async fn get_or_load<S: ConsentStore>(
        &self,
        store: &S,
        targets: &BTreeSet<Target>,
        deadline: Instant,
    ) -> Result<Arc<Metadata>, MetadataError<S::Error>> {
        self.0
            .get_or_try_init(|| async {
                let (purposes_and_topics, own_user) = tokio::try_join!(
                    store.purposes_and_topics(deadline),
                    store.own_user(deadline)
                )
                .map_err(MetadataError::Store)?;
                let (purposes, topics) = purposes_and_topics;
                let catalog = Catalog::new(purposes, topics);
                let (fatal, notes): (Vec<_>, Vec<_>) = catalog
                    .check(targets)
                    .into_iter()
                    .partition(|problem| problem.fatal);
                if !fatal.is_empty() {
                    return Err(MetadataError::UnknownTargets(fatal));
                }
                Ok(Arc::new(Metadata {
                    catalog,
                    own_user,
                    notes,
                }))
            })
            .await
            .cloned()
    }
}
