//! The Didomi REST API settings used by `cpc-sync backfill`, `reconcile` and
//! `reverse-sync` and by the scheduled reverse-sync function: the optional
//! `didomi_api` object of the secret (`{"key", "secret", "organization_id"}`,
//! or the reverse-sync function's own `DIDOMI_API_SECRET_ID` secret) and the
//! base URL in `DIDOMI_API_URL`.
//!
//! The webhook function never calls Didomi, so a document without
//! `didomi_api` stays valid for it.

use reqwest::Url;
use serde_json::Value;

use super::endpoints::is_loopback;
use super::errors::{ConfigError, ConfigErrors};
use crate::redact::SecretString;

/// Didomi's production API, used when `DIDOMI_API_URL` is not set.
pub const DEFAULT_DIDOMI_API_URL: &str = "https://api.didomi.io/v1";

/// A Didomi private API key and the organization it reads. `Debug` never
/// shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DidomiApiSettings {
    /// The API key (Console → Settings → Private API keys).
    pub key: String,
    /// The key's secret.
    pub secret: SecretString,
    /// The organization whose users are read (`organization_id` on every call).
    pub organization_id: String,
    /// Base URL, e.g. `https://api.didomi.io/v1` (no trailing slash).
    pub base_url: Url,
}

impl DidomiApiSettings {
    /// Reads `didomi_api` from the whole document (or the secret's JSON) and
    /// validates `base_url` (the value of `DIDOMI_API_URL`, if set).
    pub fn from_document(
        document: &Value,
        base_url: Option<&str>,
        allow_insecure_http: bool,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let object = match document.get("didomi_api") {
            Some(Value::Object(object)) => Some(object),
            None | Some(Value::Null) => {
                errors.push(ConfigError::new(
                    "didomi_api",
                    "is missing; add {\"key\", \"secret\", \"organization_id\"} (a Didomi private API key) to the secret, or read a batch export with --from-export DIR",
                ));
                None
            }
            Some(_) => {
                errors.push(ConfigError::new("didomi_api", "must be a JSON object"));
                None
            }
        };
        let mut field = |name: &str| -> Option<String> {
            let object = object?;
            match object.get(name) {
                Some(Value::String(text)) if !text.trim().is_empty() => {
                    Some(text.trim().to_string())
                }
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    errors.push(ConfigError::new(
                        format!("didomi_api.{name}"),
                        "is missing or empty",
                    ));
                    None
                }
                Some(_) => {
                    errors.push(ConfigError::new(
                        format!("didomi_api.{name}"),
                        "must be a string",
                    ));
                    None
                }
            }
        };
        let key = field("key");
        let secret = field("secret");
        let organization_id = field("organization_id");
        let raw_url = base_url
            .map(str::trim)
            .filter(|raw| !raw.is_empty())
            .unwrap_or(DEFAULT_DIDOMI_API_URL);
        let url = validate_didomi_url(raw_url, allow_insecure_http)
            .map_err(|message| errors.push(ConfigError::new("DIDOMI_API_URL", message)))
            .ok();
        match (key, secret, organization_id, url) {
            (Some(key), Some(secret), Some(organization_id), Some(base_url))
                if errors.is_empty() =>
            {
                Ok(Self {
                    key,
                    secret: SecretString::new(secret),
                    organization_id,
                    base_url,
                })
            }
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// `https://` on a Didomi host (`didomi.io` or a subdomain), or `http://` on
/// loopback with `ALLOW_INSECURE_HTTP=true`. The API key and secret are sent
/// there, so no other host is accepted.
pub fn validate_didomi_url(raw: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|_| format!("`{raw}` is not an absolute URL"))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "`{raw}` must be a base URL such as {DEFAULT_DIDOMI_API_URL}, without user info, query or fragment"
        ));
    }
    let loopback_opt_in = allow_insecure_http && is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback_opt_in => {}
        "http" => {
            return Err(format!(
                "`{raw}` must use https; plain http is accepted only for loopback addresses (127.0.0.1, ::1, localhost) with ALLOW_INSECURE_HTTP=true"
            ));
        }
        _ => return Err(format!("`{raw}` must be an https URL")),
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let didomi_host = host == "didomi.io" || host.ends_with(".didomi.io");
    if !loopback_opt_in && (!didomi_host || url.port().is_some()) {
        return Err(format!(
            "`{raw}` is not a Didomi API host (https://api.didomi.io/v1); the API key is sent only there"
        ));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({"didomi_api": {"key": "k-1", "secret": "s-1", "organization_id": "acme"}})
    }

    #[test]
    fn settings_default_to_didomis_production_api() {
        let settings = DidomiApiSettings::from_document(&document(), None, false).unwrap();
        assert_eq!(settings.base_url.as_str(), "https://api.didomi.io/v1");
        assert_eq!(settings.organization_id, "acme");
        assert!(!format!("{settings:?}").contains("s-1"));
    }

    #[test]
    fn missing_didomi_api_names_the_export_alternative() {
        let err = DidomiApiSettings::from_document(&json!({}), None, false).unwrap_err();
        assert!(err.to_string().contains("--from-export"), "{err}");
    }

    #[test]
    fn every_missing_field_is_named() {
        let err = DidomiApiSettings::from_document(&json!({"didomi_api": {}}), None, false)
            .unwrap_err()
            .to_string();
        for name in [
            "didomi_api.key",
            "didomi_api.secret",
            "didomi_api.organization_id",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_function_accepts_a_document_carrying_didomi_api_without_a_warning() {
        let mut document: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/integration-config.json"))
                .unwrap();
        document["didomi_api"] = document_field();
        let loaded = crate::config::IntegrationConfig::from_document(&document, false).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    fn document_field() -> Value {
        document()["didomi_api"].clone()
    }

    #[test]
    fn plain_http_is_refused_unless_loopback_and_opted_in() {
        assert!(validate_didomi_url("http://api.didomi.io/v1", true).is_err());
        assert!(validate_didomi_url("http://127.0.0.1:9000/v1", false).is_err());
        let url = validate_didomi_url("http://127.0.0.1:9000/v1/", true).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/v1");
    }

    #[test]
    fn other_hosts_never_receive_the_api_key() {
        for raw in [
            "https://api.didomi.io.evil.example/v1",
            "https://evil-didomi.io/v1",
            "https://api.didomi.io:8443/v1",
        ] {
            assert!(validate_didomi_url(raw, false).is_err(), "{raw}");
        }
    }
}
