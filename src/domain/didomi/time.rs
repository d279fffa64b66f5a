//! Lenient timestamp parsing: Didomi documents ISO-8601 and its examples use
//! RFC 3339 with and without fractions; a missing offset is read as UTC.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Parses an ISO-8601 timestamp; values without an offset are taken as UTC.
pub(crate) fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(raw) {
        return Some(with_offset.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|naive| naive.and_utc())
}

/// Serde adapter for optional timestamps: `null` or absent is `None`, an
/// unparseable string is an error naming the bad value.
pub(crate) fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => parse_timestamp(&raw).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("`{raw}` is not an ISO-8601 timestamp"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_fraction_and_offset_is_converted_to_utc() {
        let parsed = parse_timestamp("2025-03-14T10:21:07.512+01:00").unwrap();
        assert_eq!(parsed.to_rfc3339(), "2025-03-14T09:21:07.512+00:00");
    }

    #[test]
    fn timestamp_without_offset_is_read_as_utc() {
        let parsed = parse_timestamp("2025-03-14T09:21:07").unwrap();
        assert_eq!(parsed.to_rfc3339(), "2025-03-14T09:21:07+00:00");
    }

    #[test]
    fn garbage_is_not_a_timestamp() {
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
