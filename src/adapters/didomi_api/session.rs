//! Didomi access tokens: `POST /sessions` with the API key, cached until
//! shortly before they expire, renewed on demand (after a 401). Tokens are
//! never logged; the cache holds them as [`SecretString`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{DidomiApiError, error_message};
use crate::redact::SecretString;

/// Lifetime assumed when the token does not say (Didomi documents 1 hour;
/// an older copy of the page said 24 hours, so the shorter is the safe reading).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token is renewed this long before it expires, so a page read that starts
/// just before expiry does not fail half-way.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Cached {
    token: SecretString,
    renew_at: Instant,
}

/// A single-flight cache of the current session token.
pub struct SessionCache {
    http: reqwest::Client,
    url: reqwest::Url,
    key: String,
    secret: SecretString,
    current: Mutex<Option<Cached>>,
    created: std::sync::atomic::AtomicU64,
}

impl SessionCache {
    /// A cache creating sessions at `<base>/sessions` with this key.
    pub fn new(
        http: reqwest::Client,
        base: &reqwest::Url,
        key: String,
        secret: SecretString,
    ) -> Self {
        let url = reqwest::Url::parse(&format!("{}/sessions", base.as_str().trim_end_matches('/')))
            .expect("a validated base URL plus /sessions parses");
        Self {
            http,
            url,
            key,
            secret,
            current: Mutex::new(None),
            created: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many sessions this cache has created (for request counts).
    pub fn sessions_created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current token; a new session when there is none, it is close to
    /// expiry, or `renew` is set (the last one got a 401).
    pub async fn token(
        &self,
        renew: bool,
        deadline: Instant,
    ) -> Result<SecretString, DidomiApiError> {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && !renew
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        let cached = self.create(deadline).await?;
        let token = cached.token.clone();
        *current = Some(cached);
        Ok(token)
    }

    async fn create(&self, deadline: Instant) -> Result<Cached, DidomiApiError> {
        const OPERATION: &str = "POST /sessions";
        let timeout = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| {
                DidomiApiError::Deadline(Box::new(DidomiApiError::Transport {
                    operation: OPERATION.into(),
                    message: "no time left".into(),
                }))
            })?
            .min(Duration::from_secs(30));
        let body = json!({"type": "api-key", "key": self.key, "secret": self.secret.expose()});
        let response = self
            .http
            .post(self.url.clone())
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| DidomiApiError::Transport {
                operation: OPERATION.into(),
                message: err.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| DidomiApiError::Transport {
                operation: OPERATION.into(),
                message: err.without_url().to_string(),
            })?;
        match status {
            200 | 201 => {}
            400 | 401 | 403 => {
                return Err(DidomiApiError::BadCredentials {
                    status,
                    message: error_message(&bytes),
                });
            }
            _ => {
                return Err(DidomiApiError::Http {
                    operation: OPERATION.into(),
                    status,
                    message: error_message(&bytes),
                    retry_after: None,
                });
            }
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|err| DidomiApiError::Protocol {
                operation: OPERATION.into(),
                message: format!("the answer is not JSON: {err}"),
            })?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| DidomiApiError::Protocol {
                operation: OPERATION.into(),
                message: "the answer has no access_token".into(),
            })?;
        let lifetime = jwt_lifetime(token, SystemTime::now()).unwrap_or(DEFAULT_TOKEN_LIFETIME);
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "Didomi session created");
        Ok(Cached {
            token: SecretString::new(token),
            renew_at: Instant::now() + renew_after(lifetime),
        })
    }
}

/// How long to use a token of `lifetime`: [`RENEW_BEFORE`] less, or a tenth
/// less for tokens shorter than that margin (so short-lived test tokens work).
pub fn renew_after(lifetime: Duration) -> Duration {
    if lifetime > RENEW_BEFORE * 2 {
        lifetime - RENEW_BEFORE
    } else {
        lifetime.mul_f64(0.9)
    }
}

/// The time left on a JWT, from its `exp` claim; `None` when the token is not
/// a JWT or has no `exp` (then [`DEFAULT_TOKEN_LIFETIME`] applies).
pub fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some(Duration::from_secs_f64((exp - now).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            engine.encode(claims.to_string())
        )
    }

    #[test]
    fn lifetime_comes_from_the_jwt_exp_claim() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = jwt(json!({"exp": 1_000_000 + 3600}));
        assert_eq!(jwt_lifetime(&token, now), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn tokens_without_exp_use_the_documented_hour() {
        let now = SystemTime::now();
        assert_eq!(jwt_lifetime("opaque-token", now), None);
        assert_eq!(jwt_lifetime(&jwt(json!({"sub": "k"})), now), None);
    }

    #[test]
    fn tokens_are_renewed_five_minutes_early_or_at_ninety_percent() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(renew_after(Duration::from_secs(10)), Duration::from_secs(9));
    }
}
