//! One Dataverse request, with the retry rules of the README ("Write rules").
//!
//! Every request, a whole `$batch` included, goes through [`Inner::send`]:
//! 429 waits `Retry-After`; 502/503/504, timeouts and connection failures back
//! off exponentially with jitter; a 401 refreshes the token once; other 4xx
//! fail at once. Every wait and every attempt's timeout fits the caller's
//! deadline, and each `.await` is a plain tokio future, so dropping the call
//! (cancellation) stops a wait immediately.

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, IF_NONE_MATCH};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::Inner;
use super::error::{DataverseError, ErrorKind};
use super::retry::{parse_retry_after, wait_fits};
use super::wire::parse_error_body;

/// A request to send (and maybe re-send): everything is borrowed, so a retry
/// rebuilds it without copying the body more than once per attempt.
pub(super) struct Request<'a> {
    /// Names the work in errors and logs ("query contacts", "$batch").
    pub operation: &'a str,
    pub method: Method,
    pub url: &'a Url,
    /// `(content type, body)`.
    pub body: Option<(&'a str, &'a [u8])>,
    /// The `Prefer` header, if any.
    pub prefer: Option<&'a str>,
}

/// A successful answer, read to the end.
pub(super) struct Answer {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The answer's `Content-Type`, or "" when absent or unreadable.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// Dataverse's id for a request, for support tickets.
pub(super) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["REQ_ID", "x-ms-service-request-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_owned))
}

impl Inner {
    /// Sends `request` until it succeeds, fails for good, runs out of
    /// attempts or would pass `deadline`.
    pub(super) async fn send(
        &self,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<Answer, DataverseError> {
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        let mut force_refresh = false;
        let mut last: Option<DataverseError> = None;
        loop {
            let Some(timeout) = self.policy.attempt_timeout(Instant::now(), deadline) else {
                return Err(match last {
                    Some(error) => error.with_deadline_reached(),
                    None => DataverseError::new(request.operation, ErrorKind::Deadline),
                });
            };
            attempt += 1;
            let error = match self
                .attempt(request, force_refresh, timeout, deadline)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            force_refresh = false;
            if error.status() == Some(401) && !refreshed && attempt < max_attempts {
                // A token revoked or expired early: fetch a fresh one, once.
                refreshed = true;
                force_refresh = true;
                log_retry(request.operation, &error, attempt, Duration::ZERO);
                last = Some(error);
                continue;
            }
            if !error.is_transient() || attempt >= max_attempts {
                return Err(error);
            }
            let wait = self
                .policy
                .wait_before_retry(attempt - 1, error.retry_after());
            if !wait_fits(Instant::now(), wait, deadline) {
                return Err(error.with_deadline_reached());
            }
            log_retry(request.operation, &error, attempt, wait);
            tokio::time::sleep(wait).await;
            last = Some(error);
        }
    }

    /// One attempt: a token, the request, the whole answer.
    async fn attempt(
        &self,
        request: &Request<'_>,
        force_refresh: bool,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Answer, DataverseError> {
        let operation = request.operation;
        // What is left of this attempt's `timeout` within the deadline, after
        // what the steps before it used.
        let left = || {
            self.policy
                .attempt_timeout(Instant::now(), deadline)
                .map(|left| left.min(timeout))
                .ok_or_else(|| deadline_timeout(operation))
        };
        let token = match tokio::time::timeout_at(deadline, self.tokens.bearer(force_refresh)).await
        {
            Ok(Ok(token)) => token,
            Ok(Err(error)) => return Err(DataverseError::new(operation, ErrorKind::Auth(error))),
            Err(_) => return Err(deadline_timeout(operation)),
        };
        // The token fetch used some of the budget: clip again.
        left()?;
        // Pacing (see `pacer`): wait for a slot, so this client never has
        // more requests in flight than the hint allows.
        let Ok(_permit) = tokio::time::timeout_at(deadline, self.pacer.acquire()).await else {
            return Err(deadline_timeout(operation));
        };
        // So did the wait for a slot.
        let timeout = left()?;
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone())
            .bearer_auth(token.expose())
            .header(ACCEPT, "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .timeout(timeout);
        if request.method == Method::GET || request.method == Method::POST {
            // Dataverse may otherwise answer 304 from its cache for a repeated GET.
            builder = builder.header(IF_NONE_MATCH, "null");
        }
        if let Some(prefer) = request.prefer {
            builder = builder.header("Prefer", prefer);
        }
        if let Some((content_type, body)) = request.body {
            builder = builder
                .header(CONTENT_TYPE, content_type)
                .body(body.to_vec());
        }
        crate::telemetry::metrics::dataverse_request();
        let exchange = async {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let (status, headers, body) = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(transport_error(operation, &error)),
            Err(_) => return Err(deadline_timeout(operation)),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let error = http_error(operation, status, &headers, &body, false);
            self.pacer.throttled(error.retry_after());
            return Err(error);
        }
        self.pacer.succeeded(super::pacer::dop_hint(&headers));
        if status.is_success() {
            return Ok(Answer {
                headers,
                body: body.to_vec(),
            });
        }
        Err(http_error(operation, status, &headers, &body, false))
    }
}

/// A non-success answer as an error: Dataverse's code and message, the
/// request id and `Retry-After`.
pub(super) fn http_error(
    operation: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    create_only: bool,
) -> DataverseError {
    let (code, message) = parse_error_body(body);
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    if status == StatusCode::TOO_MANY_REQUESTS {
        crate::telemetry::metrics::dataverse_throttled(retry_after);
    }
    DataverseError::http(
        operation,
        status.as_u16(),
        code,
        &message,
        retry_after,
        create_only,
    )
    .with_request_id(request_id(headers))
}

/// A failure below HTTP. The URL is left out: its query holds addresses.
fn transport_error(operation: &str, error: &reqwest::Error) -> DataverseError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let message = match error.url() {
        Some(url) => message.replace(url.as_str(), "<url>"),
        None => message,
    };
    DataverseError::new(
        operation,
        ErrorKind::Transport {
            message,
            timeout: error.is_timeout(),
        },
    )
}

fn deadline_timeout(operation: &str) -> DataverseError {
    DataverseError::new(
        operation,
        ErrorKind::Transport {
            message: "no answer before the invocation deadline".into(),
            timeout: true,
        },
    )
    .with_deadline_reached()
}

fn log_retry(operation: &str, error: &DataverseError, attempt: u32, wait: Duration) {
    tracing::warn!(
        operation,
        status = error.status(),
        code = error.code(),
        attempt,
        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        error = %error,
        "Dataverse request failed; retrying"
    );
}
