//! CloudWatch metrics as Embedded Metric Format (EMF) log lines, by hand:
//! one JSON object per line on stdout with an `_aws` member that tells
//! CloudWatch which top-level members are metrics and which are dimensions.
//! Lambda's JSON log format passes such a line through as it is (a line
//! without `level` counts as INFO), and CloudWatch turns it into metrics;
//! no agent, no API call, no extra latency.
//!
//! One line per invocation (dimension `FunctionName`), one more per skip
//! category present (dimensions `FunctionName`, `SkipReason`: an EMF
//! document holds one value per metric name, so each category needs its own),
//! and one at start (`ColdStart`, `InitDurationMs`).
//!
//! Dataverse requests are counted where they are sent
//! ([`dataverse_request`], [`dataverse_throttled`]) into process-wide
//! counters that each invocation takes and resets: a Lambda execution
//! environment runs one invocation at a time, so they hold exactly that
//! invocation's requests, and the Dataverse client needs no extra parameter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

/// The namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "DidomiCpcSync";

static DATAVERSE_REQUESTS: AtomicU64 = AtomicU64::new(0);
static DATAVERSE_THROTTLED: AtomicU64 = AtomicU64::new(0);
static DATAVERSE_LONGEST_RETRY_AFTER_MS: AtomicU64 = AtomicU64::new(0);

/// Counts one HTTP request sent to Dataverse (each attempt counts).
pub fn dataverse_request() {
    DATAVERSE_REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one 429 answer (a whole request or one `$batch` part) and the
/// `Retry-After` it asked for.
pub fn dataverse_throttled(retry_after: Option<Duration>) {
    DATAVERSE_THROTTLED.fetch_add(1, Ordering::Relaxed);
    if let Some(wait) = retry_after {
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        DATAVERSE_LONGEST_RETRY_AFTER_MS.fetch_max(millis, Ordering::Relaxed);
    }
}

/// Dataverse traffic since the last call, which resets the counters.
pub fn take_dataverse_traffic() -> DataverseTraffic {
    DataverseTraffic {
        requests: DATAVERSE_REQUESTS.swap(0, Ordering::Relaxed),
        throttled: DATAVERSE_THROTTLED.swap(0, Ordering::Relaxed),
        longest_retry_after: Duration::from_millis(
            DATAVERSE_LONGEST_RETRY_AFTER_MS.swap(0, Ordering::Relaxed),
        ),
    }
}

/// Requests sent to Dataverse during one invocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataverseTraffic {
    /// HTTP requests sent (attempts, not logical operations).
    pub requests: u64,
    /// 429 answers.
    pub throttled: u64,
    /// The longest `Retry-After` among them.
    pub longest_retry_after: Duration,
}

/// What one invocation did, as counted for its metric lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationTally {
    /// Webhooks in the invocation (SQS messages, or the one HTTP/direct webhook).
    pub received: u64,
    /// Skipped webhooks by `SkipReason::category()`.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Consent rows created.
    pub created: u64,
    /// Consent rows updated.
    pub updated: u64,
    /// Decisions older than the row they concern (not applied).
    pub stale: u64,
    /// Decisions already applied by the same event (not applied again).
    pub replayed: u64,
    /// Webhooks that failed and will be delivered again.
    pub failed_retryable: u64,
    /// Webhooks that can never succeed (dead-lettered when possible).
    pub failed_permanent: u64,
    /// Dataverse traffic.
    pub dataverse: DataverseTraffic,
    /// Wall time of the invocation.
    pub duration: Duration,
}

/// What one reverse-sync pass did, as counted for its metric line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReversePassTally {
    /// Changed rows read from Dataverse.
    pub rows: u64,
    /// Consent events Didomi accepted.
    pub events: u64,
    /// Rows deliberately not sent (own writes, opt-ins, already in Didomi, …).
    pub ignored: u64,
    /// Rows no mapping can express (each also logged).
    pub not_expressible: u64,
    /// The pass failed (the watermark stayed).
    pub failed: bool,
    /// The pass did not run: another pass (an operator's CLI run, say) held
    /// the lock. Not a failure: the next scheduled pass picks the rows up.
    pub skipped: bool,
    /// Dataverse traffic.
    pub dataverse: DataverseTraffic,
    /// Wall time of the pass.
    pub duration: Duration,
}

/// Where the metrics go: namespace and the function's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    namespace: String,
    function_name: String,
}

impl Metrics {
    /// Metrics in `namespace` for the function `function_name`.
    pub fn new(namespace: impl Into<String>, function_name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            function_name: function_name.into(),
        }
    }

    /// From `METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]) and
    /// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda).
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Self::new(
            read("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            read("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "unknown".to_string()),
        )
    }

    /// The EMF lines for one invocation, stamped `at`.
    pub fn invocation_lines(&self, tally: &InvocationTally, at: SystemTime) -> Vec<String> {
        let skipped: u64 = tally.skipped.values().sum();
        let mut metrics = vec![
            count("WebhooksReceived", tally.received),
            count("WebhooksSkipped", skipped),
            count("ConsentsCreated", tally.created),
            count("ConsentsUpdated", tally.updated),
            count("DecisionsStale", tally.stale),
            count("DecisionsReplayed", tally.replayed),
            count("MessagesFailedRetryable", tally.failed_retryable),
            count("MessagesFailedPermanent", tally.failed_permanent),
        ];
        metrics.extend(dataverse_counts(&tally.dataverse));
        metrics.extend([
            (
                "DataverseRetryAfterSeconds",
                "Seconds",
                tally.dataverse.longest_retry_after.as_secs_f64(),
            ),
            ("BatchDurationMs", "Milliseconds", millis(tally.duration)),
        ]);
        let mut lines = vec![self.document(at, &[], &metrics)];
        for (category, skips) in &tally.skipped {
            lines.push(self.document(
                at,
                &[("SkipReason", category)],
                &[count("WebhooksSkipped", *skips)],
            ));
        }
        lines
    }

    /// The EMF line for one reverse-sync pass (the scheduled function), stamped `at`.
    pub fn reverse_pass_line(&self, tally: &ReversePassTally, at: SystemTime) -> String {
        let mut metrics = vec![
            count("ReverseRowsRead", tally.rows),
            count("ReverseEventsPosted", tally.events),
            count("ReverseRowsIgnored", tally.ignored),
            count("ReverseRowsNotExpressible", tally.not_expressible),
            count("ReversePassFailed", u64::from(tally.failed)),
            count("ReversePassSkipped", u64::from(tally.skipped)),
        ];
        metrics.extend(dataverse_counts(&tally.dataverse));
        metrics.push((
            "ReversePassDurationMs",
            "Milliseconds",
            millis(tally.duration),
        ));
        self.document(at, &[], &metrics)
    }

    /// The EMF line for a start: a cold start that took `init`.
    pub fn init_line(&self, init: Duration, at: SystemTime) -> String {
        self.document(
            at,
            &[],
            &[
                ("ColdStart", "Count", 1.0),
                ("InitDurationMs", "Milliseconds", millis(init)),
            ],
        )
    }

    /// Prints lines to stdout, where Lambda (and CloudWatch) read them. Not
    /// through `tracing`: its JSON formatter would nest the document.
    pub fn emit(lines: &[String]) {
        for line in lines {
            // `println!` rather than a locked handle: the same stdout in
            // Lambda, and captured like any output under `cargo test`.
            println!("{line}");
        }
    }

    /// One EMF document: `FunctionName` plus `extra` dimensions, `metrics`
    /// as (name, unit, value).
    fn document(&self, at: SystemTime, extra: &[(&str, &str)], metrics: &[Metric]) -> String {
        let mut dimensions = vec!["FunctionName"];
        dimensions.extend(extra.iter().map(|(name, _)| *name));
        let definitions: Vec<Value> = metrics
            .iter()
            .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
            .collect();
        let timestamp = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_millis() as u64)
            .unwrap_or_default();
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        document.insert("FunctionName".into(), json!(self.function_name));
        for (name, value) in extra {
            document.insert((*name).into(), json!(value));
        }
        for (name, _, value) in metrics {
            document.insert((*name).into(), json!(value));
        }
        Value::Object(document).to_string()
    }
}

/// One metric of an EMF document: name, unit, value.
type Metric = (&'static str, &'static str, f64);

fn count(name: &'static str, value: u64) -> Metric {
    (name, "Count", value as f64)
}

/// The request and throttle counts both functions report.
fn dataverse_counts(traffic: &DataverseTraffic) -> [Metric; 2] {
    [
        count("DataverseRequests", traffic.requests),
        count("DataverseThrottled", traffic.throttled),
    ]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn an_invocation_line_declares_every_metric_it_carries_in_the_namespace() {
        let metrics = Metrics::new("Ns", "fn-1");
        let tally = InvocationTally {
            received: 3,
            created: 2,
            ..InvocationTally::default()
        };
        let lines =
            metrics.invocation_lines(&tally, SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        assert_eq!(lines.len(), 1, "no skip, no per-reason line");
        let line = parse(&lines[0]);
        assert_eq!(line["_aws"]["Timestamp"], 2000);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ns");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(line["FunctionName"], "fn-1");
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has a value");
        }
        assert_eq!(line["WebhooksReceived"], 3.0);
        assert_eq!(line["ConsentsCreated"], 2.0);
    }

    #[test]
    fn a_reverse_pass_line_carries_its_counts_and_whether_it_failed() {
        let metrics = Metrics::new("Ns", "reverse-fn");
        let tally = ReversePassTally {
            rows: 4,
            events: 2,
            ignored: 1,
            not_expressible: 1,
            failed: true,
            ..ReversePassTally::default()
        };
        let line = parse(&metrics.reverse_pass_line(&tally, SystemTime::now()));
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has a value");
        }
        assert_eq!(line["ReverseRowsRead"], 4.0);
        assert_eq!(line["ReverseEventsPosted"], 2.0);
        assert_eq!(line["ReverseRowsNotExpressible"], 1.0);
        assert_eq!(line["ReversePassFailed"], 1.0);
    }

    #[test]
    fn each_skip_reason_gets_its_own_line_with_the_reason_as_a_dimension() {
        let metrics = Metrics::new("Ns", "fn-1");
        let mut tally = InvocationTally::default();
        tally.skipped.insert("anonymous", 2);
        tally.skipped.insert("regulation", 1);
        let lines = metrics.invocation_lines(&tally, SystemTime::now());
        assert_eq!(lines.len(), 3);
        assert_eq!(parse(&lines[0])["WebhooksSkipped"], 3.0, "total");
        let anonymous = parse(&lines[1]);
        assert_eq!(
            anonymous["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "SkipReason"]])
        );
        assert_eq!(anonymous["SkipReason"], "anonymous");
        assert_eq!(anonymous["WebhooksSkipped"], 2.0);
    }

    #[test]
    fn throttles_keep_the_longest_retry_after_and_taking_resets_the_counts() {
        take_dataverse_traffic();
        dataverse_request();
        dataverse_throttled(Some(Duration::from_secs(3)));
        dataverse_throttled(Some(Duration::from_secs(1)));
        let traffic = take_dataverse_traffic();
        assert!(
            traffic.requests >= 1 && traffic.throttled >= 2,
            "{traffic:?}"
        );
        assert!(traffic.longest_retry_after >= Duration::from_secs(3));
    }
}
