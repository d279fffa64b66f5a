//! The metric lines the real `bootstrap` prints (under cargo lambda's
//! Runtime API) are valid CloudWatch Embedded Metric Format documents and
//! count what a known batch did.
//!
//! The rules checked are those of the EMF specification
//! (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
//! `_aws.Timestamp` in epoch milliseconds; `_aws.CloudWatchMetrics` an array of
//! directives with a `Namespace`, `Dimensions` (arrays of dimension names,
//! each a top-level string member) and `Metrics` (`Name`, `Unit`), each metric
//! a top-level number.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::e2e_lambda::world;

/// The units CloudWatch accepts.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The EMF documents among `output`'s lines, each checked against the
/// specification. Every line of the output must be JSON.
fn emf_documents(output: &str) -> Vec<Value> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut documents = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let document: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        let Some(aws) = document.get("_aws") else {
            continue;
        };
        let timestamp = aws["Timestamp"]
            .as_i64()
            .unwrap_or_else(|| panic!("Timestamp: {line}"));
        assert!(
            (now_ms - timestamp).abs() < 600_000,
            "Timestamp in ms near now: {line}"
        );
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics array");
        assert!(!directives.is_empty(), "{line}");
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace string");
            assert!(
                !namespace.is_empty() && !namespace.starts_with("AWS/"),
                "{line}"
            );
            for set in directive["Dimensions"]
                .as_array()
                .expect("Dimensions array")
            {
                let names = set.as_array().expect("a dimension set is an array");
                assert!(!names.is_empty() && names.len() <= 30, "{line}");
                for name in names {
                    let name = name.as_str().expect("dimension names are strings");
                    assert!(
                        document[name].is_string(),
                        "dimension {name} is a top-level string: {line}"
                    );
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics array");
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{line}");
            for metric in metrics {
                let name = metric["Name"].as_str().expect("Name string");
                let unit = metric["Unit"].as_str().expect("Unit string");
                assert!(UNITS.contains(&unit), "unit {unit}: {line}");
                assert!(
                    document[name].is_number(),
                    "metric {name} is a top-level number: {line}"
                );
            }
        }
        documents.push(document);
    }
    documents
}

/// The metric names a document declares.
fn declared(document: &Value) -> Vec<String> {
    document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|metric| metric["Name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_function_prints_valid_emf_lines_that_count_the_demo_batch() {
    let world = world(|_| {}).await;
    let answer = world.lambda.invoke_fixture("sqs-batch.json").await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let created = world.emulator.consents().len() as f64 - 2.0;

    let documents = emf_documents(&world.lambda.stdout());
    let start = documents
        .iter()
        .find(|document| document.get("ColdStart").is_some())
        .expect("a start line");
    assert_eq!(start["ColdStart"], 1.0);
    assert!(start["InitDurationMs"].as_f64().unwrap() > 0.0);
    assert_eq!(start["FunctionName"], "_", "AWS_LAMBDA_FUNCTION_NAME");
    assert_eq!(
        start["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "DidomiCpcSync"
    );

    let invocation = documents
        .iter()
        .find(|document| document.get("WebhooksReceived").is_some())
        .expect("an invocation line");
    for name in [
        "WebhooksReceived",
        "WebhooksSkipped",
        "ConsentsCreated",
        "ConsentsUpdated",
        "DecisionsStale",
        "DecisionsReplayed",
        "MessagesFailedRetryable",
        "MessagesFailedPermanent",
        "DataverseRequests",
        "DataverseThrottled",
        "DataverseRetryAfterSeconds",
        "BatchDurationMs",
    ] {
        assert!(
            declared(invocation).contains(&name.to_string()),
            "{name} declared"
        );
    }
    assert_eq!(invocation["WebhooksReceived"], 3.0);
    assert_eq!(
        invocation["WebhooksSkipped"], 1.0,
        "the third message is skipped"
    );
    assert_eq!(
        invocation["ConsentsCreated"], created,
        "rows the emulator gained"
    );
    assert_eq!(invocation["MessagesFailedRetryable"], 0.0);
    assert_eq!(invocation["MessagesFailedPermanent"], 0.0);
    assert!(
        invocation["DataverseRequests"].as_f64().unwrap() >= 2.0,
        "the $batch of queries and the $batch of writes: {invocation}"
    );
    let unit = |name: &str| -> String {
        let units: BTreeMap<String, String> = invocation["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().into(),
                    m["Unit"].as_str().unwrap().into(),
                )
            })
            .collect();
        units[name].clone()
    };
    assert_eq!(unit("BatchDurationMs"), "Milliseconds");

    let by_reason: Vec<&Value> = documents
        .iter()
        .filter(|document| document.get("SkipReason").is_some())
        .collect();
    assert_eq!(by_reason.len(), 1, "one line per skip category present");
    assert_eq!(
        by_reason[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["FunctionName", "SkipReason"]])
    );
    assert_eq!(by_reason[0]["WebhooksSkipped"], 1.0);
    let reason = by_reason[0]["SkipReason"].as_str().unwrap();
    assert!(
        [
            "anonymous",
            "pending_approval",
            "regulation",
            "unmapped",
            "no_contact",
            "type",
            "status",
            "echo"
        ]
        .contains(&reason),
        "{reason}"
    );
}
