//! Property tests: no input, however hostile, makes the webhook parser or the
//! mapping stage panic; every body gets a plan or a typed error.

use didomi_cpc_sync::config::IntegrationConfig;
use didomi_cpc_sync::domain::mapping::{MappingRules, plan_body};
use proptest::prelude::*;
use serde_json::Value;

fn rules() -> MappingRules {
    let text = include_str!("../fixtures/integration-config.json");
    let document: Value = serde_json::from_str(text).unwrap();
    IntegrationConfig::from_document(&document, false)
        .unwrap()
        .config
        .rules
}

/// Arbitrary JSON, biased towards the keys a webhook has.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("parameters".to_string()),
        Just("entity".to_string()),
        Just("new_entity".to_string()),
        Just("consents".to_string()),
        Just("purposes".to_string()),
        Just("values".to_string()),
        Just("enabled".to_string()),
        Just("value".to_string()),
        Just("user".to_string()),
        Just("organization_user_id".to_string()),
        Just("created_at".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("event.created".to_string()),
            Just("user.updated".to_string()),
            Just("2025-03-14T09:21:07Z".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = plan_body(&body, &rules());
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let _ = plan_body(value.to_string().as_bytes(), &rules());
    }

    #[test]
    fn arbitrary_event_entities_never_panic(entity in json_value(), kind in prop_oneof![
        Just("event.created"), Just("event.updated"), Just("user.created"), Just("user.updated")]) {
        let envelope = serde_json::json!({"type": kind, "parameters": {"entity": entity.clone(), "new_entity": entity}});
        let _ = plan_body(envelope.to_string().as_bytes(), &rules());
    }
}
