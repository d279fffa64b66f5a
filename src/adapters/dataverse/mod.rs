//! Dataverse Web API client: the few queries ([`reads`]) and the `$batch` of
//! writes ([`writes`]) this product needs.
//!
//! Round trips dominate cost, so each public call is one request in the
//! common case: one GET for all contacts, one for all their consent rows, one
//! `$batch` for all writes. Wire details live in the submodules: query
//! strings in [`odata`], multipart bodies in [`batch`], JSON shapes in
//! [`wire`], retry arithmetic in [`retry`], the error type in [`error`].

pub(crate) mod batch;
mod error;
mod lookup;
pub mod odata;
pub mod pacer;
mod reads;
// The Didomi API client reuses the retry arithmetic.
pub(crate) mod retry;
mod send;
mod store;
pub(crate) mod wire;
mod writes;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use reqwest::Url;

use crate::adapters::entra::TokenSource;

pub use error::{DataverseError, ErrorKind};
pub use reads::next_link;
pub use retry::RetryPolicy;

/// Web API path under the environment URL.
pub const API_PATH: &str = "/api/data/v9.2/";

/// Client for one Dataverse environment. Cheap to clone: clones share the
/// connection pool and token source.
#[derive(Clone)]
pub struct DataverseClient {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    /// The environment origin; nextLinks must point here.
    instance: Url,
    /// `<instance>/api/data/v9.2/`.
    api: Url,
    tokens: Arc<dyn TokenSource>,
    policy: RetryPolicy,
    max_page_size: Option<u32>,
    max_url_len: usize,
    /// Requests in flight, bounded by `x-ms-dop-hint` and lowered on 429.
    pacer: Arc<pacer::Pacer>,
    /// Fewest writes worth a `$batch` of their own when splitting.
    min_parts_per_request: usize,
}

/// Most concurrent requests one client sends by default (Lambda instance):
/// `x-ms-dop-hint` lowers it further; `DATAVERSE_MAX_PARALLEL` sets it.
pub use crate::config::DEFAULT_MAX_PARALLEL;

/// Fewest writes per `$batch` when a batch's writes are split into parallel
/// requests: below this, the extra request costs more of the service
/// protection budget than the time it saves.
pub const DEFAULT_MIN_PARTS_PER_REQUEST: usize = 50;

impl fmt::Debug for DataverseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataverseClient")
            .field("instance", &self.inner.instance.as_str())
            .field("policy", &self.inner.policy)
            .field("max_page_size", &self.inner.max_page_size)
            .finish_non_exhaustive()
    }
}

impl DataverseClient {
    /// A client for the environment at `instance` (the validated environment
    /// URL; only its origin is used), with bearer tokens from `tokens`.
    pub fn new(
        http: reqwest::Client,
        instance: Url,
        tokens: Arc<dyn TokenSource>,
        policy: RetryPolicy,
    ) -> Self {
        let mut origin = instance;
        origin.set_path("/");
        origin.set_query(None);
        origin.set_fragment(None);
        let mut api = origin.clone();
        api.set_path(API_PATH);
        Self {
            inner: Arc::new(Inner {
                http,
                instance: origin,
                api,
                tokens,
                policy,
                max_page_size: None,
                max_url_len: odata::MAX_URL_LEN,
                pacer: Arc::new(pacer::Pacer::new(DEFAULT_MAX_PARALLEL)),
                min_parts_per_request: DEFAULT_MIN_PARTS_PER_REQUEST,
            }),
        }
    }

    /// Asks for at most `rows` rows per page (`Prefer: odata.maxpagesize`,
    /// 1..=5000); the default is Dataverse's own 5000.
    pub fn with_max_page_size(self, rows: u32) -> Self {
        let mut inner = (*self.inner).clone();
        inner.max_page_size = Some(rows.clamp(1, 5000));
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Splits a query's value list so no URL exceeds `bytes` (default 16 KiB).
    pub fn with_max_url_len(self, bytes: usize) -> Self {
        let mut inner = (*self.inner).clone();
        inner.max_url_len = bytes;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sends at most `max_parallel` requests at once (fewer when
    /// `x-ms-dop-hint` says so or after a 429), and splits a batch's writes
    /// into parallel `$batch` requests of at least `min_parts_per_request`
    /// writes each. `max_parallel` 1 never splits.
    pub fn with_parallel_writes(self, max_parallel: usize, min_parts_per_request: usize) -> Self {
        let mut inner = (*self.inner).clone();
        inner.pacer = Arc::new(pacer::Pacer::new(max_parallel));
        inner.min_parts_per_request = min_parts_per_request.max(1);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// How many requests this client may have in flight now (the pacer's
    /// limit: at most the cap and the last `x-ms-dop-hint`).
    pub fn parallelism(&self) -> usize {
        self.inner.pacer.parallelism()
    }

    /// The environment origin this client talks to.
    pub fn instance(&self) -> &Url {
        &self.inner.instance
    }

    fn collection_url(&self, set: &str, query: &str) -> Result<Url, DataverseError> {
        Url::parse(&format!("{}{set}{query}", self.inner.api))
            .map_err(|e| protocol("build query", format!("query URL does not parse: {e}")))
    }
}

/// A protocol error; its text may quote row values (serde errors do), so it is scrubbed like server messages.
fn protocol(operation: &str, message: impl Into<String>) -> DataverseError {
    DataverseError::new(
        operation,
        ErrorKind::Protocol(error::scrub_message(&message.into())),
    )
}
