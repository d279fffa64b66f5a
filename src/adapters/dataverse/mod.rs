//! Dataverse Web API client: the few queries and the `$batch` of writes this
//! product needs (DESIGN §4, reference `dataverse-consent.md` §3).
//!
//! Round trips dominate cost, so each public call is one request in the
//! common case: one GET for all contacts, one for all their consent rows, one
//! `$batch` for all writes. Wire details live in the submodules: query
//! strings in [`odata`], multipart bodies in [`batch`], JSON shapes in
//! [`wire`], retry arithmetic in [`retry`], the error type in [`error`].

pub mod batch;
pub mod error;
pub mod odata;
pub mod retry;
mod send;
mod store;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use reqwest::{Method, Url};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::adapters::entra::TokenSource;
use crate::domain::cpc::{CHANNEL_EMAIL, ConsentRow, Contact, Purpose, Topic, WriteOp};
use wire::{CONSENT_SET, CONTACT_SET, PURPOSE_SET, TOPIC_SET};

pub use error::{DataverseError, ErrorKind};
pub use retry::RetryPolicy;

use batch::BatchPart;
use send::{Request, http_error, request_id};

/// Web API path under the environment URL.
pub const API_PATH: &str = "/api/data/v9.2/";

/// Most pages followed for one query; a server that keeps sending nextLinks
/// beyond this is looping, and an endless loop is worse than an error.
const MAX_PAGES: usize = 1000;

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
}

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

    /// The environment origin this client talks to.
    pub fn instance(&self) -> &Url {
        &self.inner.instance
    }

    /// Contacts whose `match_field` equals any of `values` (case-insensitive,
    /// as Dataverse compares), with `contactid`, `match_field` and `point_field`.
    pub async fn find_contacts(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        deadline: Instant,
    ) -> Result<Vec<Contact>, DataverseError> {
        const OPERATION: &str = "query contacts";
        for field in [match_field, point_field] {
            odata::check_property(field)
                .map_err(|e| DataverseError::new(OPERATION, ErrorKind::InvalidInput(e)))?;
        }
        let mut select = vec![wire::CONTACT_ID, match_field];
        if point_field != match_field {
            select.push(point_field);
        }
        let rows = self
            .query_any_eq(
                OPERATION,
                CONTACT_SET,
                &select,
                ("", ""),
                match_field,
                values,
                deadline,
            )
            .await?;
        let mut seen = HashSet::new();
        let mut contacts = Vec::new();
        for row in rows {
            let contact = wire::contact(&row, match_field, point_field)
                .map_err(|e| protocol(OPERATION, e))?;
            if seen.insert(contact.id) {
                contacts.push(contact);
            }
        }
        tracing::debug!(
            asked = values.len(),
            found = contacts.len(),
            "Dataverse contacts queried"
        );
        Ok(contacts)
    }

    /// Every Email-channel consent row (active and inactive, all purposes and
    /// topics) for these contact point values. No `statecode` filter:
    /// Customer Insights – Journeys enforces inactive rows too.
    pub async fn consent_rows(
        &self,
        contact_points: &[String],
        deadline: Instant,
    ) -> Result<Vec<ConsentRow>, DataverseError> {
        const OPERATION: &str = "query consent rows";
        let prefix = format!("{} eq {CHANNEL_EMAIL} and (", wire::CONSENT_CHANNEL_COLUMN);
        let rows = self
            .query_any_eq(
                OPERATION,
                CONSENT_SET,
                &wire::CONSENT_SELECT,
                (&prefix, ")"),
                wire::CONSENT_VALUE_COLUMN,
                contact_points,
                deadline,
            )
            .await?;
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut consents = Vec::new();
        for row in rows {
            let row = wire::consent_row(row).map_err(|e| protocol(OPERATION, e))?;
            if seen.insert(row.id) {
                consents.push(row);
            }
        }
        tracing::debug!(
            contact_points = contact_points.len(),
            rows = consents.len(),
            "Dataverse consent rows queried"
        );
        Ok(consents)
    }

    /// The systemuser id of the application user this client writes as
    /// (`GET WhoAmI` → `UserId`).
    pub async fn who_am_i(&self, deadline: Instant) -> Result<Uuid, DataverseError> {
        const OPERATION: &str = "WhoAmI";
        let url = self.collection_url("WhoAmI", "")?;
        let request = Request {
            operation: OPERATION,
            method: Method::GET,
            url: &url,
            body: None,
            prefer: None,
        };
        let answer = self.inner.send(&request, deadline).await?;
        wire::who_am_i(&answer.body).map_err(|e| protocol(OPERATION, e))
    }

    /// All purposes, for start-up checks of the mapping.
    pub async fn purposes(&self, deadline: Instant) -> Result<Vec<Purpose>, DataverseError> {
        const OPERATION: &str = "query purposes";
        let url = self.collection_url(
            PURPOSE_SET,
            &odata::query_string(&wire::PURPOSE_SELECT, None),
        )?;
        self.inner
            .get_all(OPERATION, url, deadline)
            .await?
            .into_iter()
            .map(|row| wire::purpose(row).map_err(|e| protocol(OPERATION, e)))
            .collect()
    }

    /// All topics with their parent purpose, for start-up checks of the mapping.
    pub async fn topics(&self, deadline: Instant) -> Result<Vec<Topic>, DataverseError> {
        const OPERATION: &str = "query topics";
        let url =
            self.collection_url(TOPIC_SET, &odata::query_string(&wire::TOPIC_SELECT, None))?;
        self.inner
            .get_all(OPERATION, url, deadline)
            .await?
            .into_iter()
            .map(|row| wire::topic(row).map_err(|e| protocol(OPERATION, e)))
            .collect()
    }

    /// Executes `ops` in one `$batch` (several only beyond 1000 parts) with
    /// `Prefer: odata.continue-on-error`. Each op is its own top-level part,
    /// not in a change set, so one failure does not roll back the others.
    ///
    /// Returns one result per op, in order. Parts that failed with 429 or a
    /// 5xx are re-sent once, in a new `$batch` of only those parts, if the
    /// deadline allows. The outer `Err` means the (first) `$batch` as a whole
    /// could not be done.
    pub async fn execute_writes(
        &self,
        ops: &[WriteOp],
        deadline: Instant,
    ) -> Result<Vec<Result<(), DataverseError>>, DataverseError> {
        let mut results: Vec<Result<(), DataverseError>> =
            vec![Err(DataverseError::new("$batch", ErrorKind::NoAnswer)); ops.len()];
        let mut pending: Vec<(usize, BatchPart)> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            match batch::part_for(op, API_PATH) {
                Ok(part) => pending.push((index, part)),
                Err(message) => {
                    results[index] = Err(DataverseError::new(
                        part_operation(index, op_label(op)),
                        ErrorKind::InvalidInput(message),
                    ));
                }
            }
        }
        for (chunk_index, chunk) in pending.chunks(batch::MAX_PARTS).enumerate() {
            match self.inner.run_batch(chunk, deadline).await {
                Ok(outcomes) => {
                    for ((index, _), outcome) in chunk.iter().zip(outcomes) {
                        results[*index] = outcome;
                    }
                }
                Err(error) if chunk_index == 0 => return Err(error),
                Err(error) => {
                    for (index, part) in chunk {
                        results[*index] = Err(error
                            .clone()
                            .with_operation(part_operation(*index, part.label)));
                    }
                }
            }
        }
        self.inner
            .resend_throttled(&pending, &mut results, deadline)
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        tracing::info!(writes = ops.len(), failed, "Dataverse $batch done");
        Ok(results)
    }

    /// Runs one GET per group of values (URLs stay short) and returns all
    /// rows; the filter is `<prefix>p eq 'a' or p eq 'b'<suffix>`.
    #[allow(clippy::too_many_arguments)]
    async fn query_any_eq(
        &self,
        operation: &str,
        set: &str,
        select: &[&str],
        (prefix, suffix): (&str, &str),
        property: &str,
        values: &[String],
        deadline: Instant,
    ) -> Result<Vec<Value>, DataverseError> {
        let values = odata::distinct_values(values);
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let base = format!(
            "{}{set}{}&$filter=",
            self.inner.api,
            odata::query_string(select, None)
        );
        let fixed = base.len()
            + odata::encode_query_value(prefix).len()
            + odata::encode_query_value(suffix).len();
        let groups = odata::split_by_url_len(&values, fixed, self.inner.max_url_len, |value| {
            odata::eq_term(property, value)
        });
        let mut rows = Vec::new();
        for group in groups {
            let filter = format!("{prefix}{}{suffix}", odata::any_eq(property, &group));
            let url = Url::parse(&format!("{base}{}", odata::encode_query_value(&filter)))
                .map_err(|e| protocol(operation, format!("query URL does not parse: {e}")))?;
            rows.extend(self.inner.get_all(operation, url, deadline).await?);
        }
        Ok(rows)
    }

    fn collection_url(&self, set: &str, query: &str) -> Result<Url, DataverseError> {
        Url::parse(&format!("{}{set}{query}", self.inner.api))
            .map_err(|e| protocol("build query", format!("query URL does not parse: {e}")))
    }
}

impl Inner {
    /// GETs `first` and every page after it.
    async fn get_all(
        &self,
        operation: &str,
        first: Url,
        deadline: Instant,
    ) -> Result<Vec<Value>, DataverseError> {
        let prefer = self
            .max_page_size
            .map(|rows| format!("odata.maxpagesize={rows}"));
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(protocol(
                    operation,
                    format!("more than {MAX_PAGES} pages; refusing to follow further nextLinks"),
                ));
            }
            let request = Request {
                operation,
                method: Method::GET,
                url: &url,
                body: None,
                prefer: prefer.as_deref(),
            };
            let answer = self.send(&request, deadline).await?;
            let page: wire::Page = serde_json::from_slice(&answer.body).map_err(|e| {
                protocol(
                    operation,
                    format!("the answer is not an OData collection: {e}"),
                )
            })?;
            rows.extend(page.value);
            if let Some(link) = page.next_link {
                let url = next_link(&self.instance, &link).map_err(|e| protocol(operation, e))?;
                if !seen.insert(url.as_str().to_owned()) {
                    return Err(protocol(
                        operation,
                        "a nextLink repeats; stopping to avoid a loop",
                    ));
                }
                next = Some(url);
            }
        }
        Ok(rows)
    }

    /// Sends `parts` as one `$batch` and maps each answer part to a result.
    async fn run_batch(
        &self,
        parts: &[(usize, BatchPart)],
        deadline: Instant,
    ) -> Result<Vec<Result<(), DataverseError>>, DataverseError> {
        const OPERATION: &str = "$batch";
        let boundary = batch::new_boundary();
        let owned: Vec<BatchPart> = parts.iter().map(|(_, part)| part.clone()).collect();
        let body = batch::build_body(&boundary, &owned);
        let content_type = batch::content_type(&boundary);
        let mut url = self.api.clone();
        url.set_path(&format!("{API_PATH}$batch"));
        let request = Request {
            operation: OPERATION,
            method: Method::POST,
            url: &url,
            body: Some((&content_type, body.as_bytes())),
            prefer: Some("odata.continue-on-error"),
        };
        let answer = self.send(&request, deadline).await?;
        let text = String::from_utf8_lossy(&answer.body);
        let responses = batch::parse_response(answer.content_type(), &text)
            .map_err(|e| protocol(OPERATION, e).with_request_id(request_id(&answer.headers)))?;
        check_one_answer_per_request(&responses, parts.len())
            .map_err(|e| e.with_request_id(request_id(&answer.headers)))?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(position, (index, part))| {
                let operation = part_operation(*index, part.label);
                match responses.get(position) {
                    Some(response) if (200..300).contains(&response.status) => Ok(()),
                    Some(response) => Err(part_error(&operation, response, part.create_only)),
                    None => Err(DataverseError::new(operation, ErrorKind::NoAnswer)),
                }
            })
            .collect())
    }

    /// Re-sends, once, the parts that failed with 429 or 5xx (the rest of the
    /// batch already went through), waiting for the longest `Retry-After`.
    async fn resend_throttled(
        &self,
        pending: &[(usize, BatchPart)],
        results: &mut [Result<(), DataverseError>],
        deadline: Instant,
    ) {
        let again: Vec<(usize, BatchPart)> = pending
            .iter()
            .filter(|(index, _)| {
                results[*index]
                    .as_ref()
                    .err()
                    .and_then(DataverseError::status)
                    .is_some_and(|status| status == 429 || (500..600).contains(&status))
            })
            .cloned()
            .collect();
        if again.is_empty() {
            return;
        }
        let retry_after = again
            .iter()
            .filter_map(|(index, _)| results[*index].as_ref().err()?.retry_after())
            .max();
        let wait = self.policy.wait_before_retry(0, retry_after);
        if !retry::wait_fits(Instant::now(), wait, deadline) {
            for (index, _) in &again {
                if let Err(error) = &mut results[*index] {
                    *error = error.clone().with_deadline_reached();
                }
            }
            return;
        }
        tracing::warn!(
            parts = again.len(),
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "re-sending throttled or failed $batch parts once"
        );
        tokio::time::sleep(wait).await;
        for chunk in again.chunks(batch::MAX_PARTS) {
            // A failure of the re-send as a whole keeps the first answers.
            if let Ok(outcomes) = self.run_batch(chunk, deadline).await {
                for ((index, _), outcome) in chunk.iter().zip(outcomes) {
                    results[*index] = outcome;
                }
            }
        }
    }
}

/// The error of one failed `$batch` part.
fn part_error(
    operation: &str,
    response: &batch::PartResponse,
    create_only: bool,
) -> DataverseError {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let status = reqwest::StatusCode::from_u16(response.status)
        .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    http_error(
        operation,
        status,
        &headers,
        response.body.as_bytes(),
        create_only,
    )
}

/// "$batch part 3 (create consent)", numbered from 1 in the caller's order.
/// A `$batch` answer must hold exactly one part per request, in order: a
/// missing, extra or reordered part means no part can be matched to its
/// request with certainty, so the whole batch fails (retryably: every write
/// is idempotent, and the next delivery re-reads).
fn check_one_answer_per_request(
    responses: &[batch::PartResponse],
    sent: usize,
) -> Result<(), DataverseError> {
    let mismatch =
        |message: String| DataverseError::new("$batch", ErrorKind::BatchMismatch(message));
    if responses.len() != sent {
        return Err(mismatch(format!(
            "{sent} requests, {} answer parts",
            responses.len()
        )));
    }
    for (position, response) in responses.iter().enumerate() {
        let expected = (position + 1).to_string();
        if let Some(id) = &response.content_id
            && id.trim() != expected
        {
            return Err(mismatch(format!(
                "answer part {} has Content-ID {id:?}, expected {expected}",
                position + 1
            )));
        }
    }
    Ok(())
}

fn part_operation(index: usize, label: &str) -> String {
    format!("$batch part {} ({label})", index + 1)
}

fn op_label(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::CreateContact(_) => "create contact",
        WriteOp::CreateConsent(_) => "create consent",
        WriteOp::UpdateConsent(_) => "update consent",
    }
}

/// A protocol error; its text may quote row values (serde errors do), so it is scrubbed like server messages.
fn protocol(operation: &str, message: impl Into<String>) -> DataverseError {
    DataverseError::new(
        operation,
        ErrorKind::Protocol(error::scrub_message(&message.into())),
    )
}

/// Checks a nextLink before the bearer token follows it: same scheme, host
/// and port as the environment, or refused. Relative links resolve against
/// the environment.
pub fn next_link(instance: &Url, link: &str) -> Result<Url, String> {
    let url = match Url::parse(link) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => instance
            .join(link)
            .map_err(|e| format!("the nextLink does not parse: {e}"))?,
        Err(e) => return Err(format!("the nextLink does not parse: {e}")),
    };
    let same_origin = url.scheme() == instance.scheme()
        && url.host_str() == instance.host_str()
        && url.port_or_known_default() == instance.port_or_known_default();
    if same_origin {
        Ok(url)
    } else {
        Err(format!(
            "the nextLink points to {}://{}:{} instead of the environment; the bearer token is not sent there",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ))
    }
}
