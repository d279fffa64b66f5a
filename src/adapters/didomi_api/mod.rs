//! Didomi REST API client (reference `didomi-api.md`): sessions from a
//! private API key, the cursor walk over `GET /consents/users`, and the
//! reads of one user and `POST /consents/events` (reverse sync), with the
//! same retry rules as Dataverse: `429` waits `Retry-After` (or the
//! `RateLimit` reset), `5xx` and transport failures back off with jitter, a
//! `401` renews the session once, and no wait passes the caller's deadline.

mod error;
mod paging;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::Url;
use tokio::time::Instant;

use crate::adapters::dataverse::RetryPolicy;
use crate::adapters::dataverse::retry::{parse_retry_after, wait_fits};
use crate::config::DidomiApiSettings;

pub use error::{DidomiApiError, classify_forbidden, error_message};
pub use paging::{UsersPage, parse_users_page};
pub use session::{DEFAULT_TOKEN_LIFETIME, RENEW_BEFORE, SessionCache, jwt_lifetime, renew_after};

/// Most events Didomi imports in one `POST /consents/events` array.
pub const MAX_EVENTS_PER_POST: usize = 100;

/// Client for one organization of the Didomi API.
pub struct DidomiApiClient {
    http: reqwest::Client,
    base: Url,
    organization_id: String,
    sessions: SessionCache,
    policy: RetryPolicy,
    requests: AtomicU64,
}

impl std::fmt::Debug for DidomiApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DidomiApiClient")
            .field("base", &self.base.as_str())
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

impl DidomiApiClient {
    /// A client for the validated settings.
    pub fn new(http: reqwest::Client, settings: &DidomiApiSettings, policy: RetryPolicy) -> Self {
        Self {
            sessions: SessionCache::new(
                http.clone(),
                &settings.base_url,
                settings.key.clone(),
                settings.secret.clone(),
            ),
            http,
            base: settings.base_url.clone(),
            organization_id: settings.organization_id.clone(),
            policy,
            requests: AtomicU64::new(0),
        }
    }

    /// Requests sent so far: sessions plus reads, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed) + self.sessions.sessions_created()
    }

    /// One page of users: the first when `cursor` is `None`, else the page
    /// after the cursor a previous page returned.
    pub async fn users_page(
        &self,
        cursor: Option<&str>,
        deadline: Instant,
    ) -> Result<UsersPage, DidomiApiError> {
        const OPERATION: &str = "GET /consents/users";
        let mut url = Url::parse(&format!(
            "{}/consents/users",
            self.base.as_str().trim_end_matches('/')
        ))
        .map_err(|err| DidomiApiError::Protocol {
            operation: OPERATION.into(),
            message: err.to_string(),
        })?;
        url.query_pairs_mut()
            .append_pair("organization_id", &self.organization_id);
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("$cursor", cursor);
        }
        let body = self.send(OPERATION, &url, None, deadline).await?;
        parse_users_page(&body).map_err(|message| DidomiApiError::Protocol {
            operation: OPERATION.into(),
            message,
        })
    }

    /// The user whose `organization_user_id` is `organization_user_id` (GDPR),
    /// as JSON; `None` when Didomi has none. When several users share the id
    /// (Didomi allows it), the one updated last.
    pub async fn user_by_organization_user_id(
        &self,
        organization_user_id: &str,
        deadline: Instant,
    ) -> Result<Option<serde_json::Value>, DidomiApiError> {
        const OPERATION: &str = "GET /consents/users?organization_user_id";
        let mut url = self.url("/consents/users", OPERATION)?;
        url.query_pairs_mut()
            .append_pair("organization_user_id", organization_user_id);
        let body = self.send(OPERATION, &url, None, deadline).await?;
        let page = parse_users_page(&body).map_err(|message| DidomiApiError::Protocol {
            operation: OPERATION.into(),
            message,
        })?;
        let updated = |user: &serde_json::Value| {
            user.get("updated_at")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(page
            .users
            .into_iter()
            .filter(|user| {
                user.get("organization_user_id")
                    .and_then(serde_json::Value::as_str)
                    == Some(organization_user_id)
            })
            .max_by_key(updated))
    }

    /// `POST /consents/events`: the events in arrays of at most
    /// [`MAX_EVENTS_PER_POST`], in order. Events carry deterministic ids, so a
    /// retried post never imports an event twice; a `409` (the id exists
    /// already, INFERRED: Didomi does not document the status) counts as
    /// accepted. Returns how many posts were sent; on an error, the events of
    /// earlier posts were accepted and the rest were not.
    pub async fn post_events(
        &self,
        events: &[serde_json::Value],
        deadline: Instant,
    ) -> Result<usize, DidomiApiError> {
        const OPERATION: &str = "POST /consents/events";
        let url = self.url("/consents/events", OPERATION)?;
        let mut posts = 0;
        for chunk in events.chunks(MAX_EVENTS_PER_POST) {
            let body = serde_json::to_vec(chunk).map_err(|err| DidomiApiError::Protocol {
                operation: OPERATION.into(),
                message: err.to_string(),
            })?;
            match self.send(OPERATION, &url, Some(&body), deadline).await {
                Ok(_) | Err(DidomiApiError::Http { status: 409, .. }) => posts += 1,
                Err(error) => return Err(error),
            }
        }
        Ok(posts)
    }

    /// `<base><path>?organization_id=…`.
    fn url(&self, path: &str, operation: &str) -> Result<Url, DidomiApiError> {
        let mut url = Url::parse(&format!(
            "{}{path}",
            self.base.as_str().trim_end_matches('/')
        ))
        .map_err(|err| DidomiApiError::Protocol {
            operation: operation.into(),
            message: err.to_string(),
        })?;
        url.query_pairs_mut()
            .append_pair("organization_id", &self.organization_id);
        Ok(url)
    }

    /// GET (no `body`) or POST (a JSON `body`) with the retry rules; the
    /// body of the 2xx answer.
    async fn send(
        &self,
        operation: &str,
        url: &Url,
        body: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<Vec<u8>, DidomiApiError> {
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        let mut renewed = false;
        let mut renew = false;
        loop {
            attempt += 1;
            let error = match self.attempt(operation, url, body, renew, deadline).await {
                Ok(body) => return Ok(body),
                Err(error) => error,
            };
            renew = false;
            if matches!(error, DidomiApiError::Unauthorized { .. }) && !renewed {
                // Expired or revoked early: one new session, then give up.
                renewed = true;
                renew = true;
                tracing::info!(operation, "Didomi answered 401; creating a new session");
                continue;
            }
            if !error.is_retryable() || attempt >= max_attempts {
                return Err(error);
            }
            let wait = self
                .policy
                .wait_before_retry(attempt - 1, error.retry_after());
            if !wait_fits(Instant::now(), wait, deadline) {
                return Err(DidomiApiError::Deadline(Box::new(error)));
            }
            tracing::warn!(
                operation,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "Didomi request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        operation: &str,
        url: &Url,
        body: Option<&[u8]>,
        renew: bool,
        deadline: Instant,
    ) -> Result<Vec<u8>, DidomiApiError> {
        let deadline_error = || {
            DidomiApiError::Deadline(Box::new(DidomiApiError::Transport {
                operation: operation.into(),
                message: "no time left".into(),
            }))
        };
        let timeout = self
            .policy
            .attempt_timeout(Instant::now(), deadline)
            .ok_or_else(deadline_error)?;
        let token = self.sessions.token(renew, deadline).await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let transport = |err: reqwest::Error| DidomiApiError::Transport {
            operation: operation.into(),
            message: err.without_url().to_string(),
        };
        let request = match body {
            None => self.http.get(url.clone()),
            Some(body) => self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
        };
        let response = request
            .bearer_auth(token.expose())
            .timeout(timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = wait_hint(response.headers());
        let body = response.bytes().await.map_err(transport)?.to_vec();
        match status {
            200..=299 => Ok(body),
            401 => Err(DidomiApiError::Unauthorized {
                message: error_message(&body),
            }),
            403 | 404 => Err(classify_forbidden(
                status,
                &error_message(&body),
                &self.organization_id,
                operation,
            )),
            _ => Err(DidomiApiError::Http {
                operation: operation.into(),
                status,
                message: error_message(&body),
                retry_after,
            }),
        }
    }
}

/// How long the server asks us to wait: `Retry-After`, else the `reset` of a
/// `RateLimit: limit=…, remaining=0, reset=…` header (IETF draft, as Didomi's
/// rate-limit page is reported to send).
pub fn wait_hint(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(wait) = text("retry-after").and_then(|v| parse_retry_after(v, SystemTime::now())) {
        return Some(wait);
    }
    let rate_limit = text("ratelimit")?;
    rate_limit
        .split([',', ';'])
        .filter_map(|part| part.trim().split_once('='))
        .find(|(name, _)| name.trim() == "reset")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_wins_over_the_rate_limit_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        headers.insert(
            "ratelimit",
            HeaderValue::from_static("limit=100, remaining=0, reset=9"),
        );
        assert_eq!(wait_hint(&headers), Some(Duration::from_secs(2)));
    }

    #[test]
    fn rate_limit_reset_is_used_without_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "ratelimit",
            HeaderValue::from_static("limit=100, remaining=0, reset=9"),
        );
        assert_eq!(wait_hint(&headers), Some(Duration::from_secs(9)));
        assert_eq!(wait_hint(&HeaderMap::new()), None);
    }
}
