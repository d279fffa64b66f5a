//! Didomi → Dynamics 365 Customer Insights – Journeys consent sync.
//!
//! Didomi posts a webhook whenever an end user changes a preference; this
//! crate maps it to Contact Point Consent decisions (pure code: [`didomi`],
//! [`mapping`], [`consent`]) and writes them to Dataverse through narrow
//! adapters. `main.rs` (the Lambda `bootstrap`) and `bin/cpc-sync.rs` (the
//! operator CLI) only wire these parts together.

pub mod app;
pub mod auth;
pub mod config;
pub mod consent;
pub mod dataverse;
pub mod didomi;
pub mod dry_run;
pub mod handler;
pub mod http;
pub mod inbound;
pub mod mapping;
pub mod planner;
pub mod records;
pub mod redact;
pub mod secrets;
pub mod sync;
pub mod telemetry;
