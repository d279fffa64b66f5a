//! The AWS Lambda surface: which event shapes arrive ([`events`]), how each is
//! answered ([`handler`]), and the init phase that builds the handler once
//! per execution environment ([`startup`]).

pub mod backoff;
pub mod events;
pub mod handler;
pub mod planning;
pub mod redelivery;
pub mod startup;
