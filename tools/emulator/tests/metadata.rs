//! Metadata subset Microsoft's clients read (EntityDefinitions, Attributes, option sets).
mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;

const CONSENT_DEF: &str = "EntityDefinitions(LogicalName='msdynmkt_contactpointconsent4')";

fn option(attr: &Value, value: i64) -> &Value {
    attr["OptionSet"]["Options"]
        .as_array()
        .expect("options")
        .iter()
        .find(|o| o["Value"] == value)
        .expect("option present")
}

#[tokio::test]
async fn entity_definitions_filtered_by_logical_name_answer_the_selected_properties_and_the_key() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'contact'")
        .await;
    assert_eq!(s, 200);
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(rows[0]["EntitySetName"], "contacts");
    assert_eq!(rows[0]["PrimaryIdAttribute"], "contactid");
    assert!(rows[0]["MetadataId"].as_str().unwrap().len() == 36);
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/api/data/v9.2/$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute)",
            env.emu.base_url()
        )
    );
}

#[tokio::test]
async fn entity_definition_by_logical_name_has_primary_name_and_a_stable_metadata_id() {
    let env = Env::start().await;
    let (s, one) = env.get_json(CONSENT_DEF).await;
    assert_eq!(s, 200);
    assert_eq!(one["EntitySetName"], "msdynmkt_contactpointconsent4s");
    assert_eq!(one["PrimaryIdAttribute"], "msdynmkt_contactpointconsent4id");
    assert_eq!(one["PrimaryNameAttribute"], "msdynmkt_contactpointvalue");
    let other = Env::start().await;
    let (_, again) = other.get_json(CONSENT_DEF).await;
    assert_eq!(one["MetadataId"], again["MetadataId"]);
}

#[tokio::test]
async fn entity_definition_by_metadata_id_is_the_same_table() {
    let env = Env::start().await;
    let (_, by_name) = env
        .get_json("EntityDefinitions(LogicalName='msdynmkt_purpose')?$select=LogicalName")
        .await;
    let id = by_name["MetadataId"].as_str().unwrap();
    let (s, by_id) = env
        .get_json(&format!("EntityDefinitions({id})?$select=EntitySetName"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(by_id["EntitySetName"], "msdynmkt_purposes");
}

#[tokio::test]
async fn unknown_table_by_key_is_404_with_an_odata_error() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("EntityDefinitions(LogicalName='account')")
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x80040217");
    assert_eq!(
        error_message(&v),
        "Could not find an entity with specified entity name: account"
    );
}

#[tokio::test]
async fn unknown_table_in_a_filter_is_an_empty_collection() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("EntityDefinitions?$filter=LogicalName eq 'account'")
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn unknown_property_in_select_is_400_on_entity_metadata() {
    let env = Env::start().await;
    let (s, v) = env.get_json("EntityDefinitions?$select=logicalname").await;
    assert_eq!(s, 400);
    assert_eq!(
        error_message(&v),
        "Could not find a property named 'logicalname' on type 'Microsoft.Dynamics.CRM.EntityMetadata'."
    );
}

#[tokio::test]
async fn attributes_carry_their_dataverse_types() {
    let env = Env::start().await;
    let (s, v) = env.get_json(&format!("{CONSENT_DEF}/Attributes")).await;
    assert_eq!(s, 200);
    let attrs = v["value"].as_array().unwrap();
    let find = |name: &str| {
        attrs
            .iter()
            .find(|a| a["LogicalName"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(find("msdynmkt_value")["AttributeType"], "Picklist");
    assert_eq!(
        find("msdynmkt_value")["@odata.type"],
        "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    );
    assert_eq!(find("msdynmkt_purposeid")["AttributeType"], "Lookup");
    assert_eq!(
        find("msdynmkt_purposeid")["SchemaName"],
        "msdynmkt_purposeId"
    );
    assert_eq!(
        find("msdynmkt_purposeid")["Targets"],
        serde_json::json!(["msdynmkt_purpose"])
    );
    assert_eq!(find("ownerid")["AttributeType"], "Owner");
    assert_eq!(find("modifiedby")["AttributeType"], "Lookup");
    assert_eq!(find("statecode")["AttributeType"], "State");
    assert_eq!(find("msdynmkt_reason")["MaxLength"], 500);
    assert_eq!(find("msdynmkt_contactpointconsent4id")["IsPrimaryId"], true);
    assert_eq!(
        find("msdynmkt_contactpointvalue")["RequiredLevel"]["Value"],
        "ApplicationRequired"
    );
}

#[tokio::test]
async fn attributes_by_metadata_id_of_the_table_select_base_properties() {
    let env = Env::start().await;
    let (_, t) = env
        .get_json("EntityDefinitions(LogicalName='contact')")
        .await;
    let id = t["MetadataId"].as_str().unwrap();
    let (s, v) = env
        .get_json(&format!("EntityDefinitions({id})/Attributes?$select=LogicalName,AttributeType&$filter=AttributeType eq 'String'"))
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"emailaddress1") && names.contains(&"fullname"),
        "{names:?}"
    );
    let (s, v) = env
        .get_json(&format!(
            "EntityDefinitions({id})/Attributes?$select=MaxLength"
        ))
        .await;
    assert_eq!(s, 400, "MaxLength belongs to a derived type: {v}");
}

#[tokio::test]
async fn picklist_cast_with_expanded_option_set_gives_values_and_labels() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json(&format!(
            "{CONSENT_DEF}/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)"
        ))
        .await;
    assert_eq!(s, 200);
    let attrs = v["value"].as_array().unwrap();
    let mut names: Vec<&str> = attrs
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "msdynmkt_contactpointconsenttype",
            "msdynmkt_contactpointtype",
            "msdynmkt_logicalreason",
            "msdynmkt_source",
            "msdynmkt_value"
        ]
    );
    let value = attrs
        .iter()
        .find(|a| a["LogicalName"] == "msdynmkt_value")
        .unwrap();
    let opted_in = option(value, 534120001);
    assert_eq!(opted_in["Label"]["UserLocalizedLabel"]["Label"], "Opted In");
    assert_eq!(opted_in["Label"]["LocalizedLabels"][0]["Label"], "Opted In");
    assert_eq!(
        opted_in["Label"]["LocalizedLabels"][0]["LanguageCode"],
        1033
    );
    assert!(
        value.get("@odata.type").is_none(),
        "declared type needs no annotation"
    );
}

#[tokio::test]
async fn single_attribute_cast_expands_its_global_option_set() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json(&format!(
            "{CONSENT_DEF}/Attributes(LogicalName='msdynmkt_source')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$expand=OptionSet"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["DefaultFormValue"], 534120000);
    assert_eq!(v["OptionSet"]["Name"], "msdynmkt_consentsource");
    assert_eq!(v["OptionSet"]["IsGlobal"], true);
    assert_eq!(
        option(&v, 534120007)["Label"]["UserLocalizedLabel"]["Label"],
        "Email - list-unsubscribe"
    );
}

#[tokio::test]
async fn purpose_option_sets_carry_type_and_enforcement_labels() {
    let env = Env::start().await;
    let (_, v) = env
        .get_json("EntityDefinitions(LogicalName='msdynmkt_purpose')/Attributes(LogicalName='msdynmkt_enforcementmodel')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$expand=OptionSet")
        .await;
    assert_eq!(
        option(&v, 534120001)["Label"]["UserLocalizedLabel"]["Label"],
        "Non-Restrictive"
    );
}

#[tokio::test]
async fn picklist_cast_of_a_string_attribute_is_404() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json(&format!(
            "{CONSENT_DEF}/Attributes(LogicalName='msdynmkt_reason')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        ))
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x8006088a");
}

#[tokio::test]
async fn unknown_attribute_is_404() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json(&format!(
            "{CONSENT_DEF}/Attributes(LogicalName='msdynmkt_nope')"
        ))
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x80040217");
}

#[tokio::test]
async fn many_to_one_relationships_name_the_case_sensitive_navigation_property() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json(&format!(
            "{CONSENT_DEF}/ManyToOneRelationships?$select=ReferencingAttribute,ReferencingEntityNavigationPropertyName&$filter=ReferencingAttribute eq 'msdynmkt_purposeid'"
        ))
        .await;
    assert_eq!(s, 200);
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["ReferencingEntityNavigationPropertyName"],
        "msdynmkt_purposeId"
    );
}

#[tokio::test]
async fn tables_have_no_alternate_keys() {
    let env = Env::start().await;
    let (s, v) = env.get_json(&format!("{CONSENT_DEF}/Keys")).await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], serde_json::json!([]));
}

#[tokio::test]
async fn metadata_is_read_only() {
    let env = Env::start().await;
    let r = env
        .dv(Method::POST, "EntityDefinitions")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
