//! The purposes and topics of the Dataverse environment, read once at start:
//! mapping GUIDs are checked against it and topic rows take their parent
//! purpose from it.

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::cpc::{Purpose, Topic};
use crate::domain::decision::Target;

/// Purposes and topics by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    purposes: HashMap<Uuid, Purpose>,
    topics: HashMap<Uuid, Topic>,
}

/// A mapping target that cannot be written as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetProblem {
    /// The target from the configuration.
    pub target: Target,
    /// What is wrong, in words an operator can act on.
    pub problem: String,
    /// Whether writes to the target fail (true) or only deserve attention.
    pub fatal: bool,
}

impl Catalog {
    /// Builds the catalog from what Dataverse returned.
    pub fn new(purposes: Vec<Purpose>, topics: Vec<Topic>) -> Self {
        Self {
            purposes: purposes
                .into_iter()
                .map(|purpose| (purpose.id, purpose))
                .collect(),
            topics: topics.into_iter().map(|topic| (topic.id, topic)).collect(),
        }
    }

    /// The purpose a consent row for `target` binds: the purpose itself, or
    /// the topic's parent purpose. `None` when Dataverse does not know it.
    pub fn purpose_of(&self, target: &Target) -> Option<Uuid> {
        match target {
            Target::Purpose(id) => self.purposes.contains_key(id).then_some(*id),
            Target::Topic(id) => self.topics.get(id).and_then(|topic| topic.purpose_id),
        }
    }

    /// Checks configured targets: unknown GUIDs and topics without a parent
    /// are fatal; inactive purposes and topics are reported as warnings
    /// (Customer Insights – Journeys still enforces consent recorded on them).
    pub fn check<'a>(&self, targets: impl IntoIterator<Item = &'a Target>) -> Vec<TargetProblem> {
        let mut problems = Vec::new();
        let mut report = |target: &Target, problem: String, fatal: bool| {
            problems.push(TargetProblem {
                target: *target,
                problem,
                fatal,
            })
        };
        for target in targets {
            match target {
                Target::Purpose(id) => match self.purposes.get(id) {
                    None => report(
                        target,
                        format!("no msdynmkt_purpose with id {id} exists in the environment"),
                        true,
                    ),
                    Some(purpose) if !purpose.active => report(
                        target,
                        format!("purpose {:?} is inactive", purpose.name),
                        false,
                    ),
                    Some(_) => {}
                },
                Target::Topic(id) => match self.topics.get(id) {
                    None => report(
                        target,
                        format!("no msdynmkt_topic with id {id} exists in the environment"),
                        true,
                    ),
                    Some(topic) => match topic.purpose_id {
                        None => report(
                            target,
                            format!("topic {:?} has no parent purpose", topic.name),
                            true,
                        ),
                        Some(parent) => {
                            if !topic.active {
                                report(
                                    target,
                                    format!("topic {:?} is inactive", topic.name),
                                    false,
                                );
                            }
                            match self.purposes.get(&parent) {
                                Some(purpose) if !purpose.active => report(
                                    target,
                                    format!(
                                        "the parent purpose {:?} of topic {:?} is inactive",
                                        purpose.name, topic.name
                                    ),
                                    false,
                                ),
                                Some(_) => {}
                                None => report(
                                    target,
                                    format!(
                                        "the parent purpose {parent} of topic {:?} does not exist",
                                        topic.name
                                    ),
                                    true,
                                ),
                            }
                        }
                    },
                },
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(
            vec![
                Purpose {
                    id: Uuid::from_u128(1),
                    name: "Commercial".into(),
                    active: true,
                },
                Purpose {
                    id: Uuid::from_u128(2),
                    name: "Old".into(),
                    active: false,
                },
            ],
            vec![
                Topic {
                    id: Uuid::from_u128(10),
                    name: "Newsletter".into(),
                    purpose_id: Some(Uuid::from_u128(1)),
                    active: true,
                },
                Topic {
                    id: Uuid::from_u128(11),
                    name: "Legacy".into(),
                    purpose_id: Some(Uuid::from_u128(2)),
                    active: true,
                },
                Topic {
                    id: Uuid::from_u128(12),
                    name: "Orphan".into(),
                    purpose_id: None,
                    active: true,
                },
            ],
        )
    }

    #[test]
    fn topic_rows_bind_the_parent_purpose() {
        assert_eq!(
            catalog().purpose_of(&Target::Topic(Uuid::from_u128(10))),
            Some(Uuid::from_u128(1))
        );
    }

    #[test]
    fn unknown_guids_are_fatal() {
        let problems = catalog().check(&[
            Target::Purpose(Uuid::from_u128(9)),
            Target::Topic(Uuid::from_u128(99)),
        ]);
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|problem| problem.fatal));
    }

    #[test]
    fn topic_without_parent_is_fatal() {
        let problems = catalog().check(&[Target::Topic(Uuid::from_u128(12))]);
        assert!(
            problems[0].fatal && problems[0].problem.contains("no parent"),
            "{problems:?}"
        );
    }

    #[test]
    fn inactive_parent_purpose_is_a_warning() {
        let problems = catalog().check(&[
            Target::Topic(Uuid::from_u128(11)),
            Target::Purpose(Uuid::from_u128(2)),
        ]);
        assert_eq!(problems.len(), 2);
        assert!(
            problems.iter().all(|problem| !problem.fatal),
            "{problems:?}"
        );
    }

    #[test]
    fn known_active_targets_have_no_problem() {
        assert!(
            catalog()
                .check(&[
                    Target::Purpose(Uuid::from_u128(1)),
                    Target::Topic(Uuid::from_u128(10))
                ])
                .is_empty()
        );
    }
}
