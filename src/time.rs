//! Time as the API and the workflows keep it: milliseconds since the epoch, written and read
//! as RFC 3339 timestamps (UTC, millisecond precision) in `...DateTime` fields and `$filter`
//! literals.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2024-05-01T12:00:03.450Z`.
pub fn format_rfc3339(ms: i64) -> String {
    // Out of the years 1-9999 only for a corrupt value: shown as the epoch rather than failing.
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` into milliseconds since the epoch
/// (a finer fraction is cut to the millisecond).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        let ms = 1_718_798_463_450; // 2024-06-19T12:01:03.450Z
        assert_eq!(format_rfc3339(ms), "2024-06-19T12:01:03.450Z");
        assert_eq!(parse_rfc3339("2024-06-19T12:01:03.450Z"), Some(ms));
        assert_eq!(parse_rfc3339("2024-06-19T12:01:03.45Z"), Some(ms));
        assert_eq!(parse_rfc3339("2024-06-19T14:01:03.45+02:00"), Some(ms));
        assert_eq!(parse_rfc3339("2024-06-19T12:01:03Z"), Some(ms - 450));
        assert_eq!(parse_rfc3339("2024-06-19T12:01:03.450999Z"), Some(ms));
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Some(-1));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "2024-06-19",
            "2024-13-01T00:00:00Z",
            "2024-06-19T12:01:03",
            "2024-06-19T25:01:03Z",
            "2024-06-19T12:01:03.Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
