//! Harnesses shared by the integration tests.

pub mod didomi;
pub mod inprocess;
pub mod lambda;
pub mod moto;
pub mod scratch;
