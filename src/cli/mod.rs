//! The operator commands of `cpc-sync`, as library code so tests drive them
//! without a process: [`plan`] is the dry run shared with the handler;
//! [`backfill`] loads every Didomi user's current state into Dataverse;
//! [`reconcile`] compares Didomi with Dataverse and repairs drift;
//! [`reverse`] sends rows changed in Dynamics to Didomi. Users come
//! from [`source`] (the Didomi API or an [`export`]), long runs resume from a
//! [`checkpoint`] and report [`progress`]; [`setup`] builds the clients.

pub mod backfill;
pub mod checkpoint;
pub mod export;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod reverse;
pub mod setup;
pub mod source;
