//! The outside world, each behind a narrow interface the rest of the crate
//! owns: Dataverse implements [`crate::service::ConsentStore`], Entra
//! implements [`entra::TokenSource`], Secrets Manager implements
//! [`entra::CredentialSource`]. The Didomi REST API client
//! ([`didomi_api`]) and the SQS sender ([`sqs`]) serve the backfill and
//! reconcile commands. Adapters know wire formats, never Didomi's rules.

pub mod dataverse;
pub mod didomi_api;
pub mod entra;
pub mod http;
pub mod secrets_manager;
pub mod sqs;
pub mod sqs_redelivery;
