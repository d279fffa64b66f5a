//! The Dataverse users the emulator knows about: the application user behind each Entra client,
//! the person who edited seeded rows in the Dynamics UI, and the organization and business unit
//! that `WhoAmI` reports.

use uuid::Uuid;

/// `OrganizationId` of the emulated environment.
pub const ORGANIZATION_ID: &str = "0f6e1c2a-7b3d-4e59-8a10-00000000e0e0";
/// `BusinessUnitId` of every user here (the root business unit).
pub const BUSINESS_UNIT_ID: &str = "0f6e1c2a-7b3d-4e59-8a10-00000000b0b0";
/// systemuser that created and last modified seeded rows (and admin "UI" edits by default):
/// "someone else", never one of the application users.
pub const SOMEONE_ELSE: &str = "6c1f3e2d-9a8b-4c7d-8e6f-00000000cafe";

/// Namespace for the systemuser ids derived from client ids (any fixed UUID works).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x8f2c_4d1e_9b7a_4c3d_a1e2_0000_0000_5e5e);

/// Stable systemuser id of the application user of an Entra client that names none in the seed:
/// the same client id always maps to the same user, so tests can predict it.
pub fn default_app_user(client_id: &str) -> String {
    Uuid::new_v5(&USER_NAMESPACE, client_id.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_app_user_is_stable_and_differs_per_client() {
        assert_eq!(default_app_user("a"), default_app_user("a"));
        assert_ne!(default_app_user("a"), default_app_user("b"));
        assert_ne!(default_app_user("a"), SOMEONE_ELSE);
    }
}
