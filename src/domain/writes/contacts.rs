//! Which addresses a plan's consent belongs to: the contacts matching
//! `organization_user_id`, their contact point values, and the contact to
//! create when none matches and `upsert_mode` is on (README, "Write rules").

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::domain::cpc::{
    CONTACT_POINT_MAX_LEN, Contact, ContactPointKey, NewContact, is_email_address,
};
use crate::domain::decision::SkipReason;

/// How contacts are matched and created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactSettings {
    /// Contact column compared with `organization_user_id`.
    pub match_field: String,
    /// Contact column holding the address consent is written for.
    pub point_field: String,
    /// Create a contact when none matches.
    pub upsert_mode: bool,
    /// Without upsert mode, still write opt-outs for an email address that
    /// no contact has (`properties.write_opt_outs_without_contact`).
    pub opt_outs_without_contact: bool,
}

/// The addresses one user's decisions are written for, or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactPoints {
    /// Distinct addresses (compared case-insensitively, kept as stored), and
    /// the contact to create first when `upsert_mode` made one up.
    Found {
        /// The contact point values.
        addresses: Vec<String>,
        /// A contact to create in the same batch (upsert mode).
        create: Option<NewContact>,
        /// No contact has the address: write its opt-outs only.
        opt_outs_only: bool,
    },
    /// Nothing to write for this user; the reason is logged and the message acknowledged.
    Skip(SkipReason),
}

/// Namespace for the ids of contacts this product creates, so two
/// invocations creating the same contact pick the same id and the second
/// create-only write answers 412 instead of making a twin.
const CONTACT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_4e8e_8b1d_4c55_9a53_2d0e_7f1b_c001);

/// Resolves the contact points of `organization_user_id` among `contacts`
/// (the result of one query for every user of the batch).
pub fn contact_points(
    organization_user_id: &str,
    contacts: &[Contact],
    settings: &ContactSettings,
) -> ContactPoints {
    let wanted = organization_user_id.trim();
    let wanted_key = ContactPointKey::of(wanted);
    // Dataverse compares strings case-insensitively, so the query may return
    // contacts whose value differs in case only; they match too.
    let matching: Vec<&Contact> = contacts
        .iter()
        .filter(|contact| {
            contact
                .match_value
                .as_deref()
                .is_some_and(|value| ContactPointKey::of(value) == wanted_key)
        })
        .collect();
    if matching.is_empty() {
        return missing_contact(wanted, settings);
    }
    let mut seen = BTreeSet::new();
    let addresses: Vec<String> = matching
        .iter()
        .filter_map(|contact| contact.contact_point.as_deref().map(str::trim))
        .filter(|address| !address.is_empty())
        .filter(|address| seen.insert(ContactPointKey::of(address)))
        .map(str::to_string)
        .collect();
    if addresses.is_empty() {
        return ContactPoints::Skip(SkipReason::NoContactPoint {
            point_field: settings.point_field.clone(),
        });
    }
    if let Some(long) = addresses
        .iter()
        .find(|address| address.chars().count() > CONTACT_POINT_MAX_LEN)
    {
        return ContactPoints::Skip(SkipReason::ContactPointTooLong {
            point_field: settings.point_field.clone(),
            length: long.chars().count(),
        });
    }
    ContactPoints::Found {
        addresses,
        create: None,
        opt_outs_only: false,
    }
}

fn missing_contact(organization_user_id: &str, settings: &ContactSettings) -> ContactPoints {
    if !settings.upsert_mode {
        // Consent belongs to the address: an opt-out needs no contact, and a
        // contact another integration creates later must find it.
        if settings.opt_outs_without_contact && is_email_address(organization_user_id) {
            return ContactPoints::Found {
                addresses: vec![organization_user_id.to_string()],
                create: None,
                opt_outs_only: true,
            };
        }
        return ContactPoints::Skip(SkipReason::NoContact {
            match_field: settings.match_field.clone(),
        });
    }
    // The new contact's contact point is `organization_user_id` itself, so it
    // must be an address; anything else would put a CRM id in an email column.
    if !is_email_address(organization_user_id) {
        return ContactPoints::Skip(SkipReason::UpsertNeedsEmail {
            point_field: settings.point_field.clone(),
        });
    }
    let key = format!(
        "contact|{}|{}",
        settings.match_field,
        ContactPointKey::of(organization_user_id)
    );
    ContactPoints::Found {
        addresses: vec![organization_user_id.to_string()],
        create: Some(NewContact {
            id: Uuid::new_v5(&CONTACT_ID_NAMESPACE, key.as_bytes()),
            match_field: settings.match_field.clone(),
            match_value: organization_user_id.to_string(),
            contact_point_field: settings.point_field.clone(),
            contact_point: organization_user_id.to_string(),
        }),
        opt_outs_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(upsert_mode: bool) -> ContactSettings {
        ContactSettings {
            match_field: "emailaddress1".into(),
            point_field: "emailaddress1".into(),
            upsert_mode,
            opt_outs_without_contact: false,
        }
    }

    #[test]
    fn an_email_without_a_contact_gets_its_opt_outs_written_when_enabled() {
        let settings = ContactSettings {
            opt_outs_without_contact: true,
            ..settings(false)
        };
        assert_eq!(
            contact_points(" Jane@Example.com ", &[], &settings),
            ContactPoints::Found {
                addresses: vec!["Jane@Example.com".into()],
                create: None,
                opt_outs_only: true,
            }
        );
    }

    #[test]
    fn an_id_that_is_not_an_email_and_matches_no_contact_is_still_skipped() {
        let settings = ContactSettings {
            opt_outs_without_contact: true,
            ..settings(false)
        };
        assert!(matches!(
            contact_points("crm-4711", &[], &settings),
            ContactPoints::Skip(SkipReason::NoContact { .. })
        ));
    }

    #[test]
    fn a_contact_whose_address_differs_beyond_ascii_case_does_not_match() {
        // Dataverse's collation returns it for the query; the address is another mailbox.
        let kelvin = contact(1, "\u{212A}ate@x.com", Some("\u{212A}ate@x.com"));
        let settings = settings(false);
        assert!(matches!(
            contact_points("kate@x.com", &[kelvin], &settings),
            ContactPoints::Skip(_)
        ));
    }

    fn contact(n: u128, matched: &str, point: Option<&str>) -> Contact {
        Contact {
            id: Uuid::from_u128(n),
            match_value: Some(matched.into()),
            contact_point: point.map(Into::into),
        }
    }

    #[test]
    fn matching_is_case_insensitive_and_keeps_the_stored_address() {
        let contacts = [contact(
            1,
            "Jane.Doe@Example.com",
            Some("Jane.Doe@Example.com"),
        )];
        assert_eq!(
            contact_points("jane.doe@example.com", &contacts, &settings(false)),
            ContactPoints::Found {
                addresses: vec!["Jane.Doe@Example.com".into()],
                create: None,
                opt_outs_only: false,
            }
        );
    }

    #[test]
    fn several_matching_contacts_give_each_distinct_address_once() {
        let contacts = [
            contact(1, "jane@example.com", Some("jane@example.com")),
            contact(2, "jane@example.com", Some("JANE@example.com")),
            contact(3, "jane@example.com", Some("jane.work@example.com")),
        ];
        let ContactPoints::Found { addresses, .. } =
            contact_points("jane@example.com", &contacts, &settings(false))
        else {
            panic!()
        };
        assert_eq!(addresses, ["jane@example.com", "jane.work@example.com"]);
    }

    #[test]
    fn contacts_of_other_users_are_ignored() {
        let contacts = [contact(1, "john@example.com", Some("john@example.com"))];
        assert!(matches!(
            contact_points("jane@example.com", &contacts, &settings(false)),
            ContactPoints::Skip(_)
        ));
    }

    #[test]
    fn missing_contact_is_skipped_without_upsert_mode() {
        let ContactPoints::Skip(reason) = contact_points("jane@example.com", &[], &settings(false))
        else {
            panic!()
        };
        assert!(
            reason.to_string().contains("upsert_mode is off"),
            "{reason}"
        );
    }

    #[test]
    fn missing_contact_is_created_in_upsert_mode_with_a_stable_id() {
        let first = contact_points("Jane@Example.com", &[], &settings(true));
        let again = contact_points("jane@example.com", &[], &settings(true));
        let (
            ContactPoints::Found {
                create: Some(a),
                addresses,
                ..
            },
            ContactPoints::Found {
                create: Some(b), ..
            },
        ) = (first, again)
        else {
            panic!()
        };
        assert_eq!(a.id, b.id);
        assert_eq!(addresses, ["Jane@Example.com"]);
        assert_eq!(a.match_value, "Jane@Example.com");
    }

    #[test]
    fn upsert_mode_does_not_invent_an_email_contact_for_a_non_email_id() {
        assert!(matches!(
            contact_points("crm-42", &[], &settings(true)),
            ContactPoints::Skip(_)
        ));
        let by_external_id = ContactSettings {
            match_field: "externaluseridentifier".into(),
            ..settings(true)
        };
        assert!(matches!(
            contact_points("crm-42", &[], &by_external_id),
            ContactPoints::Skip(_)
        ));
    }

    #[test]
    fn contact_without_address_is_skipped_with_that_reason() {
        let contacts = [contact(1, "jane@example.com", None)];
        let ContactPoints::Skip(reason) =
            contact_points("jane@example.com", &contacts, &settings(true))
        else {
            panic!()
        };
        assert!(reason.to_string().contains("no emailaddress1"), "{reason}");
    }

    #[test]
    fn contact_point_field_may_differ_from_the_match_field() {
        let settings = ContactSettings {
            match_field: "externaluseridentifier".into(),
            point_field: "emailaddress2".into(),
            upsert_mode: false,
            opt_outs_without_contact: false,
        };
        let contacts = [contact(1, "crm-42", Some("jane.private@example.com"))];
        assert_eq!(
            contact_points("crm-42", &contacts, &settings),
            ContactPoints::Found {
                addresses: vec!["jane.private@example.com".into()],
                create: None,
                opt_outs_only: false,
            }
        );
    }
}
