//! Configuration loading: each accepted form and each error, one test apiece.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::domain::didomi::WebhookKind;

fn document() -> Value {
    json!({
        "type_id": "microsoft-dynamics-cpc",
        "authentication": {
            "client_id": "535fb089-9ff3-47b6-9bfb-4f1264799865",
            "client_secret": "s3cr3t~value",
            "tenant_id": "72f988bf-0000-0000-0000-000000000001",
            "instance": "https://contoso.crm4.dynamics.com"
        },
        "properties": {},
        "mappings": [
            {"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "marketing"},
            {"id": "topic:23db4a4d-ba9f-f011-bbd3-6045bd194648", "value": "marketing/topics/offers"}
        ],
        "upsert_mode": false
    })
}

fn load(document: &Value) -> Result<LoadedConfig, ConfigErrors> {
    IntegrationConfig::from_document(document, false)
}

fn errors_of(document: &Value) -> ConfigErrors {
    load(document).expect_err("the document should be rejected")
}

fn with(mut document: Value, pointer: &str, value: Value) -> Value {
    *document
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    document
}

fn without(mut document: Value, parent: &str, key: &str) -> Value {
    document
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    document
}

#[test]
fn valid_document_loads_with_documented_defaults() {
    let loaded = load(&document()).unwrap();
    let config = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(config.rules.mappings.len(), 2);
    assert!(!config.upsert_mode);
    assert_eq!(config.rules.regulations, ["gdpr"]);
    assert_eq!(
        config
            .rules
            .webhook_types
            .iter()
            .map(WebhookKind::as_str)
            .collect::<Vec<_>>(),
        ["event.created", "event.updated"]
    );
    assert_eq!(config.properties.contact_match_field, "emailaddress1");
    assert_eq!(config.properties.contact_point_field, "emailaddress1");
    assert_eq!(config.properties.consent_source, 534_120_000);
    assert_eq!(
        config.credentials.scope(),
        "https://contoso.crm4.dynamics.com/.default"
    );
}

#[test]
fn debug_output_redacts_the_client_secret() {
    let config = load(&document()).unwrap().config;
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t~value"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn wrong_type_id_is_rejected() {
    let errors = errors_of(&with(document(), "/type_id", json!("hubspot")));
    assert!(errors.mentions("type_id"), "{errors}");
    assert!(errors.to_string().contains("microsoft-dynamics-cpc"));
}

#[test]
fn absent_type_id_is_accepted() {
    assert!(load(&without(document(), "", "type_id")).is_ok());
}

#[test]
fn missing_authentication_is_rejected() {
    assert!(errors_of(&without(document(), "", "authentication")).mentions("authentication"));
}

#[test]
fn missing_client_id_is_rejected() {
    let errors = errors_of(&without(document(), "/authentication", "client_id"));
    assert!(errors.mentions("authentication.client_id"), "{errors}");
}

#[test]
fn client_id_that_is_not_a_guid_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/authentication/client_id",
        json!("my-app"),
    ));
    assert!(
        errors.to_string().contains("Application (client) ID"),
        "{errors}"
    );
}

#[test]
fn missing_client_secret_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/authentication/client_secret",
        json!(""),
    ));
    assert!(errors.mentions("authentication.client_secret"), "{errors}");
}

#[test]
fn missing_tenant_id_is_rejected() {
    assert!(
        errors_of(&without(document(), "/authentication", "tenant_id"))
            .mentions("authentication.tenant_id")
    );
}

#[test]
fn tenant_id_with_url_characters_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/authentication/tenant_id",
        json!("contoso/../x"),
    ));
    assert!(errors.mentions("authentication.tenant_id"), "{errors}");
}

#[test]
fn tenant_domain_name_is_accepted() {
    assert!(
        load(&with(
            document(),
            "/authentication/tenant_id",
            json!("contoso.onmicrosoft.com")
        ))
        .is_ok()
    );
}

#[test]
fn missing_instance_is_rejected() {
    assert!(
        errors_of(&without(document(), "/authentication", "instance"))
            .mentions("authentication.instance")
    );
}

#[test]
fn http_instance_is_rejected_without_allow_insecure_http() {
    let errors = errors_of(&with(
        document(),
        "/authentication/instance",
        json!("http://127.0.0.1:8080"),
    ));
    assert!(
        errors.to_string().contains("ALLOW_INSECURE_HTTP=true"),
        "{errors}"
    );
}

#[test]
fn http_loopback_instance_is_accepted_with_allow_insecure_http() {
    let doc = with(
        document(),
        "/authentication/instance",
        json!("http://127.0.0.1:8080"),
    );
    assert!(IntegrationConfig::from_document(&doc, true).is_ok());
}

#[test]
fn instance_outside_dynamics_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/authentication/instance",
        json!("https://contoso.example.com"),
    ));
    assert!(errors.mentions("authentication.instance"), "{errors}");
}

#[test]
fn authentication_of_wrong_type_is_rejected() {
    assert!(
        errors_of(&with(document(), "/authentication", json!("secret"))).mentions("authentication")
    );
}

#[test]
fn mapping_id_without_kind_prefix_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/mappings/0/id",
        json!("10000000-0000-0000-0000-000000000003"),
    ));
    assert!(errors.mentions("mappings[0].id"), "{errors}");
}

#[test]
fn mapping_id_with_malformed_guid_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/mappings/1/id",
        json!("topic:not-a-guid"),
    ));
    assert!(errors.mentions("mappings[1].id"), "{errors}");
    assert!(errors.to_string().contains("not a GUID"));
}

#[test]
fn mapping_with_empty_selector_is_rejected() {
    let errors = errors_of(&with(document(), "/mappings/0/value", json!("")));
    assert!(errors.mentions("mappings[0].value"), "{errors}");
}

#[test]
fn mapping_with_malformed_selector_is_rejected() {
    let errors = errors_of(&with(document(), "/mappings/1/value", json!("a/b/c/d")));
    assert!(errors.mentions("mappings[1].value"), "{errors}");
}

#[test]
fn mapping_value_of_wrong_type_is_rejected() {
    assert!(
        errors_of(&with(document(), "/mappings/0/value", json!(42))).mentions("mappings[0].value")
    );
}

#[test]
fn duplicate_mapping_is_rejected() {
    let doc = with(
        document(),
        "/mappings",
        json!([
            {"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "marketing"},
            {"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "marketing"}
        ]),
    );
    let errors = errors_of(&doc);
    assert!(errors.mentions("mappings[1].value"), "{errors}");
    assert!(errors.to_string().contains("duplicates"));
}

#[test]
fn same_target_with_different_selectors_is_allowed() {
    let doc = with(
        document(),
        "/mappings",
        json!([
            {"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "marketing"},
            {"id": "purpose:10000000-0000-0000-0000-000000000003", "value": "newsletter"}
        ]),
    );
    assert_eq!(load(&doc).unwrap().config.rules.mappings.len(), 2);
}

#[test]
fn missing_mappings_are_rejected() {
    assert!(errors_of(&without(document(), "", "mappings")).mentions("mappings"));
}

#[test]
fn empty_mappings_are_rejected() {
    assert!(errors_of(&with(document(), "/mappings", json!([]))).mentions("mappings"));
}

#[test]
fn upsert_mode_must_be_boolean() {
    assert!(errors_of(&with(document(), "/upsert_mode", json!("yes"))).mentions("upsert_mode"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let doc = with(
        with(document(), "/type_id", json!("x")),
        "/authentication/instance",
        json!("ftp://x"),
    );
    let errors = errors_of(&doc);
    assert!(
        errors.mentions("type_id") && errors.mentions("authentication.instance"),
        "{errors}"
    );
    assert!(
        errors
            .to_string()
            .starts_with("invalid configuration (2 problems)"),
        "{errors}"
    );
}

#[test]
fn unknown_keys_warn_but_load() {
    let mut doc = document();
    doc["organization_id"] = json!("acme");
    doc["authentication"]["resource"] = json!("x");
    doc["properties"]["batch_size"] = json!(10);
    let loaded = load(&doc).unwrap();
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
}

#[test]
fn regulations_property_is_lower_cased() {
    let loaded = load(&with(
        document(),
        "/properties",
        json!({"regulations": ["GDPR", "cpra"]}),
    ))
    .unwrap();
    assert_eq!(loaded.config.rules.regulations, ["gdpr", "cpra"]);
}

#[test]
fn empty_regulations_property_is_rejected() {
    assert!(
        errors_of(&with(document(), "/properties", json!({"regulations": []})))
            .mentions("properties.regulations")
    );
}

#[test]
fn unknown_webhook_type_property_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/properties",
        json!({"webhook_types": ["event.created", "event.moved"]}),
    ));
    assert!(errors.mentions("properties.webhook_types"), "{errors}");
}

#[test]
fn webhook_types_property_enables_user_webhooks() {
    let loaded = load(&with(
        document(),
        "/properties",
        json!({"webhook_types": ["user.updated"]}),
    ))
    .unwrap();
    assert!(
        loaded
            .config
            .rules
            .webhook_types
            .contains(&WebhookKind::UserUpdated)
    );
    assert!(
        !loaded
            .config
            .rules
            .webhook_types
            .contains(&WebhookKind::EventCreated)
    );
}

#[test]
fn contact_match_field_must_be_a_logical_name() {
    let errors = errors_of(&with(
        document(),
        "/properties",
        json!({"contact_match_field": "emailaddress1 eq 'x' or 1"}),
    ));
    assert!(
        errors.mentions("properties.contact_match_field"),
        "{errors}"
    );
}

#[test]
fn contact_point_field_can_be_changed() {
    let loaded = load(&with(
        document(),
        "/properties",
        json!({"contact_point_field": "emailaddress2"}),
    ))
    .unwrap();
    assert_eq!(
        loaded.config.properties.contact_point_field,
        "emailaddress2"
    );
}

#[test]
fn consent_source_accepts_names_and_numbers() {
    for (raw, expected) in [
        (json!("Preference Center"), 534_120_004),
        (json!(534_120_001), 534_120_001),
    ] {
        let loaded = load(&with(
            document(),
            "/properties",
            json!({"consent_source": raw}),
        ))
        .unwrap();
        assert_eq!(loaded.config.properties.consent_source, expected);
    }
}

#[test]
fn unknown_consent_source_is_rejected() {
    let errors = errors_of(&with(
        document(),
        "/properties",
        json!({"consent_source": 5}),
    ));
    assert!(errors.mentions("properties.consent_source"), "{errors}");
}

#[test]
fn value_preferences_must_map_to_strings() {
    let errors = errors_of(&with(
        document(),
        "/properties",
        json!({"value_preferences": {"offers": 1}}),
    ));
    assert!(
        errors.mentions("properties.value_preferences.offers"),
        "{errors}"
    );
}

#[test]
fn properties_of_wrong_type_are_rejected() {
    assert!(errors_of(&with(document(), "/properties", json!([]))).mentions("properties"));
}

// --- sources -------------------------------------------------------------------

#[test]
fn secret_holding_the_whole_document_is_used_as_is() {
    let (merged, warnings) = merge_documents(&document().to_string(), None).unwrap();
    assert_eq!(merged, document());
    assert!(warnings.is_empty());
}

#[test]
fn secret_holding_only_authentication_is_completed_by_integration_config() {
    let secret = document()["authentication"].to_string();
    let env = json!({"mappings": document()["mappings"], "upsert_mode": true}).to_string();
    let (merged, _) = merge_documents(&secret, Some(&env)).unwrap();
    let config = load(&merged).unwrap().config;
    assert!(config.upsert_mode);
    assert_eq!(
        config.credentials.client_id,
        "535fb089-9ff3-47b6-9bfb-4f1264799865"
    );
}

#[test]
fn secret_wins_over_integration_config_with_a_warning() {
    let env = json!({"upsert_mode": true, "properties": {"regulations": ["cpra"], "consent_source": "loaded"}});
    let secret = with(document(), "/properties", json!({"regulations": ["gdpr"]}));
    let (merged, warnings) = merge_documents(&secret.to_string(), Some(&env.to_string())).unwrap();
    assert_eq!(merged["upsert_mode"], json!(false));
    assert_eq!(merged["properties"]["regulations"], json!(["gdpr"]));
    assert_eq!(merged["properties"]["consent_source"], json!("loaded"));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn credentials_in_integration_config_are_refused() {
    let env = json!({"authentication": {"client_secret": "x"}}).to_string();
    let errors = merge_documents(&document().to_string(), Some(&env)).unwrap_err();
    assert!(
        errors.mentions("INTEGRATION_CONFIG.authentication"),
        "{errors}"
    );
}

#[test]
fn secret_that_is_not_json_is_rejected_without_echoing_it() {
    let errors = merge_documents("client_secret=hunter2", None).unwrap_err();
    assert!(errors.mentions("SECRET_ID"), "{errors}");
    assert!(!errors.to_string().contains("hunter2"), "{errors}");
}

#[test]
fn integration_config_that_is_not_json_is_rejected() {
    let errors = merge_documents(&document().to_string(), Some("{mappings: []}")).unwrap_err();
    assert!(errors.mentions("INTEGRATION_CONFIG"), "{errors}");
}

#[test]
fn credentials_are_read_from_either_secret_form() {
    let whole = Credentials::from_json(&document(), false).unwrap();
    let bare = Credentials::from_json(&document()["authentication"], false).unwrap();
    assert_eq!(whole, bare);
}

// --- environment -----------------------------------------------------------------

fn environment(vars: &[(&str, &str)]) -> Result<Environment, ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Environment::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn environment_defaults_to_public_entra_and_https_only() {
    let env = environment(&[("SECRET_ID", "didomi/dynamics")]).unwrap();
    assert_eq!(env.authority.as_str(), "https://login.microsoftonline.com/");
    assert!(!env.allow_insecure_http);
    assert_eq!(env.secret_id.as_deref(), Some("didomi/dynamics"));
}

#[test]
fn allow_insecure_http_must_be_a_boolean() {
    assert!(
        environment(&[("ALLOW_INSECURE_HTTP", "maybe")])
            .unwrap_err()
            .mentions("ALLOW_INSECURE_HTTP")
    );
}

#[test]
fn parallel_requests_default_to_four_and_take_one_to_fifty_two() {
    assert_eq!(environment(&[]).unwrap().max_parallel, 4);
    assert_eq!(
        environment(&[("DATAVERSE_MAX_PARALLEL", "8")])
            .unwrap()
            .max_parallel,
        8
    );
    for refused in ["0", "53", "four", "-1"] {
        let errors = environment(&[("DATAVERSE_MAX_PARALLEL", refused)]).unwrap_err();
        assert!(
            errors.mentions("DATAVERSE_MAX_PARALLEL"),
            "{refused}: {errors}"
        );
    }
}

#[test]
fn authority_outside_entra_is_rejected() {
    let errors = environment(&[("AZURE_AUTHORITY_HOST", "https://login.example.com")]).unwrap_err();
    assert!(errors.mentions("AZURE_AUTHORITY_HOST"), "{errors}");
}

#[test]
fn loopback_http_authority_needs_allow_insecure_http() {
    assert!(environment(&[("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9")]).is_err());
    let env = environment(&[
        ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ("ALLOW_INSECURE_HTTP", "true"),
    ]);
    assert!(env.is_ok());
}

#[test]
fn reverse_sync_defaults_to_end_user_sources_and_opt_outs_only() {
    let config = load(&document()).unwrap().config;
    let settings = &config.properties.reverse_sync;
    assert!(!settings.opt_ins);
    assert_eq!(
        settings.sources.iter().copied().collect::<Vec<_>>(),
        [534_120_001, 534_120_004, 534_120_006, 534_120_007]
    );
}

#[test]
fn reverse_sync_sources_and_opt_ins_are_read_and_checked() {
    let doc = with(
        document(),
        "/properties",
        json!({"reverse_sync": {"sources": ["email_list_unsubscribe", 534120005], "opt_ins": true}}),
    );
    let config = load(&doc).unwrap().config;
    let settings = &config.properties.reverse_sync;
    assert!(settings.opt_ins);
    assert_eq!(
        settings.sources.iter().copied().collect::<Vec<_>>(),
        [534_120_005, 534_120_007]
    );
    let bad = with(
        document(),
        "/properties",
        json!({"reverse_sync": {"sources": ["carrier_pigeon"], "opt_ins": "yes"}}),
    );
    let errors = errors_of(&bad);
    assert!(
        errors.mentions("properties.reverse_sync.sources[0]"),
        "{errors:?}"
    );
    assert!(
        errors.mentions("properties.reverse_sync.opt_ins"),
        "{errors:?}"
    );
}
