//! The Didomi part of the seed file (`"didomi": {…}`): the organization, the
//! API keys that may open sessions, the users `GET /consents/users` returns,
//! and the knobs (page size, token lifetime, rate limit) tests turn.

use serde::Deserialize;
use serde_json::Value;

/// Everything the Didomi API emulation starts with. Every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DidomiSeed {
    /// The organization the users belong to.
    pub organization_id: String,
    /// Private API keys.
    pub keys: Vec<DidomiKey>,
    /// Users, as Didomi returns them (`id`, `organization_user_id`, `updated_at`, `consents`, …).
    /// A user with `"regulation": "cpra"` (or any non-GDPR value) is returned only when asked for.
    pub users: Vec<Value>,
    /// Users per page (Didomi: 100).
    pub page_size: usize,
    /// Session lifetime (Didomi: 1 hour).
    pub session_lifetime_secs: u64,
    /// Put an `exp` claim in the JWT (`false`: a JWT without `exp`, the other reading).
    pub jwt_exp: bool,
    /// Answer 429 once more than `requests` reads arrive within `window_secs`.
    pub rate_limit: Option<RateLimit>,
    /// Where imported consent events go as `event.created` webhooks (none: nowhere).
    pub webhook_url: Option<String>,
}

impl Default for DidomiSeed {
    fn default() -> Self {
        Self {
            organization_id: "acme".into(),
            keys: Vec::new(),
            users: Vec::new(),
            page_size: 100,
            session_lifetime_secs: 3600,
            jwt_exp: true,
            rate_limit: None,
            webhook_url: None,
        }
    }
}

/// One private API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DidomiKey {
    /// The key.
    pub key: String,
    /// Its secret.
    pub secret: String,
    /// Organizations it may read; empty = the seed's organization.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Whether the organization has the (separately priced) Consents API.
    #[serde(default = "yes")]
    pub consents_api: bool,
}

/// A fixed-window request limit, like Didomi's 100 requests / 15 s.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length.
    pub window_secs: u64,
}

fn yes() -> bool {
    true
}
