//! The one HTTP client the function uses for Microsoft Entra and Dataverse.

use std::time::Duration;

/// The HTTP client for Entra and Dataverse: rustls, 5 s connect timeout, no
/// redirects (a redirect could carry the bearer token, or the token request
/// with its client secret, to another host), no gzip, idle connections
/// dropped after 50 s (before Azure's load balancers silently do, which would
/// show up as resets on a warm Lambda). Request timeouts are set per request
/// by the callers, from their deadlines.
///
/// # Panics
/// When the TLS backend cannot be initialised, which only a broken build can cause.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("didomi-cpc-sync/", env!("CARGO_PKG_VERSION")))
        .no_gzip()
        .pool_idle_timeout(Duration::from_secs(50))
        .build()
        .expect("the rustls HTTP client must build")
}
