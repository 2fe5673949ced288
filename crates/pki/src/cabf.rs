//! The CA/Browser Forum's maximum TLS certificate lifetimes, as data.
//!
//! Publicly trusted CAs may not issue a subscriber (leaf) certificate valid for
//! longer than the limit in force at its notBefore. Browsers enforce it, the
//! device does not; lint warns so a private CA's certificates do not surprise
//! a browser-based tool later. Ballot SC-22 set 398 days from 2020-09-01;
//! ballot SC-081 shortens it in three steps. This table is the one place the
//! schedule lives.

use time::macros::date;
use time::{Date, Duration, OffsetDateTime};

/// One step of the schedule: from `from` (UTC midnight) on, at most `max_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifetimeLimit {
    /// The first day the limit applies (by the certificate's notBefore).
    pub from: Date,
    /// The longest allowed validity period, in days.
    pub max_days: u32,
    /// The ballot that set it.
    pub ballot: &'static str,
}

/// The schedule, oldest first. Before the first entry no limit is checked.
pub const SCHEDULE: &[LifetimeLimit] = &[
    LifetimeLimit {
        from: date!(2018 - 03 - 01),
        max_days: 825,
        ballot: "193",
    },
    LifetimeLimit {
        from: date!(2020 - 09 - 01),
        max_days: 398,
        ballot: "SC-22",
    },
    LifetimeLimit {
        from: date!(2026 - 03 - 15),
        max_days: 200,
        ballot: "SC-081",
    },
    LifetimeLimit {
        from: date!(2027 - 03 - 15),
        max_days: 100,
        ballot: "SC-081",
    },
    LifetimeLimit {
        from: date!(2029 - 03 - 15),
        max_days: 47,
        ballot: "SC-081",
    },
];

/// The limit in force for a certificate whose validity starts at `not_before`.
pub fn limit_at(not_before: OffsetDateTime) -> Option<&'static LifetimeLimit> {
    let day = not_before.to_offset(time::UtcOffset::UTC).date();
    SCHEDULE.iter().rev().find(|l| l.from <= day)
}

/// The validity period as the Baseline Requirements count it: both ends
/// inclusive, so notAfter - notBefore + 1 second.
pub fn lifetime(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Duration {
    not_after - not_before + Duration::seconds(1)
}

/// The limit a certificate with this validity exceeds, if any.
pub fn exceeded(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Option<&'static LifetimeLimit> {
    let limit = limit_at(not_before)?;
    (lifetime(not_before, not_after) > Duration::days(limit.max_days.into())).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_limit_follows_not_before() {
        assert_eq!(limit_at(datetime!(2017-01-01 0:00 UTC)), None);
        assert_eq!(
            limit_at(datetime!(2025-06-01 0:00 UTC)).unwrap().max_days,
            398
        );
        assert_eq!(
            limit_at(datetime!(2026-03-14 23:59 UTC)).unwrap().max_days,
            398
        );
        assert_eq!(
            limit_at(datetime!(2026-03-15 0:00 UTC)).unwrap().max_days,
            200
        );
        assert_eq!(
            limit_at(datetime!(2027-03-15 0:00 UTC)).unwrap().max_days,
            100
        );
        assert_eq!(
            limit_at(datetime!(2029-03-15 0:00 UTC)).unwrap().max_days,
            47
        );
        assert_eq!(
            limit_at(datetime!(2040-01-01 0:00 UTC)).unwrap().max_days,
            47
        );
    }

    #[test]
    fn exactly_the_maximum_is_allowed_one_second_more_is_not() {
        let start = datetime!(2026-04-01 0:00 UTC);
        let end = start + Duration::days(200) - Duration::seconds(1);
        assert!(exceeded(start, end).is_none());
        assert_eq!(
            exceeded(start, end + Duration::seconds(1))
                .unwrap()
                .max_days,
            200
        );
    }
}
