//! The configuration: Didomi's own `microsoft-dynamics-cpc` integration
//! document (DESIGN §1), where it comes from (DESIGN §6) and its validation.
//!
//! Validation collects every problem with the field it concerns and the fix,
//! so a broken deployment fails at start with one readable message.

mod didomi_api;
mod endpoints;
mod errors;
mod properties;
mod sources;

use std::collections::BTreeSet;

use reqwest::Url;
use serde_json::{Map, Value};

use crate::domain::decision::{Target, parse_hyphenated_guid};
use crate::domain::mapping::{Mapping, MappingRules, Selector};
use crate::redact::SecretString;

pub use didomi_api::{DEFAULT_DIDOMI_API_URL, DidomiApiSettings, validate_didomi_url};
pub use endpoints::{
    DEFAULT_AUTHORITY_HOST, DYNAMICS_HOST_SUFFIXES, ENTRA_AUTHORITY_HOSTS, EndpointError,
    is_loopback, validate_authority, validate_instance,
};
pub use errors::{ConfigError, ConfigErrors};
pub use properties::{DEFAULT_EMAIL_FIELD, DEFAULT_REGULATIONS, DEFAULT_WEBHOOK_TYPES, Properties};
pub use sources::{Environment, merge_documents};

/// The only `type_id` this function implements.
pub const TYPE_ID: &str = "microsoft-dynamics-cpc";

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
}

/// The validated integration document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationConfig {
    /// Where and as whom to write.
    pub credentials: Credentials,
    /// Mappings and filters for the mapping stage.
    pub rules: MappingRules,
    /// Create a contact when none matches `organization_user_id`.
    pub upsert_mode: bool,
    /// Contact and row settings from `properties`.
    pub properties: Properties,
}

/// A validated configuration and the warnings (ignored keys, overrides) to log.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: IntegrationConfig,
    /// Non-fatal findings, one sentence each.
    pub warnings: Vec<String>,
}

const TOP_LEVEL_KEYS: [&str; 6] = [
    // Read by `cpc-sync backfill`/`reconcile` only (config::DidomiApiSettings).
    "didomi_api",
    "type_id",
    "authentication",
    "properties",
    "mappings",
    "upsert_mode",
];
const AUTHENTICATION_KEYS: [&str; 4] = ["client_id", "client_secret", "tenant_id", "instance"];

impl IntegrationConfig {
    /// Validates a whole Didomi integration document.
    pub fn from_document(
        document: &Value,
        allow_insecure_http: bool,
    ) -> Result<LoadedConfig, ConfigErrors> {
        let Value::Object(root) = document else {
            return Err(ConfigErrors::one(
                "$",
                "the configuration must be a JSON object",
            ));
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for key in root
            .keys()
            .filter(|key| !TOP_LEVEL_KEYS.contains(&key.as_str()))
        {
            warnings.push(format!(
                "`{key}` is not part of the integration document and is ignored"
            ));
        }
        match root.get("type_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(type_id)) if type_id == TYPE_ID => {}
            Some(other) => errors.push(ConfigError::new(
                "type_id",
                format!("is {other}, but this function implements only \"{TYPE_ID}\""),
            )),
        }
        let credentials = parse_credentials(
            root.get("authentication"),
            allow_insecure_http,
            &mut errors,
            &mut warnings,
        );
        let upsert_mode = match root.get("upsert_mode") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(other) => {
                errors.push(ConfigError::new(
                    "upsert_mode",
                    format!("must be true or false, not {other}"),
                ));
                false
            }
        };
        let (properties, mut rules) =
            properties::parse_properties(root.get("properties"), &mut errors, &mut warnings);
        rules.mappings = parse_mappings(root.get("mappings"), &mut errors);
        match credentials {
            Some(credentials) if errors.is_empty() => Ok(LoadedConfig {
                config: IntegrationConfig {
                    credentials,
                    rules,
                    upsert_mode,
                    properties,
                },
                warnings,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Every purpose and topic the mappings name (checked against Dataverse at start).
    pub fn targets(&self) -> BTreeSet<Target> {
        self.rules
            .mappings
            .iter()
            .map(|mapping| mapping.target)
            .collect()
    }
}

fn parse_credentials(
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

fn parse_mappings(raw: Option<&Value>, errors: &mut Vec<ConfigError>) -> Vec<Mapping> {
    let items = match raw {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            errors.push(ConfigError::new(
                "mappings",
                "is missing; map at least one Didomi purpose or preference value to `purpose:<guid>` or `topic:<guid>`",
            ));
            return Vec::new();
        }
        Some(_) => {
            errors.push(ConfigError::new(
                "mappings",
                "must be an array of {\"id\", \"value\"} objects",
            ));
            return Vec::new();
        }
    };
    if items.is_empty() {
        errors.push(ConfigError::new(
            "mappings",
            "is empty; nothing would ever be written",
        ));
    }
    let mut seen: BTreeSet<(Target, Selector)> = BTreeSet::new();
    let mut mappings = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let field = |name: &str| format!("mappings[{index}].{name}");
        let id = item.get("id").and_then(Value::as_str);
        let value = item.get("value").and_then(Value::as_str);
        let target = match id {
            Some(id) => id
                .parse::<Target>()
                .map_err(|err| errors.push(ConfigError::new(field("id"), err.to_string())))
                .ok(),
            None => {
                errors.push(ConfigError::new(
                    field("id"),
                    "must be a string `purpose:<guid>` or `topic:<guid>`",
                ));
                None
            }
        };
        let (Some(target), Some(value)) = (target, value) else {
            if value.is_none() {
                errors.push(ConfigError::new(
                    field("value"),
                    "must be a string selecting a Didomi purpose or preference value",
                ));
            }
            continue;
        };
        match Selector::parse(value, &target) {
            Ok(selector) => {
                if !seen.insert((target, selector.clone())) {
                    errors.push(ConfigError::new(
                        field("value"),
                        format!(
                            "duplicates an earlier mapping of {target} to {value:?}; remove one"
                        ),
                    ));
                }
                mappings.push(Mapping { target, selector });
            }
            Err(err) => errors.push(ConfigError::new(field("value"), err.to_string())),
        }
    }
    mappings
}

#[cfg(test)]
mod tests;
