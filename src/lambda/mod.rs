//! The AWS Lambda surface: which event shapes arrive ([`events`]), how each is
//! answered ([`handler`]), and the init phase that builds the handler once
//! per execution environment ([`startup`]). The same `bootstrap` also runs
//! the scheduled reverse sync ([`schedule`], [`reverse`], [`reverse_startup`]);
//! [`entry`] picks the mode from `CPC_SYNC_MODE`.

pub mod backoff;
pub mod entry;
pub mod events;
pub mod handler;
pub mod planning;
pub mod redelivery;
pub mod reverse;
pub mod reverse_startup;
pub mod schedule;
pub mod startup;
