//! The seed file: tenant, app credentials, reference data, initial rows, secrets and faults.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::ClockSetting;
use crate::cost::CostModel;
use crate::faults::FaultRule;

/// Tenant id used when a seed does not name one.
pub const DEFAULT_TENANT: &str = "72f988bf-0000-0000-0000-000000000001";
/// Owner (systemuser id) of purposes whose seed entry names none.
pub const DEFAULT_OWNER: &str = "5d1c0b6e-0000-0000-0000-00000000a0a0";

/// Everything the emulator starts with. Every field is optional in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    /// Entra tenant id accepted by the token endpoint (`/{tenant}/oauth2/v2.0/token`).
    pub tenant_id: String,
    /// The Didomi REST API emulation (`/v1`): organization, API keys, users.
    pub didomi: Option<crate::didomi_api::DidomiSeed>,
    /// Dataverse resource URL expected in `scope` (`<instance>/.default`); `None` = the emulator's own base URL.
    pub instance: Option<String>,
    /// Entra app registrations (client id + secret) that may get tokens.
    pub credentials: Vec<Credential>,
    /// `false` emulates an Entra app that is not an Application User: every Dataverse call → 403 `0x80072560`.
    pub app_user: bool,
    /// Emulator strictness: reject consent creates missing an ApplicationRequired column.
    pub strict_required: bool,
    /// `expires_in` of issued tokens, and how long they stay valid.
    pub token_lifetime_secs: u64,
    /// Purposes with their topics.
    pub purposes: Vec<SeedPurpose>,
    /// Initial `contacts` rows (column names of the table).
    pub contacts: Vec<Map<String, Value>>,
    /// Initial `msdynmkt_contactpointconsent4` rows (column names of the table, lookups as `_x_value`).
    pub consents: Vec<Map<String, Value>>,
    /// Secrets Manager secrets: name → SecretString.
    pub secrets: BTreeMap<String, String>,
    /// Fault-injection rules active from the start.
    pub faults: Vec<FaultRule>,
    /// How `createdon`/`modifiedon` are stamped (real time in whole seconds by default).
    pub clock: ClockSetting,
    /// Operation cost, parallelism, `x-ms-dop-hint` and service-protection limits.
    pub cost: CostModel,
    /// Set when a TLS front forwards to this port: absolute URLs (`OData-EntityId`, links, the
    /// expected token scope) then use `https://` and the `Host` the client addressed.
    pub behind_tls: bool,
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            tenant_id: DEFAULT_TENANT.to_string(),
            didomi: None,
            instance: None,
            credentials: Vec::new(),
            app_user: true,
            strict_required: true,
            token_lifetime_secs: 3599,
            purposes: Vec::new(),
            contacts: Vec::new(),
            consents: Vec::new(),
            secrets: BTreeMap::new(),
            faults: Vec::new(),
            clock: ClockSetting::default(),
            cost: CostModel::default(),
            behind_tls: false,
        }
    }
}

impl Seed {
    /// Reads and parses a seed JSON file.
    pub fn from_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::from_json(&text)
    }

    /// Parses a seed from JSON text.
    pub fn from_json(text: &str) -> std::io::Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// One Entra app registration secret.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Application (client) id.
    pub client_id: String,
    /// Client secret value.
    pub client_secret: String,
    /// systemuserid of the Application User of this app (`WhoAmI` `UserId`, `_modifiedby_value`
    /// of its writes); `None` = a stable id derived from the client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One `msdynmkt_purpose` row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPurpose {
    /// `msdynmkt_purposeid`.
    pub id: String,
    /// `msdynmkt_name`.
    pub name: String,
    /// `statecode` 0 when true, 1 when false.
    #[serde(default = "yes")]
    pub active: bool,
    /// Owning systemuser; consent rows bound to this purpose get it as `_ownerid_value`.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// `msdynmkt_type` (534120000 Commercial, 534120001 Transactional, 534120002 Tracking).
    #[serde(default, rename = "type")]
    pub purpose_type: Option<i64>,
    /// `msdynmkt_enforcementmodel` (534120000 Restrictive, 534120001 Non-Restrictive, 534120002 Disabled).
    #[serde(default)]
    pub enforcement_model: Option<i64>,
    /// Topics under this purpose.
    #[serde(default)]
    pub topics: Vec<SeedTopic>,
}

/// One `msdynmkt_topic` row (its parent is the enclosing purpose).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTopic {
    /// `msdynmkt_topicid`.
    pub id: String,
    /// `msdynmkt_name`.
    pub name: String,
    /// `statecode` 0 when true, 1 when false.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}
