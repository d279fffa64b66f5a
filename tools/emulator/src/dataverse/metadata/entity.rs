//! EntityMetadata of the four tables the emulator holds.

use serde_json::{Map, Value, json};

use crate::dataverse::metadata::labels::{label, metadata_id};
use crate::dataverse::schema::EntityKind;

/// Display name, SchemaName and CollectionSchemaName of a table (reference §1, §6).
fn names(kind: EntityKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        EntityKind::Contact => ("Contact", "Contact", "Contacts"),
        EntityKind::Consent => (
            "Contact Point Consent",
            "msdynmkt_contactpointconsent4",
            "msdynmkt_contactpointconsent4s",
        ),
        EntityKind::Purpose => ("Purpose", "msdynmkt_purpose", "msdynmkt_purposes"),
        EntityKind::Topic => ("Topic", "msdynmkt_topic", "msdynmkt_topics"),
    }
}

/// Stable MetadataId of a table.
pub fn id(kind: EntityKind) -> String {
    metadata_id("entity", kind.def().logical)
}

/// The table's EntityMetadata properties (navigation properties are added by the caller).
pub fn properties(kind: EntityKind) -> Map<String, Value> {
    let def = kind.def();
    let (display, schema, collection_schema) = names(kind);
    let props = json!({
        "MetadataId": id(kind),
        "LogicalName": def.logical,
        "SchemaName": schema,
        "EntitySetName": def.set,
        "LogicalCollectionName": def.set,
        "CollectionSchemaName": collection_schema,
        "PrimaryIdAttribute": def.pk,
        "PrimaryNameAttribute": def.primary_name,
        "DisplayName": label(display, def.logical),
        "OwnershipType": "UserOwned",
        "TableType": "Standard",
        "IsCustomEntity": kind != EntityKind::Contact,
        "IsActivity": false,
        "IsPrivate": false,
        "IsManaged": true,
        // The emulator keeps no change-tracking log (no delta links), so it reports the feature off.
        "ChangeTrackingEnabled": false,
        "HasChanged": null,
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
