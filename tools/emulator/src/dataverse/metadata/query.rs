//! `$select`, `$filter` and `$expand` over metadata items (EntityMetadata, AttributeMetadata, …).
//! Property names are PascalCase and case-sensitive; the key `MetadataId` is always returned.

use serde_json::{Map, Value, json};

use crate::errors::DvError;
use crate::odata::filter::{self, Expr, PropType};
use crate::odata::pct;

/// One metadata item: its type, its properties and its expandable navigation properties.
pub struct Item {
    /// Metadata type name without namespace, e.g. `PicklistAttributeMetadata`.
    pub type_name: &'static str,
    /// Structural properties by PascalCase name.
    pub props: Map<String, Value>,
    /// `(name, value)`; a value is an object (single) or an array of objects (collection).
    pub navs: Vec<(&'static str, Value)>,
}

/// An expandable navigation property: its name, its type and the properties its `$select` takes.
pub type NavScope = (&'static str, &'static str, Vec<String>);

/// One `$expand` item with its nested `$select`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expand {
    /// Navigation property name.
    pub nav: String,
    /// Nested `$select`, if any.
    pub select: Option<Vec<String>>,
}

/// Parsed options.
#[derive(Debug, Default)]
pub struct MetaQuery {
    /// `$select` names; `None` = every property.
    pub select: Option<Vec<String>>,
    /// Parsed `$filter`.
    pub filter: Option<Expr>,
    /// `$expand` items.
    pub expand: Vec<Expand>,
}

fn list(value: &str) -> Vec<String> {
    split_top(value)
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Splits on commas outside parentheses.
fn split_top(value: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in value.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

fn parse_expand(value: &str) -> Result<Vec<Expand>, DvError> {
    list(value)
        .into_iter()
        .map(|item| {
            let Some((nav, inner)) = item.split_once('(') else {
                return Ok(Expand {
                    nav: item,
                    select: None,
                });
            };
            let inner = inner.strip_suffix(')').ok_or_else(|| {
                DvError::syntax(format!("Syntax error: missing ')' in '$expand={value}'."))
            })?;
            let mut select = None;
            for opt in inner.split(';').filter(|o| !o.trim().is_empty()) {
                match opt.trim().split_once('=') {
                    Some(("$select", cols)) => select = Some(list(cols)),
                    _ => {
                        return Err(DvError::new(
                            400,
                            "0x0",
                            format!("The query option '{opt}' inside $expand is not supported by the emulator."),
                        ));
                    }
                }
            }
            Ok(Expand {
                nav: nav.trim().to_string(),
                select,
            })
        })
        .collect()
}

/// Parses the raw query string (syntax only).
pub fn parse(raw: Option<&str>) -> Result<MetaQuery, DvError> {
    let mut q = MetaQuery::default();
    for (key, value, _) in pct::query_pairs(raw.unwrap_or("")) {
        match key.as_str() {
            "$select" => q.select = Some(list(&value)),
            "$filter" => q.filter = Some(filter::parse(&value)?),
            "$expand" => q.expand = parse_expand(&value)?,
            k if k.starts_with('$') => {
                return Err(DvError::new(
                    400,
                    "0x0",
                    format!("The query parameter {k} is not supported"),
                ));
            }
            _ => {}
        }
    }
    Ok(q)
}

fn prop_type(items: &[Item], name: &str) -> Option<PropType> {
    if name == "MetadataId" {
        return Some(PropType::Guid);
    }
    let v = items.iter().find_map(|i| i.props.get(name))?;
    match v {
        Value::String(_) | Value::Null => Some(PropType::String),
        Value::Bool(_) => Some(PropType::Bool),
        Value::Number(_) => Some(PropType::Int),
        _ => None,
    }
}

/// Checks option names against the collection: `selectable` are the declared type's properties,
/// navigation properties come from the items.
pub fn check(
    q: &MetaQuery,
    declared: &str,
    selectable: &[String],
    items: &[Item],
    nav_types: &[NavScope],
) -> Result<(), DvError> {
    for name in q.select.iter().flatten() {
        if !selectable.contains(name) {
            return Err(DvError::unknown_property(declared, name));
        }
    }
    if let Some(f) = &q.filter {
        filter::validate(f, declared, &|p| {
            selectable
                .iter()
                .any(|s| s == p)
                .then(|| prop_type(items, p))?
        })?;
    }
    for e in &q.expand {
        let Some((_, nav_type, nav_props)) = nav_types.iter().find(|(n, _, _)| *n == e.nav) else {
            return Err(DvError::unknown_property(declared, &e.nav));
        };
        for name in e.select.iter().flatten() {
            if !nav_props.contains(name) {
                return Err(DvError::unknown_property(nav_type, name));
            }
        }
    }
    Ok(())
}

/// Items the `$filter` keeps.
pub fn filtered<'a>(items: &'a [Item], q: &MetaQuery) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| q.filter.as_ref().is_none_or(|f| filter::eval(f, &i.props)))
        .collect()
}

fn project(props: &Map<String, Value>, select: Option<&Vec<String>>) -> Map<String, Value> {
    match select {
        None => props.clone(),
        Some(cols) => {
            let mut out = Map::new();
            for c in cols.iter().map(String::as_str).chain(["MetadataId"]) {
                if let Some(v) = props.get(c) {
                    out.insert(c.to_string(), v.clone());
                }
            }
            out
        }
    }
}

/// An item as returned: `@odata.type` when it is a derived type of `declared`, the selected
/// properties (always `MetadataId`) and the expanded navigation properties.
pub fn shape(item: &Item, q: &MetaQuery, declared: &str) -> Value {
    let mut out = Map::new();
    if item.type_name != declared {
        out.insert(
            "@odata.type".into(),
            json!(format!("#Microsoft.Dynamics.CRM.{}", item.type_name)),
        );
    }
    out.extend(project(&item.props, q.select.as_ref()));
    for e in &q.expand {
        let Some((_, value)) = item.navs.iter().find(|(n, _)| *n == e.nav) else {
            continue;
        };
        let shaped = match value {
            Value::Object(m) => Value::Object(project(m, e.select.as_ref())),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| match v {
                        Value::Object(m) => Value::Object(project(m, e.select.as_ref())),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        out.insert(e.nav.clone(), shaped);
    }
    Value::Object(out)
}

/// `(a,b)` for `@odata.context`, or nothing without `$select`.
pub fn context_columns(q: &MetaQuery) -> String {
    q.select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_with_nested_select_and_plain_expand() {
        let q = parse(Some(
            "$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet",
        ))
        .unwrap();
        assert_eq!(q.select, Some(vec!["LogicalName".to_string()]));
        assert_eq!(
            q.expand,
            vec![
                Expand {
                    nav: "OptionSet".into(),
                    select: Some(vec!["Options".into()])
                },
                Expand {
                    nav: "GlobalOptionSet".into(),
                    select: None
                }
            ]
        );
    }

    #[test]
    fn encoded_query_from_a_form_encoder_parses_alike() {
        let q = parse(Some(
            "%24select=LogicalName%2CEntitySetName&%24filter=LogicalName+eq+%27contact%27",
        ))
        .unwrap();
        assert_eq!(q.select.unwrap().len(), 2);
        assert!(q.filter.is_some());
    }
}
