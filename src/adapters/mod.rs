//! The outside world, each behind a narrow interface the rest of the crate
//! owns: Dataverse implements [`crate::service::ConsentStore`], Entra
//! implements [`entra::TokenSource`], Secrets Manager implements
//! [`entra::CredentialSource`]. The Didomi REST API client
//! ([`didomi_api`]) and the SQS sender ([`sqs`]) serve the backfill and
//! reconcile commands, and with the Dataverse client the reverse sync's ports
//! ([`reverse_ports`]); its state lives in a file ([`state_file`]) or a DynamoDB
//! table ([`dynamodb_state`]). Adapters know wire formats, never Didomi's rules.

pub mod dataverse;
pub mod didomi_api;
pub mod dynamodb_state;
pub mod entra;
pub mod http;
pub mod reverse_ports;
pub mod secrets_manager;
pub mod sqs;
pub mod sqs_redelivery;
pub mod state_file;
