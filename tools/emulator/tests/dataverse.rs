//! Web API contract (reference §3, §8, §9).
mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn find_contact_by_email_with_escaped_apostrophe() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("contacts?$select=contactid,emailaddress1,fullname&$filter=emailaddress1%20eq%20'jane.o''brien%40example.com'&$top=2")
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/api/data/v9.2/$metadata#contacts(contactid,emailaddress1,fullname)",
            env.emu.base_url()
        )
    );
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["fullname"], "Jane O'Brien");
    assert_eq!(rows[0]["contactid"], "70bf4d48-34cb-ed11-b596-0022481d68cd");
    assert!(rows[0]["@odata.etag"].as_str().unwrap().starts_with("W/\""));
}

#[tokio::test]
async fn contact_email_filter_is_case_insensitive_and_empty_when_no_match() {
    let env = Env::start().await;
    let (_, v) = env
        .get_json("contacts?$filter=emailaddress1 eq 'JANE.DOE@EXAMPLE.COM'")
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (s, v) = env
        .get_json("contacts?$filter=emailaddress1 eq 'nobody@example.com'")
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], json!([]));
}

#[tokio::test]
async fn raw_plus_decodes_to_space_but_escaped_plus_matches() {
    let env = Env::start().await;
    let (_, raw) = env
        .get_json("contacts?$filter=emailaddress1%20eq%20'max+news%40example.com'")
        .await;
    assert_eq!(raw["value"].as_array().unwrap().len(), 0);
    let (_, escaped) = env
        .get_json("contacts?%24filter=emailaddress1%20eq%20'max%2Bnews%40example.com'")
        .await;
    assert_eq!(escaped["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn create_contact_returns_204_with_entity_id() {
    let env = Env::start().await;
    let r = env
        .dv(Method::POST, "contacts")
        .json(&json!({"emailaddress1":"new.person@example.com","firstname":"New","lastname":"Person"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let id = r.headers()["odata-entityid"].to_str().unwrap().to_string();
    assert!(id.starts_with(&format!("{}/api/data/v9.2/contacts(", env.emu.base_url())));
    assert_eq!(r.headers()["odata-version"], "4.0");
    assert!(r.headers().contains_key("req_id"));
    assert!(r.headers().contains_key("x-ms-service-request-id"));
    let c = env.emu.contacts();
    assert_eq!(c.last().unwrap()["fullname"], "New Person");
}

#[tokio::test]
async fn contact_unknown_property_is_invalid_property_0x0() {
    let env = Env::start().await;
    let r = env
        .dv(Method::POST, "contacts")
        .json(&json!({"email":"x@example.com"}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x0");
    assert!(
        error_message(&v).contains(
            "Invalid property 'email' was found in entity 'Microsoft.Dynamics.CRM.contact'"
        )
    );
}

#[tokio::test]
async fn get_missing_contact_is_404_0x80040217() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("contacts(00000000-0000-0000-0000-0000000000ff)")
        .await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x80040217");
    assert_eq!(
        error_message(&v),
        "contact With Id = 00000000-0000-0000-0000-0000000000ff Does Not Exist"
    );
}

#[tokio::test]
async fn query_consents_includes_inactive_rows_newest_first() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("msdynmkt_contactpointconsent4s?$select=msdynmkt_contactpointconsent4id,msdynmkt_contactpointvalue,msdynmkt_value,_msdynmkt_purposeid_value,_msdynmkt_topicid_value,statecode,modifiedon&$filter=msdynmkt_contactpointvalue%20eq%20'jane.doe%40example.com'%20and%20msdynmkt_contactpointtype%20eq%20534120000&$orderby=modifiedon%20desc")
        .await;
    assert_eq!(s, 200);
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["statecode"], 0);
    assert_eq!(rows[1]["statecode"], 1);
    assert_eq!(rows[0]["_msdynmkt_purposeid_value"], COMMERCIAL);
    assert_eq!(rows[0]["_msdynmkt_topicid_value"], Value::Null);
}

#[tokio::test]
async fn create_purpose_consent_is_204_owned_by_purpose_owner() {
    let env = Env::start().await;
    let r = env
        .post_consent(&purpose_consent("jane.doe@example.com", 534120001))
        .await;
    assert_eq!(r.status(), 204);
    let url = r.headers()["odata-entityid"].to_str().unwrap();
    assert!(url.contains("/api/data/v9.2/msdynmkt_contactpointconsent4s("));
    let row = env.emu.consents().last().unwrap().clone();
    assert_eq!(row["_ownerid_value"], PURPOSE_OWNER);
    assert_eq!(row["statecode"], 0);
    assert_eq!(row["statuscode"], 1);
    assert_eq!(row["_msdynmkt_purposeid_value"], COMMERCIAL);
}

#[tokio::test]
async fn create_topic_consent_is_204() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120002);
    body["msdynmkt_contactpointconsenttype"] = json!(534120001);
    body["msdynmkt_topicId@odata.bind"] = json!(format!("/msdynmkt_topics({NEWSLETTER})"));
    let r = env.post_consent(&body).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        env.emu.consents().last().unwrap()["_msdynmkt_topicid_value"],
        NEWSLETTER
    );
}

#[tokio::test]
async fn create_with_return_representation_is_201_with_etag() {
    let env = Env::start().await;
    let r = env
        .dv(
            Method::POST,
            "msdynmkt_contactpointconsent4s?$select=msdynmkt_contactpointconsent4id,_ownerid_value",
        )
        .header("Prefer", "return=representation")
        .json(&purpose_consent("a@example.com", 534120001))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["preference-applied"], "return=representation");
    assert!(r.headers().contains_key("etag"));
    let (_, v) = status_json(r).await;
    assert!(v["@odata.context"].as_str().unwrap().ends_with("$metadata#msdynmkt_contactpointconsent4s(msdynmkt_contactpointconsent4id,_ownerid_value)/$entity"));
    assert_eq!(v["_ownerid_value"], PURPOSE_OWNER);
}

#[tokio::test]
async fn patch_with_if_match_star_updates_and_bumps_modifiedon() {
    let env = Env::start().await;
    let id = "e73ffc82-e292-ed11-aad1-000d3a9933c9";
    let before = env
        .emu
        .consents()
        .into_iter()
        .find(|r| r["msdynmkt_contactpointconsent4id"] == id)
        .unwrap();
    let r = env
        .dv(Method::PATCH, &format!("msdynmkt_contactpointconsent4s({id})"))
        .header("If-Match", "*")
        .json(&json!({"msdynmkt_value":534120002,"msdynmkt_source":534120000,"msdynmkt_logicalreason":534119999,"msdynmkt_reason":"didomi-sync"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after = env
        .emu
        .consents()
        .into_iter()
        .find(|r| r["msdynmkt_contactpointconsent4id"] == id)
        .unwrap();
    assert_eq!(after["msdynmkt_value"], 534120002);
    assert!(after["modifiedon"].as_str().unwrap() > before["modifiedon"].as_str().unwrap());
    assert!(after["versionnumber"].as_u64() > before["versionnumber"].as_u64());
}

#[tokio::test]
async fn patch_missing_with_if_match_is_404() {
    let env = Env::start().await;
    let id = "e73ffc82-e292-ed11-aad1-000d3a9933ff";
    let r = env
        .dv(
            Method::PATCH,
            &format!("msdynmkt_contactpointconsent4s({id})"),
        )
        .header("If-Match", "*")
        .json(&json!({"msdynmkt_value":534120002}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x80040217");
    assert_eq!(
        error_message(&v),
        format!("msdynmkt_contactpointconsent4 With Id = {id} Does Not Exist")
    );
}

#[tokio::test]
async fn patch_missing_without_if_match_upserts_and_if_none_match_blocks_second() {
    let env = Env::start().await;
    let id = "aaaaaaaa-0000-4000-8000-000000000001";
    let put = |h: Option<&'static str>| {
        let mut b = env
            .dv(
                Method::PATCH,
                &format!("msdynmkt_contactpointconsent4s({id})"),
            )
            .json(&purpose_consent("u@example.com", 534120001));
        if let Some(h) = h {
            b = b.header("If-None-Match", h);
        }
        b.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 204);
    assert!(
        env.emu
            .consents()
            .iter()
            .any(|r| r["msdynmkt_contactpointconsent4id"] == id)
    );
    let (s, v) = status_json(put(Some("*")).await.unwrap()).await;
    assert_eq!(s, 412);
    assert_eq!(error_code(&v), "0x80040237");
}

#[tokio::test]
async fn wrong_nav_prop_case_is_400_0x80048d19() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    let obj = body.as_object_mut().unwrap();
    let bind = obj.remove("msdynmkt_purposeId@odata.bind").unwrap();
    obj.insert("msdynmkt_purposeid@odata.bind".into(), bind);
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x80048d19");
    assert!(error_message(&v).contains("An undeclared property 'msdynmkt_purposeid' which only has property annotations in the payload"));
}

#[tokio::test]
async fn choice_out_of_range_is_400_0x8004431a() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    body["msdynmkt_value"] = json!(1);
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x8004431a");
    assert_eq!(
        error_message(&v),
        "A validation error occurred. The value 1 of 'msdynmkt_value' on record of type 'msdynmkt_contactpointconsent4' is outside the valid range. Accepted Values: 534120000,534120001,534120002"
    );
}

#[tokio::test]
async fn too_long_reason_is_400_0x80044331() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    body["msdynmkt_reason"] = json!("x".repeat(501));
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x80044331");
}

#[tokio::test]
async fn bind_to_missing_purpose_is_404() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    body["msdynmkt_purposeId@odata.bind"] =
        json!("msdynmkt_purposes(99999999-0000-0000-0000-000000000003)");
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x80040217");
    assert_eq!(
        error_message(&v),
        "Entity 'msdynmkt_purpose' With Id = 99999999-0000-0000-0000-000000000003 Does Not Exist"
    );
}

#[tokio::test]
async fn plain_guid_on_lookup_column_is_rejected() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    let obj = body.as_object_mut().unwrap();
    obj.remove("msdynmkt_purposeId@odata.bind");
    obj.insert("msdynmkt_purposeid".into(), json!(COMMERCIAL));
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 400);
    assert_eq!(
        error_message(&v),
        "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."
    );
}

#[tokio::test]
async fn strict_mode_rejects_create_without_logicalreason() {
    let env = Env::start().await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    body.as_object_mut()
        .unwrap()
        .remove("msdynmkt_logicalreason");
    let (s, v) = status_json(env.post_consent(&body).await).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x80040200");
    assert!(error_message(&v).contains("msdynmkt_logicalreason"));
}

#[tokio::test]
async fn lenient_mode_defaults_source_like_dataverse() {
    let mut seed = example_seed();
    seed.strict_required = false;
    let env = Env::with_seed(seed).await;
    let mut body = purpose_consent("jane.doe@example.com", 534120001);
    body.as_object_mut().unwrap().remove("msdynmkt_source");
    assert_eq!(env.post_consent(&body).await.status(), 204);
    assert_eq!(
        env.emu.consents().last().unwrap()["msdynmkt_source"],
        534120000
    );
}

#[tokio::test]
async fn unterminated_literal_is_400_0x80060888() {
    let env = Env::start().await;
    let (s, v) = env
        .get_json("contacts?$filter=lastname%20eq%20'O'Bryan'")
        .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&v), "0x80060888");
    assert_eq!(
        error_message(&v),
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
    );
}

#[tokio::test]
async fn unknown_select_property_is_400() {
    let env = Env::start().await;
    let (s, v) = env.get_json("contacts?$select=Name").await;
    assert_eq!(s, 400);
    assert_eq!(
        error_message(&v),
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'."
    );
}

#[tokio::test]
async fn unknown_entity_set_is_404_case_sensitive() {
    let env = Env::start().await;
    let (s, v) = env.get_json("Contacts").await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&v), "0x8006088a");
    assert_eq!(
        error_message(&v),
        "Resource not found for the segment 'Contacts'."
    );
}

#[tokio::test]
async fn skip_is_not_supported() {
    let env = Env::start().await;
    let (s, _) = env.get_json("contacts?$skip=1").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn maxpagesize_pages_through_next_link() {
    let env = Env::start().await;
    let mut seen = Vec::new();
    let mut url = env.url("contacts?$select=contactid&$orderby=createdon");
    loop {
        let r = env
            .http
            .get(&url)
            .bearer_auth(&env.token)
            .header("Prefer", "odata.maxpagesize=3")
            .send()
            .await
            .unwrap();
        let (s, v) = status_json(r).await;
        assert_eq!(s, 200);
        seen.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["contactid"].clone()),
        );
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    seen.dedup();
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn missing_or_expired_token_is_401_with_challenge() {
    let env = Env::start().await;
    let r = env.http.get(env.url("contacts")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization_uri={}/{TENANT}/oauth2/authorize",
            env.emu.base_url()
        )
    );
    env.emu.expire_tokens();
    let (s, _) = env.get_json("contacts").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn short_token_lifetime_expires() {
    let mut seed = example_seed();
    seed.token_lifetime_secs = 1;
    let env = Env::with_seed(seed).await;
    assert_eq!(env.get_json("contacts").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(env.get_json("contacts").await.0, 401);
}

#[tokio::test]
async fn not_an_app_user_is_403_0x80072560() {
    let mut seed = example_seed();
    seed.app_user = false;
    let env = Env::with_seed(seed).await;
    let (s, v) = env.get_json("contacts").await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&v), "0x80072560");
    assert_eq!(
        error_message(&v),
        "The user is not a member of the organization."
    );
}

#[tokio::test]
async fn purposes_and_topics_are_readable() {
    let env = Env::start().await;
    let (_, p) = env.get_json("msdynmkt_purposes?$select=msdynmkt_name,msdynmkt_type,msdynmkt_enforcementmodel&$filter=msdynmkt_name eq 'commercial'").await;
    assert_eq!(p["value"][0]["msdynmkt_purposeid"], COMMERCIAL);
    let (_, t) = env
        .get_json(&format!(
            "msdynmkt_topics?$filter=_msdynmkt_purposeid_value eq {COMMERCIAL}"
        ))
        .await;
    assert_eq!(t["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn consecutive_writes_have_strictly_increasing_modifiedon() {
    let env = Env::start().await;
    for v in [534120001, 534120002, 534120001] {
        assert_eq!(
            env.post_consent(&purpose_consent("same@example.com", v))
                .await
                .status(),
            204
        );
    }
    let stamps: Vec<String> = env
        .emu
        .consents()
        .iter()
        .filter(|r| r["msdynmkt_contactpointvalue"] == "same@example.com")
        .map(|r| r["modifiedon"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stamps.len(), 3);
    assert!(stamps[0] < stamps[1] && stamps[1] < stamps[2]);
}

#[tokio::test]
async fn delete_removes_row_then_404() {
    let env = Env::start().await;
    let rel = "msdynmkt_contactpointconsent4s(e73ffc82-e292-ed11-aad1-000d3a9933c9)";
    assert_eq!(
        env.dv(Method::DELETE, rel).send().await.unwrap().status(),
        204
    );
    assert_eq!(
        env.dv(Method::DELETE, rel).send().await.unwrap().status(),
        404
    );
}
