//! Shared helpers for the contract tests.
#![allow(dead_code)]

use cpc_emulator::{Emulator, EmulatorHandle, Seed};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub const TENANT: &str = "72f988bf-0000-0000-0000-000000000001";
pub const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
pub const SECRET: &str = "local-dev-secret~not-a-real-one";
pub const COMMERCIAL: &str = "10000000-0000-0000-0000-000000000003";
pub const NEWSLETTER: &str = "23db4a4d-ba9f-f011-bbd3-6045bd194648";
pub const PURPOSE_OWNER: &str = "2a3f0c11-5e0b-4f43-9a51-0000000000a1";
pub const CONSENTS: &str = "msdynmkt_contactpointconsent4s";

pub fn example_seed() -> Seed {
    Seed::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/seed.example.json"))
        .expect("example seed parses")
}

pub struct Env {
    pub emu: EmulatorHandle,
    pub http: Client,
    pub token: String,
}

impl Env {
    pub async fn start() -> Self {
        Self::with_seed(example_seed()).await
    }

    pub async fn with_seed(seed: Seed) -> Self {
        let emu = Emulator::start(seed).expect("emulator starts");
        let http = Client::new();
        let token = fetch_token(&http, &emu.base_url()).await;
        Self { emu, http, token }
    }

    pub fn url(&self, rel: &str) -> String {
        format!("{}/api/data/v9.2/{rel}", self.emu.base_url())
    }

    pub fn dv(&self, method: reqwest::Method, rel: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(rel))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    pub async fn get_json(&self, rel: &str) -> (u16, Value) {
        let r = self
            .dv(reqwest::Method::GET, rel)
            .send()
            .await
            .expect("send");
        status_json(r).await
    }

    pub async fn post_consent(&self, body: &Value) -> Response {
        self.dv(reqwest::Method::POST, CONSENTS)
            .json(body)
            .send()
            .await
            .expect("send")
    }
}

pub async fn fetch_token(http: &Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("scope", &format!("{base}/.default")),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub async fn status_json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, v)
}

pub fn purpose_consent(email: &str, value: i64) -> Value {
    serde_json::json!({
        "msdynmkt_contactpointvalue": email,
        "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_contactpointconsenttype": 534120000,
        "msdynmkt_value": value,
        "msdynmkt_source": 534120000,
        "msdynmkt_logicalreason": 534119999,
        "msdynmkt_reason": "didomi-sync",
        "msdynmkt_modifiedonbehalf": "didomi:organization_user_id=jane.doe@example.com",
        "msdynmkt_purposeId@odata.bind": format!("/msdynmkt_purposes({COMMERCIAL})")
    })
}

pub fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

pub fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

/// The example seed without its start-up fault rules.
pub fn quiet_seed() -> Seed {
    let mut seed = example_seed();
    seed.faults.clear();
    seed
}

/// A `$batch` body (boundary `batch_b`) with one top-level create per consent body.
pub fn batch_of_creates(bodies: &[Value]) -> String {
    let mut s = String::new();
    for b in bodies {
        s.push_str(&format!(
            "--batch_b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nPOST /api/data/v9.2/{CONSENTS} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{b}\r\n"
        ));
    }
    s.push_str("--batch_b--\r\n");
    s
}

impl Env {
    /// Posts a `$batch` body built with [`batch_of_creates`] (continue-on-error).
    pub async fn post_batch(&self, body: String) -> Response {
        self.dv(reqwest::Method::POST, "$batch")
            .header("Content-Type", "multipart/mixed; boundary=batch_b")
            .header("Prefer", "odata.continue-on-error")
            .body(body)
            .send()
            .await
            .expect("send batch")
    }

    /// `/_emulator/...` URL.
    pub fn admin(&self, rel: &str) -> String {
        format!("{}/_emulator/{rel}", self.emu.base_url())
    }
}
