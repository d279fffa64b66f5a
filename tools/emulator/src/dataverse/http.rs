//! HTTP front of the Web API: authentication, app-user check, common headers.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::batch;
use crate::dataverse::{Ctx, DvRequest, DvResponse, execute};
use crate::errors::DvError;
use crate::odata::pct;
use crate::server::{App, BatchParts, base_from_host};
use crate::state::lock;

/// Largest body accepted (a 1000-part batch fits comfortably).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

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
    let base = base_from_host(&parts.headers, &app.base_url);
    let path = pct::decode(
        parts
            .uri
            .path()
            .strip_prefix("/api/data/v9.2/")
            .unwrap_or(""),
        false,
    );
    let mut st = lock(&app.state);
    if !bearer(&parts.headers).is_some_and(|t| st.token_valid(t)) {
        let tenant = st.config.tenant_id.clone();
        drop(st);
        let mut resp = finish(DvResponse::empty(401));
        let challenge = format!("Bearer authorization_uri={base}/{tenant}/oauth2/authorize");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert("www-authenticate", v);
        }
        return resp;
    }
    if !st.config.app_user {
        drop(st);
        return finish(DvError::not_app_user().into());
    }
    if path == "$batch" && parts.method == "POST" {
        let (out, count) = batch::handle(&mut st, &base, &parts.headers, &bytes);
        drop(st);
        let mut resp = finish(out);
        resp.extensions_mut().insert(BatchParts(count));
        return resp;
    }
    let no_ids = HashMap::new();
    let ctx = Ctx {
        base: &base,
        content_ids: &no_ids,
    };
    let out = execute(
        &mut st,
        &ctx,
        &DvRequest {
            method: parts.method.as_str(),
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &bytes,
        },
    );
    drop(st);
    finish(out)
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
