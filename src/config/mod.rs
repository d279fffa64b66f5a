//! The configuration: Didomi's own `microsoft-dynamics-cpc` integration
//! document (README, "The integration document"), where it comes from (README,
//! "Where the document comes from") and its validation.
//!
//! Validation collects every problem with the field it concerns and the fix,
//! so a broken deployment fails at start with one readable message.

mod credentials;
mod didomi_api;
mod endpoints;
mod errors;
mod properties;
mod sources;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::domain::decision::Target;
use crate::domain::mapping::{Mapping, MappingRules, Selector};
use crate::domain::writes::ContactSettings;

pub use credentials::Credentials;
pub(crate) use credentials::parse_credentials;
pub use didomi_api::{DEFAULT_DIDOMI_API_URL, DidomiApiSettings, validate_didomi_url};
pub use endpoints::{
    DEFAULT_AUTHORITY_HOST, DYNAMICS_HOST_SUFFIXES, ENTRA_AUTHORITY_HOSTS, EndpointError,
    is_loopback, validate_authority, validate_instance,
};
pub use errors::{ConfigError, ConfigErrors};
pub use properties::{
    DEFAULT_EMAIL_FIELD, DEFAULT_MAX_CLOCK_SKEW_SECONDS, DEFAULT_REGULATIONS,
    DEFAULT_WEBHOOK_TYPES, Properties,
};
pub use sources::{DEFAULT_MAX_PARALLEL, Environment, merge_documents};

/// The only `type_id` this function implements.
pub const TYPE_ID: &str = "microsoft-dynamics-cpc";

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
    /// How contacts are matched, created and stood in for, built once from
    /// `properties` and `upsert_mode`.
    pub contacts: ContactSettings,
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
                    contacts: ContactSettings {
                        match_field: properties.contact_match_field.clone(),
                        point_field: properties.contact_point_field.clone(),
                        upsert_mode,
                        opt_outs_without_contact: properties.write_opt_outs_without_contact,
                    },
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
