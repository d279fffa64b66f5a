//! AttributeMetadata of the columns the emulator holds, typed like Dataverse types them.

use serde_json::{Map, Value, json};

use crate::dataverse::metadata::labels::{SetType, metadata_id, option_set};
use crate::dataverse::schema::{Column, EntityDef, EntityKind, Kind};

/// One column as the metadata API shows it.
pub struct Attribute {
    /// Derived metadata type, e.g. `PicklistAttributeMetadata`.
    pub metadata_type: &'static str,
    /// Properties (without `@odata.type` and without the `OptionSet` navigation property).
    pub props: Map<String, Value>,
    /// `OptionSet` for Picklist, State and Status columns.
    pub option_set: Option<Value>,
}

/// `(AttributeType, metadata type, AttributeTypeName)` of a column, and its logical name.
fn typing(def: &EntityDef, col: &Column) -> (&'static str, &'static str, &'static str, String) {
    let read = col.read_name();
    let lookup_logical = read
        .strip_prefix('_')
        .and_then(|r| r.strip_suffix("_value"))
        .map(str::to_string);
    match (col.kind, lookup_logical.as_deref()) {
        (Kind::Guid, Some("ownerid")) => (
            "Owner",
            "LookupAttributeMetadata",
            "OwnerType",
            "ownerid".into(),
        ),
        (Kind::Guid, Some(by)) => ("Lookup", "LookupAttributeMetadata", "LookupType", by.into()),
        (Kind::Lookup { .. }, _) => (
            "Lookup",
            "LookupAttributeMetadata",
            "LookupType",
            col.name.into(),
        ),
        (Kind::Guid, None) if col.name == def.pk => (
            "Uniqueidentifier",
            "UniqueIdentifierAttributeMetadata",
            "UniqueidentifierType",
            col.name.into(),
        ),
        (Kind::Guid, None) => (
            "Uniqueidentifier",
            "UniqueIdentifierAttributeMetadata",
            "UniqueidentifierType",
            col.name.into(),
        ),
        (Kind::Str(_), _) => (
            "String",
            "StringAttributeMetadata",
            "StringType",
            col.name.into(),
        ),
        (Kind::Choice(_), _) if col.name == "statecode" => (
            "State",
            "StateAttributeMetadata",
            "StateType",
            col.name.into(),
        ),
        (Kind::Choice(_), _) if col.name == "statuscode" => (
            "Status",
            "StatusAttributeMetadata",
            "StatusType",
            col.name.into(),
        ),
        (Kind::Choice(_), _) => (
            "Picklist",
            "PicklistAttributeMetadata",
            "PicklistType",
            col.name.into(),
        ),
        (Kind::Bool, _) => (
            "Boolean",
            "BooleanAttributeMetadata",
            "BooleanType",
            col.name.into(),
        ),
        (Kind::DateTime, _) => (
            "DateTime",
            "DateTimeAttributeMetadata",
            "DateTimeType",
            col.name.into(),
        ),
        (Kind::Int, _) if col.name == "versionnumber" => (
            "BigInt",
            "BigIntAttributeMetadata",
            "BigIntType",
            col.name.into(),
        ),
        (Kind::Int, _) => (
            "Integer",
            "IntegerAttributeMetadata",
            "IntegerType",
            col.name.into(),
        ),
    }
}

/// SchemaName: Pascal case on the system `contact` table, the logical name on the CI-J tables
/// except their primary keys and lookups (reference §1).
fn schema_name(def: &EntityDef, logical: &str) -> String {
    let system = match logical {
        "ownerid" => Some("OwnerId"),
        "createdby" => Some("CreatedBy"),
        "modifiedby" => Some("ModifiedBy"),
        "createdon" => Some("CreatedOn"),
        "modifiedon" => Some("ModifiedOn"),
        "versionnumber" => Some("VersionNumber"),
        _ => None,
    };
    if let Some(s) = system {
        return s.to_string();
    }
    if def.kind == EntityKind::Contact {
        let known = match logical {
            "contactid" => "ContactId",
            "emailaddress1" => "EMailAddress1",
            "emailaddress2" => "EMailAddress2",
            "emailaddress3" => "EMailAddress3",
            "firstname" => "FirstName",
            "lastname" => "LastName",
            "fullname" => "FullName",
            "mobilephone" => "MobilePhone",
            "donotemail" => "DoNotEMail",
            "donotbulkemail" => "DoNotBulkEMail",
            "statecode" => "StateCode",
            "statuscode" => "StatusCode",
            other => other,
        };
        return known.to_string();
    }
    match logical.strip_suffix("id") {
        Some(stem)
            if logical == def.pk
                || logical.ends_with("purposeid")
                || logical.ends_with("topicid") =>
        {
            format!("{stem}Id")
        }
        _ => logical.to_string(),
    }
}

fn required_level(def: &EntityDef, col: &Column, logical: &str) -> &'static str {
    if logical == def.pk || logical == "ownerid" || logical == "statecode" {
        "SystemRequired"
    } else if col.required || (def.kind == EntityKind::Contact && logical == "lastname") {
        "ApplicationRequired"
    } else {
        "None"
    }
}

/// Every column of a table, in schema order.
pub fn all(kind: EntityKind) -> Vec<Attribute> {
    let def = kind.def();
    def.columns.iter().map(|c| describe(def, c)).collect()
}

fn describe(def: &EntityDef, col: &Column) -> Attribute {
    let (attr_type, metadata_type, type_name, logical) = typing(def, col);
    let mut props = json!({
        "MetadataId": metadata_id("attribute", &format!("{}.{logical}", def.logical)),
        "LogicalName": logical,
        "SchemaName": schema_name(def, &logical),
        "EntityLogicalName": def.logical,
        "AttributeType": attr_type,
        "AttributeTypeName": {"Value": type_name},
        "IsPrimaryId": logical == def.pk,
        "IsPrimaryName": logical == def.primary_name,
        "IsValidForCreate": col.writable,
        "IsValidForUpdate": col.writable && logical != def.pk,
        "IsValidForRead": true,
        "IsCustomAttribute": logical.starts_with("msdynmkt_"),
        "IsManaged": true,
        "RequiredLevel": {
            "Value": required_level(def, col, &logical),
            "CanBeChanged": true,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "HasChanged": null,
    });
    let mut option = None;
    match col.kind {
        Kind::Str(max) => {
            let format = if logical.starts_with("emailaddress") {
                "Email"
            } else {
                "Text"
            };
            props["MaxLength"] = json!(max);
            props["Format"] = json!(format);
            props["FormatName"] = json!({"Value": format});
        }
        Kind::Choice(set) => {
            let kind = match attr_type {
                "State" => SetType::State,
                "Status" => SetType::Status,
                _ => SetType::Picklist,
            };
            let default = if logical == "msdynmkt_source" {
                534120000
            } else {
                -1
            };
            props["DefaultFormValue"] = json!(default);
            option = Some(option_set(set, &format!("{}_{logical}", def.logical), kind));
        }
        Kind::Lookup { target, .. } => props["Targets"] = json!([target.def().logical]),
        Kind::Guid if attr_type == "Owner" => props["Targets"] = json!(["systemuser", "team"]),
        Kind::Guid if attr_type == "Lookup" => props["Targets"] = json!(["systemuser"]),
        Kind::DateTime => {
            let behavior = if logical == "msdynmkt_migrationtimestamp" {
                "TimeZoneIndependent"
            } else {
                "UserLocal"
            };
            props["Format"] = json!("DateAndTime");
            props["DateTimeBehavior"] = json!({"Value": behavior});
        }
        Kind::Bool => props["DefaultValue"] = json!(false),
        Kind::Guid | Kind::Int => {}
    }
    Attribute {
        metadata_type,
        props: match props {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        option_set: option,
    }
}
