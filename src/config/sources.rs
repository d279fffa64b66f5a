//! Where the configuration comes from (README, "Where the document comes from"): the secret named by
//! `SECRET_ID` (the whole document, or just its `authentication` object),
//! optionally completed by the non-secret parts in `INTEGRATION_CONFIG`, and
//! the endpoint settings in the environment.

use reqwest::Url;
use serde_json::{Map, Value};

use super::Credentials;
use super::endpoints::{DEFAULT_AUTHORITY_HOST, validate_authority};
use super::errors::{ConfigError, ConfigErrors};

/// The function's environment variables, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// `SECRET_ID`: name or ARN of the Secrets Manager secret.
    pub secret_id: Option<String>,
    /// `INTEGRATION_CONFIG`: optional JSON with `mappings`, `upsert_mode`, `properties`.
    pub integration_config: Option<String>,
    /// `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`).
    pub authority: Url,
    /// `ALLOW_INSECURE_HTTP=true`: `http://` loopback endpoints for local runs.
    pub allow_insecure_http: bool,
    /// `DATAVERSE_MAX_PARALLEL` (1–52, default 4): the most requests one
    /// instance has in flight, and so the most parallel write `$batch`es a
    /// large batch is split into (never more than `x-ms-dop-hint`). README,
    /// "Throughput".
    pub max_parallel: usize,
}

/// Default of `DATAVERSE_MAX_PARALLEL`.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// Dataverse's limit of concurrent requests per application user and web
/// server: one instance never needs more.
const MAX_PARALLEL_LIMIT: usize = 52;

impl Environment {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads variables through `get` (the process environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let non_empty = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let allow_insecure_http = match non_empty("ALLOW_INSECURE_HTTP").map(|v| v.to_lowercase()) {
            None => false,
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => true,
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => false,
            Some(other) => {
                errors.push(ConfigError::new(
                    "ALLOW_INSECURE_HTTP",
                    format!("is {other:?}; set it to true or false"),
                ));
                false
            }
        };
        let max_parallel = match non_empty("DATAVERSE_MAX_PARALLEL") {
            None => DEFAULT_MAX_PARALLEL,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_PARALLEL_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(ConfigError::new(
                        "DATAVERSE_MAX_PARALLEL",
                        format!(
                            "is {raw:?}; set a whole number from 1 to {MAX_PARALLEL_LIMIT} (Dataverse's concurrent-request limit)"
                        ),
                    ));
                    DEFAULT_MAX_PARALLEL
                }
            },
        };
        let authority_raw =
            non_empty("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.into());
        let authority = validate_authority(&authority_raw, allow_insecure_http)
            .map_err(|err| errors.push(ConfigError::new("AZURE_AUTHORITY_HOST", err.to_string())))
            .ok();
        match authority {
            Some(authority) if errors.is_empty() => Ok(Self {
                secret_id: non_empty("SECRET_ID"),
                integration_config: non_empty("INTEGRATION_CONFIG"),
                authority,
                allow_insecure_http,
                max_parallel,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

const SECRET_ONLY_KEYS: [&str; 1] = ["authentication"];

/// Builds the integration document from the secret's JSON and the optional
/// `INTEGRATION_CONFIG`. Returns the document and warnings to log (one per
/// setting where the secret overrides `INTEGRATION_CONFIG`).
pub fn merge_documents(
    secret: &str,
    integration_config: Option<&str>,
) -> Result<(Value, Vec<String>), ConfigErrors> {
    let secret_doc = parse_object(secret, "SECRET_ID", "the secret's SecretString")?;
    let secret_doc = if Credentials::is_bare_authentication(&secret_doc) {
        Map::from_iter([("authentication".to_string(), Value::Object(secret_doc))])
    } else {
        secret_doc
    };
    let Some(raw) = integration_config else {
        return Ok((Value::Object(secret_doc), Vec::new()));
    };
    let mut merged = parse_object(raw, "INTEGRATION_CONFIG", "INTEGRATION_CONFIG")?;
    if SECRET_ONLY_KEYS.iter().any(|key| merged.contains_key(*key)) {
        return Err(ConfigErrors::one(
            "INTEGRATION_CONFIG.authentication",
            "credentials belong in the secret named by SECRET_ID, not in an environment variable; remove it",
        ));
    }
    let mut warnings = Vec::new();
    for (key, value) in secret_doc {
        match (merged.get_mut(&key), value) {
            (Some(Value::Object(env_properties)), Value::Object(secret_properties))
                if key == "properties" =>
            {
                for (name, setting) in secret_properties {
                    if env_properties.insert(name.clone(), setting).is_some() {
                        warnings.push(format!(
                            "properties.{name} is set in both the secret and INTEGRATION_CONFIG; the secret's value is used"
                        ));
                    }
                }
            }
            (Some(existing), value) => {
                warnings.push(format!(
                    "{key} is set in both the secret and INTEGRATION_CONFIG; the secret's value is used"
                ));
                *existing = value;
            }
            (None, value) => {
                merged.insert(key, value);
            }
        }
    }
    Ok((Value::Object(merged), warnings))
}

fn parse_object(raw: &str, field: &str, what: &str) -> Result<Map<String, Value>, ConfigErrors> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ConfigErrors::one(
            field,
            format!("{what} must be a JSON object"),
        )),
        Err(err) => Err(ConfigErrors::one(
            field,
            format!("{what} is not valid JSON: {err}"),
        )),
    }
}
