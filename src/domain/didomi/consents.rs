//! The `consents` object shared by consent events and users: purposes with
//! their `enabled` flag and the API v2 `values` map of preference → selected
//! value ids. Deprecated v1 `preferences`/`channels`, vendors and the TCF
//! string are accepted and ignored: nothing here maps them to Dynamics.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// The consent choices carried by an event (partial) or a user (full state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Consents {
    /// Purpose choices; `null` or absent reads as none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub purposes: Vec<PurposeChoice>,
}

/// One purpose entry of `consents.purposes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PurposeChoice {
    /// The Didomi purpose id.
    pub id: String,
    /// `true` agreed, `false` refused, `null`/absent: no decision on the purpose
    /// itself (the user may still have chosen preference values).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// API v2 preference values: preference id → the values selected now.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: BTreeMap<String, SelectedValues>,
    /// Present when Didomi's one-click consent propagated the purpose choice
    /// to its multi-choice preferences (informational).
    #[serde(default)]
    pub propagation: Option<bool>,
}

impl PurposeChoice {
    /// The selection recorded for `preference`, if the event carries one.
    pub fn selection(&self, preference: &str) -> Option<&[String]> {
        self.values.get(preference).and_then(SelectedValues::ids)
    }
}

/// The value ids selected for one preference (`{"value": "a,b"}`).
///
/// `""` is an empty selection (everything deselected); `{"value": null}` or a
/// missing `value` is no information at all and reads like an absent key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectedValues(Option<Vec<String>>);

impl SelectedValues {
    /// Builds a selection from value ids (for tests and diffs).
    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Self(Some(ids.into_iter().map(Into::into).collect()))
    }

    /// The selected ids, or `None` when the entry carries no selection.
    pub fn ids(&self) -> Option<&[String]> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for SelectedValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            value: Option<serde_json::Value>,
        }
        let raw = Option::<Raw>::deserialize(deserializer)?;
        let Some(value) = raw.and_then(|raw| raw.value) else {
            return Ok(Self(None));
        };
        // Boolean and numeric preferences arrive as scalars in some setups;
        // their text form is the value id a mapping would name.
        let text = match value {
            serde_json::Value::Null => return Ok(Self(None)),
            serde_json::Value::String(text) => text,
            serde_json::Value::Bool(flag) => flag.to_string(),
            serde_json::Value::Number(number) => number.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a comma-separated string of value ids, got {}",
                    json_kind(&other)
                )));
            }
        };
        Ok(Self(Some(split_value_list(&text))))
    }
}

/// Splits Didomi's comma-separated value list; blanks and surrounding spaces
/// are dropped, so `""` is the empty list.
pub(crate) fn split_value_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn purpose(value: serde_json::Value) -> PurposeChoice {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn comma_list_is_split_and_trimmed() {
        let choice = purpose(json!({"id": "p", "values": {"k": {"value": "a, b,,c"}}}));
        assert_eq!(choice.selection("k").unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn empty_string_is_an_empty_selection() {
        let choice = purpose(json!({"id": "p", "values": {"k": {"value": ""}}}));
        assert_eq!(choice.selection("k"), Some(&[][..]));
    }

    #[test]
    fn null_value_reads_as_no_selection() {
        let choice = purpose(json!({"id": "p", "values": {"k": {"value": null}, "j": null}}));
        assert_eq!(choice.selection("k"), None);
        assert_eq!(choice.selection("j"), None);
    }

    #[test]
    fn boolean_preference_value_reads_as_its_text() {
        let choice = purpose(json!({"id": "p", "values": {"k": {"value": true}}}));
        assert_eq!(choice.selection("k").unwrap(), ["true"]);
    }

    #[test]
    fn from_propagation_flag_is_accepted() {
        let choice = purpose(json!({"id": "p", "enabled": false, "propagation": true,
            "values": {"k": {"value": "", "from_propagation": true}}}));
        assert_eq!(choice.propagation, Some(true));
        assert_eq!(choice.selection("k"), Some(&[][..]));
    }

    #[test]
    fn deprecated_preferences_and_channels_are_ignored() {
        let choice = purpose(json!({"id": "p", "enabled": true,
            "preferences": [{"id": "old", "enabled": true}], "channels": [{"id": "email"}]}));
        assert_eq!(choice.enabled, Some(true));
        assert!(choice.values.is_empty());
    }

    #[test]
    fn array_value_is_a_type_error() {
        let err = serde_json::from_value::<PurposeChoice>(
            json!({"id": "p", "values": {"k": {"value": ["a"]}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("comma-separated"), "{err}");
    }

    #[test]
    fn null_purposes_read_as_none() {
        let consents: Consents = serde_json::from_value(json!({"purposes": null})).unwrap();
        assert!(consents.purposes.is_empty());
    }
}
