//! The Didomi REST API subset `cpc-sync backfill` and `reconcile` use, served
//! under `/v1` (reference `didomi-api.md`): `POST /sessions` (API key → JWT,
//! 400 on bad credentials), `GET /consents/users` (`organization_id`
//! required, pages of `page_size` with an opaque `cursor`, `null` at the end;
//! GDPR users unless `regulation` says otherwise), Didomi's error body
//! (`{"code","name","message","errors"}`), 401 for missing or expired
//! tokens, 403 for a key without the Consents API or the organization, and
//! 429 with `Retry-After`, `RateLimit` and `RateLimit-Policy` headers, and
//! `POST /consents/events` (one event or an array of ≤ 100; an `id` seen
//! before is skipped; each event is merged into its user by
//! `organization_user_id`, created if missing: purposes' `enabled` and
//! `values` per preference replace what the user had). Each imported event
//! goes back out as an `event.created` webhook to the configured URL
//! ([`webhooks`]), as Didomi's own webhooks do.

mod handlers;
mod seed;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::Value;

pub use seed::{DidomiKey, DidomiSeed, RateLimit};

/// A one-off throttle: after `skip` more reads, answer 429 `times` times.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    skip: u32,
    times: u32,
    retry_after: u64,
}

/// The mutable state of the Didomi emulation.
#[derive(Debug)]
struct DidomiState {
    seed: DidomiSeed,
    sessions: HashMap<String, (String, Instant)>,
    throttles: Vec<Throttle>,
    window: (Instant, u32),
    sessions_created: u64,
    user_reads: u64,
    throttled: u64,
    next_token: u64,
    events: Vec<Value>,
    event_posts: u64,
    post_failures: Vec<u16>,
    webhook_url: Option<String>,
    deliveries: Vec<webhooks::Delivery>,
}

/// The Didomi API emulation: cheap to clone, every clone shares the state.
#[derive(Debug, Clone)]
pub struct DidomiApi {
    inner: Arc<Mutex<DidomiState>>,
    http: reqwest::Client,
}

impl DidomiApi {
    /// A Didomi API serving `seed` (the default seed when the file has none).
    pub fn from_seed(seed: Option<DidomiSeed>) -> Self {
        let seed = seed.unwrap_or_default();
        let webhook_url = seed.webhook_url.clone();
        Self {
            // Loopback receivers answer small requests: no Nagle delay.
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default(),
            inner: Arc::new(Mutex::new(DidomiState {
                seed,
                sessions: HashMap::new(),
                throttles: Vec::new(),
                window: (Instant::now(), 0),
                sessions_created: 0,
                user_reads: 0,
                throttled: 0,
                next_token: 1,
                events: Vec::new(),
                event_posts: 0,
                post_failures: Vec::new(),
                webhook_url,
                deliveries: Vec::new(),
            })),
        }
    }

    /// The routes, relative to `/v1`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sessions", post(handlers::create_session))
            .route("/consents/users", get(handlers::list_users))
            .route("/consents/events", post(handlers::create_events))
            .with_state(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, DidomiState> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Replaces the users.
    pub fn set_users(&self, users: Vec<Value>) {
        self.lock().seed.users = users;
    }

    /// The users as served.
    pub fn users(&self) -> Vec<Value> {
        self.lock().seed.users.clone()
    }

    /// Ends every session: the next read with an old token gets 401.
    pub fn expire_sessions(&self) {
        self.lock().sessions.clear();
    }

    /// After `skip` more user reads, answer 429 with `Retry-After: retry_after` `times` times.
    pub fn throttle(&self, skip: u32, times: u32, retry_after: u64) {
        self.lock().throttles.push(Throttle {
            skip,
            times,
            retry_after,
        });
    }

    /// Sessions created so far.
    pub fn sessions_created(&self) -> u64 {
        self.lock().sessions_created
    }

    /// `GET /consents/users` requests answered (any status).
    pub fn user_reads(&self) -> u64 {
        self.lock().user_reads
    }

    /// Requests answered 429.
    pub fn throttled(&self) -> u64 {
        self.lock().throttled
    }

    /// The consent events imported by `POST /consents/events`, in order.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// `POST /consents/events` requests answered (any status).
    pub fn event_posts(&self) -> u64 {
        self.lock().event_posts
    }

    /// Answers the next `POST /consents/events` requests with these statuses
    /// (429 with `Retry-After: 0`, or a 5xx), one each, importing nothing.
    pub fn fail_event_posts(&self, statuses: &[u16]) {
        self.lock().post_failures.extend_from_slice(statuses);
    }

    /// Sends every imported event as an `event.created` webhook to `url`
    /// (`None`: no webhooks). See [`webhooks`].
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.lock().webhook_url = url;
    }

    /// The webhooks sent so far, in order, with the receiver's answers.
    pub fn webhook_deliveries(&self) -> Vec<webhooks::Delivery> {
        self.lock().deliveries.clone()
    }

    /// Sets the page size.
    pub fn set_page_size(&self, size: usize) {
        self.lock().seed.page_size = size.max(1);
    }
}

impl DidomiState {
    fn lifetime(&self) -> Duration {
        Duration::from_secs(self.seed.session_lifetime_secs)
    }
}
