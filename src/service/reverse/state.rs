//! The reverse sync's durable state behind one narrow port: the watermark
//! (the newest `modifiedon` a successful pass read) and a lease lock, so two
//! passes (the scheduled function and an operator's `cpc-sync reverse-sync
//! --once`) never run at the same time, and a watermark that someone else
//! moved meanwhile is never overwritten.
//!
//! The port is [`WatermarkStore`]; the adapters are a file for the CLI
//! (`adapters::state_file`), a DynamoDB table for the function
//! (`adapters::dynamodb_state`) and [`NoWatermark`] (every pass starts from
//! the beginning, nothing is kept).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The watermark: rows modified at or after this (less the pass's overlap)
/// are read by the next pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The newest `modifiedon` a successful pass read.
    pub modifiedon: DateTime<Utc>,
}

/// What [`WatermarkStore::lock`] hands back: the lock is ours until
/// `expires_at`, and the watermark as it was read under it. `version` is what
/// [`WatermarkStore::advance`] compares against (0: there is no watermark yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Who holds the lock (unique per pass).
    pub holder: String,
    /// When the lease ends; after that another pass may take the lock over.
    pub expires_at: DateTime<Utc>,
    /// The watermark read under the lock.
    pub watermark: Option<Watermark>,
    /// The watermark's version as read (0 when there is none).
    pub version: u64,
}

/// Why the state could not be read, locked or written. Each says whether a
/// later pass can succeed without anyone fixing anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Another pass holds the lock and its lease has not expired.
    #[error(
        "another reverse-sync pass holds the lock ({holder}) until {expires_at}; retry after it"
    )]
    Locked {
        /// Who holds it.
        holder: String,
        /// When its lease ends.
        expires_at: DateTime<Utc>,
    },
    /// The watermark changed since this pass read it (another writer, or a
    /// pass that outlived its lease). Nothing was overwritten; the next pass
    /// starts from the watermark as it is now.
    #[error(
        "the watermark changed since this pass read it (version {expected}); it was not overwritten"
    )]
    Conflict {
        /// The version this pass read.
        expected: u64,
    },
    /// The store could not be reached or throttled us (network, 5xx,
    /// throughput exceeded).
    #[error("the reverse-sync state is unavailable: {0}")]
    Unavailable(String),
    /// The store refused us or holds something unreadable (missing table,
    /// access denied, a corrupt item or file): an operator must fix it.
    #[error("the reverse-sync state is unusable: {0}")]
    Invalid(String),
}

impl StateError {
    /// True when a later pass can succeed without anyone fixing anything.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StateError::Invalid(_))
    }
}

/// The durable watermark and the lease lock that guards it.
pub trait WatermarkStore: Send + Sync {
    /// Takes the lock for `holder` for `lease` (a free lock, or one whose
    /// lease expired), then reads the watermark under it.
    fn lock(
        &self,
        holder: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Held, StateError>> + Send;

    /// Moves the watermark to `to`, only if it is still at `held.version`
    /// ([`StateError::Conflict`] otherwise; nothing is written then).
    fn advance(
        &self,
        held: &Held,
        to: &Watermark,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Gives the lock back, only if `held.holder` still holds it (a lock
    /// taken over after our lease expired is left alone).
    fn release(&self, held: &Held) -> impl Future<Output = Result<(), StateError>> + Send;
}

/// No durable state: every pass starts from the beginning and nothing is
/// kept or locked (the CLI without `--watermark` or `--state-table`).
/// Deterministic event ids keep such re-runs from importing anything twice.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWatermark;

impl WatermarkStore for NoWatermark {
    async fn lock(&self, holder: &str, lease: Duration) -> Result<Held, StateError> {
        Ok(Held {
            holder: holder.to_string(),
            expires_at: Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default(),
            watermark: None,
            version: 0,
        })
    }

    async fn advance(&self, _held: &Held, _to: &Watermark) -> Result<(), StateError> {
        Ok(())
    }

    async fn release(&self, _held: &Held) -> Result<(), StateError> {
        Ok(())
    }
}

/// A holder name unique to this pass: `label` (who runs it) and a random id.
pub fn holder_name(label: &str) -> String {
    format!("{label}/{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unusable_store_needs_an_operator() {
        assert!(!StateError::Invalid("no table".into()).is_retryable());
        assert!(StateError::Unavailable("503".into()).is_retryable());
        assert!(StateError::Conflict { expected: 3 }.is_retryable());
        assert!(
            StateError::Locked {
                holder: "x".into(),
                expires_at: Utc::now()
            }
            .is_retryable()
        );
    }

    #[test]
    fn holder_names_differ_per_pass() {
        let (a, b) = (holder_name("cli"), holder_name("cli"));
        assert_ne!(a, b);
        assert!(a.starts_with("cli/"), "{a}");
    }
}
