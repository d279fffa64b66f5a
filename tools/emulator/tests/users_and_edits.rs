//! Who wrote a row (WhoAmI, `_modifiedby_value`), ETags and `If-Match`, edits made "in the
//! Dynamics UI" through the admin API, and the write clock.
mod common;

use common::*;
use cpc_emulator::{ClockSetting, SOMEONE_ELSE, default_app_user};
use reqwest::Method;
use serde_json::{Value, json};

const SEEDED: &str = "f1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8";
const PERSON: &str = "4e1d7a2c-0000-4000-8000-00000000beef";

async fn create(env: &Env, email: &str) -> String {
    let r = env.post_consent(&purpose_consent(email, 534120001)).await;
    assert_eq!(r.status(), 204);
    let url = r.headers()["odata-entityid"].to_str().unwrap().to_string();
    url.rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string()
}

async fn row(env: &Env, id: &str) -> Value {
    let (s, v) = env.get_json(&format!("{CONSENTS}({id})")).await;
    assert_eq!(s, 200);
    v
}

async fn patch(env: &Env, id: &str, if_match: &str, body: Value) -> (u16, Value) {
    let r = env
        .dv(Method::PATCH, &format!("{CONSENTS}({id})"))
        .header("If-Match", if_match)
        .json(&body)
        .send()
        .await
        .unwrap();
    status_json(r).await
}

async fn ui_edit(env: &Env, id: &str, body: Value) -> (u16, Value) {
    let r = env
        .http
        .post(env.admin(&format!("rows/{CONSENTS}/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    status_json(r).await
}

#[tokio::test]
async fn whoami_names_the_application_user_of_the_token_client() {
    let env = Env::start().await;
    let (s, v) = env.get_json("WhoAmI").await;
    assert_eq!(s, 200);
    assert_eq!(v["UserId"], default_app_user(CLIENT_ID));
    assert_eq!(v["BusinessUnitId"], cpc_emulator::BUSINESS_UNIT_ID);
    assert_eq!(v["OrganizationId"], cpc_emulator::ORGANIZATION_ID);
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            env.emu.base_url()
        )
    );
}

#[tokio::test]
async fn whoami_answers_the_user_id_configured_for_the_client_in_the_seed() {
    let mut seed = example_seed();
    seed.credentials[0].user_id = Some(PERSON.to_string());
    let env = Env::with_seed(seed).await;
    let (_, v) = env.get_json("WhoAmI").await;
    assert_eq!(v["UserId"], PERSON);
    assert_eq!(env.emu.app_user_id(CLIENT_ID), PERSON);
}

#[tokio::test]
async fn whoami_is_a_function_so_post_is_404() {
    let env = Env::start().await;
    let r = env.dv(Method::POST, "WhoAmI").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn writes_are_stamped_with_the_writing_app_user() {
    let env = Env::start().await;
    let id = create(&env, "who.wrote@example.com").await;
    let me = default_app_user(CLIENT_ID);
    let v = row(&env, &id).await;
    assert_eq!(v["_createdby_value"], me.as_str());
    assert_eq!(v["_modifiedby_value"], me.as_str());
}

#[tokio::test]
async fn seeded_rows_were_created_and_modified_by_someone_else() {
    let env = Env::start().await;
    let v = row(&env, SEEDED).await;
    assert_eq!(v["_modifiedby_value"], SOMEONE_ELSE);
    assert_eq!(v["_createdby_value"], SOMEONE_ELSE);
    assert_eq!(v["modifiedon"], "2023-11-02T16:40:00Z");
}

#[tokio::test]
async fn seed_can_name_who_last_modified_a_row() {
    let mut seed = example_seed();
    let seeded = seed
        .consents
        .iter_mut()
        .find(|c| c["msdynmkt_contactpointconsent4id"] == SEEDED)
        .unwrap();
    seeded.insert("_modifiedby_value".into(), json!(PERSON));
    let env = Env::with_seed(seed).await;
    assert_eq!(row(&env, SEEDED).await["_modifiedby_value"], PERSON);
}

#[tokio::test]
async fn every_write_changes_the_etag_and_stamps_whole_seconds() {
    let env = Env::start().await;
    let id = create(&env, "etag@example.com").await;
    let first = row(&env, &id).await;
    let (s, _) = patch(&env, &id, "*", json!({"msdynmkt_value": 534120002})).await;
    assert_eq!(s, 204);
    let second = row(&env, &id).await;
    assert_ne!(first["@odata.etag"], second["@odata.etag"]);
    let stamp = second["modifiedon"].as_str().unwrap();
    assert_eq!(stamp.len(), 20, "{stamp}");
    assert!(stamp.ends_with('Z') && !stamp.contains('.'));
}

#[tokio::test]
async fn if_match_with_a_stale_etag_is_412_concurrency_version_mismatch() {
    let env = Env::start().await;
    let id = create(&env, "stale@example.com").await;
    let etag = row(&env, &id).await["@odata.etag"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        patch(&env, &id, &etag, json!({"msdynmkt_value": 534120002}))
            .await
            .0,
        204
    );
    let (s, v) = patch(&env, &id, &etag, json!({"msdynmkt_value": 534120001})).await;
    assert_eq!(s, 412);
    assert_eq!(error_code(&v), "0x80060882");
    assert_eq!(
        error_message(&v),
        "The version of the existing record doesn't match the RowVersion property provided."
    );
}

#[tokio::test]
async fn if_match_star_updates_whatever_the_version() {
    let env = Env::start().await;
    let id = create(&env, "star@example.com").await;
    assert_eq!(
        patch(&env, &id, "*", json!({"msdynmkt_value": 534120002}))
            .await
            .0,
        204
    );
    assert_eq!(
        patch(&env, &id, "*", json!({"msdynmkt_value": 534120000}))
            .await
            .0,
        204
    );
    assert_eq!(row(&env, &id).await["msdynmkt_value"], 534120000);
}

#[tokio::test]
async fn ui_edit_moves_etag_and_modifiedon_names_the_person_and_keeps_the_reason() {
    let env = Env::start().await;
    let id = create(&env, "ui.edit@example.com").await;
    let before = row(&env, &id).await;
    let (s, edited) = ui_edit(
        &env,
        &id,
        json!({"columns": {"msdynmkt_value": 534120002, "msdynmkt_source": 534120004}, "modified_by": PERSON}),
    )
    .await;
    assert_eq!(s, 200, "{edited}");
    let after = row(&env, &id).await;
    assert_eq!(after["msdynmkt_value"], 534120002);
    assert_eq!(after["_modifiedby_value"], PERSON);
    assert_eq!(after["msdynmkt_reason"], before["msdynmkt_reason"]);
    assert_ne!(after["@odata.etag"], before["@odata.etag"]);
    assert!(after["modifiedon"].as_str() > before["modifiedon"].as_str());
}

#[tokio::test]
async fn ui_edit_by_default_is_someone_else() {
    let env = Env::start().await;
    let id = create(&env, "ui.default@example.com").await;
    let edited = env
        .emu
        .edit_row(CONSENTS, &id, json!({"msdynmkt_value": 534120000}), None)
        .unwrap();
    assert_eq!(edited["_modifiedby_value"], SOMEONE_ELSE);
}

#[tokio::test]
async fn ui_edit_makes_an_update_with_the_older_etag_fail() {
    let env = Env::start().await;
    let id = create(&env, "foreign@example.com").await;
    let etag = row(&env, &id).await["@odata.etag"]
        .as_str()
        .unwrap()
        .to_string();
    ui_edit(&env, &id, json!({"columns": {"msdynmkt_value": 534120002}})).await;
    let (s, v) = patch(&env, &id, &etag, json!({"msdynmkt_value": 534120001})).await;
    assert_eq!((s, error_code(&v)), (412, "0x80060882"));
}

#[tokio::test]
async fn ui_edit_rejects_out_of_range_choices_and_system_columns() {
    let env = Env::start().await;
    let id = create(&env, "ui.bad@example.com").await;
    let (s, _) = ui_edit(&env, &id, json!({"columns": {"msdynmkt_value": 1}})).await;
    assert_eq!(s, 400);
    let (s, _) = ui_edit(&env, &id, json!({"columns": {"versionnumber": 1}})).await;
    assert_eq!(s, 400);
    let (s, _) = ui_edit(
        &env,
        "00000000-0000-0000-0000-000000000000",
        json!({"columns": {}}),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn ui_edit_can_pin_modifiedon() {
    let env = Env::start().await;
    let id = create(&env, "ui.pinned@example.com").await;
    let (s, _) = ui_edit(
        &env,
        &id,
        json!({"columns": {"msdynmkt_value": 534120002, "modifiedon": "2026-02-03T04:05:06Z"}}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(row(&env, &id).await["modifiedon"], "2026-02-03T04:05:06Z");
}

#[tokio::test]
async fn frozen_clock_without_distinct_seconds_stamps_ties_like_dataverse() {
    let env = Env::start().await;
    let r = env
        .http
        .put(env.admin("clock"))
        .json(&json!({"now": "2026-05-01T08:00:00Z", "frozen": true, "distinct_seconds": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let a = create(&env, "tie.a@example.com").await;
    let b = create(&env, "tie.b@example.com").await;
    assert_eq!(row(&env, &a).await["modifiedon"], "2026-05-01T08:00:00Z");
    assert_eq!(row(&env, &b).await["modifiedon"], "2026-05-01T08:00:00Z");
}

#[tokio::test]
async fn pinned_clock_with_distinct_seconds_counts_up_from_the_pinned_second() {
    let env = Env::start().await;
    env.emu.set_clock(ClockSetting {
        now: Some("2026-05-01T08:00:00Z".parse().unwrap()),
        frozen: true,
        distinct_seconds: true,
    });
    let a = create(&env, "count.a@example.com").await;
    let b = create(&env, "count.b@example.com").await;
    assert_eq!(row(&env, &a).await["createdon"], "2026-05-01T08:00:00Z");
    assert_eq!(row(&env, &b).await["createdon"], "2026-05-01T08:00:01Z");
}

#[tokio::test]
async fn behind_tls_absolute_urls_and_token_scope_use_https() {
    let mut seed = example_seed();
    seed.behind_tls = true;
    let emu = cpc_emulator::Emulator::start(seed).unwrap();
    let base = emu.base_url();
    let public = base.replace("http://", "https://");
    let http = reqwest::Client::new();
    let token = http
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", &format!("{public}/.default")),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let token: Value = token.json().await.unwrap();
    let r = http
        .post(format!("{base}/api/data/v9.2/{CONSENTS}"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&purpose_consent("tls@example.com", 534120001))
        .send()
        .await
        .unwrap();
    let id = r.headers()["odata-entityid"].to_str().unwrap();
    assert!(id.starts_with(&format!("{public}/api/data/v9.2/")), "{id}");
}
