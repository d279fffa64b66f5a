//! HTTP front of the Web API: authentication, app-user check, service-protection admission,
//! the cost model, and the headers every answer carries.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::batch;
use crate::cost::Limits;
use crate::dataverse::{Ctx, DvRequest, DvResponse, execute};
use crate::errors::DvError;
use crate::exec;
use crate::limits;
use crate::odata::pct;
use crate::server::{App, BatchParts};
use crate::state::{Shared, lock};

/// Largest body accepted (a 1000-part batch fits comfortably).
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Bearer token from `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Axum handler for everything under `/api/data/v9.2/`.
pub async fn handle(State(app): State<App>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return finish(DvError::new(400, "0x0", "The request body could not be read.").into());
    };
    let base = app.public_base(&parts.headers);
    let path = pct::decode(
        parts
            .uri
            .path()
            .strip_prefix("/api/data/v9.2/")
            .unwrap_or(""),
        false,
    );
    let user = match authenticate(&app, &parts.headers, &base) {
        Ok(user) => user,
        Err(resp) => return *resp,
    };
    let mut admission = match Admission::admit(&app.state, &user) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let (out, batch_parts) = if path == "$batch" && parts.method == "POST" {
        let done = batch::handle(&app.state, &base, &user, &parts.headers, &bytes).await;
        admission.exec_ms = done.exec_ms;
        (done.response, Some((done.operations, done.writes)))
    } else {
        let no_ids = HashMap::new();
        let ctx = Ctx {
            base: &base,
            content_ids: &no_ids,
            user: &user,
        };
        let req = DvRequest {
            method: parts.method.as_str(),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &bytes,
        };
        let (out, exec_ms) = exec::run(&app.state, 1, |st| execute(st, &ctx, &req)).await;
        admission.exec_ms = exec_ms;
        (out, None)
    };
    let load_headers = admission.finish();
    let mut resp = finish(out);
    resp.headers_mut().extend(load_headers);
    if let Some((operations, writes)) = batch_parts {
        resp.extensions_mut()
            .insert(BatchParts { operations, writes });
    }
    resp
}

/// The caller's systemuserid, or the 401 (no/unknown/expired token) or 403 (not an app user).
fn authenticate(app: &App, headers: &HeaderMap, base: &str) -> Result<String, Box<Response>> {
    let st = lock(&app.state);
    let Some(user) = bearer(headers).and_then(|t| st.token_user(t)) else {
        let tenant = st.config.tenant_id.clone();
        drop(st);
        let mut resp = finish(DvResponse::empty(401));
        let challenge = format!("Bearer authorization_uri={base}/{tenant}/oauth2/authorize");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert("www-authenticate", v);
        }
        return Err(Box::new(resp));
    };
    if !st.config.app_user {
        return Err(Box::new(finish(DvError::not_app_user().into())));
    }
    Ok(user)
}

/// An admitted request: counted in flight until dropped, then charged its execution time.
/// Dropping it (also when a connection is cut mid-request) always releases the slot.
struct Admission {
    shared: Shared,
    user: String,
    limits: Option<Limits>,
    dop_hint: u32,
    exec_ms: u64,
    released: bool,
}

impl Admission {
    fn admit(shared: &Shared, user: &str) -> Result<Self, Box<Response>> {
        let mut st = lock(shared);
        let limits = st.cost.limits;
        let dop_hint = st.cost.dop_hint;
        if let Some(l) = &limits
            && let Err(t) = st.limiter.admit(l, user, Instant::now())
        {
            drop(st);
            let mut resp = finish(limits::error(l, t.breach).into());
            let h = resp.headers_mut();
            h.insert("retry-after", HeaderValue::from(t.retry_after_secs));
            h.insert("x-ms-dop-hint", HeaderValue::from(dop_hint));
            return Err(Box::new(resp));
        }
        Ok(Self {
            shared: shared.clone(),
            user: user.to_string(),
            limits,
            dop_hint,
            exec_ms: 0,
            released: false,
        })
    }

    /// Releases the request and returns the load headers of its response.
    fn finish(mut self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-ms-dop-hint", HeaderValue::from(self.dop_hint));
        let mut st = lock(&self.shared);
        if let Some(l) = &self.limits {
            st.limiter.release(&self.user, self.exec_ms, Instant::now());
            let (requests, exec_ms) = st.limiter.remaining(l, &self.user);
            // Diagnostic headers Dataverse sends; clients must not depend on them.
            h.insert(
                "x-ms-ratelimit-burst-remaining-xrm-requests",
                HeaderValue::from(requests),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{exec_ms}.00")) {
                h.insert("x-ms-ratelimit-time-remaining-xrm-requests", v);
            }
        }
        self.released = true;
        h
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.released && self.limits.is_some() {
            lock(&self.shared)
                .limiter
                .release(&self.user, self.exec_ms, Instant::now());
        }
    }
}

/// HTTP response with the headers every Dataverse answer carries.
pub fn finish(out: DvResponse) -> Response {
    let mut resp = Response::new(Body::from(out.body.unwrap_or_default()));
    *resp.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    for (k, v) in out.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(&v),
        ) {
            h.append(name, value);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    h.insert("odata-version", HeaderValue::from_static("4.0"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("req_id", v.clone());
        h.insert("x-ms-service-request-id", v);
    }
    resp
}
