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
    /// Let this many matching requests through before firing.
    #[serde(default)]
    pub skip: u32,
    /// Fire for this many matching requests; JSON `null` = forever, absent = 1.
    #[serde(default = "once")]
    pub times: Option<u32>,
    /// What to do.
    pub action: FaultAction,
}

/// Effects, applied in this order: delay, expire tokens, drop before, canned status, serve, drop after.
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

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        let method_ok = self
            .rule
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path_ok = self
            .rule
            .path_contains
            .as_deref()
            .is_none_or(|p| path_and_query.contains(p));
        method_ok && path_ok
    }
}

/// First rule that matches and is inside its skip/times window; counters advance for every match.
pub fn pick(slots: &mut [FaultSlot], method: &str, path_and_query: &str) -> Option<FaultAction> {
    for slot in slots.iter_mut() {
        if !slot.matches(method, path_and_query) {
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
        }
    }

    #[test]
    fn skip_then_times_window() {
        let mut slots = vec![FaultSlot::new(rule(1, Some(2)))];
        let hits: Vec<bool> = (0..5)
            .map(|_| pick(&mut slots, "post", "/api/data/v9.2/$batch").is_some())
            .collect();
        assert_eq!(hits, vec![false, true, true, false, false]);
        assert!(pick(&mut slots, "GET", "/api/data/v9.2/$batch").is_none());
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
