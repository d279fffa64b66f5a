//! Didomi → Dynamics 365 Customer Insights – Journeys consent sync.
//!
//! Didomi posts a webhook whenever an end user changes a preference; this
//! crate turns it into Contact Point Consent decisions and writes them to
//! Dataverse, so the rows always hold what the person last chose.
//!
//! # Layout
//!
//! Arrows point from a folder to what it may use; nothing points back up.
//!
//! ```text
//! main.rs, bin/ ──▶ lambda/, cli/ ──▶ service/ ──▶ domain/
//!                        │                ▲
//!                        └──▶ adapters/ ──┘ (adapters implement service's ports)
//! ```
//!
//! - [`domain`]: the product's rules as pure, synchronous code with no I/O:
//!   Didomi's webhook types, the mapping of selectors to decisions, the
//!   Contact Point Consent records, and the write planner (markers, ordering,
//!   replays). Everything here is unit-tested without a network.
//! - [`service`]: the batch service that applies plans to Dataverse, and the
//!   narrow port ([`service::ConsentStore`]) it writes through; and one pass
//!   of the reverse sync ([`service::reverse`]) over its ports (changed rows,
//!   Didomi events, and the [`service::reverse::WatermarkStore`] of the
//!   watermark and its lease lock).
//! - [`adapters`]: the outside world behind that port and behind small
//!   traits: the Dataverse Web API client, Microsoft Entra tokens, AWS Secrets
//!   Manager, the Didomi API, SQS, the reverse sync's state (a file, or a
//!   DynamoDB table), and the one HTTP client they share.
//! - [`lambda`]: the AWS Lambda surface: the event shapes it accepts, the
//!   handler and its responses, the SQS backoff and dead-letter rules, and
//!   start-up (the init phase); the scheduled reverse-sync function (the same
//!   `bootstrap`, chosen by `CPC_SYNC_MODE`).
//! - [`cli`]: the operator commands of `cpc-sync`: the dry run, and the
//!   backfill and reconcile of Didomi's current state (over the Didomi API
//!   adapter, a batch export, and SQS), and `reverse-sync --once` (the
//!   service's reverse pass with a file, table or no watermark).
//! - [`config`]: the integration document, the environment and their
//!   validation; [`redact`] and [`telemetry`]: log hygiene, log set-up and
//!   metrics, used everywhere.
//!
//! `main.rs` (the Lambda `bootstrap`) and `bin/cpc-sync.rs` only wire these
//! parts together.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod domain;
pub mod lambda;
pub mod redact;
pub mod service;
pub mod telemetry;
