//! The outside world, each behind a narrow interface the rest of the crate
//! owns: Dataverse implements [`crate::service::ConsentStore`], Entra
//! implements [`entra::TokenSource`], Secrets Manager implements
//! [`entra::CredentialSource`]. Adapters know Dataverse's and AWS's wire
//! formats, never Didomi's rules.

pub mod dataverse;
pub mod entra;
pub mod http;
pub mod secrets_manager;
pub mod sqs_redelivery;
