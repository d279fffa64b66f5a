//! `cpc-emulator`: a loopback stand-in for the three remote services the consent sync talks to:
//! the Microsoft Entra client-credentials token endpoint, the Dataverse Web API subset used for
//! Contact Point Consent rows, and AWS Secrets Manager `GetSecretValue`.
//!
//! It is deliberately strict: it rejects what real Dataverse rejects (wrong navigation-property
//! case, out-of-range choices, bare-LF `$batch` bodies, ...) so tests against it mean something.
//! Start it in-process with [`Emulator::start`] or run the `cpc-emulator` binary.

mod admin;
mod batch;
mod clock;
mod cost;
mod dataverse;
mod didomi_api;
mod entra;
mod errors;
mod exec;
mod faults;
mod hold;
mod limits;
mod odata;
mod pipeline;
mod secrets;
mod seed;
mod server;
mod state;
mod users;

pub use clock::ClockSetting;
pub use cost::{CostModel, Limits};
pub use didomi_api::webhooks::Delivery as WebhookDelivery;
pub use didomi_api::{DidomiApi, DidomiKey, DidomiSeed, RateLimit};
pub use faults::{DropWhen, FaultAction, FaultRule, HoldUntil};
pub use limits::ThrottleCounts;
pub use seed::{Credential, Seed, SeedPurpose, SeedTopic};
pub use server::{Emulator, EmulatorHandle};
pub use state::{RequestRecord, Stats};
pub use users::{BUSINESS_UNIT_ID, ORGANIZATION_ID, SOMEONE_ELSE, default_app_user};

/// Parses a `$filter` expression the way the emulator does; exposed for diagnostics and tests.
pub use odata::filter::{Expr, Literal, parse as parse_filter};
