//! The `properties` object: this product's extensions to Didomi's document,
//! each optional with a documented default. Unknown keys warn, never fail,
//! because Didomi's hosted integration may carry keys of its own.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::errors::ConfigError;
use crate::domain::cpc::{SOURCE_INTERNAL, SOURCE_OPTIONS};
use crate::domain::didomi::WebhookKind;
use crate::domain::mapping::{MappingRules, ValueOwners};
use crate::domain::reverse::ReverseSettings;

/// Default for `properties.regulations`.
pub const DEFAULT_REGULATIONS: [&str; 1] = ["gdpr"];
/// Default for `properties.webhook_types`.
pub const DEFAULT_WEBHOOK_TYPES: [&str; 2] = ["event.created", "event.updated"];
/// Default for `properties.contact_match_field` and `properties.contact_point_field`.
pub const DEFAULT_EMAIL_FIELD: &str = "emailaddress1";

/// The validated `properties` that govern writes. Those that filter and map
/// webhooks (`regulations`, `webhook_types`, `value_preferences`) live in
/// [`MappingRules`], the one place the mapping stage reads them from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Properties {
    /// Contact column matched against `organization_user_id`.
    pub contact_match_field: String,
    /// Contact column holding the address that consent rows are written for.
    pub contact_point_field: String,
    /// `msdynmkt_source` written on every row.
    pub consent_source: i32,
    /// Write opt-outs for an email `organization_user_id` that no contact
    /// has yet (consent belongs to the address, not the contact).
    pub write_opt_outs_without_contact: bool,
    /// How far in the future a decision's `created_at` may lie before the
    /// webhook is refused (a wrong clock or a typo'd year would otherwise
    /// freeze the row against every later choice).
    pub max_clock_skew_seconds: u32,
    /// `properties.reverse_sync`: which Dynamics edits go back to Didomi.
    pub reverse_sync: ReverseSettings,
}

/// Default for `properties.max_clock_skew_seconds`: 5 minutes.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u32 = 300;

impl Default for Properties {
    fn default() -> Self {
        Self {
            contact_match_field: DEFAULT_EMAIL_FIELD.into(),
            contact_point_field: DEFAULT_EMAIL_FIELD.into(),
            consent_source: SOURCE_INTERNAL,
            write_opt_outs_without_contact: true,
            max_clock_skew_seconds: DEFAULT_MAX_CLOCK_SKEW_SECONDS,
            reverse_sync: ReverseSettings::default(),
        }
    }
}

/// Mapping rules with the documented default filters and no mappings yet.
fn default_rules() -> MappingRules {
    MappingRules {
        mappings: Vec::new(),
        regulations: DEFAULT_REGULATIONS.iter().map(|r| r.to_string()).collect(),
        webhook_types: DEFAULT_WEBHOOK_TYPES
            .iter()
            .map(|t| WebhookKind::parse(t))
            .collect(),
        value_owners: ValueOwners::new(),
    }
}

const KNOWN_KEYS: [&str; 9] = [
    "regulations",
    "webhook_types",
    "contact_match_field",
    "contact_point_field",
    "consent_source",
    "value_preferences",
    "write_opt_outs_without_contact",
    "max_clock_skew_seconds",
    "reverse_sync",
];

/// Reads `properties`, pushing problems into `errors` and unknown keys into
/// `warnings`. Returns the write settings and the mapping rules' filters
/// (with no mappings: the caller adds them).
pub(super) fn parse_properties(
    raw: Option<&Value>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> (Properties, MappingRules) {
    let mut properties = Properties::default();
    let mut rules = default_rules();
    let object = match raw {
        None | Some(Value::Null) => return (properties, rules),
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(ConfigError::new(
                "properties",
                "must be a JSON object (or left out)",
            ));
            return (properties, rules);
        }
    };
    for key in object
        .keys()
        .filter(|key| !KNOWN_KEYS.contains(&key.as_str()))
    {
        warnings.push(format!(
            "properties.{key} is not a setting of this function and is ignored (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    if let Some(list) = string_list(object, "regulations", errors) {
        if list.is_empty() {
            errors.push(ConfigError::new(
                "properties.regulations",
                "must list at least one regulation, e.g. [\"gdpr\"]",
            ));
        } else {
            rules.regulations = list.iter().map(|r| r.trim().to_lowercase()).collect();
        }
    }
    if let Some(list) = string_list(object, "webhook_types", errors) {
        let mut kinds = BTreeSet::new();
        for name in &list {
            match WebhookKind::parse(name) {
                WebhookKind::Unknown(_) => errors.push(ConfigError::new(
                    "properties.webhook_types",
                    format!(
                        "{name:?} is not a Didomi webhook type; use some of {}",
                        WebhookKind::KNOWN.join(", ")
                    ),
                )),
                kind => {
                    kinds.insert(kind);
                }
            }
        }
        rules.webhook_types = kinds;
    }
    for (key, slot) in [
        ("contact_match_field", &mut properties.contact_match_field),
        ("contact_point_field", &mut properties.contact_point_field),
    ] {
        if let Some(name) = string_value(object, key, errors) {
            if is_logical_name(&name) {
                *slot = name;
            } else {
                errors.push(ConfigError::new(
                    format!("properties.{key}"),
                    format!("{name:?} is not a Dataverse column logical name (lower-case letters, digits and `_`, e.g. \"emailaddress1\")"),
                ));
            }
        }
    }
    match object.get("write_opt_outs_without_contact") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(flag)) => properties.write_opt_outs_without_contact = *flag,
        Some(other) => errors.push(ConfigError::new(
            "properties.write_opt_outs_without_contact",
            format!("must be true or false, not {other}"),
        )),
    }
    match object.get("max_clock_skew_seconds") {
        None | Some(Value::Null) => {}
        Some(raw) => match raw.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(seconds) if seconds <= 86_400 => properties.max_clock_skew_seconds = seconds,
            _ => errors.push(ConfigError::new(
                "properties.max_clock_skew_seconds",
                format!("must be a whole number of seconds from 0 to 86400, not {raw}"),
            )),
        },
    }
    if let Some(raw) = object.get("consent_source") {
        match parse_source(raw) {
            Some(source) => properties.consent_source = source,
            None => errors.push(ConfigError::new(
                "properties.consent_source",
                format!(
                    "{raw} is not an msdynmkt_source option; use one of {} or its number 534120000-534120007",
                    SOURCE_OPTIONS.iter().map(|(_, name)| *name).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
    match object.get("value_preferences") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (value, preference) in map {
                match preference.as_str().filter(|p| !p.trim().is_empty()) {
                    Some(preference) => {
                        rules.value_owners.insert(value.clone(), preference.to_string());
                    }
                    None => errors.push(ConfigError::new(
                        format!("properties.value_preferences.{value}"),
                        "must be the Didomi preference id that owns this value (a non-empty string)",
                    )),
                }
            }
        }
        Some(_) => errors.push(ConfigError::new(
            "properties.value_preferences",
            "must be an object of preference value id → preference id",
        )),
    }
    if let Some(raw) = object.get("reverse_sync") {
        parse_reverse_sync(raw, &mut properties.reverse_sync, errors);
    }
    (properties, rules)
}

/// `properties.reverse_sync`: `{"sources": [names or numbers], "opt_ins": bool}`.
fn parse_reverse_sync(raw: &Value, settings: &mut ReverseSettings, errors: &mut Vec<ConfigError>) {
    let object = match raw {
        Value::Null => return,
        Value::Object(object) => object,
        _ => {
            errors.push(ConfigError::new(
                "properties.reverse_sync",
                "must be an object {\"sources\": [...], \"opt_ins\": false}",
            ));
            return;
        }
    };
    match object.get("sources") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut sources = BTreeSet::new();
            for (index, item) in items.iter().enumerate() {
                match parse_source(item) {
                    Some(source) => {
                        sources.insert(source);
                    }
                    None => errors.push(ConfigError::new(
                        format!("properties.reverse_sync.sources[{index}]"),
                        format!(
                            "{item} is not an msdynmkt_source option; use one of {}",
                            SOURCE_OPTIONS
                                .iter()
                                .map(|(_, name)| *name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
            settings.sources = sources;
        }
        Some(_) => errors.push(ConfigError::new(
            "properties.reverse_sync.sources",
            "must be a list of msdynmkt_source names or numbers",
        )),
    }
    match object.get("opt_ins") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(flag)) => settings.opt_ins = *flag,
        Some(_) => errors.push(ConfigError::new(
            "properties.reverse_sync.opt_ins",
            "must be true or false",
        )),
    }
}

/// Dataverse logical names: they are spliced into OData queries, so only the
/// characters Dataverse itself allows get through.
fn is_logical_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

fn parse_source(raw: &Value) -> Option<i32> {
    match raw {
        Value::String(name) => {
            let wanted = name.trim().to_lowercase().replace([' ', '-'], "_");
            SOURCE_OPTIONS
                .iter()
                .find(|(_, known)| *known == wanted)
                .map(|(value, _)| *value)
        }
        Value::Number(number) => number
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| SOURCE_OPTIONS.iter().any(|(value, _)| value == n)),
        _ => None,
    }
}

fn string_value(
    object: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.trim().to_string()),
        Some(_) => {
            errors.push(ConfigError::new(
                format!("properties.{key}"),
                "must be a string",
            ));
            None
        }
    }
}

fn string_list(
    object: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<String>> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Some(_) => {
            errors.push(ConfigError::new(
                format!("properties.{key}"),
                "must be an array of strings",
            ));
            None
        }
    }
}
