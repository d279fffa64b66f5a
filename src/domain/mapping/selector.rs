//! Mapping selectors: the `value` of a Didomi mapping, naming the purpose or
//! preference value it reads (README, "Mapping rules"), and how each form decides.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::decision::{ConsentValue, Target};
use crate::domain::didomi::Consents;

/// What a mapping's `value` selects in a Didomi event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// `<purposeId>` on a `purpose:` mapping: the purpose's `enabled` flag.
    Purpose {
        /// Didomi purpose id.
        purpose: String,
    },
    /// `<purposeId>/<preferenceId>/<valueId>`: one value under one purpose.
    Exact {
        /// Didomi purpose id.
        purpose: String,
        /// Didomi preference id.
        preference: String,
        /// Didomi preference value id.
        value: String,
    },
    /// `<preferenceId>/<valueId>`: one value of a preference, under any purpose.
    PreferenceValue {
        /// Didomi preference id.
        preference: String,
        /// Didomi preference value id.
        value: String,
    },
    /// `<valueId>` on a `topic:` mapping: a value under any preference.
    Value {
        /// Didomi preference value id.
        value: String,
    },
}

/// Why a mapping `value` is not a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector is empty.
    #[error(
        "is empty; give a Didomi purpose id, `<preferenceId>/<valueId>` or `<purposeId>/<preferenceId>/<valueId>`"
    )]
    Empty,
    /// More than three `/`-separated segments.
    #[error(
        "has {0} `/`-separated parts; at most 3 (`<purposeId>/<preferenceId>/<valueId>`) are allowed"
    )]
    TooManySegments(usize),
    /// A segment is empty, padded with spaces, or holds a comma.
    #[error(
        "part {index} ({segment:?}) is not a Didomi id: ids are non-empty, have no surrounding spaces and no commas"
    )]
    BadSegment {
        /// 1-based segment position.
        index: usize,
        /// The offending segment.
        segment: String,
    },
}

impl Selector {
    /// Parses a mapping value for `target`. A single segment names a purpose
    /// on `purpose:` mappings and a preference value on `topic:` mappings, as in
    /// Didomi's own mapping table; longer forms say what they select.
    pub fn parse(raw: &str, target: &Target) -> Result<Self, SelectorError> {
        if raw.is_empty() {
            return Err(SelectorError::Empty);
        }
        let segments: Vec<&str> = raw.split('/').collect();
        if segments.len() > 3 {
            return Err(SelectorError::TooManySegments(segments.len()));
        }
        for (index, segment) in segments.iter().enumerate() {
            if segment.is_empty() || segment.trim() != *segment || segment.contains(',') {
                return Err(SelectorError::BadSegment {
                    index: index + 1,
                    segment: (*segment).to_string(),
                });
            }
        }
        let owned: Vec<String> = segments.into_iter().map(str::to_string).collect();
        Ok(match <[String; 3]>::try_from(owned) {
            Ok([purpose, preference, value]) => Selector::Exact {
                purpose,
                preference,
                value,
            },
            Err(owned) => match <[String; 2]>::try_from(owned) {
                Ok([preference, value]) => Selector::PreferenceValue { preference, value },
                Err(mut owned) => {
                    let id = owned.remove(0);
                    match target {
                        Target::Purpose(_) => Selector::Purpose { purpose: id },
                        Target::Topic(_) => Selector::Value { value: id },
                    }
                }
            },
        })
    }

    /// The decision this selector reads from `consents`, or `None` when the
    /// event says nothing about it.
    ///
    /// `owners` lists the preferences known to hold a bare [`Selector::Value`]
    /// (from configuration or a `user.updated` diff); without one, a bare value
    /// can opt in but never opt out, because its absence proves nothing.
    pub fn decide(&self, consents: &Consents, owners: &[&str]) -> Option<ConsentValue> {
        match self {
            Selector::Purpose { purpose } => consents
                .purposes
                .iter()
                .filter(|choice| choice.id == *purpose)
                .find_map(|choice| choice.enabled)
                .map(opted),
            Selector::Exact {
                purpose,
                preference,
                value,
            } => {
                let selections = consents
                    .purposes
                    .iter()
                    .filter(|choice| choice.id == *purpose)
                    .filter_map(|choice| choice.selection(preference));
                decide_from_selections(selections, value)
            }
            Selector::PreferenceValue { preference, value } => {
                decide_from_selections(selections_of(consents, preference), value)
            }
            Selector::Value { value } => {
                let selected_anywhere = consents
                    .purposes
                    .iter()
                    .flat_map(|choice| choice.values.values())
                    .filter_map(|selected| selected.ids())
                    .any(|ids| ids.iter().any(|id| id == value));
                if selected_anywhere {
                    return Some(ConsentValue::OptedIn);
                }
                let owner_answered = owners
                    .iter()
                    .any(|owner| selections_of(consents, owner).next().is_some());
                owner_answered.then_some(ConsentValue::OptedOut)
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Purpose { purpose } => f.write_str(purpose),
            Selector::Exact {
                purpose,
                preference,
                value,
            } => {
                write!(f, "{purpose}/{preference}/{value}")
            }
            Selector::PreferenceValue { preference, value } => write!(f, "{preference}/{value}"),
            Selector::Value { value } => f.write_str(value),
        }
    }
}

fn opted(enabled: bool) -> ConsentValue {
    if enabled {
        ConsentValue::OptedIn
    } else {
        ConsentValue::OptedOut
    }
}

fn selections_of<'a>(
    consents: &'a Consents,
    preference: &'a str,
) -> impl Iterator<Item = &'a [String]> + 'a {
    consents
        .purposes
        .iter()
        .filter_map(move |choice| choice.selection(preference))
}

/// Opted in when any selection lists `value`; opted out when some selection
/// exists and none lists it; no decision when the preference is absent.
fn decide_from_selections<'a>(
    selections: impl Iterator<Item = &'a [String]>,
    value: &str,
) -> Option<ConsentValue> {
    let mut answered = false;
    for ids in selections {
        if ids.iter().any(|id| id == value) {
            return Some(ConsentValue::OptedIn);
        }
        answered = true;
    }
    answered.then_some(ConsentValue::OptedOut)
}

/// Preferences known to own each bare value id, from `properties.value_preferences`.
pub type ValueOwners = BTreeMap<String, String>;
