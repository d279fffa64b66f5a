//! Bearer tokens for Dataverse: the narrow interface the Web API client uses
//! ([`TokenSource`]) and its errors. The Microsoft Entra implementation lives
//! in [`provider`].

mod answer;
pub mod provider;

use std::future::Future;
use std::pin::Pin;

use crate::config::Credentials;
use crate::redact::SecretString;

/// A boxed, sendable future (keeps [`TokenSource`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that hands out bearer tokens for the configured Dataverse instance.
pub trait TokenSource: Send + Sync {
    /// A valid access token. `force_refresh` discards a cached token first; the
    /// Web API client sets it once after Dataverse answers 401.
    fn bearer(&self, force_refresh: bool) -> BoxFuture<'_, Result<SecretString, AuthError>>;
}

/// Why no token could be obtained. Each variant says whether a later retry
/// could help ([`AuthError::is_retryable`]) and its message tells an operator
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// AADSTS7000215/7000222: the client secret is wrong or expired (after one
    /// re-read of the secret, in case it had just been rotated).
    #[error(
        "Entra rejected the client secret ({code}): put the secret's Value (not its Secret ID) of a non-expired secret of app {client_id} into authentication.client_secret"
    )]
    InvalidClient {
        /// The AADSTS code seen.
        code: String,
        /// The app registration's client id.
        client_id: String,
    },
    /// AADSTS90002: the tenant does not exist in this cloud.
    #[error(
        "Entra does not know tenant {tenant_id} (AADSTS90002): check authentication.tenant_id and that AZURE_AUTHORITY_HOST is the right cloud"
    )]
    UnknownTenant {
        /// The configured tenant.
        tenant_id: String,
    },
    /// AADSTS700016: no such app in the tenant.
    #[error(
        "Entra does not know app {client_id} in this tenant (AADSTS700016): check authentication.client_id and authentication.tenant_id"
    )]
    UnknownClient {
        /// The configured client id.
        client_id: String,
    },
    /// AADSTS500011: the instance URL names no Dataverse environment in the tenant.
    #[error(
        "Entra found no resource for scope {scope} (AADSTS500011): authentication.instance must be the environment URL of a Dataverse environment in this tenant"
    )]
    WrongResource {
        /// The scope requested.
        scope: String,
    },
    /// Any other answer from the token endpoint that retrying will not change.
    #[error("Entra refused the token request: HTTP {status} {error}: {description}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` field.
        error: String,
        /// `error_description`, first line only (it may carry trace ids).
        description: String,
    },
    /// The token endpoint is unreachable, timed out, throttled or failed with 5xx.
    #[error("the Entra token endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The credentials could not be (re-)read from the secret store.
    #[error("could not read the app credentials: {message}")]
    Credentials {
        /// What went wrong.
        message: String,
        /// Whether reading again later could help.
        retryable: bool,
    },
}

impl AuthError {
    /// True when the same request may succeed later (network, 5xx, throttling).
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::Unavailable(_) => true,
            AuthError::Credentials { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Where the Entra app credentials come from (the Secrets Manager secret in
/// production, a fixed value in the CLI and tests).
pub trait CredentialSource: Send + Sync {
    /// The current credentials. `force_refresh` bypasses any cache: the token
    /// provider sets it once after Entra rejects the client secret, in case the
    /// secret has just been rotated.
    fn credentials(&self, force_refresh: bool) -> BoxFuture<'_, Result<Credentials, AuthError>>;
}

/// Credentials fixed at construction (the CLI, tests); a forced refresh
/// returns the same value.
#[derive(Clone, Debug)]
pub struct StaticCredentials(pub Credentials);

impl CredentialSource for StaticCredentials {
    fn credentials(&self, _force_refresh: bool) -> BoxFuture<'_, Result<Credentials, AuthError>> {
        let credentials = self.0.clone();
        Box::pin(async move { Ok(credentials) })
    }
}
