//! Fault injection: rules matched in order against non-admin requests.

use serde::{Deserialize, Serialize};

/// When a rule fires and what it does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method to match (case-insensitive); `None` = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the raw path and query to match; `None` = any.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Substring of the raw request body to match (e.g. an event id inside a `$batch`); `None` = any.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Let this many matching requests through before firing.
    #[serde(default)]
    pub skip: u32,
    /// Fire for this many matching requests; JSON `null` = forever, absent = 1.
    #[serde(default = "once")]
    pub times: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

/// Effects, applied in this order: delay, hold, expire tokens, drop before, canned status, serve,
/// drop after.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultAction {
    /// Answer with this status instead of serving (429, 403, 502, 503, 504, ...).
    pub status: Option<u16>,
    /// `Retry-After` seconds to send with `status`.
    pub retry_after: Option<u64>,
    /// Dataverse `error.code` for `status` (defaults per status: 429 → `0x80072322`, 403 → `0x80072560`).
    pub code: Option<String>,
    /// Overrides the error message.
    pub message: Option<String>,
    /// Sleep before handling.
    pub delay_ms: Option<u64>,
    /// Close the connection without a response, before or after processing the request.
    pub drop: Option<DropWhen>,
    /// Revoke every issued token before handling (the request then gets 401).
    pub expire_tokens: bool,
    /// Hold the request (before it is processed) until another request matching this has been
    /// fully processed, or `max_wait_ms` has passed.
    pub hold_until_applied: Option<HoldUntil>,
}

/// The request whose completion releases a held one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HoldUntil {
    /// HTTP method (case-insensitive); `None` = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the raw path and query; `None` = any.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Substring of the raw body; `None` = any.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Longest hold; the request then proceeds anyway.
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: u64,
}

fn default_max_wait() -> u64 {
    10_000
}

impl HoldUntil {
    /// Whether a processed request releases the held one.
    pub fn releases(&self, method: &str, path_and_query: &str, body: &[u8]) -> bool {
        matches(
            self.method.as_deref(),
            self.path_contains.as_deref(),
            self.body_contains.as_deref(),
            (method, path_and_query, body),
        )
    }
}

/// Matcher shared by rules and holds; every given part must match.
fn matches(
    method: Option<&str>,
    path_contains: Option<&str>,
    body_contains: Option<&str>,
    (req_method, path_and_query, body): (&str, &str, &[u8]),
) -> bool {
    method.is_none_or(|m| m.eq_ignore_ascii_case(req_method))
        && path_contains.is_none_or(|p| path_and_query.contains(p))
        && body_contains.is_none_or(|needle| contains(body, needle.as_bytes()))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl Default for FaultRule {
    /// Matches every request once and does nothing (set `action`).
    fn default() -> Self {
        Self {
            method: None,
            path_contains: None,
            body_contains: None,
            skip: 0,
            times: once(),
            action: FaultAction::default(),
        }
    }
}

/// Whether a dropped request is processed first.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DropWhen {
    /// Close before processing: nothing is written.
    Before,
    /// Process (writes are applied), then close without answering.
    After,
}

fn once() -> Option<u32> {
    Some(1)
}

/// A rule plus its counters.
#[derive(Debug, Clone)]
pub struct FaultSlot {
    pub rule: FaultRule,
    seen: u32,
    fired: u32,
}

impl FaultSlot {
    pub fn new(rule: FaultRule) -> Self {
        Self {
            rule,
            seen: 0,
            fired: 0,
        }
    }

    fn matches(&self, request: (&str, &str, &[u8])) -> bool {
        matches(
            self.rule.method.as_deref(),
            self.rule.path_contains.as_deref(),
            self.rule.body_contains.as_deref(),
            request,
        )
    }
}

/// First rule that matches and is inside its skip/times window; counters advance for every match.
pub fn pick(
    slots: &mut [FaultSlot],
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Option<FaultAction> {
    for slot in slots.iter_mut() {
        if !slot.matches((method, path_and_query, body)) {
            continue;
        }
        slot.seen += 1;
        if slot.seen <= slot.rule.skip {
            continue;
        }
        if slot.rule.times.is_some_and(|t| slot.fired >= t) {
            continue;
        }
        slot.fired += 1;
        return Some(slot.rule.action.clone());
    }
    None
}

/// Default Dataverse message for a throttling or access error code.
pub fn dataverse_message(code: &str) -> &'static str {
    match code {
        "0x80072321" => {
            "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
        }
        "0x80072326" => "Number of concurrent requests exceeded the limit of 52.",
        "0x80072322" => {
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
        }
        "0x80072560" => "The user is not a member of the organization.",
        "0x80040220" => {
            "Principal user (Id=5d1c0b6e-0000-0000-0000-00000000a0a0, type=8) is missing prvCreatemsdynmkt_contactpointconsent4 privilege."
        }
        _ => "An unexpected error occurred.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(skip: u32, times: Option<u32>) -> FaultRule {
        FaultRule {
            method: Some("POST".into()),
            path_contains: Some("$batch".into()),
            skip,
            times,
            action: FaultAction {
                status: Some(503),
                ..FaultAction::default()
            },
            ..FaultRule::default()
        }
    }

    #[test]
    fn skip_then_times_window() {
        let mut slots = vec![FaultSlot::new(rule(1, Some(2)))];
        let hits: Vec<bool> = (0..5)
            .map(|_| pick(&mut slots, "post", "/api/data/v9.2/$batch", b"").is_some())
            .collect();
        assert_eq!(hits, vec![false, true, true, false, false]);
        assert!(pick(&mut slots, "GET", "/api/data/v9.2/$batch", b"").is_none());
    }

    #[test]
    fn body_contains_matches_only_requests_carrying_the_text() {
        let mut r = rule(0, None);
        r.body_contains = Some("evt-A".into());
        let mut slots = vec![FaultSlot::new(r)];
        assert!(pick(&mut slots, "POST", "/api/data/v9.2/$batch", b"..evt-B..").is_none());
        assert!(pick(&mut slots, "POST", "/api/data/v9.2/$batch", b"..evt-A..").is_some());
    }

    #[test]
    fn hold_until_applied_defaults_to_a_ten_second_cap() {
        let a: FaultAction = serde_json::from_str(
            r#"{"hold_until_applied":{"path_contains":"$batch","body_contains":"evt-B"}}"#,
        )
        .unwrap();
        let hold = a.hold_until_applied.unwrap();
        assert_eq!(hold.max_wait_ms, 10_000);
        assert!(hold.releases("POST", "/api/data/v9.2/$batch", b"x evt-B x"));
        assert!(!hold.releases("POST", "/api/data/v9.2/$batch", b"x evt-A x"));
    }

    #[test]
    fn times_null_means_forever_and_absent_means_once() {
        let forever: FaultRule =
            serde_json::from_str(r#"{"times":null,"action":{"status":503}}"#).unwrap();
        assert_eq!(forever.times, None);
        let once: FaultRule = serde_json::from_str(r#"{"action":{"drop":"after"}}"#).unwrap();
        assert_eq!(once.times, Some(1));
        assert_eq!(once.action.drop, Some(DropWhen::After));
    }
}
