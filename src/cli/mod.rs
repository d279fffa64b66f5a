//! The operator commands of `cpc-sync`, as library code so tests drive them
//! without a process: [`plan`] is the dry run shared with the handler.

pub mod plan;
