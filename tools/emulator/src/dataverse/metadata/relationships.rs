//! One-to-many relationships between the tables held here (reference §1.1 "Many-to-one").

use serde_json::{Map, Value, json};

use crate::dataverse::metadata::labels::metadata_id;
use crate::dataverse::schema::EntityKind;

/// `(referencing table, lookup column, relationship SchemaName)`; the referenced side is the
/// lookup's target, and the nav property on it is named after the relationship.
const RELATIONSHIPS: [(EntityKind, &str, &str); 3] = [
    (
        EntityKind::Consent,
        "msdynmkt_purposeid",
        "msdynmkt_msdynmkt_contactpointconsent4_purposeId_m",
    ),
    (
        EntityKind::Consent,
        "msdynmkt_topicid",
        "msdynmkt_msdynmkt_contactpointconsent4_topicId_msd",
    ),
    (
        EntityKind::Topic,
        "msdynmkt_purposeid",
        "msdynmkt_msdynmkt_purpose_msdynmkt_topic",
    ),
];

fn describe(referencing: EntityKind, column: &str, schema: &str) -> Option<Map<String, Value>> {
    let def = referencing.def();
    let col = def.column(column)?;
    let crate::dataverse::schema::Kind::Lookup { nav, target } = col.kind else {
        return None;
    };
    let v = json!({
        "MetadataId": metadata_id("relationship", schema),
        "SchemaName": schema,
        "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": target.def().logical,
        "ReferencedAttribute": target.def().pk,
        "ReferencingEntity": def.logical,
        "ReferencingAttribute": column,
        "ReferencingEntityNavigationPropertyName": nav,
        "ReferencedEntityNavigationPropertyName": schema,
        "IsCustomRelationship": true,
        "IsManaged": true,
        "CascadeConfiguration": {"Delete": "RemoveLink", "Assign": "NoCascade", "Share": "NoCascade", "Unshare": "NoCascade", "Reparent": "NoCascade", "Merge": "NoCascade"},
    });
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Relationships in which `kind` holds the lookup.
pub fn many_to_one(kind: EntityKind) -> Vec<Map<String, Value>> {
    RELATIONSHIPS
        .iter()
        .filter(|(k, _, _)| *k == kind)
        .filter_map(|(k, c, s)| describe(*k, c, s))
        .collect()
}

/// Relationships in which `kind` is the referenced table.
pub fn one_to_many(kind: EntityKind) -> Vec<Map<String, Value>> {
    RELATIONSHIPS
        .iter()
        .filter_map(|(k, c, s)| describe(*k, c, s))
        .filter(|r| r.get("ReferencedEntity").and_then(Value::as_str) == Some(kind.def().logical))
        .collect()
}
