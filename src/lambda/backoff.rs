//! How long a message that failed retryably stays hidden in the queue before
//! its next delivery: exponential in its delivery count, so a day-long
//! Dataverse outage spends a handful of deliveries, not the queue's
//! `maxReceiveCount` (20 in `template.yaml`), and ends with nothing in the
//! dead-letter queue.
//!
//! Pure arithmetic; the random part is passed in so the rules are pinned by
//! tests.

use std::time::Duration;

/// Hidden time after the first failed delivery.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// The longest an SQS message can be hidden (`ChangeMessageVisibility`
/// accepts at most 12 hours).
pub const MAX_BACKOFF: Duration = Duration::from_secs(43_200);

/// Upward jitter as a fraction of the step: many messages failing together
/// (one outage) come back spread over this much more, never sooner than the
/// step itself.
const JITTER_FRACTION: f64 = 0.2;

/// The visibility timeout to set after delivery number `receive_count`
/// (SQS's `ApproximateReceiveCount`, 1 for the first delivery) failed:
/// `30 s · 2^(receive_count − 1)` plus `jitter` (in `[0, 1]`) times a fifth of
/// that, capped at 12 hours. A count of 0 (attribute missing) counts as 1.
pub fn visibility_after_failure(receive_count: u32, jitter: f64) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(20);
    let step = FIRST_BACKOFF.saturating_mul(1u32 << doublings);
    if step >= MAX_BACKOFF {
        return MAX_BACKOFF;
    }
    let extra = step.mul_f64(JITTER_FRACTION * jitter.clamp(0.0, 1.0));
    (step + extra).min(MAX_BACKOFF)
}

/// Time allowed between SQS handing the batch to Lambda's poller and the
/// invocation starting (the batching window is at most 30 s in
/// `template.yaml`), with room to spare.
pub const RECEIVE_ALLOWANCE: Duration = Duration::from_secs(60);

/// `visibility` clipped to what SQS accepts for this receipt: a message can
/// stay hidden at most 12 hours from when it was received, so a longer
/// `ChangeMessageVisibility` would be refused and the message would come back
/// after the queue's (short) visibility timeout instead. `since_invoked` is
/// how long the invocation has run; [`RECEIVE_ALLOWANCE`] covers the time
/// before it.
pub fn within_receipt_limit(visibility: Duration, since_invoked: Duration) -> Duration {
    let limit = MAX_BACKOFF
        .saturating_sub(since_invoked)
        .saturating_sub(RECEIVE_ALLOWANCE);
    visibility.min(limit)
}

/// [`visibility_after_failure`] with a fresh random jitter.
pub fn jittered_visibility_after_failure(receive_count: u32) -> Duration {
    visibility_after_failure(receive_count, fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_hides_the_message_for_at_least_thirty_seconds() {
        assert_eq!(visibility_after_failure(1, 0.0), Duration::from_secs(30));
        assert_eq!(visibility_after_failure(0, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn each_further_failure_doubles_the_wait() {
        let waits: Vec<u64> = (1..=6)
            .map(|count| visibility_after_failure(count, 0.0).as_secs())
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960]);
    }

    #[test]
    fn jitter_only_ever_lengthens_the_wait() {
        for count in 1..=12 {
            let floor = visibility_after_failure(count, 0.0);
            for jitter in [0.0, 0.3, 1.0, 7.0, -1.0] {
                let wait = visibility_after_failure(count, jitter);
                assert!(wait >= floor, "{count} {jitter}: {wait:?} < {floor:?}");
                assert!(wait <= floor.mul_f64(1.2) + Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn the_wait_is_capped_at_twelve_hours() {
        assert_eq!(visibility_after_failure(12, 0.0), MAX_BACKOFF);
        assert_eq!(visibility_after_failure(13, 1.0), MAX_BACKOFF);
        assert!(visibility_after_failure(11, 1.0) < MAX_BACKOFF);
        assert_eq!(visibility_after_failure(u32::MAX, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn the_cap_leaves_room_for_the_time_since_the_message_was_received() {
        let capped = within_receipt_limit(MAX_BACKOFF, Duration::from_secs(5));
        assert_eq!(capped, Duration::from_secs(43_200 - 5 - 60));
        let short = Duration::from_secs(30);
        assert_eq!(within_receipt_limit(short, Duration::from_secs(5)), short);
    }

    #[test]
    fn twenty_deliveries_span_the_days_the_template_promises() {
        // template.yaml, MaxReceiveCount: the 20th delivery comes at least
        // 407010 s after the first; the 20th failure hides it 43200 s more.
        let before_last: u64 = (1..20)
            .map(|count| visibility_after_failure(count, 0.0).as_secs())
            .sum();
        assert_eq!(before_last, 407_010);
        assert_eq!(
            before_last + visibility_after_failure(20, 0.0).as_secs(),
            450_210
        );
    }
}
