//! Microsoft Entra client-credentials token provider.
//!
//! [`EntraTokenProvider`] asks the token endpoint
//! `POST {authority}/{tenant_id}/oauth2/v2.0/token` for an app-only token with
//! `scope = <instance>/.default` (Microsoft's client-credentials flow for Dataverse),
//! caches it until shortly before it expires and lets concurrent callers share
//! one refresh. Errors are classified by the OAuth `error` field and the
//! `AADSTS` numbers in `error_codes`, never by the description text, as
//! Microsoft asks. Neither the client secret nor the token is ever logged or
//! put into an error; log lines name the tenant and the client id at most.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use super::answer::{IssuedToken, classify_error, parse_token};
use super::{AuthError, BoxFuture, CredentialSource, TokenSource};
use crate::config::Credentials;
use crate::redact::SecretString;

/// How long one token request may take before it counts as
/// [`AuthError::Unavailable`].
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A cached token is replaced this long before it expires (or at half its
/// lifetime, for lifetimes shorter than twice this margin), so a token handed
/// out is still valid for the Dataverse requests that follow.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Hands out Dataverse bearer tokens obtained with the client-credentials grant.
///
/// Tokens are cached until [`REFRESH_MARGIN`] before they expire;
/// `bearer(true)` discards the cached token. Concurrent callers that find no
/// valid token wait for one shared token request instead of each sending
/// their own. When Entra rejects the client secret (`invalid_client`,
/// AADSTS7000215/7000222) the credentials are re-read once with
/// `force_refresh` (the secret may just have been rotated) and the request
/// repeated once with them.
pub struct EntraTokenProvider {
    http: reqwest::Client,
    authority: Url,
    source: Arc<dyn CredentialSource>,
    request_timeout: Duration,
    /// The current token; read without waiting for a refresh in progress.
    cache: Mutex<Option<CachedToken>>,
    /// Held for the whole of a refresh so that only one runs at a time; the
    /// value counts the refreshes (the generation of the cached token).
    refresh: tokio::sync::Mutex<u64>,
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
    /// When Entra says the token stops working. Between `refresh_at` and
    /// this, a failed refresh still leaves a usable token.
    expires_at: Instant,
    generation: u64,
}

impl EntraTokenProvider {
    /// A provider asking `authority` (e.g. `https://login.microsoftonline.com`,
    /// see `AZURE_AUTHORITY_HOST`) for tokens, with credentials from `source`.
    ///
    /// `http` must not follow redirects (see [`crate::adapters::http::http_client`]); each token
    /// request gets its own [`TOKEN_REQUEST_TIMEOUT`].
    pub fn new(http: reqwest::Client, authority: Url, source: Arc<dyn CredentialSource>) -> Self {
        Self {
            http,
            authority,
            source,
            request_timeout: TOKEN_REQUEST_TIMEOUT,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(0),
        }
    }

    /// Replaces [`TOKEN_REQUEST_TIMEOUT`] (tests, slow local emulators).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    async fn bearer_inner(&self, force_refresh: bool) -> Result<SecretString, AuthError> {
        let seen_generation = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match cache.as_ref() {
                Some(cached) if !force_refresh && Instant::now() < cached.refresh_at => {
                    return Ok(cached.token.clone());
                }
                Some(cached) => Some(cached.generation),
                None => None,
            }
        };
        let mut generation = self.refresh.lock().await;
        {
            // Someone else may have refreshed while this caller waited: use
            // their token, unless it is the very token the caller wants replaced.
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cache.as_ref() {
                let newer = Some(cached.generation) != seen_generation;
                if Instant::now() < cached.refresh_at && (newer || !force_refresh) {
                    return Ok(cached.token.clone());
                }
            }
        }
        let requested_at = Instant::now();
        let issued = match self.obtain().await {
            Ok(issued) => issued,
            Err(error) => return self.still_valid_after(error, force_refresh),
        };
        *generation += 1;
        let token = issued.token.clone();
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
            token: issued.token,
            refresh_at: requested_at + refresh_after(issued.lifetime),
            expires_at: requested_at + issued.lifetime,
            generation: *generation,
        });
        Ok(token)
    }

    /// After a failed refresh: the cached token while it has not expired
    /// (Entra being down for minutes must not stop writes that the token still
    /// allows), else the error. A forced refresh means Dataverse already
    /// refused the cached token, so it is not offered again.
    fn still_valid_after(
        &self,
        error: AuthError,
        force_refresh: bool,
    ) -> Result<SecretString, AuthError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if force_refresh {
            *cache = None;
            return Err(error);
        }
        match cache.as_ref() {
            Some(cached) if Instant::now() < cached.expires_at => {
                tracing::warn!(
                    error = %error,
                    "refreshing the Entra token failed; the current token is used until it expires"
                );
                Ok(cached.token.clone())
            }
            _ => {
                *cache = None;
                Err(error)
            }
        }
    }

    /// One token, re-reading the credentials once if Entra rejects the secret.
    async fn obtain(&self) -> Result<IssuedToken, AuthError> {
        let credentials = self.source.credentials(false).await?;
        match self.request(&credentials).await {
            Err(AuthError::InvalidClient { code, client_id }) => {
                tracing::warn!(
                    tenant_id = %credentials.tenant_id,
                    client_id = %credentials.client_id,
                    code = %code,
                    "Entra rejected the client secret; re-reading the credentials once in case the secret was rotated"
                );
                let reread = self.source.credentials(true).await?;
                if reread == credentials {
                    tracing::warn!(
                        tenant_id = %credentials.tenant_id,
                        client_id = %credentials.client_id,
                        "the re-read credentials are unchanged; not asking Entra again"
                    );
                    return Err(AuthError::InvalidClient { code, client_id });
                }
                self.request(&reread).await
            }
            other => other,
        }
    }

    /// One token request.
    async fn request(&self, credentials: &Credentials) -> Result<IssuedToken, AuthError> {
        let url = self.token_url(&credentials.tenant_id)?;
        let scope = credentials.scope();
        let form = [
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.expose()),
            ("scope", scope.as_str()),
            ("grant_type", "client_credentials"),
        ];
        let response = self
            .http
            .post(url)
            .timeout(self.request_timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&err))?;
        if status.is_success() {
            let issued = parse_token(status, &body)?;
            tracing::info!(
                tenant_id = %credentials.tenant_id,
                client_id = %credentials.client_id,
                expires_in_s = issued.lifetime.as_secs(),
                "obtained an Entra access token"
            );
            Ok(issued)
        } else {
            let error = classify_error(status, &body, credentials, &self.host());
            tracing::warn!(
                tenant_id = %credentials.tenant_id,
                client_id = %credentials.client_id,
                status = status.as_u16(),
                error = %error,
                "the Entra token request failed"
            );
            Err(error)
        }
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`, the tenant percent-encoded.
    fn token_url(&self, tenant_id: &str) -> Result<Url, AuthError> {
        let mut url = self.authority.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| AuthError::Credentials {
                message: format!(
                    "the Entra authority `{}` cannot carry a path; set AZURE_AUTHORITY_HOST to an https origin",
                    self.authority
                ),
                retryable: false,
            })?
            .pop_if_empty()
            .extend([tenant_id, "oauth2", "v2.0", "token"]);
        Ok(url)
    }

    fn host(&self) -> String {
        match (self.authority.host_str(), self.authority.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => self.authority.to_string(),
        }
    }

    /// A failure to get any answer: retryable.
    fn transport_error(&self, err: &reqwest::Error) -> AuthError {
        let what = if err.is_timeout() {
            format!("no answer within {} s", self.request_timeout.as_secs_f32())
        } else if err.is_connect() {
            "could not connect".to_string()
        } else if err.is_body() || err.is_decode() {
            "the answer was cut off".to_string()
        } else {
            "the request failed".to_string()
        };
        // `without_url`: the URL holds no secret, but the chain reads better
        // without it; the host is named once instead.
        let mut detail = String::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        AuthError::Unavailable(format!("{what} ({}{detail})", self.host()))
    }
}

impl fmt::Debug for EntraTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraTokenProvider")
            .field("authority", &self.authority.as_str())
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl TokenSource for EntraTokenProvider {
    fn bearer(&self, force_refresh: bool) -> BoxFuture<'_, Result<SecretString, AuthError>> {
        Box::pin(self.bearer_inner(force_refresh))
    }
}

/// How long after it was requested a token of `lifetime` should be replaced:
/// [`REFRESH_MARGIN`] before it expires, or at half its lifetime when that is
/// shorter than twice the margin.
pub fn refresh_after(lifetime: Duration) -> Duration {
    if lifetime >= REFRESH_MARGIN * 2 {
        lifetime - REFRESH_MARGIN
    } else {
        lifetime / 2
    }
}

#[cfg(test)]
mod tests;
