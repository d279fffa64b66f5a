//! Every integration and end-to-end test, as one test binary: one link on the
//! 2-core CI box instead of eleven, and one shared `support` module instead of
//! helpers copied in with `#[path]`.
//!
//! Each module is one concern; `support` holds the harnesses they share (the
//! in-process service over the emulator, the real `bootstrap` under a Lambda
//! Runtime API, `moto_server`).

mod support;

mod backfill;
mod backfill_queue;
mod cpc_sync_cli;
mod dataverse_client;
mod didomi_api;
mod e2e_lambda;
mod entra_auth;
mod envelope_props;
mod fault_matrix;
mod metrics;
mod odata_props;
mod pacing;
mod races;
mod reconcile;
mod replay_order;
mod reverse_lambda;
mod reverse_state;
mod reverse_sync;
mod round_trips;
mod secrets_moto;
mod security;
mod sqs_backoff;
