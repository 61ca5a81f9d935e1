//! The one clock of `vault`: every timestamp it writes comes from here.
//!
//! Invariant: timestamps are UTC RFC 3339 (`…Z`). Each released field keeps the precision
//! it was released with (archive `createdAt` in seconds, audit `time` in milliseconds,
//! key `createdAt` in nanoseconds, as ksctl prints it); changing one changes released
//! files, so the precision is named at the call site rather than chosen here.
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How much of the second a timestamp keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
    Nanos,
}

/// The current time, UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `t` as RFC 3339 at `precision`.
pub fn rfc3339(t: OffsetDateTime, precision: Precision) -> String {
    let nanos = match precision {
        Precision::Seconds => 0,
        Precision::Millis => u32::from(t.millisecond()) * 1_000_000,
        Precision::Nanos => t.nanosecond(),
    };
    let t = t.replace_nanosecond(nanos).unwrap_or(t);
    // Formatting a UTC time with a 4-digit year cannot fail; fall back anyway.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The current time as RFC 3339 at `precision`.
pub fn now_rfc3339(precision: Precision) -> String {
    rfc3339(now(), precision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_are_those_of_the_released_fields() {
        let t = time::macros::datetime!(2025-01-02 03:04:05.678901234 UTC);
        assert_eq!(rfc3339(t, Precision::Seconds), "2025-01-02T03:04:05Z");
        assert_eq!(rfc3339(t, Precision::Millis), "2025-01-02T03:04:05.678Z");
        assert_eq!(
            rfc3339(t, Precision::Nanos),
            "2025-01-02T03:04:05.678901234Z"
        );
    }
}
