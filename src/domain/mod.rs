//! The product's rules, as pure and synchronous code: no I/O, no clock reads
//! beyond what a caller passes in, no knowledge of Lambda or HTTP.
//!
//! A webhook flows through it in this order: [`didomi`] parses the envelope,
//! [`mapping`] turns it into a [`decision::ConsentPlan`], and [`writes`]
//! compares the plan with the [`cpc`] rows Dataverse holds to decide the
//! creates and updates. [`reconcile`] compares a user's snapshot plan with
//! the rows held, for `cpc-sync reconcile`. [`reverse`] turns rows changed in
//! Dynamics into Didomi consent events, for `cpc-sync reverse-sync`.

pub mod cpc;
pub mod decision;
pub mod didomi;
pub mod mapping;
pub mod reconcile;
pub mod reverse;
pub mod writes;
