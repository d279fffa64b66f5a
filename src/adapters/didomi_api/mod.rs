//! Didomi REST API client (reference `didomi-api.md`): sessions from a
//! private API key, and the cursor walk over `GET /consents/users`, with the
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
        let body = self.get(OPERATION, &url, deadline).await?;
        parse_users_page(&body).map_err(|message| DidomiApiError::Protocol {
            operation: OPERATION.into(),
            message,
        })
    }

    /// GET with the retry rules; the body of the 2xx answer.
    async fn get(
        &self,
        operation: &str,
        url: &Url,
        deadline: Instant,
    ) -> Result<Vec<u8>, DidomiApiError> {
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        let mut renewed = false;
        let mut renew = false;
        loop {
            attempt += 1;
            let error = match self.attempt(operation, url, renew, deadline).await {
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
        let response = self
            .http
            .get(url.clone())
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
