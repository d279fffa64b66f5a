//! The Microsoft Entra credentials of the integration document: the one
//! place that knows the `authentication` object's keys and how each is
//! validated. The config loader, the secret-shape detection of
//! [`super::merge_documents`] and the Secrets Manager adapter all use it.

use reqwest::Url;
use serde_json::{Map, Value};

use super::{ConfigError, ConfigErrors, validate_instance};
use crate::domain::decision::parse_hyphenated_guid;
use crate::redact::SecretString;

/// The keys of the `authentication` object, in the order messages list them.
pub const AUTHENTICATION_KEYS: [&str; 4] = ["client_id", "client_secret", "tenant_id", "instance"];

/// The Microsoft Entra app registration and the Dataverse environment it
/// writes to. `Debug` never shows the client secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Application (client) id of the Entra app registration.
    pub client_id: String,
    /// Client secret value (not its id).
    pub client_secret: SecretString,
    /// Directory (tenant) id or verified domain.
    pub tenant_id: String,
    /// Environment URL, e.g. `https://contoso.crm4.dynamics.com`.
    pub instance: Url,
}

impl Credentials {
    /// The OAuth scope for this environment: `<instance>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.instance.as_str().trim_end_matches('/'))
    }

    /// Reads the `authentication` object, or a document holding one.
    pub fn from_json(raw: &Value, allow_insecure_http: bool) -> Result<Self, ConfigErrors> {
        let authentication = raw.get("authentication").unwrap_or(raw);
        let mut errors = Vec::new();
        let credentials = parse_credentials(
            Some(authentication),
            allow_insecure_http,
            &mut errors,
            &mut Vec::new(),
        );
        match credentials {
            Some(credentials) if errors.is_empty() => Ok(credentials),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The `authentication.<key>` fields that are absent, null or blank in
    /// `raw` (an `authentication` object, or a document holding one), in
    /// [`AUTHENTICATION_KEYS`] order. Lets a caller say "incomplete" before
    /// "invalid".
    pub fn missing_fields(raw: &Value) -> Vec<String> {
        let authentication = raw.get("authentication").unwrap_or(raw);
        AUTHENTICATION_KEYS
            .iter()
            .filter(|key| match authentication.get(**key) {
                None | Some(Value::Null) => true,
                Some(Value::String(text)) => text.trim().is_empty(),
                Some(_) => false,
            })
            .map(|key| format!("authentication.{key}"))
            .collect()
    }

    /// True when a JSON object looks like a bare `authentication` object
    /// (it has credential keys and no `authentication` key of its own).
    pub fn is_bare_authentication(document: &Map<String, Value>) -> bool {
        !document.contains_key("authentication")
            && AUTHENTICATION_KEYS
                .iter()
                .any(|key| document.contains_key(*key))
    }
}

/// Validates an `authentication` object, pushing every problem to `errors`
/// and every ignored key to `warnings`; `None` when anything is wrong.
pub(crate) fn parse_credentials(
    raw: Option<&Value>,
    allow_insecure_http: bool,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<Credentials> {
    let object = match raw {
        Some(Value::Object(object)) => object,
        None | Some(Value::Null) => {
            errors.push(ConfigError::new(
                "authentication",
                "is missing; give client_id, client_secret, tenant_id and instance (in the secret named by SECRET_ID)",
            ));
            return None;
        }
        Some(_) => {
            errors.push(ConfigError::new("authentication", "must be a JSON object"));
            return None;
        }
    };
    for key in object
        .keys()
        .filter(|key| !AUTHENTICATION_KEYS.contains(&key.as_str()))
    {
        warnings.push(format!("authentication.{key} is not used and is ignored"));
    }
    let before = errors.len();
    let client_id = required_string(object, "client_id", errors);
    if client_id
        .as_deref()
        .is_some_and(|id| parse_hyphenated_guid(id).is_none())
    {
        errors.push(ConfigError::new(
            "authentication.client_id",
            "must be the Application (client) ID GUID from the Entra app registration's overview page",
        ));
    }
    let client_secret = required_string(object, "client_secret", errors).map(SecretString::new);
    let tenant_id = required_string(object, "tenant_id", errors);
    if let Some(tenant) = &tenant_id {
        let plausible = tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !plausible {
            errors.push(ConfigError::new(
                "authentication.tenant_id",
                "must be the Directory (tenant) ID GUID or a verified domain such as contoso.onmicrosoft.com",
            ));
        }
    }
    let instance = required_string(object, "instance", errors).and_then(|raw| {
        validate_instance(&raw, allow_insecure_http)
            .map_err(|err| {
                errors.push(ConfigError::new("authentication.instance", err.to_string()))
            })
            .ok()
    });
    if errors.len() > before {
        return None;
    }
    Some(Credentials {
        client_id: client_id?,
        client_secret: client_secret?,
        tenant_id: tenant_id?,
        instance: instance?,
    })
}

fn required_string(
    object: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match object.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push(ConfigError::new(
                format!("authentication.{key}"),
                "is missing or empty",
            ));
            None
        }
        Some(_) => {
            errors.push(ConfigError::new(
                format!("authentication.{key}"),
                "must be a string",
            ));
            None
        }
    }
}
