//! Server write clock.
//!
//! Dataverse `modifiedon` has one-second resolution, yet CI-J picks "the most recently modified"
//! duplicate. To keep that well defined the emulator never hands out the same second twice: a
//! write in the same second as the previous one is stamped one second later.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// Monotonic, strictly increasing second-resolution clock for `createdon`/`modifiedon`.
#[derive(Debug, Default)]
pub struct WriteClock {
    last: Option<DateTime<Utc>>,
}

impl WriteClock {
    /// Next write time, strictly later than every previous one.
    pub fn next(&mut self) -> DateTime<Utc> {
        let now = Utc::now()
            .duration_trunc(TimeDelta::seconds(1))
            .unwrap_or_else(|_| Utc::now());
        let stamp = match self.last {
            Some(last) if now <= last => last + TimeDelta::seconds(1),
            _ => now,
        };
        self.last = Some(stamp);
        stamp
    }

    /// Makes later writes sort after a seeded timestamp.
    pub fn observe(&mut self, seen: DateTime<Utc>) {
        if self.last.is_none_or(|last| seen > last) {
            self.last = Some(seen);
        }
    }
}

/// Dataverse wire format for date-time columns.
pub fn format(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses an ISO 8601 / RFC 3339 timestamp as written in seeds and filters.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_writes_get_distinct_increasing_seconds() {
        let mut clock = WriteClock::default();
        let a = clock.next();
        let b = clock.next();
        let c = clock.next();
        assert!(a < b && b < c);
        assert_eq!(format(a).len(), 20);
    }
}
