//! The cost model: how long operations take, how many run at once, what `x-ms-dop-hint` says and
//! which service-protection limits apply. Set in the seed, by CLI flags or `PUT /_emulator/cost`.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Execution cost and limits of the emulated Dataverse web server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// Execution time of every operation (a plain request, or each part of a `$batch`).
    pub op_cost_ms: u64,
    /// At most this many operations execute at once; the others wait their turn. `None` = no cap.
    pub parallelism: Option<usize>,
    /// Value of the `x-ms-dop-hint` response header (recommended degree of parallelism).
    pub dop_hint: u32,
    /// Service-protection limits per user; `None` = never throttle by load.
    pub limits: Option<Limits>,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            op_cost_ms: 0,
            parallelism: None,
            // Microsoft documents no fixed value; small environments answer single digits.
            dop_hint: 4,
            limits: None,
        }
    }
}

/// Dataverse service-protection limits, evaluated per user over a sliding window.
/// Unnamed figures keep Dataverse's values (6000 requests and 1,200,000 ms per 300 s, 52 concurrent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per window (a `$batch` counts once).
    pub requests: u64,
    /// Combined execution milliseconds per window (every `$batch` part adds its cost).
    pub exec_ms: u64,
    /// Window length in seconds.
    pub window_s: u64,
    /// Requests in flight at once.
    pub concurrent: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests: 6000,
            exec_ms: 1_200_000,
            window_s: 300,
            concurrent: 52,
        }
    }
}

impl FromStr for Limits {
    type Err = String;

    /// Parses `requests=200,exec_ms=60000,window_s=10,concurrent=52` (any subset, any order).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut limits = Limits::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not key=value"))?;
            let n: u64 = value.trim().parse().map_err(|e| format!("{key}: {e}"))?;
            match key.trim() {
                "requests" => limits.requests = n,
                "exec_ms" => limits.exec_ms = n,
                "window_s" => limits.window_s = n.max(1),
                "concurrent" => limits.concurrent = n,
                other => return Err(format!("unknown limit '{other}'")),
            }
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_any_subset_and_keep_dataverse_defaults() {
        let l: Limits = "requests=200,window_s=10".parse().unwrap();
        assert_eq!(l.requests, 200);
        assert_eq!(l.window_s, 10);
        assert_eq!(l.exec_ms, 1_200_000);
        assert_eq!(l.concurrent, 52);
        assert!("requests=x".parse::<Limits>().is_err());
        assert!("speed=1".parse::<Limits>().is_err());
    }
}
