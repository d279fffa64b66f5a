//! How long to wait before the next attempt, and whether there is time for it.
//!
//! Pure arithmetic, so the mistakes other Dataverse clients made (Retry-After
//! read in the wrong unit, waits that ignore cancellation or the deadline,
//! endless loops) are pinned by tests.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Retry limits for every Dataverse request, including a whole `$batch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (first try included); never fewer than one is made.
    pub max_attempts: u32,
    /// First exponential backoff step (`base_backoff · 2^n`, full jitter).
    pub base_backoff: Duration,
    /// Largest exponential backoff step.
    pub max_backoff: Duration,
    /// Largest wait honoured from a `Retry-After` header.
    pub max_retry_after: Duration,
    /// Longest single request, before the deadline clips it further.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 500 ms doubling to at most 8 s, Retry-After up to 60 s, 30 s per request.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the backoff after the `retry`-th failure (0-based):
    /// `base_backoff · 2^retry`, capped at `max_backoff`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// A random wait in `[0, backoff_ceiling(retry)]` ("full jitter"): many
    /// Lambda instances failing together must not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }

    /// The wait before the next attempt: the server's `Retry-After` (capped)
    /// when it gave one, else the jittered backoff.
    pub fn wait_before_retry(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }

    /// The timeout for an attempt starting `now`: `request_timeout`, clipped to
    /// what is left before `deadline`. `None` when nothing is left.
    pub fn attempt_timeout(&self, now: Instant, deadline: Instant) -> Option<Duration> {
        let remaining = deadline.checked_duration_since(now)?;
        if remaining.is_zero() {
            return None;
        }
        Some(self.request_timeout.min(remaining))
    }
}

/// The smallest time an attempt needs to be worth starting after a wait.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// Whether waiting `wait` from `now` still leaves time for an attempt before
/// `deadline`. A wait that would pass the deadline is never started: the
/// caller gives up at once and reports a retryable error instead.
pub fn wait_fits(now: Instant, wait: Duration, deadline: Instant) -> bool {
    match now.checked_add(wait) {
        Some(resume) => resume + MIN_ATTEMPT <= deadline,
        None => false,
    }
}

/// Reads a `Retry-After` value: integer seconds (what Dataverse sends),
/// fractional seconds, or an HTTP-date (relative to `now`; a past date means
/// "now"). Anything else, negative or non-finite, gives `None`, so the caller
/// falls back to its own backoff rather than trusting garbage.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = value.parse().ok()?;
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_integer_and_fractional_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("39", now), Some(Duration::from_secs(39)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("0.25", now),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime forms are HTTP-dates too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        // A date in the past means "retry now", not an underflow.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for garbage in [
            "",
            "  ",
            "-1",
            "soon",
            "1e3",
            "1.2.3",
            "NaN",
            "inf",
            "39s",
            "0x10",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_ceiling(0), Duration::from_millis(500));
        assert_eq!(policy.backoff_ceiling(1), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(4), Duration::from_secs(8));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(8));
        assert_eq!(policy.backoff_ceiling(200), Duration::from_secs(8));
        for retry in 0..50 {
            let wait = policy.backoff(retry);
            assert!(wait <= policy.backoff_ceiling(retry), "{retry}: {wait:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.wait_before_retry(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.wait_before_retry(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert!(policy.wait_before_retry(2, None) <= Duration::from_secs(2));
    }

    #[test]
    fn attempt_timeout_is_clipped_to_the_deadline() {
        let policy = RetryPolicy::default();
        let now = Instant::now();
        assert_eq!(
            policy.attempt_timeout(now, now + Duration::from_secs(120)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            policy.attempt_timeout(now, now + Duration::from_secs(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.attempt_timeout(now, now), None);
        assert_eq!(
            policy.attempt_timeout(now + Duration::from_secs(1), now),
            None
        );
    }

    #[test]
    fn waits_never_pass_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        assert!(wait_fits(now, Duration::from_millis(500), deadline));
        assert!(!wait_fits(now, Duration::from_secs(1), deadline));
        assert!(!wait_fits(now, Duration::from_secs(39), deadline));
        assert!(!wait_fits(now, Duration::MAX, deadline));
    }
}
