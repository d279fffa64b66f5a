//! The handlers of the Didomi API emulation and Didomi's error shape.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{DidomiApi, DidomiState};

/// Didomi's error body: `{"code", "name", "message", "errors"}`.
fn error(status: StatusCode, name: &str, message: &str) -> Response {
    let body = json!({"code": status.as_u16(), "errors": {}, "message": message, "name": name});
    (status, Json(body)).into_response()
}

/// `POST /sessions` `{"type": "api-key", "key", "secret"}` → `{"type", "key", "access_token"}`.
pub async fn create_session(State(api): State<DidomiApi>, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid JSON body");
    };
    let text = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let mut state = api.lock();
    let known = state
        .seed
        .keys
        .iter()
        .any(|key| key.key == text("key") && key.secret == text("secret"));
    if text("type") != "api-key" || !known {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid authentication information",
        );
    }
    let key = text("key").to_string();
    let lifetime = state.lifetime();
    let token = jwt(&mut state, &key, lifetime);
    state
        .sessions
        .insert(token.clone(), (key.clone(), Instant::now() + lifetime));
    state.sessions_created += 1;
    Json(json!({"type": "api-key", "key": key, "access_token": token})).into_response()
}

fn jwt(state: &mut DidomiState, key: &str, lifetime: Duration) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let serial = state.next_token;
    state.next_token += 1;
    let mut claims = json!({"sub": key, "iat": now, "jti": serial});
    if state.seed.jwt_exp {
        claims["exp"] = json!(now + lifetime.as_secs());
    }
    format!(
        "{}.{}.{}",
        engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(claims.to_string()),
        engine.encode(format!("emulator-signature-{serial}"))
    )
}

/// `GET /consents/users?organization_id=…[&$cursor=…][&regulation=…]`.
pub async fn list_users(
    State(api): State<DidomiApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = api.lock();
    state.user_reads += 1;
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let key = token
        .and_then(|token| state.sessions.get(token))
        .filter(|(_, expires)| *expires > Instant::now())
        .map(|(key, _)| key.clone());
    let Some(key) = key else {
        return error(StatusCode::UNAUTHORIZED, "NotAuthenticated", "jwt expired");
    };
    if let Some(response) = throttled(&mut state) {
        return response;
    }
    let Some(organization_id) = query.get("organization_id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "organization_id is required",
        );
    };
    let seed = &state.seed;
    let Some(grant) = seed.keys.iter().find(|k| k.key == key) else {
        return error(StatusCode::UNAUTHORIZED, "NotAuthenticated", "unknown key");
    };
    let allowed = if grant.organizations.is_empty() {
        *organization_id == seed.organization_id
    } else {
        grant.organizations.contains(organization_id)
    };
    if !allowed {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("You do not have access to organization {organization_id}"),
        );
    }
    if !grant.consents_api {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The Consents API is not enabled for this organization (premium feature consents_api)",
        );
    }
    let offset = match query.get("$cursor").map(|cursor| decode_cursor(cursor)) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => return error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid cursor"),
    };
    let regulation = query
        .get("regulation")
        .map(String::as_str)
        .unwrap_or("gdpr");
    let matching: Vec<&Value> = seed
        .users
        .iter()
        .filter(|user| {
            user.get("regulation")
                .and_then(Value::as_str)
                .unwrap_or("gdpr")
                == regulation
        })
        .filter(|user| {
            query.get("organization_user_id").is_none_or(|wanted| {
                user.get("organization_user_id").and_then(Value::as_str) == Some(wanted)
            })
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(seed.page_size)
        .map(|user| (*user).clone())
        .collect();
    let next = offset + page.len();
    let cursor = (next < matching.len()).then(|| encode_cursor(next));
    Json(json!({"data": page, "limit": seed.page_size, "cursor": cursor})).into_response()
}

/// A 429 when a one-off throttle or the fixed window says so.
fn throttled(state: &mut DidomiState) -> Option<Response> {
    let mut retry_after = None;
    if let Some(throttle) = state.throttles.iter_mut().find(|t| t.times > 0) {
        if throttle.skip > 0 {
            throttle.skip -= 1;
        } else {
            throttle.times -= 1;
            retry_after = Some(throttle.retry_after);
        }
    }
    let mut policy = None;
    if retry_after.is_none()
        && let Some(limit) = state.seed.rate_limit
    {
        let window = Duration::from_secs(limit.window_secs.max(1));
        if state.window.0.elapsed() >= window {
            state.window = (Instant::now(), 0);
        }
        state.window.1 += 1;
        if state.window.1 > limit.requests {
            let left = window.saturating_sub(state.window.0.elapsed());
            retry_after = Some(left.as_secs().max(1));
            policy = Some(format!("{};w={}", limit.requests, limit.window_secs));
        }
    }
    let retry_after = retry_after?;
    state.throttled += 1;
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests, please retry later",
    );
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("retry-after", retry_after.to_string());
    set(
        "ratelimit",
        format!("limit=100, remaining=0, reset={retry_after}"),
    );
    set(
        "ratelimit-policy",
        policy.unwrap_or_else(|| "100;w=15".into()),
    );
    Some(response)
}

fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("users:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("users:")?
        .parse()
        .ok()
}

/// `POST /consents/events?organization_id=…`: one event or an array of ≤ 100.
/// Answers after the webhooks of the imported events were delivered.
pub async fn create_events(
    State(api): State<DidomiApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let (created, url) = match import_events(&api, &headers, &query, &body) {
        Ok(imported) => imported,
        Err(response) => return *response,
    };
    if let Some(url) = url {
        let bodies = created.iter().map(super::webhooks::event_created).collect();
        let deliveries = super::webhooks::deliver(&api.http, &url, bodies).await;
        api.lock().deliveries.extend(deliveries);
    }
    Json(Value::Array(created)).into_response()
}

/// Imports the events under the lock; returns them and the webhook URL.
fn import_events(
    api: &DidomiApi,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(Vec<Value>, Option<String>), Box<Response>> {
    let mut state = api.lock();
    state.event_posts += 1;
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let valid = token
        .and_then(|token| state.sessions.get(token))
        .is_some_and(|(_, expires)| *expires > Instant::now());
    if !valid {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            "jwt expired",
        )));
    }
    if query.get("organization_id") != Some(&state.seed.organization_id) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "organization_id is missing or not accessible",
        )));
    }
    if !state.post_failures.is_empty() {
        let status = state.post_failures.remove(0);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(code, "GeneralError", "injected failure");
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("0"));
        }
        return Err(Box::new(response));
    }
    let events = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(events)) => events,
        Ok(event @ Value::Object(_)) => vec![event],
        _ => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid JSON body",
            )));
        }
    };
    if events.len() > 100 {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "at most 100 events per request",
        )));
    }
    let mut created = Vec::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for mut event in events {
        let id = event.get("id").and_then(Value::as_str).map(str::to_string);
        if id.is_some()
            && state
                .events
                .iter()
                .any(|known| known.get("id").and_then(Value::as_str) == id.as_deref())
        {
            continue;
        }
        let id = id.unwrap_or_else(|| format!("emulated-event-{}", state.events.len() + 1));
        event["id"] = json!(id);
        event["organization_id"] = json!(state.seed.organization_id);
        event["status"] = json!("confirmed");
        if event.get("created_at").is_none_or(Value::is_null) {
            event["created_at"] = json!(now);
        }
        event["updated_at"] = json!(now);
        if let Some(user_id) = apply_event(&mut state.seed.users, &event)
            && event["user"].is_object()
        {
            event["user"]["id"] = json!(user_id);
        }
        state.events.push(event.clone());
        created.push(event);
    }
    Ok((created, state.webhook_url.clone()))
}

/// Merges an event into its user (by `organization_user_id`), creating the
/// user if missing; returns the user's Didomi `id`.
fn apply_event(users: &mut Vec<Value>, event: &Value) -> Option<String> {
    let organization_user_id = event
        .pointer("/user/organization_user_id")
        .and_then(Value::as_str)?;
    let at = event
        .get("created_at")
        .cloned()
        .unwrap_or_else(|| json!("1970-01-01T00:00:00Z"));
    let index = match users.iter().position(|user| {
        user.get("organization_user_id").and_then(Value::as_str) == Some(organization_user_id)
    }) {
        Some(index) => index,
        None => {
            users.push(json!({
                "id": format!("emulated-user-{}", users.len() + 1),
                "organization_user_id": organization_user_id,
                "version": 0,
                "consents": {"purposes": []},
            }));
            users.len() - 1
        }
    };
    let user = &mut users[index];
    let user_id = user.get("id").and_then(Value::as_str).map(str::to_string);
    let version = user.get("version").and_then(Value::as_u64).unwrap_or(0);
    user["version"] = json!(version + 1);
    user["updated_at"] = at;
    if !user["consents"]["purposes"].is_array() {
        user["consents"]["purposes"] = json!([]);
    }
    let Some(purposes) = event
        .pointer("/consents/purposes")
        .and_then(Value::as_array)
    else {
        return user_id;
    };
    let held = user["consents"]["purposes"]
        .as_array_mut()
        .expect("purposes is an array");
    for purpose in purposes {
        let Some(id) = purpose.get("id").and_then(Value::as_str) else {
            continue;
        };
        let slot = match held
            .iter()
            .position(|p| p.get("id").and_then(Value::as_str) == Some(id))
        {
            Some(slot) => slot,
            None => {
                held.push(json!({"id": id}));
                held.len() - 1
            }
        };
        let target = &mut held[slot];
        if let Some(enabled) = purpose.get("enabled").filter(|v| !v.is_null()) {
            target["enabled"] = enabled.clone();
        }
        if let Some(values) = purpose.get("values").and_then(Value::as_object) {
            if !target["values"].is_object() {
                target["values"] = json!({});
            }
            for (preference, selection) in values {
                target["values"][preference] = selection.clone();
            }
        }
    }
    user_id
}
