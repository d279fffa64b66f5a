//! The Didomi side of the emulator for tests: an API key, realistic users
//! (`tests/fixtures/didomi/users.json`) and generated ones, and the
//! [`DidomiApiSettings`] pointing at the emulator.

use cpc_emulator::{EmulatorHandle, Seed};
use didomi_cpc_sync::config::DidomiApiSettings;
use serde_json::{Value, json};

use super::inprocess::{demo_seed_json, root, seed_from};

/// The API key the emulator accepts.
pub const KEY: &str = "didomi-test-key";
/// Its secret.
pub const SECRET: &str = "didomi-test-secret~not-a-real-one";
/// The organization.
pub const ORGANIZATION: &str = "acme";

/// The Didomi purpose the fixture configuration maps.
pub const PURPOSE: &str = "marketing-communications-Xk3Pq9";
/// The "Topics" preference of the fixture configuration.
pub const TOPICS: &str = "f2b1c7e0-3d4a-4b8e-9c61-5e7a2d0f8a13";

/// The hand-written users of `tests/fixtures/didomi/users.json`.
pub fn fixture_users() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/didomi/users.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A user `user<i>@example.com` who opted in (or out) of the mapped purpose
/// and chose `values` in the Topics preference, last updated at `updated_at`.
pub fn user(i: usize, enabled: bool, values: &str, updated_at: &str) -> Value {
    json!({
        "id": format!("d1d0m100-0000-4000-8000-{i:012}"),
        "organization_id": ORGANIZATION,
        "organization_user_id": format!("user{i}@example.com"),
        "version": 1,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": updated_at,
        "metadata": {},
        "consents": {
            "purposes": [{"id": PURPOSE, "enabled": enabled,
                          "values": {TOPICS: {"value": values}}}],
            "channels": [],
            "vendors": {"enabled": [], "enabled_li": [], "disabled": [], "disabled_li": []}
        }
    })
}

/// `n` generated users (every third opted out), updated in 2025.
pub fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let enabled = i % 3 != 0;
            let values = if enabled { "v-news,v-offers" } else { "" };
            user(i, enabled, values, "2025-06-01T12:00:00.000Z")
        })
        .collect()
}

/// The Didomi seed section: one key for [`ORGANIZATION`] and `users`, with `edit` applied.
pub fn didomi_section(users: Vec<Value>, edit: impl FnOnce(&mut Value)) -> Value {
    let mut section = json!({
        "organization_id": ORGANIZATION,
        "keys": [{"key": KEY, "secret": SECRET}],
        "users": users,
    });
    edit(&mut section);
    section
}

/// The demo seed with contacts `user<i>@example.com` for `i < contacts` and a Didomi section.
pub fn seed(contacts: usize, didomi: Value) -> Seed {
    let mut seed = demo_seed_json();
    for i in 0..contacts {
        seed["contacts"].as_array_mut().unwrap().push(json!({
            "contactid": format!("00000000-0000-4000-8000-{i:012}"),
            "emailaddress1": format!("user{i}@example.com"), "lastname": format!("User {i}")}));
    }
    seed["didomi"] = didomi;
    seed_from(seed)
}

/// The `didomi_api` object for the emulator's key.
pub fn didomi_api_json() -> Value {
    json!({"key": KEY, "secret": SECRET, "organization_id": ORGANIZATION})
}

/// Settings for the emulator's Didomi API, with `edit` applied to `didomi_api`.
pub fn settings(emulator: &EmulatorHandle, edit: impl FnOnce(&mut Value)) -> DidomiApiSettings {
    let mut api = didomi_api_json();
    edit(&mut api);
    let url = format!("{}/v1", emulator.base_url());
    DidomiApiSettings::from_document(&json!({ "didomi_api": api }), Some(&url), true).unwrap()
}

/// Runs the real `cpc-sync` with `args` (the subcommand first) against
/// `emulator` as Entra, Dataverse and the Didomi API, with loopback `http://`
/// allowed and nothing inherited that could point it elsewhere.
pub async fn cpc_sync_against(
    emulator: &EmulatorHandle,
    args: Vec<String>,
) -> std::process::Output {
    let base = emulator.base_url();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cpc-sync"))
            .args(&args)
            .env("ALLOW_INSECURE_HTTP", "true")
            .env("AZURE_AUTHORITY_HOST", &base)
            .env("DIDOMI_API_URL", format!("{base}/v1"))
            .env_remove("SECRET_ID")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
