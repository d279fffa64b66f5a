//! The service's batch behaviour against an in-memory store.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::config::IntegrationConfig;
use crate::domain::cpc::{ConsentRow, ConsentType, Contact, Purpose, Topic};
use crate::domain::decision::{ConsentValue, Decision, Outcome, Target};
use crate::domain::writes::Catalog;

#[derive(Debug, thiserror::Error)]
#[error("fake store error (retryable: {retryable}, exists: {exists})")]
struct FakeError {
    retryable: bool,
    exists: bool,
}

impl StoreError for FakeError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
    fn is_already_exists(&self) -> bool {
        self.exists
    }
}

#[derive(Default)]
struct FakeStore {
    contacts: Vec<Contact>,
    rows: Vec<ConsentRow>,
    calls: Mutex<Vec<&'static str>>,
    fail_contacts: Option<bool>,
    /// A value whose presence in a set query makes Dataverse refuse it
    /// (non-retryably), as an oversized or odd id would.
    poison: Option<String>,
    /// Set queries seen: how many values each asked for.
    query_sizes: Mutex<Vec<usize>>,
    /// For each op index that should fail: (retryable, already exists).
    fail_ops: Vec<(usize, bool, bool)>,
    written: Mutex<Vec<WriteOp>>,
}

/// This product's application user in these tests.
const OWN_USER: Uuid = Uuid::from_u128(0xa99);

impl ConsentStore for FakeStore {
    type Error = FakeError;

    async fn own_user(&self, _: Instant) -> Result<Uuid, FakeError> {
        self.calls.lock().unwrap().push("whoami");
        Ok(OWN_USER)
    }

    async fn purposes_and_topics(
        &self,
        _: Instant,
    ) -> Result<(Vec<Purpose>, Vec<Topic>), FakeError> {
        self.calls.lock().unwrap().push("catalog");
        Ok(catalog())
    }

    async fn find_contacts(
        &self,
        _: &str,
        _: &str,
        values: &[String],
        _: Instant,
    ) -> Result<Vec<Contact>, FakeError> {
        self.calls.lock().unwrap().push("contacts");
        self.query_sizes.lock().unwrap().push(values.len());
        if let Some(poison) = &self.poison
            && values.contains(poison)
        {
            return Err(FakeError {
                retryable: false,
                exists: false,
            });
        }
        match self.fail_contacts {
            Some(retryable) => Err(FakeError {
                retryable,
                exists: false,
            }),
            None => Ok(self.contacts.clone()),
        }
    }

    async fn consent_rows(&self, _: &[String], _: Instant) -> Result<Vec<ConsentRow>, FakeError> {
        self.calls.lock().unwrap().push("rows");
        Ok(self.rows.clone())
    }

    async fn execute_writes(
        &self,
        ops: &[WriteOp],
        _: Instant,
    ) -> Result<Vec<Result<(), FakeError>>, FakeError> {
        self.calls.lock().unwrap().push("batch");
        self.written.lock().unwrap().extend(ops.iter().cloned());
        Ok((0..ops.len())
            .map(
                |index| match self.fail_ops.iter().find(|(at, ..)| *at == index) {
                    Some((_, retryable, exists)) => Err(FakeError {
                        retryable: *retryable,
                        exists: *exists,
                    }),
                    None => Ok(()),
                },
            )
            .collect())
    }
}

const PURPOSE: Uuid = Uuid::from_u128(0x1000_0000_0000_0000_0000_0000_0000_0003);

fn config(upsert_mode: bool) -> Arc<IntegrationConfig> {
    config_edited(|document| document["upsert_mode"] = upsert_mode.into())
}

/// The fixture configuration with `edit` applied to its document.
fn config_edited(edit: impl FnOnce(&mut serde_json::Value)) -> Arc<IntegrationConfig> {
    let mut document: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/integration-config.json"
    )))
    .unwrap();
    edit(&mut document);
    Arc::new(
        IntegrationConfig::from_document(&document, false)
            .unwrap()
            .config,
    )
}

fn catalog() -> (Vec<Purpose>, Vec<Topic>) {
    (
        vec![Purpose {
            id: PURPOSE,
            name: "Commercial".into(),
            active: true,
        }],
        vec![Topic {
            id: Uuid::from_u128(0x23db_4a4d_ba9f_f011_bbd3_6045_bd19_4648),
            name: "Newsletter".into(),
            purpose_id: Some(PURPOSE),
            active: true,
        }],
    )
}

/// Metadata as start-up would have read it (the fixture's other targets are
/// not in this small catalogue, which the planner does not need).
fn metadata() -> Metadata {
    let (purposes, topics) = catalog();
    Metadata {
        catalog: Catalog::new(purposes, topics),
        own_user: OWN_USER,
        notes: Vec::new(),
    }
}

fn contact(email: &str) -> Contact {
    Contact {
        id: Uuid::new_v4(),
        match_value: Some(email.into()),
        contact_point: Some(email.into()),
    }
}

fn write_plan(user: &str, event: &str) -> Result<ConsentPlan, RejectedWebhook> {
    Ok(ConsentPlan {
        outcome: Outcome::Write,
        reason: None,
        event_id: Some(event.into()),
        regulation: Some("gdpr".into()),
        organization_user_id: Some(user.into()),
        occurred_at: Some(DateTime::<Utc>::from_timestamp(1_741_944_067, 0).unwrap()),
        consents: vec![Decision {
            target: Target::Purpose(PURPOSE),
            value: ConsentValue::OptedIn,
        }],
    })
}

fn skip_plan() -> Result<ConsentPlan, RejectedWebhook> {
    Ok(ConsentPlan {
        outcome: Outcome::Skip,
        reason: Some(SkipReason::NothingMapped),
        event_id: None,
        regulation: None,
        organization_user_id: None,
        occurred_at: None,
        consents: vec![],
    })
}

fn rejected() -> Result<ConsentPlan, RejectedWebhook> {
    Err(RejectedWebhook::Webhook(
        crate::domain::didomi::WebhookError::Empty,
    ))
}

async fn run(
    store: FakeStore,
    upsert: bool,
    items: &[Result<ConsentPlan, RejectedWebhook>],
) -> (Vec<MessageOutcome>, FakeStore) {
    let service = SyncService::new(store, config(upsert)).with_metadata(metadata());
    let outcomes = service
        .process(items, Instant::now() + std::time::Duration::from_secs(5))
        .await;
    (outcomes, service.store)
}

#[tokio::test]
async fn skipped_and_rejected_messages_need_no_round_trip() {
    let (outcomes, store) = run(FakeStore::default(), false, &[skip_plan(), rejected()]).await;
    assert!(matches!(outcomes[0], MessageOutcome::Skipped { .. }));
    assert!(matches!(
        outcomes[1],
        MessageOutcome::Failed {
            retryable: false,
            ..
        }
    ));
    assert!(store.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_of_ten_costs_three_round_trips() {
    let users: Vec<String> = (0..10).map(|i| format!("user{i}@example.com")).collect();
    let store = FakeStore {
        contacts: users.iter().map(|u| contact(u)).collect(),
        ..FakeStore::default()
    };
    let items: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| write_plan(u, &format!("ev-{i}")))
        .collect();
    let (outcomes, store) = run(store, false, &items).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, MessageOutcome::Written { created: 1, .. })),
        "{outcomes:?}"
    );
    assert_eq!(*store.calls.lock().unwrap(), ["contacts", "rows", "batch"]);
    assert_eq!(store.written.lock().unwrap().len(), 10);
}

#[tokio::test]
async fn unknown_contact_is_skipped_without_upsert_mode() {
    let (outcomes, store) = run(
        FakeStore::default(),
        false,
        &[write_plan("jane@example.com", "ev-1")],
    )
    .await;
    let MessageOutcome::Skipped { reason } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.to_string().contains("upsert_mode is off"));
    // The contacts and their rows are read together (one round trip at
    // Dataverse); no write follows.
    assert_eq!(*store.calls.lock().unwrap(), ["contacts", "rows"]);
}

#[tokio::test]
async fn upsert_mode_creates_the_contact_in_the_same_batch() {
    let (outcomes, store) = run(
        FakeStore::default(),
        true,
        &[write_plan("jane@example.com", "ev-1")],
    )
    .await;
    assert!(
        matches!(outcomes[0], MessageOutcome::Written { created: 1, .. }),
        "{outcomes:?}"
    );
    let written = store.written.lock().unwrap();
    assert!(matches!(written[0], WriteOp::CreateContact(_)));
    assert!(matches!(written[1], WriteOp::CreateConsent(_)));
}

#[tokio::test]
async fn contact_that_already_exists_is_not_a_failure() {
    let store = FakeStore {
        fail_ops: vec![(0, true, true)],
        ..FakeStore::default()
    };
    let (outcomes, _) = run(store, true, &[write_plan("jane@example.com", "ev-1")]).await;
    assert!(
        matches!(outcomes[0], MessageOutcome::Written { .. }),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn failed_contact_query_fails_only_the_pending_messages() {
    let store = FakeStore {
        fail_contacts: Some(true),
        ..FakeStore::default()
    };
    let (outcomes, _) = run(
        store,
        false,
        &[write_plan("jane@example.com", "ev-1"), skip_plan()],
    )
    .await;
    assert!(
        matches!(
            outcomes[0],
            MessageOutcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[1], MessageOutcome::Skipped { .. }));
}

#[tokio::test]
async fn failed_write_fails_only_its_owner() {
    let store = FakeStore {
        contacts: vec![contact("a@example.com"), contact("b@example.com")],
        fail_ops: vec![(0, true, false)],
        ..FakeStore::default()
    };
    let (outcomes, _) = run(
        store,
        false,
        &[
            write_plan("a@example.com", "ev-1"),
            write_plan("b@example.com", "ev-2"),
        ],
    )
    .await;
    assert!(
        matches!(
            outcomes[0],
            MessageOutcome::Failed {
                retryable: true,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], MessageOutcome::Written { .. }),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn permanent_write_error_is_not_retryable() {
    let store = FakeStore {
        contacts: vec![contact("a@example.com")],
        fail_ops: vec![(0, false, false)],
        ..FakeStore::default()
    };
    let (outcomes, _) = run(store, false, &[write_plan("a@example.com", "ev-1")]).await;
    assert!(
        matches!(
            outcomes[0],
            MessageOutcome::Failed {
                retryable: false,
                ..
            }
        ),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn nothing_newer_to_write_skips_the_batch_call() {
    let marker = crate::domain::writes::Marker::new(
        "ev-1",
        DateTime::<Utc>::from_timestamp(1_741_944_067, 0).unwrap(),
    );
    let row = ConsentRow {
        id: Uuid::new_v4(),
        contact_point: "a@example.com".into(),
        channel: crate::domain::cpc::CHANNEL_EMAIL,
        consent_type: Some(ConsentType::Purpose),
        purpose_id: Some(PURPOSE),
        topic_id: None,
        value: Some(ConsentValue::OptedIn),
        reason: Some(marker.to_reason()),
        state: 0,
        modified_on: Utc::now(),
        modified_by: Some(OWN_USER),
        etag: "W/\"1\"".into(),
    };
    let store = FakeStore {
        contacts: vec![contact("a@example.com")],
        rows: vec![row],
        ..FakeStore::default()
    };
    let (outcomes, store) = run(store, false, &[write_plan("a@example.com", "ev-1")]).await;
    assert!(
        matches!(
            outcomes[0],
            MessageOutcome::Written {
                replayed: 1,
                created: 0,
                updated: 0,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert_eq!(*store.calls.lock().unwrap(), ["contacts", "rows"]);
}

fn opt_out_plan(user: &str, event: &str) -> Result<ConsentPlan, RejectedWebhook> {
    let mut plan = write_plan(user, event).unwrap();
    plan.consents[0].value = ConsentValue::OptedOut;
    Ok(plan)
}

#[tokio::test]
async fn an_opt_out_for_an_address_without_a_contact_is_written_for_the_address() {
    let (outcomes, store) = run(
        FakeStore::default(),
        false,
        &[opt_out_plan("nobody.yet@example.com", "ev-1")],
    )
    .await;
    assert!(
        matches!(outcomes[0], MessageOutcome::Written { created: 1, .. }),
        "{outcomes:?}"
    );
    let written = store.written.lock().unwrap();
    let [WriteOp::CreateConsent(row)] = written.as_slice() else {
        panic!("{written:?}")
    };
    assert_eq!(row.contact_point, "nobody.yet@example.com");
    assert_eq!(row.value, ConsentValue::OptedOut);
}

#[tokio::test]
async fn opt_outs_without_a_contact_can_be_turned_off() {
    let config = config_edited(|document| {
        document["properties"]["write_opt_outs_without_contact"] = serde_json::json!(false)
    });
    let service = SyncService::new(FakeStore::default(), config).with_metadata(metadata());
    let outcomes = service
        .process(
            &[opt_out_plan("nobody.yet@example.com", "ev-1")],
            Instant::now() + std::time::Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(
            &outcomes[0],
            MessageOutcome::Skipped {
                reason: SkipReason::NoContact { .. }
            }
        ),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_set_query_refused_because_of_one_id_fails_only_that_message() {
    let store = FakeStore {
        contacts: vec![contact("a@example.com"), contact("b@example.com")],
        poison: Some("odd\"id@example.com".into()),
        ..FakeStore::default()
    };
    let (outcomes, store) = run(
        store,
        false,
        &[
            write_plan("a@example.com", "ev-a"),
            write_plan("odd\"id@example.com", "ev-x"),
            write_plan("b@example.com", "ev-b"),
        ],
    )
    .await;
    assert!(
        matches!(outcomes[0], MessageOutcome::Written { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(
            outcomes[1],
            MessageOutcome::Failed {
                retryable: false,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], MessageOutcome::Written { .. }),
        "{outcomes:?}"
    );
    // The combined set query (contacts with their rows), refused; then the
    // step-by-step path: the set again, then one per user to find the culprit.
    assert_eq!(*store.query_sizes.lock().unwrap(), vec![3, 3, 1, 1, 1]);
}

#[tokio::test]
async fn a_decision_dated_beyond_the_clock_skew_fails_permanently_with_the_field_named() {
    let mut plan = write_plan("a@example.com", "ev-1").unwrap();
    plan.occurred_at = Some(Utc::now() + chrono::Duration::days(365));
    let store = FakeStore {
        contacts: vec![contact("a@example.com")],
        ..FakeStore::default()
    };
    let (outcomes, store) = run(store, false, &[Ok(plan)]).await;
    let MessageOutcome::Failed { error, retryable } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(!retryable);
    assert!(error.contains("created_at"), "{error}");
    assert!(
        store.calls.lock().unwrap().is_empty(),
        "nothing is read or written"
    );
}

#[tokio::test]
async fn an_oversized_id_fails_its_message_alone_before_any_query() {
    let long = format!("{}@example.com", "x".repeat(400));
    let store = FakeStore {
        contacts: vec![contact("a@example.com")],
        ..FakeStore::default()
    };
    let (outcomes, store) = run(
        store,
        false,
        &[
            write_plan(&long, "ev-x"),
            write_plan("a@example.com", "ev-a"),
        ],
    )
    .await;
    assert!(
        matches!(
            outcomes[0],
            MessageOutcome::Failed {
                retryable: false,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], MessageOutcome::Written { .. }),
        "{outcomes:?}"
    );
    assert_eq!(*store.query_sizes.lock().unwrap(), vec![1]);
}

#[tokio::test]
async fn metadata_is_read_on_first_use_and_kept() {
    let store = FakeStore {
        contacts: vec![contact("a@example.com")],
        ..FakeStore::default()
    };
    // Only the target the fake catalogue has.
    let config = config_edited(|document| {
        document["mappings"] = serde_json::json!([
            {"id": format!("purpose:{PURPOSE}"), "value": "marketing-communications-Xk3Pq9"}
        ])
    });
    let service = SyncService::new(store, config);
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    for event in ["ev-1", "ev-2"] {
        let outcomes = service
            .process(&[write_plan("a@example.com", event)], deadline)
            .await;
        assert!(
            matches!(outcomes[0], MessageOutcome::Written { .. }),
            "{outcomes:?}"
        );
    }
    let calls = service.store.calls.lock().unwrap();
    assert_eq!(calls.iter().filter(|call| **call == "whoami").count(), 1);
    assert_eq!(calls.iter().filter(|call| **call == "catalog").count(), 1);
}
