//! Server write clock for `createdon`/`modifiedon`.
//!
//! Dataverse stamps writes with the server time in whole seconds. By default the emulator also
//! never hands out the same second twice (a write in the same second as the previous one is
//! stamped one second later) so "the most recently modified duplicate" is always well defined;
//! `distinct_seconds: false` gives Dataverse's ties. A test can pin the clock to a given instant,
//! running on from there or frozen, for deterministic timestamps.

use std::time::Instant;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How the write clock runs (seed `clock`, `PUT /_emulator/clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockSetting {
    /// Set the clock to this instant (it runs on in real time from there unless `frozen`).
    /// `None` = real time.
    pub now: Option<DateTime<Utc>>,
    /// Keep the clock at `now` until set again.
    pub frozen: bool,
    /// Stamp each write at least one second after the previous one (emulator default).
    pub distinct_seconds: bool,
}

impl Default for ClockSetting {
    fn default() -> Self {
        Self {
            now: None,
            frozen: false,
            distinct_seconds: true,
        }
    }
}

/// The write clock.
#[derive(Debug, Default)]
pub struct WriteClock {
    last: Option<DateTime<Utc>>,
    setting: ClockSetting,
    /// When `setting.now` was applied, to let a pinned clock run on.
    pinned_at: Option<Instant>,
}

fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

impl WriteClock {
    /// Applies a setting; pinning the time also forgets earlier stamps so the very next write
    /// gets exactly the pinned second.
    pub fn set(&mut self, setting: ClockSetting) {
        if setting.now.is_some() {
            self.last = None;
            self.pinned_at = Some(Instant::now());
        } else {
            self.pinned_at = None;
        }
        self.setting = setting;
    }

    /// Current clock time in whole seconds (without advancing anything).
    pub fn now(&self) -> DateTime<Utc> {
        match (self.setting.now, self.pinned_at) {
            (Some(at), Some(since)) if !self.setting.frozen => {
                let run = TimeDelta::from_std(since.elapsed()).unwrap_or_default();
                seconds(at + run)
            }
            (Some(at), _) => seconds(at),
            (None, _) => seconds(Utc::now()),
        }
    }

    /// Time stamp of the next write.
    pub fn next(&mut self) -> DateTime<Utc> {
        let now = self.now();
        let stamp = match self.last {
            Some(last) if self.setting.distinct_seconds && now <= last => {
                last + TimeDelta::seconds(1)
            }
            _ => now,
        };
        self.last = Some(stamp.max(self.last.unwrap_or(stamp)));
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

    fn at(text: &str) -> Option<DateTime<Utc>> {
        parse(text)
    }

    #[test]
    fn consecutive_writes_get_distinct_increasing_seconds() {
        let mut clock = WriteClock::default();
        let a = clock.next();
        let b = clock.next();
        let c = clock.next();
        assert!(a < b && b < c);
        assert_eq!(format(a).len(), 20);
    }

    #[test]
    fn real_time_is_truncated_to_whole_seconds() {
        let clock = WriteClock::default();
        let before = seconds(Utc::now());
        let now = clock.now();
        assert_eq!(now.timestamp_subsec_nanos(), 0);
        assert!(now >= before && now <= Utc::now());
    }

    #[test]
    fn frozen_clock_without_distinct_seconds_ties_like_dataverse() {
        let mut clock = WriteClock::default();
        clock.set(ClockSetting {
            now: at("2026-03-01T10:00:00.750Z"),
            frozen: true,
            distinct_seconds: false,
        });
        assert_eq!(format(clock.next()), "2026-03-01T10:00:00Z");
        assert_eq!(format(clock.next()), "2026-03-01T10:00:00Z");
    }

    #[test]
    fn frozen_clock_with_distinct_seconds_counts_up_from_the_pinned_second() {
        let mut clock = WriteClock::default();
        clock.observe(at("2030-01-01T00:00:00Z").unwrap());
        clock.set(ClockSetting {
            now: at("2026-03-01T10:00:00Z"),
            frozen: true,
            distinct_seconds: true,
        });
        assert_eq!(format(clock.next()), "2026-03-01T10:00:00Z");
        assert_eq!(format(clock.next()), "2026-03-01T10:00:01Z");
    }
}
