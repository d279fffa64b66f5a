//! Log setup: JSON lines when Lambda's advanced logging asks for them
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`), plain text otherwise; the level comes from
//! `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, then `info`. Metrics are EMF lines
//! on stdout ([`metrics`]).

pub mod json;
pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = filter_from(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // CloudWatch stamps each line itself; the JSON form keeps a timestamp
    // field because Lambda's JSON log format expects one, and puts the
    // invocation's requestId / xrayTraceId on every line (json::FlatJson).
    if json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(json::FlatJson)
            .init();
    } else {
        builder.with_ansi(false).with_target(false).init();
    }
}

const QUIET_DEPENDENCIES: &str =
    "hyper=warn,h2=warn,rustls=warn,aws_smithy_runtime=warn,aws_config=warn";

/// The filter for Lambda's level names (`FATAL` maps to `error`) or a
/// `RUST_LOG` directive; quiet dependencies unless asked for.
fn filter_from(lambda_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    let lambda = lambda_level.map(|level| match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    });
    // Dependencies are held at `warn` unless the chosen level is quieter still.
    let with_quiet_dependencies = |level: &str| match level {
        "warn" | "error" => level.to_string(),
        _ => format!("{level},{QUIET_DEPENDENCIES}"),
    };
    let directive = match (lambda, rust_log.filter(|value| !value.trim().is_empty())) {
        (Some(level), _) => with_quiet_dependencies(level),
        (None, Some(rust_log)) => rust_log.to_string(),
        (None, None) => with_quiet_dependencies("info"),
    };
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    fn most_verbose(filter: EnvFilter) -> Option<LevelFilter> {
        filter.max_level_hint()
    }

    #[test]
    fn lambda_level_wins_over_rust_log() {
        assert_eq!(
            most_verbose(filter_from(Some("DEBUG"), Some("error"))),
            Some(LevelFilter::DEBUG)
        );
    }

    #[test]
    fn fatal_maps_to_error() {
        assert_eq!(
            most_verbose(filter_from(Some("FATAL"), None)),
            Some(LevelFilter::ERROR)
        );
    }

    #[test]
    fn rust_log_applies_without_a_lambda_level() {
        assert_eq!(
            filter_from(None, Some("didomi_cpc_sync=trace")).to_string(),
            "didomi_cpc_sync=trace"
        );
    }

    #[test]
    fn default_is_info() {
        assert_eq!(
            most_verbose(filter_from(None, None)),
            Some(LevelFilter::INFO)
        );
    }
}
