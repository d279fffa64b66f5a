//! The loopback server: one port, our own accept loop so a fault can close a connection without
//! answering (before or after the request was processed).

use std::convert::Infallible;
use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response};
use axum::routing::{any, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::dataverse::schema::EntityKind;
use crate::errors::DvError;
use crate::faults::{self, DropWhen, FaultAction, FaultRule};
use crate::state::{RequestRecord, Shared, State, lock};
use crate::{admin, dataverse, entra, secrets};

/// Shared handler state.
#[derive(Clone)]
pub struct App {
    pub state: Shared,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

/// Response extension: operations in a `$batch` (for the request log).
#[derive(Clone, Copy, Debug)]
pub struct BatchParts(pub usize);

/// Base URL as the client addressed us (keeps `localhost` vs `127.0.0.1` consistent in links).
pub fn base_from_host(headers: &HeaderMap, fallback: &str) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| fallback.to_string())
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
                // Small request/response pairs: no Nagle delay on loopback.
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
        handle(app.clone(), router.clone(), kill_svc.clone(), req)
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

fn describe(action: &FaultAction) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = action.delay_ms {
        parts.push(format!("delay {ms}ms"));
    }
    if action.expire_tokens {
        parts.push("expire tokens".to_string());
    }
    if let Some(s) = action.status {
        parts.push(format!("status {s}"));
    }
    match action.drop {
        Some(DropWhen::Before) => parts.push("drop before".to_string()),
        Some(DropWhen::After) => parts.push("drop after".to_string()),
        None => {}
    }
    parts.join(", ")
}

async fn handle(
    app: App,
    router: Router,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if path.starts_with("/_emulator/") || path == "/_emulator" {
        return router.oneshot(req.map(Body::new)).await;
    }
    let started = Instant::now();
    let method = req.method().to_string();
    let bearer = dataverse::http::bearer(req.headers()).is_some();
    let action = faults::pick(&mut lock(&app.state).faults, &method, &path);
    let mut record = RequestRecord {
        seq: 0,
        method: method.clone(),
        path: path.clone(),
        bearer,
        status: None,
        batch_parts: None,
        duration_ms: 0,
        fault: action.as_ref().map(describe),
    };
    if let Some(a) = &action {
        if let Some(ms) = a.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if a.expire_tokens {
            lock(&app.state).expire_tokens();
        }
        if a.drop == Some(DropWhen::Before) {
            record.duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(%method, %path, "dropped before processing (fault)");
            lock(&app.state).log(record);
            kill.notify_one();
            return pending().await;
        }
    }
    let resp = match action.as_ref().and_then(|a| a.status.map(|s| (a, s))) {
        Some((a, status)) => fault_response(&path, status, a),
        None => router.oneshot(req.map(Body::new)).await?,
    };
    record.status = Some(resp.status().as_u16());
    record.batch_parts = resp.extensions().get::<BatchParts>().map(|b| b.0);
    record.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(%method, %path, status = resp.status().as_u16(), ms = record.duration_ms, "request");
    let drop_after = action.is_some_and(|a| a.drop == Some(DropWhen::After));
    if drop_after {
        record.status = None;
        lock(&app.state).log(record);
        kill.notify_one();
        return pending().await;
    }
    lock(&app.state).log(record);
    Ok(resp)
}

/// Canned response of a status fault, shaped like the service the path belongs to.
fn fault_response(path: &str, status: u16, a: &FaultAction) -> Response<Body> {
    let mut resp = if path.starts_with("/api/data/") {
        let code = a.code.clone().unwrap_or_else(|| {
            match status {
                429 => "0x80072322",
                403 => "0x80072560",
                500..=599 => "0x80040216",
                _ => "0x0",
            }
            .to_string()
        });
        let message = a
            .message
            .clone()
            .unwrap_or_else(|| faults::dataverse_message(&code).to_string());
        dataverse::http::finish(DvError::new(status, &code, message).into())
    } else if path.contains("/oauth2/") {
        let text = a
            .message
            .clone()
            .unwrap_or_else(|| "A transient error has occurred. Please try again.".to_string());
        entra::error(status, "temporarily_unavailable", 90033, &text)
    } else {
        let (kind, text) = match status {
            429 => ("ThrottlingException", "Rate exceeded"),
            500..=599 => (
                "InternalServiceError",
                "An error occurred on the server side.",
            ),
            _ => ("AccessDeniedException", "Access denied."),
        };
        secrets::error(status, kind, a.message.as_deref().unwrap_or(text))
    };
    if let Some(secs) = a.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}
