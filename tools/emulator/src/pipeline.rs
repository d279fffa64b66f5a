//! What happens to every non-admin request: buffer the body, pick a fault rule (method, path,
//! body), apply its effects in order (delay, hold, expire tokens, drop before, canned status,
//! serve, drop after), log it, and announce its completion to held requests.

use std::convert::Infallible;
use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::errors::DvError;
use crate::faults::{self, DropWhen, FaultAction};
use crate::server::{App, BatchParts};
use crate::state::{RequestRecord, lock};
use crate::{dataverse, entra, secrets};

/// Handles one request off a connection; `kill` closes the connection without an answer.
pub async fn handle(
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
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, dataverse::http::BODY_LIMIT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        // A body that cannot be read cannot be answered either: close like a broken peer.
        Err(_) => {
            kill.notify_one();
            return pending().await;
        }
    };
    let req = Request::from_parts(parts, Body::from(body.clone()));
    if path.starts_with("/_emulator/") || path == "/_emulator" {
        let resp = router.oneshot(req).await?;
        // Admin edits count as applied requests too (a UI edit can release a held request).
        app.completions.announce(&method, &path, body);
        return Ok(resp);
    }
    let started = Instant::now();
    let bearer = dataverse::http::bearer(req.headers()).is_some();
    let action = faults::pick(&mut lock(&app.state).faults, &method, &path, &body);
    // Subscribe before anything else can complete, so no release is missed.
    let waiter = action
        .as_ref()
        .and_then(|a| a.hold_until_applied.as_ref())
        .map(|_| app.completions.subscribe());
    let mut record = RequestRecord {
        seq: 0,
        method: method.clone(),
        path: path.clone(),
        bearer,
        status: None,
        batch_parts: None,
        batch_writes: None,
        duration_ms: 0,
        fault: action.as_ref().map(describe),
    };
    if let Some(a) = &action {
        if let Some(ms) = a.delay_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let (Some(hold), Some(w)) = (&a.hold_until_applied, waiter) {
            lock(&app.state).held_now += 1;
            let released = w.wait(hold).await;
            lock(&app.state).held_now -= 1;
            tracing::info!(%method, %path, released, "hold ended");
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
        None => router.oneshot(req).await?,
    };
    app.completions.announce(&method, &path, body);
    record.status = Some(resp.status().as_u16());
    if let Some(parts) = resp.extensions().get::<BatchParts>() {
        record.batch_parts = Some(parts.operations);
        record.batch_writes = Some(parts.writes);
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(%method, %path, status = resp.status().as_u16(), ms = record.duration_ms, "request");
    let drop_after = action.is_some_and(|a| a.drop == Some(DropWhen::After));
    if drop_after {
        record.status = None;
    }
    {
        let mut st = lock(&app.state);
        st.served += 1;
        st.log(record);
    }
    if drop_after {
        kill.notify_one();
        return pending().await;
    }
    Ok(resp)
}

/// Short text of a fault's effects for the request log.
fn describe(action: &FaultAction) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = action.delay_ms {
        parts.push(format!("delay {ms}ms"));
    }
    if action.hold_until_applied.is_some() {
        parts.push("hold".to_string());
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
