//! `POST $batch`: multipart/mixed parsing (CRLF only), change sets with rollback, Content-ID
//! references, and the multipart response.
//!
//! Error policy (reference §3.9): without `Prefer: odata.continue-on-error` processing stops at the
//! first failing operation and the outer status is that operation's status, the multipart body
//! holding every response so far including the failing one. With the preference, every top-level
//! part runs, the outer status is 200 and `Preference-Applied: odata.continue-on-error` is echoed.
//! A failed change set is rolled back and answered by one `application/http` part (the failure).
//!
//! Parts run one after another under the cost model (`exec`), each with its own lock of the
//! state, so another request can be applied between two parts; a change set runs under one lock.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::dataverse::{Ctx, DvRequest, DvResponse, execute};
use crate::errors::DvError;
use crate::exec;
use crate::odata::pct;
use crate::odata::query;
use crate::state::{Shared, State};

/// Dataverse's limit on operations per batch.
const MAX_OPERATIONS: usize = 1000;

struct Op {
    content_id: Option<String>,
    method: String,
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

enum Item {
    Single(Op),
    ChangeSet(Vec<Op>),
}

fn bare_lf() -> DvError {
    DvError::payload("", "System.ArgumentException: Stream was not readable.")
}

fn bad(message: impl Into<String>) -> DvError {
    DvError::new(400, "0x80048d19", message)
}

/// What a batch produced: the multipart response, the number of operations (request log) and
/// the execution milliseconds charged (execution-time limit).
pub struct BatchOutcome {
    /// The multipart answer (or the error that refused the whole batch).
    pub response: DvResponse,
    /// Operations in the batch, change-set members included.
    pub operations: usize,
    /// Of those, the ones that are not `GET`: tests tell a batch of queries
    /// from a batch of writes by it.
    pub writes: usize,
    /// Execution time charged (cost model).
    pub exec_ms: u64,
}

/// Runs a batch part by part, each under the cost model and its own lock of the state.
pub async fn handle(
    shared: &Shared,
    base: &str,
    user: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> BatchOutcome {
    let refused = |e: DvError, operations| BatchOutcome {
        response: e.into(),
        operations,
        writes: 0,
        exec_ms: 0,
    };
    let items = match parse(headers, body) {
        Err(e) => return refused(e, 0),
        Ok(items) => items,
    };
    let count = items
        .iter()
        .map(|i| match i {
            Item::Single(_) => 1,
            Item::ChangeSet(ops) => ops.len(),
        })
        .sum();
    let writes = items
        .iter()
        .map(|i| match i {
            Item::Single(op) => usize::from(op.method != "GET"),
            Item::ChangeSet(ops) => ops.iter().filter(|op| op.method != "GET").count(),
        })
        .sum();
    if count > MAX_OPERATIONS {
        let e = DvError::new(
            400,
            "0x0",
            format!(
                "The number of operations in the batch ({count}) exceeds the maximum of {MAX_OPERATIONS}."
            ),
        );
        return refused(e, count);
    }
    let prefer = query::prefer(
        headers
            .get_all("prefer")
            .into_iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let ctx = RunCtx { base, user };
    let (response, exec_ms) = run(shared, &ctx, items, prefer.continue_on_error).await;
    BatchOutcome {
        response,
        operations: count,
        writes,
        exec_ms,
    }
}

/// Who runs the batch and under which base URL.
struct RunCtx<'a> {
    base: &'a str,
    user: &'a str,
}

fn boundary(content_type: &str) -> Option<String> {
    let mut pieces = content_type.split(';');
    let mime = pieces.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    pieces.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Item>, DvError> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let b = boundary(ct).ok_or_else(|| {
        DvError::new(
            400,
            "0x0",
            format!("The content type '{ct}' is not supported for a batch request; use multipart/mixed with a boundary."),
        )
    })?;
    if body.contains(&b'\n') && !contains(body, b"\r\n") {
        return Err(bare_lf());
    }
    let mut items = Vec::new();
    for part in split(body, &b)? {
        let (hdrs, content) = split_headers(part)?;
        let ct = header(&hdrs, "content-type").unwrap_or_default();
        if let Some(cs) = boundary(&ct) {
            let mut ops = Vec::new();
            for sub in split(content, &cs)? {
                let (sh, sc) = split_headers(sub)?;
                let sct = header(&sh, "content-type").unwrap_or_default();
                if boundary(&sct).is_some() {
                    return Err(bad("Change sets cannot be nested."));
                }
                ops.push(op(&sh, sc)?);
            }
            items.push(Item::ChangeSet(ops));
        } else {
            items.push(Item::Single(op(&hdrs, content)?));
        }
    }
    Ok(items)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle, 0).is_some()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Body parts between `--boundary` lines (which must end in CRLF).
fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, DvError> {
    let delim = format!("--{boundary}");
    let crlf_delim = format!("\r\n{delim}");
    let mut pos = if body.starts_with(delim.as_bytes()) {
        0
    } else {
        find(body, crlf_delim.as_bytes(), 0)
            .map(|i| i + 2)
            .ok_or_else(|| {
                if contains(body, format!("\n{delim}").as_bytes()) {
                    bare_lf()
                } else {
                    bad(format!(
                        "The batch body does not contain the boundary '{boundary}'."
                    ))
                }
            })?
    };
    let mut parts = Vec::new();
    loop {
        let mut after = pos + delim.len();
        if body[after..].starts_with(b"--") {
            return Ok(parts);
        }
        while matches!(body.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        if body[after..].starts_with(b"\n") {
            return Err(bare_lf());
        }
        if !body[after..].starts_with(b"\r\n") {
            return Err(bad(format!("Malformed boundary line for '{boundary}'.")));
        }
        let start = after + 2;
        let next = find(body, crlf_delim.as_bytes(), start).ok_or_else(|| {
            bad(format!(
                "The batch body is missing the closing boundary '--{boundary}--'."
            ))
        })?;
        parts.push(&body[start..next]);
        pos = next + 2;
    }
}

type Headers = Vec<(String, String)>;

fn split_headers(part: &[u8]) -> Result<(Headers, &[u8]), DvError> {
    let (head, rest) = if part.starts_with(b"\r\n") {
        (&part[..0], &part[2..])
    } else {
        match find(part, b"\r\n\r\n", 0) {
            Some(i) => (&part[..i], &part[i + 4..]),
            None if contains(part, b"\n\n") => return Err(bare_lf()),
            None => (part, &part[part.len()..]),
        }
    };
    let text = String::from_utf8_lossy(head);
    let mut headers = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.contains('\n') {
            return Err(bare_lf());
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("Malformed header line '{line}' in a batch part.")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((headers, rest))
}

fn header(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn op(mime_headers: &Headers, content: &[u8]) -> Result<Op, DvError> {
    let ct = header(mime_headers, "content-type").unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/http") {
        return Err(bad(format!(
            "A batch part must have Content-Type application/http, found '{ct}'."
        )));
    }
    let line_end = find(content, b"\r\n", 0).unwrap_or(content.len());
    let request_line = String::from_utf8_lossy(&content[..line_end]).to_string();
    let mut words = request_line.split_whitespace();
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return Err(bad(format!(
            "Malformed request line '{request_line}' in a batch part."
        )));
    };
    let rest = content.get(line_end + 2..).unwrap_or(&[]);
    let (inner, body) = split_headers(rest)?;
    let mut headers = HeaderMap::new();
    for (k, v) in &inner {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
        {
            headers.append(name, value);
        }
    }
    Ok(Op {
        content_id: header(mime_headers, "content-id").or_else(|| header(&inner, "content-id")),
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        headers,
        body: body.to_vec(),
    })
}

/// Path relative to the service root plus query, with `$n` references resolved.
fn resolve(url: &str, ids: &HashMap<String, String>) -> Result<(String, Option<String>), DvError> {
    let rel = match url.find("/api/data/v9.2/") {
        Some(i) => &url[i + "/api/data/v9.2/".len()..],
        None => url.trim_start_matches('/'),
    };
    let (path, query) = match rel.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (rel, None),
    };
    let mut path = pct::decode(path, false);
    if let Some(reference) = path.strip_prefix('$') {
        let (id, tail) = reference.split_once('/').unwrap_or((reference, ""));
        let target = ids.get(id).ok_or_else(|| {
            DvError::new(
                400,
                "0x0",
                format!("Content-ID Reference: '${id}' does not exist in the batch context."),
            )
        })?;
        path = if tail.is_empty() {
            target.clone()
        } else {
            format!("{target}/{tail}")
        };
    }
    Ok((path, query))
}

fn run_op(
    state: &mut State,
    rc: &RunCtx<'_>,
    op: &Op,
    ids: &HashMap<String, String>,
) -> DvResponse {
    let (path, query) = match resolve(&op.url, ids) {
        Ok(x) => x,
        Err(e) => return e.into(),
    };
    if path == "$batch" {
        return DvError::new(400, "0x0", "Nested batch requests are not supported.").into();
    }
    let ctx = Ctx {
        base: rc.base,
        content_ids: ids,
        user: rc.user,
    };
    let mut resp = execute(
        state,
        &ctx,
        &DvRequest {
            method: &op.method,
            path: &path,
            query: query.as_deref(),
            headers: &op.headers,
            body: &op.body,
        },
    );
    // Inside a batch, creates also carry Location (reference §8.10).
    if op.method == "POST"
        && let Some(url) = resp.header("OData-EntityId").map(str::to_string)
    {
        let at = resp
            .headers
            .iter()
            .position(|(k, _)| k == "OData-EntityId")
            .unwrap_or(0);
        resp.headers.insert(at, ("Location".into(), url));
    }
    resp
}

async fn run(
    shared: &Shared,
    rc: &RunCtx<'_>,
    items: Vec<Item>,
    continue_on_error: bool,
) -> (DvResponse, u64) {
    let outer = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut out = String::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut failure: Option<u16> = None;
    let mut exec_ms = 0;
    for item in items {
        out.push_str(&format!("--{outer}\r\n"));
        match item {
            Item::Single(op) => {
                let (resp, ms) = exec::run(shared, 1, |st| run_op(st, rc, &op, &ids)).await;
                exec_ms += ms;
                remember(&mut ids, &op, &resp);
                write_part(&mut out, op.content_id.as_deref(), &resp);
                if resp.status >= 400 {
                    failure.get_or_insert(resp.status);
                }
            }
            Item::ChangeSet(ops) => {
                let (done, ms) =
                    exec::run(shared, ops.len(), |st| change_set(st, rc, &ops, &ids)).await;
                exec_ms += ms;
                out.push_str(&done.text);
                ids = done.ids;
                if let Some(status) = done.failure {
                    failure.get_or_insert(status);
                }
            }
        }
        if failure.is_some() && !continue_on_error {
            break;
        }
    }
    out.push_str(&format!("--{outer}--\r\n"));
    let status = match failure {
        Some(s) if !continue_on_error => s,
        _ => 200,
    };
    let mut resp = DvResponse::empty(status);
    resp.headers.push((
        "Content-Type".into(),
        format!("multipart/mixed; boundary={outer}"),
    ));
    if continue_on_error {
        resp.headers.push((
            "Preference-Applied".into(),
            "odata.continue-on-error".into(),
        ));
    }
    resp.body = Some(out.into_bytes());
    (resp, exec_ms)
}

/// A change set's response part(s), the Content-IDs known afterwards and its failure status.
struct ChangeSetDone {
    text: String,
    ids: HashMap<String, String>,
    failure: Option<u16>,
}

/// Runs a change set atomically (one lock hold): a failing operation rolls back all of it and
/// the change set is answered by that failure alone.
fn change_set(
    state: &mut State,
    rc: &RunCtx<'_>,
    ops: &[Op],
    ids_before: &HashMap<String, String>,
) -> ChangeSetDone {
    let snapshot = state.tables.clone();
    let mut ids = ids_before.clone();
    let mut done: Vec<(Option<&str>, DvResponse)> = Vec::new();
    for op in ops {
        let resp = if op.method == "GET" {
            DvError::new(
                400,
                "0x0",
                "GET requests are not allowed inside a change set.",
            )
            .into()
        } else {
            run_op(state, rc, op, &ids)
        };
        if resp.status >= 400 {
            // Atomic: nothing of a failed change set stays written.
            state.tables = snapshot;
            let mut text = String::new();
            write_part(&mut text, op.content_id.as_deref(), &resp);
            return ChangeSetDone {
                text,
                ids: ids_before.clone(),
                failure: Some(resp.status),
            };
        }
        remember(&mut ids, op, &resp);
        done.push((op.content_id.as_deref(), resp));
    }
    let inner = format!("changesetresponse_{}", uuid::Uuid::new_v4());
    let mut text = format!("Content-Type: multipart/mixed; boundary={inner}\r\n\r\n");
    for (cid, resp) in &done {
        text.push_str(&format!("--{inner}\r\n"));
        write_part(&mut text, *cid, resp);
    }
    text.push_str(&format!("--{inner}--\r\n"));
    ChangeSetDone {
        text,
        ids,
        failure: None,
    }
}

fn remember(ids: &mut HashMap<String, String>, op: &Op, resp: &DvResponse) {
    if let (Some(cid), Some(reference)) = (&op.content_id, &resp.entity_ref)
        && resp.status < 400
    {
        ids.insert(cid.clone(), reference.clone());
    }
}

fn write_part(out: &mut String, content_id: Option<&str>, resp: &DvResponse) {
    out.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(cid) = content_id {
        out.push_str(&format!("Content-ID: {cid}\r\n"));
    }
    out.push_str(&format!(
        "\r\nHTTP/1.1 {} {}\r\n",
        resp.status,
        reason(resp.status)
    ));
    if resp.status >= 400 {
        out.push_str(&format!("REQ_ID: {}\r\n", uuid::Uuid::new_v4()));
    }
    out.push_str("OData-Version: 4.0\r\n");
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    if let Some(body) = &resp.body {
        out.push_str(&String::from_utf8_lossy(body));
    }
    out.push_str("\r\n");
}

/// Reason phrase for the embedded status lines.
pub fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_quoted_or_not() {
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_1\"").as_deref(),
            Some("batch_1")
        );
        assert_eq!(
            boundary("multipart/mixed;boundary=changeset_x").as_deref(),
            Some("changeset_x")
        );
        assert_eq!(boundary("application/json"), None);
    }

    #[test]
    fn split_requires_crlf() {
        let ok = b"--b\r\nA: 1\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(split(ok, "b").unwrap().len(), 1);
        let lf = b"--b\nA: 1\n\nx\n--b--\n";
        assert_eq!(split(lf, "b").unwrap_err().code, "0x80048d19");
    }
}
