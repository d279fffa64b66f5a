//! Validation of write bodies (POST/PATCH) against the table definition, Dataverse-style.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::clock;
use crate::dataverse::schema::{Column, EntityDef, EntityKind, Kind};
use crate::errors::DvError;
use crate::odata::filter::is_guid;
use crate::state::{Row, Tables};

/// Parses a JSON object body.
pub fn parse_object(set: &str, body: &[u8]) -> Result<Map<String, Value>, DvError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DvError::payload(
            set,
            "Microsoft.OData.ODataException: Cannot read the value of an entity; a JSON object was expected.",
        )),
        Err(e) => Err(DvError::payload(
            set,
            &format!("Newtonsoft.Json.JsonReaderException: {e}"),
        )),
    }
}

fn conversion(set: &str, v: &Value, edm: &str) -> DvError {
    DvError::payload(
        set,
        &format!(
            "Microsoft.OData.ODataException: Cannot convert the literal '{}' to the expected type '{edm}'.",
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        ),
    )
}

/// Turns a body into `(read name, value)` changes, or the error Dataverse would answer.
pub fn prepare(
    tables: &Tables,
    def: &EntityDef,
    body: &Map<String, Value>,
    content_ids: &HashMap<String, String>,
) -> Result<Vec<(String, Value)>, DvError> {
    let mut out = Vec::new();
    for (key, value) in body {
        if key.starts_with('@') {
            continue;
        }
        if let Some((name, annotation)) = key.split_once('@') {
            if annotation == "odata.bind" {
                let col = def
                    .lookup_by_nav(name)
                    .ok_or_else(|| DvError::undeclared_annotation_only(def.set, name))?;
                out.push((col.read_name(), bind(tables, def, col, value, content_ids)?));
            } else if !body.contains_key(name) {
                return Err(DvError::undeclared_annotation_only(def.set, name));
            }
            continue;
        }
        let Some(col) = def.column(key) else {
            if def.lookup_by_nav(key).is_some() {
                return Err(DvError::payload(
                    def.set,
                    "Microsoft.OData.ODataException: An unexpected 'PrimitiveValue' node was found when reading from the JSON reader. A 'StartObject' node was expected.",
                ));
            }
            return Err(DvError::invalid_body_property(def.logical, key));
        };
        if let Kind::Lookup { .. } = col.kind {
            return Err(DvError::new(
                400,
                "0x0",
                "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.",
            ));
        }
        if !col.writable {
            // Dataverse silently ignores read-only columns in a write body.
            continue;
        }
        out.push((col.read_name(), checked(def, col, value)?));
    }
    Ok(out)
}

/// Checks and normalises one value for a column (type, range, length), Dataverse-style.
pub fn checked(def: &EntityDef, col: &Column, v: &Value) -> Result<Value, DvError> {
    if v.is_null() && col.name != def.pk {
        return Ok(Value::Null);
    }
    match col.kind {
        Kind::Str(max) => {
            let s = v
                .as_str()
                .ok_or_else(|| conversion(def.set, v, "Edm.String"))?;
            // .NET string lengths count UTF-16 code units.
            if s.encode_utf16().count() > max {
                return Err(DvError::too_long(col.name, def.logical, max));
            }
            Ok(v.clone())
        }
        Kind::Choice(set) => {
            let n = v
                .as_i64()
                .ok_or_else(|| conversion(def.set, v, "Edm.Int32"))?;
            if !set.contains(n) {
                return Err(DvError::choice_out_of_range(
                    &n.to_string(),
                    col.name,
                    def.logical,
                    &set.values(),
                ));
            }
            Ok(v.clone())
        }
        Kind::Bool => v
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| conversion(def.set, v, "Edm.Boolean")),
        Kind::Int => v
            .as_i64()
            .map(|n| json!(n))
            .ok_or_else(|| conversion(def.set, v, "Edm.Int32")),
        Kind::Guid => v
            .as_str()
            .filter(|s| is_guid(s))
            .map(|s| json!(s.to_ascii_lowercase()))
            .ok_or_else(|| conversion(def.set, v, "Edm.Guid")),
        Kind::DateTime => v
            .as_str()
            .and_then(clock::parse)
            .map(|t| json!(clock::format(t)))
            .ok_or_else(|| conversion(def.set, v, "Edm.DateTimeOffset")),
        Kind::Lookup { .. } => Err(DvError::invalid_body_property(def.logical, col.name)),
    }
}

/// Resolves `"/msdynmkt_purposes(<guid>)"` (leading slash optional, absolute URL or `$n` accepted).
fn bind(
    tables: &Tables,
    def: &EntityDef,
    col: &Column,
    v: &Value,
    content_ids: &HashMap<String, String>,
) -> Result<Value, DvError> {
    let Kind::Lookup { nav, target } = col.kind else {
        return Err(DvError::invalid_body_property(def.logical, col.name));
    };
    if v.is_null() {
        return Ok(Value::Null);
    }
    let raw = v
        .as_str()
        .ok_or_else(|| conversion(def.set, v, "Edm.String"))?;
    let reference = match raw.strip_prefix('$') {
        Some(id) => content_ids.get(id).cloned().ok_or_else(|| {
            DvError::new(
                400,
                "0x0",
                format!("Content-ID Reference: '{raw}' does not exist in the batch context."),
            )
        })?,
        None => raw.to_string(),
    };
    let (set, key) = parse_entity_ref(&reference).ok_or_else(|| {
        DvError::syntax(format!(
            "Bad Request - Error in query syntax. Invalid entity reference '{raw}' for '{nav}@odata.bind'."
        ))
    })?;
    let tdef = target.def();
    if set != tdef.set {
        return Err(DvError::payload(
            def.set,
            &format!(
                "Microsoft.OData.ODataException: The navigation property '{nav}' expects entity set '{}' but the reference names '{set}'.",
                tdef.set
            ),
        ));
    }
    if tables.find(target, &key).is_none() {
        return Err(DvError::bind_target_missing(tdef.logical, &key));
    }
    Ok(json!(key))
}

/// Splits `[https://host][/api/data/v9.2]/set(<guid>)` into set and lower-case GUID.
pub fn parse_entity_ref(reference: &str) -> Option<(String, String)> {
    let path = match reference.find("/api/data/v9.2/") {
        Some(i) => &reference[i + "/api/data/v9.2/".len()..],
        None => reference.trim_start_matches('/'),
    };
    let (set, rest) = path.split_once('(')?;
    let key = rest.strip_suffix(')')?;
    let key = key.split_once('=').map_or(key, |(_, v)| v);
    is_guid(key).then(|| (set.to_string(), key.to_ascii_lowercase()))
}

/// Applies prepared changes; keeps `statecode`/`statuscode` consistent like Dataverse.
pub fn apply(def: &EntityDef, row: &mut Row, changes: Vec<(String, Value)>) -> Result<(), DvError> {
    let state = changes
        .iter()
        .find(|(k, _)| k == "statecode")
        .map(|c| c.1.as_i64());
    let status = changes
        .iter()
        .find(|(k, _)| k == "statuscode")
        .map(|c| c.1.as_i64());
    for (k, v) in changes {
        row.insert(k, v);
    }
    match (state, status) {
        (Some(Some(s)), None) => {
            row.insert("statuscode".into(), json!(if s == 0 { 1 } else { 2 }));
        }
        (None, Some(Some(st))) => {
            row.insert("statecode".into(), json!(if st == 1 { 0 } else { 1 }));
        }
        (Some(Some(s)), Some(Some(st))) if (s == 0) != (st == 1) => {
            return Err(DvError::new(
                400,
                "0x8004431a",
                format!(
                    "{st} is not a valid status code for state code {}State.{} on {}.",
                    def.logical,
                    if s == 0 { "Active" } else { "Inactive" },
                    def.logical
                ),
            ));
        }
        _ => {}
    }
    if def.kind == EntityKind::Contact {
        compute_fullname(row);
    }
    Ok(())
}

/// Emulator strictness: a consent create must carry every ApplicationRequired column.
pub fn check_required(def: &EntityDef, row: &Row) -> Result<(), DvError> {
    for col in def.columns.iter().filter(|c| c.required) {
        if row.get(&col.read_name()).is_none_or(Value::is_null) {
            let how = match col.kind {
                Kind::Lookup { nav, .. } => format!("'{nav}@odata.bind'"),
                _ => format!("'{}'", col.name),
            };
            return Err(DvError::new(
                400,
                "0x80040200",
                format!(
                    "Emulator strict mode: the ApplicationRequired column '{}' of '{}' is missing on create; send {how}. (Real Dataverse accepts this, but Customer Insights - Journeys consent checks need it; seed \"strict_required\": false to allow.)",
                    col.name, def.logical
                ),
            ));
        }
    }
    Ok(())
}

/// `fullname` = "firstname lastname", as the default contact name format does.
pub fn compute_fullname(row: &mut Row) {
    let part = |k: &str| {
        row.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let full = format!("{} {}", part("firstname"), part("lastname"))
        .trim()
        .to_string();
    let value = if full.is_empty() {
        Value::Null
    } else {
        json!(full)
    };
    row.insert("fullname".into(), value);
}
