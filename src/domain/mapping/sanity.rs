//! Checks a plan must pass before anything is written for it: values that no
//! retry can fix and that would otherwise do lasting harm (an id that breaks
//! the batch's shared query, a decision dated in the future that would freeze
//! the row against every later choice). Pure: the caller passes the time.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::domain::decision::ConsentPlan;

/// The longest `organization_user_id` accepted: an email address is at most
/// 320 characters (64 local + `@` + 255 domain).
pub const MAX_ORGANIZATION_USER_ID_CHARS: usize = 320;

/// Why a plan can never be written. Always permanent: the same webhook fails
/// the same way on every delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    /// `organization_user_id` is longer than any address.
    #[error(
        "`organization_user_id` is {chars} characters, over the {MAX_ORGANIZATION_USER_ID_CHARS} an email address can have"
    )]
    UserIdTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// `organization_user_id` holds control characters.
    #[error("`organization_user_id` holds control characters")]
    UserIdHasControlCharacters,
    /// The decision is dated further in the future than the allowed skew.
    #[error(
        "`created_at` {at} is more than {skew_seconds} s in the future (properties.max_clock_skew_seconds): a wrong clock or year would freeze the row against every later choice"
    )]
    InTheFuture {
        /// The decision's time.
        at: String,
        /// The allowed skew.
        skew_seconds: i64,
    },
}

/// Checks `plan` against `now` and the allowed clock skew.
pub fn check_plan(
    plan: &ConsentPlan,
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), PlanProblem> {
    if let Some(id) = plan.organization_user_id.as_deref() {
        let chars = id.chars().count();
        if chars > MAX_ORGANIZATION_USER_ID_CHARS {
            return Err(PlanProblem::UserIdTooLong { chars });
        }
        if id.chars().any(char::is_control) {
            return Err(PlanProblem::UserIdHasControlCharacters);
        }
    }
    if let Some(at) = plan.occurred_at
        && at > now + max_skew
    {
        return Err(PlanProblem::InTheFuture {
            at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            skew_seconds: max_skew.num_seconds(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::Outcome;

    fn plan(user: &str, at: DateTime<Utc>) -> ConsentPlan {
        ConsentPlan {
            outcome: Outcome::Write,
            reason: None,
            event_id: Some("e".into()),
            regulation: Some("gdpr".into()),
            organization_user_id: Some(user.into()),
            occurred_at: Some(at),
            consents: Vec::new(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_plain_address_in_the_past_passes() {
        assert_eq!(
            check_plan(
                &plan("jane@example.com", now()),
                now(),
                Duration::minutes(5)
            ),
            Ok(())
        );
    }

    #[test]
    fn an_id_longer_than_an_address_can_be_is_refused() {
        let long = format!("{}@example.com", "a".repeat(320));
        assert!(matches!(
            check_plan(&plan(&long, now()), now(), Duration::minutes(5)),
            Err(PlanProblem::UserIdTooLong { .. })
        ));
    }

    #[test]
    fn an_id_of_exactly_320_characters_passes() {
        let id = format!("{}@x.io", "a".repeat(315));
        assert_eq!(id.chars().count(), 320);
        assert_eq!(
            check_plan(&plan(&id, now()), now(), Duration::minutes(5)),
            Ok(())
        );
    }

    #[test]
    fn an_id_with_control_characters_is_refused() {
        assert_eq!(
            check_plan(&plan("jane@x.com\r\n", now()), now(), Duration::minutes(5)),
            Err(PlanProblem::UserIdHasControlCharacters)
        );
    }

    #[test]
    fn a_decision_within_the_skew_passes_and_beyond_it_is_refused() {
        let skew = Duration::minutes(5);
        let edge = now() + skew;
        assert_eq!(check_plan(&plan("j@x.com", edge), now(), skew), Ok(()));
        let error = check_plan(
            &plan("j@x.com", edge + Duration::milliseconds(1)),
            now(),
            skew,
        )
        .unwrap_err();
        assert!(error.to_string().contains("created_at"), "{error}");
    }
}
