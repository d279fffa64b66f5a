//! Label, option and option-set JSON shapes of the metadata API, and stable MetadataIds.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::dataverse::options::OptionSet;

/// Namespace of the MetadataIds the emulator derives (any fixed UUID works).
const METADATA_NAMESPACE: Uuid = Uuid::from_u128(0x3a0e_61d4_5b2f_4a8c_9d7e_0000_0000_0d0d);

/// The language every label is published in (English).
pub const LANGUAGE: u32 = 1033;

/// Stable MetadataId of a metadata item (`what` = "entity", "attribute", "optionset", …).
pub fn metadata_id(what: &str, name: &str) -> String {
    Uuid::new_v5(&METADATA_NAMESPACE, format!("{what}:{name}").as_bytes()).to_string()
}

/// `{"LocalizedLabels":[…],"UserLocalizedLabel":{…}}` for one English text.
pub fn label(text: &str, owner: &str) -> Value {
    let one = json!({
        "Label": text,
        "LanguageCode": LANGUAGE,
        "IsManaged": true,
        "MetadataId": metadata_id("label", &format!("{owner}:{text}")),
        "HasChanged": null,
    });
    json!({"LocalizedLabels": [one.clone()], "UserLocalizedLabel": one})
}

fn empty_label() -> Value {
    json!({"LocalizedLabels": [], "UserLocalizedLabel": null})
}

/// Kind of enumeration an option set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetType {
    Picklist,
    State,
    Status,
}

/// The OptionSet of a choice column. `local_name` names a local set (`<entity>_<attribute>`).
pub fn option_set(set: &OptionSet, local_name: &str, kind: SetType) -> Value {
    let name = set.global.unwrap_or(local_name);
    let options: Vec<Value> = set
        .options
        .iter()
        .map(|(value, text)| {
            let mut o = json!({
                "Value": value,
                "Color": null,
                "IsManaged": true,
                "ExternalValue": "",
                "ParentValues": [],
                "Tag": null,
                "IsHidden": false,
                "MetadataId": null,
                "HasChanged": null,
                "Label": label(text, &format!("{name}:{value}")),
                "Description": empty_label(),
            });
            // State options name their default status; status options their state (1 ↔ 0, 2 ↔ 1).
            match kind {
                SetType::State => {
                    o["DefaultStatus"] = json!(value + 1);
                    o["InvariantName"] = json!(text);
                }
                SetType::Status => o["State"] = json!(value - 1),
                SetType::Picklist => {}
            }
            o
        })
        .collect();
    json!({
        "MetadataId": metadata_id("optionset", name),
        "HasChanged": null,
        "IsCustomOptionSet": set.global.is_some(),
        "IsGlobal": set.global.is_some(),
        "IsManaged": true,
        "Name": name,
        "ExternalTypeName": "",
        "OptionSetType": match kind {
            SetType::Picklist => "Picklist",
            SetType::State => "State",
            SetType::Status => "Status",
        },
        "IntroducedVersion": "1.0",
        "ParentOptionSetName": null,
        "Description": empty_label(),
        "DisplayName": empty_label(),
        "Options": options,
    })
}
