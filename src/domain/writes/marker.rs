//! The ordering marker kept in `msdynmkt_reason` (Reason Description): which
//! Didomi event last decided a row, and when. Readable by a person looking at
//! the row in Dynamics, parseable by the next invocation.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

use crate::domain::cpc::REASON_MAX_LEN;

const PREFIX: &str = "Didomi event ";
const SEPARATOR: &str = " of ";
const SUFFIX: &str = " via didomi-cpc-sync";
/// Event ids longer than this are cut so the marker fits `msdynmkt_reason`.
const MAX_EVENT_ID_LEN: usize = 200;

/// The decision a row carries: the Didomi event id and the time of the choice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Marker {
    /// When the user made the choice (compared first).
    pub at: DateTime<Utc>,
    /// The Didomi event id (breaks ties between events of the same instant).
    pub event_id: String,
}

impl Marker {
    /// A marker for `event_id` at `at`; over-long ids are shortened the same
    /// way every time, so a replay still compares equal.
    pub fn new(event_id: &str, at: DateTime<Utc>) -> Self {
        let mut event_id: String = event_id.chars().filter(|c| !c.is_control()).collect();
        if event_id.len() > MAX_EVENT_ID_LEN {
            let mut cut = MAX_EVENT_ID_LEN;
            while !event_id.is_char_boundary(cut) {
                cut -= 1;
            }
            event_id.truncate(cut);
        }
        // The reason text keeps milliseconds; comparing at that precision makes
        // a replayed event equal to the marker it wrote.
        Self {
            at: at.trunc_subsecs(3),
            event_id,
        }
    }

    /// The `msdynmkt_reason` text, e.g.
    /// `Didomi event 0b6f3c9e-… of 2025-03-14T09:21:07.512Z via didomi-cpc-sync`.
    pub fn to_reason(&self) -> String {
        let text = format!(
            "{PREFIX}{}{SEPARATOR}{}{SUFFIX}",
            self.event_id,
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        debug_assert!(text.len() <= REASON_MAX_LEN);
        text
    }

    /// Reads a marker back; `None` for rows whose reason was written by
    /// someone else (Dynamics forms, other flows) or edited by hand.
    pub fn parse(reason: &str) -> Option<Self> {
        let body = reason.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (event_id, at) = body.rsplit_once(SEPARATOR)?;
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        (!event_id.is_empty()).then(|| Self {
            at,
            event_id: event_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn marker_round_trips_through_the_reason_text() {
        let marker = Marker::new(
            "0b6f3c9e-5d2a-4c1b-9a7e-2f1d8e6c4b11",
            at("2025-03-14T09:21:07.512Z"),
        );
        let reason = marker.to_reason();
        assert_eq!(
            reason,
            "Didomi event 0b6f3c9e-5d2a-4c1b-9a7e-2f1d8e6c4b11 of 2025-03-14T09:21:07.512Z via didomi-cpc-sync"
        );
        assert_eq!(Marker::parse(&reason), Some(marker));
    }

    #[test]
    fn event_id_containing_the_separator_still_parses() {
        let marker = Marker::new("a of b", at("2025-03-14T09:21:07Z"));
        assert_eq!(Marker::parse(&marker.to_reason()), Some(marker));
    }

    #[test]
    fn foreign_reasons_are_not_markers() {
        for reason in [
            "didomi-sync",
            "",
            "Didomi event  of 2025-01-01T00:00:00Z via didomi-cpc-sync",
            "Didomi event x of soon via didomi-cpc-sync",
        ] {
            assert_eq!(Marker::parse(reason), None, "{reason:?}");
        }
    }

    #[test]
    fn over_long_event_ids_are_cut_consistently_and_fit_the_column() {
        let long = "é".repeat(400);
        let marker = Marker::new(&long, at("2025-03-14T09:21:07Z"));
        assert!(marker.to_reason().len() <= REASON_MAX_LEN);
        assert_eq!(
            Marker::parse(&marker.to_reason()),
            Some(Marker::new(&long, at("2025-03-14T09:21:07Z")))
        );
    }

    #[test]
    fn sub_millisecond_times_compare_equal_after_a_round_trip() {
        let marker = Marker::new("e", at("2025-03-14T09:21:07.512345Z"));
        assert_eq!(Marker::parse(&marker.to_reason()), Some(marker));
    }

    #[test]
    fn later_time_orders_after_and_event_id_breaks_ties() {
        let earlier = Marker::new("z", at("2025-03-14T09:21:07Z"));
        let later = Marker::new("a", at("2025-03-14T09:21:08Z"));
        assert!(later > earlier);
        assert!(Marker::new("b", earlier.at) > Marker::new("a", earlier.at));
    }
}
