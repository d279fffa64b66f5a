//! The metadata subset Microsoft's clients read, for the four tables held here:
//! `EntityDefinitions` (by `$filter`, by `LogicalName='…'` or by MetadataId), a table's
//! `Attributes` (also cast to a derived type such as `PicklistAttributeMetadata`, with
//! `$expand=OptionSet`), `ManyToOneRelationships`, `OneToManyRelationships` and `Keys`.

pub mod attribute;
pub mod entity;
pub mod labels;
pub mod query;
pub mod relationships;

use serde_json::{Value, json};

use crate::dataverse::DvResponse;
use crate::dataverse::schema::EntityKind;
use crate::errors::DvError;
use crate::odata::filter::is_guid;
use query::{Item, MetaQuery, NavScope};

const NS: &str = "Microsoft.Dynamics.CRM.";

/// Properties of the base `AttributeMetadata` type (what `$select` accepts without a cast).
const ATTRIBUTE_BASE: [&str; 15] = [
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "IsCustomAttribute",
    "IsManaged",
    "RequiredLevel",
    "HasChanged",
];

/// Metadata types whose instances carry an `OptionSet` navigation property.
const ENUM_TYPES: [&str; 3] = [
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
];

/// Routes a GET under `EntityDefinitions` (`path` is percent-decoded, relative to the service root).
pub fn handle(
    base: &str,
    method: &str,
    path: &str,
    raw_query: Option<&str>,
) -> Result<DvResponse, DvError> {
    if method != "GET" {
        return Err(DvError::new(
            405,
            "0x80060888",
            format!("The requested resource does not support http method '{method}'."),
        ));
    }
    let q = query::parse(raw_query)?;
    let mut segments = path.split('/');
    let first = segments.next().unwrap_or_default();
    let rest: Vec<&str> = segments.collect();
    let root = format!("{base}/api/data/v9.2/$metadata#");
    let Some(key) = key_of(first, "EntityDefinitions")? else {
        if !rest.is_empty() {
            return Err(DvError::segment_not_found(rest[0]));
        }
        return entity_collection(&root, &q);
    };
    let kind = find_entity(&key)?;
    let owner = format!("{root}EntityDefinitions('{}')", entity::id(kind));
    match rest.as_slice() {
        [] => entity_single(&root, kind, &q),
        [attrs, tail @ ..] if attrs.starts_with("Attributes") => {
            let cast = match tail {
                [] => None,
                [cast] => Some(cast_type(cast)?),
                [_, more, ..] => return Err(DvError::segment_not_found(more)),
            };
            match key_of(attrs, "Attributes")? {
                None => attribute_collection(&owner, kind, cast, &q),
                Some(k) => attribute_single(&owner, kind, &k, cast, &q),
            }
        }
        ["ManyToOneRelationships"] => relationship_collection(
            &format!("{owner}/ManyToOneRelationships"),
            relationships::many_to_one(kind),
            &q,
        ),
        ["OneToManyRelationships"] => relationship_collection(
            &format!("{owner}/OneToManyRelationships"),
            relationships::one_to_many(kind),
            &q,
        ),
        // No alternate key is documented for these tables (reference §1.1).
        ["Keys"] => Ok(DvResponse::json(
            200,
            &json!({"@odata.context": format!("{owner}/Keys"), "value": []}),
        )),
        [other, ..] => Err(DvError::segment_not_found(other)),
    }
}

/// `Name` → `None`; `Name(<key>)` → the key text; anything else is an unknown segment.
fn key_of(segment: &str, name: &str) -> Result<Option<String>, DvError> {
    if segment == name {
        return Ok(None);
    }
    let inner = segment
        .strip_prefix(name)
        .and_then(|s| s.strip_prefix('('))
        .ok_or_else(|| DvError::segment_not_found(segment))?;
    let key = inner.strip_suffix(')').ok_or_else(|| {
        DvError::syntax(format!(
            "Bad Request - Error in query syntax. The key '{inner}' is not terminated."
        ))
    })?;
    Ok(Some(key.to_string()))
}

/// A key is `LogicalName='x'`, `MetadataId=<guid>` or a bare MetadataId.
enum Key {
    Logical(String),
    Id(String),
}

fn parse_key(key: &str) -> Result<Key, DvError> {
    if let Some(v) = key.strip_prefix("LogicalName=") {
        let name = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(|| {
                DvError::syntax(format!(
                    "Bad Request - Error in query syntax. The key value '{v}' must be a quoted string."
                ))
            })?;
        return Ok(Key::Logical(name.replace("''", "'")));
    }
    let id = key.strip_prefix("MetadataId=").unwrap_or(key);
    if is_guid(id) {
        return Ok(Key::Id(id.to_ascii_lowercase()));
    }
    Err(DvError::syntax(format!(
        "Bad Request - Error in query syntax. The key '{key}' is not a valid key of the metadata type."
    )))
}

fn find_entity(key: &str) -> Result<EntityKind, DvError> {
    match parse_key(key)? {
        Key::Logical(name) => EntityKind::from_logical(&name).ok_or_else(|| {
            DvError::new(
                404,
                "0x80040217",
                format!("Could not find an entity with specified entity name: {name}"),
            )
        }),
        Key::Id(id) => EntityKind::ALL
            .into_iter()
            .find(|k| entity::id(*k) == id)
            .ok_or_else(|| {
                DvError::new(
                    404,
                    "0x80040217",
                    format!("Could not find an entity with specified entity id: {id}"),
                )
            }),
    }
}

/// `Microsoft.Dynamics.CRM.PicklistAttributeMetadata` → `PicklistAttributeMetadata`.
fn cast_type(segment: &str) -> Result<&'static str, DvError> {
    const CASTS: [&str; 10] = [
        "PicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "StringAttributeMetadata",
        "LookupAttributeMetadata",
        "UniqueIdentifierAttributeMetadata",
        "DateTimeAttributeMetadata",
        "BooleanAttributeMetadata",
        "BigIntAttributeMetadata",
        "IntegerAttributeMetadata",
    ];
    segment
        .strip_prefix(NS)
        .and_then(|t| CASTS.into_iter().find(|c| *c == t))
        .ok_or_else(|| DvError::segment_not_found(segment))
}

fn entity_item(kind: EntityKind) -> Item {
    let attributes: Vec<Value> = attribute_items(kind)
        .into_iter()
        .map(|i| query::shape(&i, &MetaQuery::default(), "AttributeMetadata"))
        .collect();
    let rel = |v: Vec<serde_json::Map<String, Value>>| {
        Value::Array(v.into_iter().map(Value::Object).collect())
    };
    Item {
        type_name: "EntityMetadata",
        props: entity::properties(kind),
        navs: vec![
            ("Attributes", Value::Array(attributes)),
            (
                "ManyToOneRelationships",
                rel(relationships::many_to_one(kind)),
            ),
            (
                "OneToManyRelationships",
                rel(relationships::one_to_many(kind)),
            ),
            ("Keys", json!([])),
        ],
    }
}

fn entity_navs() -> Vec<NavScope> {
    let names = |v: Vec<serde_json::Map<String, Value>>| -> Vec<String> {
        v.first()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    vec![
        (
            "Attributes",
            "AttributeMetadata",
            ATTRIBUTE_BASE.iter().map(|s| s.to_string()).collect(),
        ),
        (
            "ManyToOneRelationships",
            "OneToManyRelationshipMetadata",
            names(relationships::many_to_one(EntityKind::Consent)),
        ),
        (
            "OneToManyRelationships",
            "OneToManyRelationshipMetadata",
            names(relationships::many_to_one(EntityKind::Consent)),
        ),
        ("Keys", "EntityKeyMetadata", vec!["MetadataId".into()]),
    ]
}

fn entity_props() -> Vec<String> {
    entity::properties(EntityKind::Contact)
        .keys()
        .cloned()
        .collect()
}

fn entity_collection(root: &str, q: &MetaQuery) -> Result<DvResponse, DvError> {
    let items: Vec<Item> = EntityKind::ALL.into_iter().map(entity_item).collect();
    query::check(q, "EntityMetadata", &entity_props(), &items, &entity_navs())?;
    let value: Vec<Value> = query::filtered(&items, q)
        .into_iter()
        .map(|i| query::shape(i, q, "EntityMetadata"))
        .collect();
    Ok(DvResponse::json(
        200,
        &json!({
            "@odata.context": format!("{root}EntityDefinitions{}", query::context_columns(q)),
            "value": value,
        }),
    ))
}

fn entity_single(root: &str, kind: EntityKind, q: &MetaQuery) -> Result<DvResponse, DvError> {
    let items = vec![entity_item(kind)];
    query::check(q, "EntityMetadata", &entity_props(), &items, &entity_navs())?;
    let mut body = json!({
        "@odata.context": format!("{root}EntityDefinitions{}/$entity", query::context_columns(q)),
    });
    if let (Value::Object(out), Value::Object(item)) =
        (&mut body, query::shape(&items[0], q, "EntityMetadata"))
    {
        out.extend(item);
    }
    Ok(DvResponse::json(200, &body))
}

fn attribute_items(kind: EntityKind) -> Vec<Item> {
    attribute::all(kind)
        .into_iter()
        .map(|a| Item {
            type_name: a.metadata_type,
            props: a.props,
            navs: a
                .option_set
                .map(|o| vec![("OptionSet", o)])
                .unwrap_or_default(),
        })
        .collect()
}

/// What `$select` and `$expand` accept on attributes of the declared (cast) type.
fn attribute_scope(items: &[Item], declared: &str) -> (Vec<String>, Vec<NavScope>) {
    if declared == "AttributeMetadata" {
        return (
            ATTRIBUTE_BASE.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
        );
    }
    let props = items
        .first()
        .map(|i| i.props.keys().cloned().collect())
        .unwrap_or_else(|| ATTRIBUTE_BASE.iter().map(|s| s.to_string()).collect());
    let navs = if ENUM_TYPES.contains(&declared) {
        let option_props = items
            .iter()
            .find_map(|i| i.navs.first())
            .and_then(|(_, v)| v.as_object())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        vec![("OptionSet", "OptionSetMetadata", option_props)]
    } else {
        Vec::new()
    };
    (props, navs)
}

fn cast_suffix(cast: Option<&str>) -> String {
    cast.map(|c| format!("/{NS}{c}")).unwrap_or_default()
}

fn attribute_collection(
    owner: &str,
    kind: EntityKind,
    cast: Option<&'static str>,
    q: &MetaQuery,
) -> Result<DvResponse, DvError> {
    let declared = cast.unwrap_or("AttributeMetadata");
    let items: Vec<Item> = attribute_items(kind)
        .into_iter()
        .filter(|i| cast.is_none_or(|c| i.type_name == c))
        .collect();
    let (props, navs) = attribute_scope(&items, declared);
    query::check(q, declared, &props, &items, &navs)?;
    let value: Vec<Value> = query::filtered(&items, q)
        .into_iter()
        .map(|i| query::shape(i, q, declared))
        .collect();
    Ok(DvResponse::json(
        200,
        &json!({
            "@odata.context": format!("{owner}/Attributes{}{}", cast_suffix(cast), query::context_columns(q)),
            "value": value,
        }),
    ))
}

fn attribute_single(
    owner: &str,
    kind: EntityKind,
    key: &str,
    cast: Option<&'static str>,
    q: &MetaQuery,
) -> Result<DvResponse, DvError> {
    let wanted = parse_key(key)?;
    let item = attribute_items(kind)
        .into_iter()
        .find(|i| {
            let field = match &wanted {
                Key::Logical(_) => "LogicalName",
                Key::Id(_) => "MetadataId",
            };
            let (Key::Logical(v) | Key::Id(v)) = &wanted;
            i.props.get(field).and_then(Value::as_str) == Some(v.as_str())
        })
        .ok_or_else(|| {
            DvError::new(
                404,
                "0x80040217",
                format!(
                    "Could not find an attribute with specified key {key} on entity {}",
                    kind.def().logical
                ),
            )
        })?;
    if let Some(c) = cast
        && item.type_name != c
    {
        // The attribute is not of the cast type: the cast segment names nothing.
        return Err(DvError::segment_not_found(&format!("{NS}{c}")));
    }
    let declared = cast.unwrap_or("AttributeMetadata");
    let items = vec![item];
    let (props, navs) = attribute_scope(&items, declared);
    query::check(q, declared, &props, &items, &navs)?;
    let mut body = json!({
        "@odata.context": format!("{owner}/Attributes{}{}/$entity", cast_suffix(cast), query::context_columns(q)),
    });
    if let (Value::Object(out), Value::Object(shaped)) =
        (&mut body, query::shape(&items[0], q, declared))
    {
        out.extend(shaped);
    }
    Ok(DvResponse::json(200, &body))
}

fn relationship_collection(
    context: &str,
    rels: Vec<serde_json::Map<String, Value>>,
    q: &MetaQuery,
) -> Result<DvResponse, DvError> {
    let items: Vec<Item> = rels
        .into_iter()
        .map(|props| Item {
            type_name: "OneToManyRelationshipMetadata",
            props,
            navs: Vec::new(),
        })
        .collect();
    let props: Vec<String> = relationships::many_to_one(EntityKind::Consent)
        .first()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    query::check(q, "OneToManyRelationshipMetadata", &props, &items, &[])?;
    let value: Vec<Value> = query::filtered(&items, q)
        .into_iter()
        .map(|i| query::shape(i, q, "OneToManyRelationshipMetadata"))
        .collect();
    Ok(DvResponse::json(
        200,
        &json!({
            "@odata.context": format!("{context}{}", query::context_columns(q)),
            "value": value,
        }),
    ))
}
