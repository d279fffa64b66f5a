//! Token endpoint contract (reference §5, §8.1).
mod common;

use common::*;
use serde_json::Value;

/// A client-credentials token request with the seeded app's valid form
/// (`client_id`, `client_secret`, `scope = <base>/.default`, `grant_type`),
/// each field replaced by the one in `overrides` with the same name.
async fn token_call(
    env_base: &str,
    tenant: &str,
    overrides: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let default_scope = format!("{env_base}/.default");
    let fields: Vec<(&str, &str)> = [
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("scope", default_scope.as_str()),
        ("grant_type", "client_credentials"),
    ]
    .into_iter()
    .map(|(name, value)| {
        let value = overrides
            .iter()
            .find(|(wanted, _)| *wanted == name)
            .map_or(value, |(_, replacement)| *replacement);
        (name, value)
    })
    .collect();
    let r = reqwest::Client::new()
        .post(format!("{env_base}/{tenant}/oauth2/v2.0/token"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let h = r.headers().clone();
    let (s, v) = status_json(r).await;
    (s, v, h)
}

#[tokio::test]
async fn token_success_has_entra_shape_and_no_store() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, h) = token_call(&base, TENANT, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    assert!(v["access_token"].as_str().unwrap().len() > 20);
    assert_eq!(h["cache-control"], "no-store, no-cache");
}

#[tokio::test]
async fn token_bad_secret_is_401_invalid_client_7000215() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, _) = token_call(&base, TENANT, &[("client_secret", "nope")]).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"][0], 7000215);
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215:")
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(v[k].is_string(), "{k}");
    }
}

#[tokio::test]
async fn token_unknown_tenant_is_400_invalid_request_90002() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, _) = token_call(&base, "12345678-1234-1234-1234-123456789012", &[]).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_request");
    assert_eq!(v["error_codes"][0], 90002);
}

#[tokio::test]
async fn token_wrong_scope_is_400_invalid_resource_500011() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, _) = token_call(
        &base,
        TENANT,
        &[("scope", "https://contoso.crm4.dynamics.com/.default")],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_resource");
    assert_eq!(v["error_codes"][0], 500011);
}

#[tokio::test]
async fn token_scope_accepts_localhost_and_trailing_slash() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let scope = format!("{}//.default", base.replace("127.0.0.1", "localhost"));
    let (s, _, _) = token_call(&base, TENANT, &[("scope", &scope)]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn token_unknown_client_is_unauthorized_client_700016() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, _) = token_call(
        &base,
        TENANT,
        &[("client_id", "00000000-0000-0000-0000-000000000009")],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "unauthorized_client");
    assert_eq!(v["error_codes"][0], 700016);
}

#[tokio::test]
async fn token_other_grant_type_is_unsupported() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    let (s, v, _) = token_call(&base, TENANT, &[("grant_type", "password")]).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn token_accepts_basic_auth_and_rotated_secret() {
    let env = Env::start().await;
    let base = env.emu.base_url();
    env.emu.set_client_secret(CLIENT_ID, "rotated");
    let r = reqwest::Client::new()
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .basic_auth(CLIENT_ID, Some("rotated"))
        .form(&[
            ("scope", format!("{base}/.default").as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn openid_configuration_names_the_token_endpoint_of_the_tenant() {
    let emu = cpc_emulator::Emulator::start(example_seed()).unwrap();
    let base = emu.base_url();
    let r = reqwest::get(format!(
        "{base}/{TENANT}/v2.0/.well-known/openid-configuration"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(v["issuer"], format!("{base}/{TENANT}/v2.0"));
}

#[tokio::test]
async fn openid_configuration_of_an_unknown_tenant_is_400_90002() {
    let emu = cpc_emulator::Emulator::start(example_seed()).unwrap();
    let r = reqwest::get(format!(
        "{}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration",
        emu.base_url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_codes"], serde_json::json!([90002]));
}
