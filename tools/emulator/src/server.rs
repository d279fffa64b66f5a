//! The loopback server: one port, our own accept loop so a fault can close a connection without
//! answering (before or after the request was processed).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, Request};
use axum::routing::{any, get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::ClockSetting;
use crate::cost::CostModel;
use crate::dataverse::schema::EntityKind;
use crate::faults::FaultRule;
use crate::hold::Completions;
use crate::state::{RequestRecord, Shared, State, Stats, lock};
use crate::{admin, dataverse, entra, pipeline, secrets};

/// Shared handler state.
#[derive(Clone)]
pub struct App {
    pub state: Shared,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Clients reach us through a TLS front: absolute URLs use `https://`.
    pub behind_tls: bool,
    /// Every processed request, for faults that hold a request until another one is applied.
    pub completions: Completions,
    /// The Didomi API emulation (for its admin routes).
    pub didomi: crate::didomi_api::DidomiApi,
}

impl App {
    /// Base URL as the client addressed us (keeps `localhost` vs `127.0.0.1` consistent in links).
    pub fn public_base(&self, headers: &HeaderMap) -> String {
        let scheme = if self.behind_tls { "https" } else { "http" };
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("{scheme}://{h}"))
            .unwrap_or_else(|| self.base_url.clone())
    }
}

/// Response extension: operations in a `$batch` (for the request log).
#[derive(Clone, Copy, Debug)]
pub struct BatchParts {
    /// Every operation, change-set members included.
    pub operations: usize,
    /// The operations that are not `GET`.
    pub writes: usize,
}

/// Entry point: starts emulators.
pub struct Emulator;

/// A running emulator; dropping it leaves the server running until the runtime ends.
pub struct EmulatorHandle {
    base_url: String,
    addr: SocketAddr,
    state: Shared,
    didomi: crate::didomi_api::DidomiApi,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves. Must be called inside a Tokio runtime.
    pub fn start(seed: crate::Seed) -> io::Result<EmulatorHandle> {
        Self::start_on(seed, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds `addr` and serves. Must be called inside a Tokio runtime.
    pub fn start_on(seed: crate::Seed, addr: SocketAddr) -> io::Result<EmulatorHandle> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| io::Error::other("Emulator::start must run inside a Tokio runtime"))?;
        let didomi = crate::didomi_api::DidomiApi::from_seed(seed.didomi.clone());
        let behind_tls = seed.behind_tls;
        let state = State::from_seed(seed)?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let local = std_listener.local_addr()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let base_url = format!("http://{local}");
        let shared: Shared = Arc::new(Mutex::new(state));
        let app = App {
            state: shared.clone(),
            base_url: base_url.clone(),
            behind_tls,
            completions: Completions::default(),
            didomi: didomi.clone(),
        };
        let (tx, rx) = watch::channel(false);
        let task = runtime.spawn(accept_loop(listener, app, didomi.clone(), rx));
        Ok(EmulatorHandle {
            base_url,
            addr: local,
            state: shared,
            didomi,
            shutdown: tx,
            task,
        })
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// All consent rows, all columns (lookups as `_x_value`), sorted by `createdon`.
    pub fn consents(&self) -> Vec<serde_json::Value> {
        admin::dump(&self.state, EntityKind::Consent)
    }

    /// All contact rows sorted by `createdon`.
    pub fn contacts(&self) -> Vec<serde_json::Value> {
        admin::dump(&self.state, EntityKind::Contact)
    }

    /// The request log (admin calls excluded).
    pub fn requests(&self) -> Vec<RequestRecord> {
        admin::request_log(&self.state)
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        admin::clear_log(&self.state);
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        admin::replace_faults(&self.state, rules);
    }

    /// Creates or replaces a Secrets Manager secret.
    pub fn set_secret(&self, name: &str, value: &str) {
        admin::put_secret(&self.state, name, value);
    }

    /// Sets an app registration's client secret (rotation).
    pub fn set_client_secret(&self, client_id: &str, secret: &str) {
        admin::put_client_secret(&self.state, client_id, secret);
    }

    /// Revokes all issued tokens.
    pub fn expire_tokens(&self) {
        admin::revoke_tokens(&self.state);
    }

    /// The Didomi API emulation (users, sessions, throttles).
    pub fn didomi(&self) -> &crate::didomi_api::DidomiApi {
        &self.didomi
    }

    /// Edits a row "as a person in the Dynamics UI": applies `columns` (read names, as in seeds),
    /// stamps a new `modifiedon`/ETag and sets `_modifiedby_value` to `modified_by` (default
    /// [`crate::SOMEONE_ELSE`]). Returns the row, or why the edit was refused.
    pub fn edit_row(
        &self,
        entity_set: &str,
        id: &str,
        columns: serde_json::Value,
        modified_by: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        admin::edit_row(&self.state, entity_set, id, columns, modified_by).map_err(|e| e.1)
    }

    /// Sets how `createdon`/`modifiedon` are stamped (pinned, frozen, distinct seconds).
    pub fn set_clock(&self, setting: ClockSetting) {
        lock(&self.state).clock.set(setting);
    }

    /// Replaces the cost model (operation cost, parallelism, `x-ms-dop-hint`, limits).
    pub fn set_cost(&self, cost: CostModel) {
        lock(&self.state).set_cost(cost);
    }

    /// Served requests, 429s by limit, requests held right now.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats()
    }

    /// systemuserid of the Application User of an Entra client (what `WhoAmI` answers it).
    pub fn app_user_id(&self, client_id: &str) -> String {
        lock(&self.state).app_user_of(client_id)
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn router(app: App) -> Router {
    Router::new()
        .nest("/_emulator", admin::router())
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::openid_configuration),
        )
        .route("/", post(secrets::handle))
        .route("/api/data/v9.2/{*rest}", any(dataverse::http::handle))
        .route("/api/data/v9.2", any(dataverse::http::handle))
        .with_state(app)
}

async fn accept_loop(
    listener: TcpListener,
    app: App,
    didomi: crate::didomi_api::DidomiApi,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = router(app.clone()).nest_service("/v1", didomi.router());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small request/response exchanges must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, app.clone(), router.clone(), shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: App,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let kill_svc = kill.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        pipeline::handle(app.clone(), router.clone(), kill_svc.clone(), req)
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    // Dropping the connection future closes the socket without a response.
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = shutdown.changed() => {}
    }
}
