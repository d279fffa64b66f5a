//! Harnesses shared by the integration tests.

pub mod inprocess;
pub mod lambda;
pub mod moto;
