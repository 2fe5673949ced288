//! When a certificate is due for renewal: pure functions of its validity,
//! the CA's suggested window (ACME Renewal Information, RFC 9773) and now.
//!
//! - With ARI: a point inside the CA's window, the same point on every run
//!   for the same certificate (derived from its bytes), so hourly runs agree
//!   and many machines spread over the window as RFC 9773 §4.2 asks.
//! - Without: two thirds into the lifetime (day 60 of 90, day 30 of 45,
//!   day 4 of 6).
//! - A window that begins before the certificate existed is not about it
//!   (a stale answer, or one meant for the certificate it replaced): two
//!   thirds are used instead. Otherwise a CA that keeps suggesting a past
//!   window would make every hourly run order again (a 6-day certificate
//!   renewed in a loop).

use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// A certificate's validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// notAfter - notBefore.
    pub fn lifetime(&self) -> Duration {
        self.not_after - self.not_before
    }
}

/// The renewal window a CA suggests (ARI `suggestedWindow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suggested {
    /// Start of the window.
    pub start: OffsetDateTime,
    /// End of the window.
    pub end: OffsetDateTime,
}

/// Where the renewal time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The CA's ARI window.
    Ari,
    /// Two thirds of the lifetime (the CA offers no ARI).
    TwoThirds,
}

/// When to renew and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Renew at or after this time.
    pub renew_at: OffsetDateTime,
    /// Where it came from.
    pub basis: Basis,
}

/// The renewal time for a certificate. `spread` in [0, 1) places it inside
/// an ARI window ([`spread_of`] derives it from the certificate).
pub fn plan(validity: Validity, ari: Option<Suggested>, spread: f64) -> Plan {
    match ari.filter(|w| w.start >= validity.not_before) {
        Some(w) => {
            let span = if w.end > w.start {
                w.end - w.start
            } else {
                Duration::ZERO
            };
            Plan {
                renew_at: w.start + span * spread.clamp(0.0, 1.0),
                basis: Basis::Ari,
            }
        }
        None => Plan {
            renew_at: validity.not_before + validity.lifetime() * 2 / 3,
            basis: Basis::TwoThirds,
        },
    }
}

/// Whether the certificate is due at `now`.
pub fn due(plan: &Plan, now: OffsetDateTime) -> bool {
    now >= plan.renew_at
}

/// A fraction in [0, 1) fixed by the certificate's bytes.
pub fn spread_of(der: &[u8]) -> f64 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(der);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2026-01-01 00:00 UTC)
    }

    fn cert(at: OffsetDateTime, days: i64) -> Validity {
        Validity {
            not_before: at,
            not_after: at + Duration::days(days),
        }
    }

    /// An ARI window as Let's Encrypt publishes it: a band around two thirds
    /// of the lifetime, a ninth of the lifetime wide... placed by `ari`.
    fn le_window(v: Validity) -> Suggested {
        let l = v.lifetime();
        Suggested {
            start: v.not_before + l * 5 / 9,
            end: v.not_before + l * 6 / 9,
        }
    }

    #[test]
    fn without_ari_renewal_is_two_thirds_into_the_lifetime() {
        for (days, expect) in [
            (6, Duration::days(4)),
            (45, Duration::days(30)),
            (90, Duration::days(60)),
        ] {
            let p = plan(cert(t0(), days), None, 0.5);
            assert_eq!(p.basis, Basis::TwoThirds);
            assert_eq!(p.renew_at, t0() + expect, "{days}-day certificate");
            assert!(!due(&p, t0() + expect - Duration::seconds(1)));
            assert!(due(&p, t0() + expect));
        }
    }

    #[test]
    fn with_ari_renewal_is_inside_the_cas_window() {
        for days in [6, 45, 90] {
            let v = cert(t0(), days);
            let w = le_window(v);
            for spread in [0.0, 0.25, 0.999] {
                let p = plan(v, Some(w), spread);
                assert_eq!(p.basis, Basis::Ari);
                assert!(
                    p.renew_at >= w.start && p.renew_at <= w.end,
                    "{days} days, spread {spread}"
                );
            }
            assert_eq!(plan(v, Some(w), 0.0).renew_at, w.start);
        }
        // A window in the past (the CA wants it replaced now, e.g. after an incident).
        let v = cert(t0(), 90);
        let past = Suggested {
            start: t0() + Duration::days(20),
            end: t0() + Duration::days(21),
        };
        assert!(due(&plan(v, Some(past), 0.5), t0() + Duration::days(22)));
    }

    #[test]
    fn a_window_from_before_the_certificate_existed_is_not_about_it() {
        let v = cert(t0(), 6);
        let stale = Suggested {
            start: t0() - Duration::days(1),
            end: t0() - Duration::hours(1),
        };
        let p = plan(v, Some(stale), 0.5);
        assert_eq!(
            p,
            Plan {
                renew_at: t0() + Duration::days(4),
                basis: Basis::TwoThirds
            }
        );
        assert!(!due(&p, t0() + Duration::hours(1)));
        // After issuance and already past (the CA wants it replaced): due now.
        let incident = Suggested {
            start: t0() + Duration::hours(1),
            end: t0() + Duration::hours(2),
        };
        assert!(due(
            &plan(v, Some(incident), 0.5),
            t0() + Duration::hours(3)
        ));
    }

    /// Runs `renew` every hour for `hours`, each renewal replacing the
    /// certificate with a fresh one of the same lifetime; returns when it renewed.
    fn hourly(
        days: i64,
        hours: i64,
        ari: impl Fn(Validity) -> Option<Suggested>,
    ) -> Vec<OffsetDateTime> {
        let mut current = cert(t0(), days);
        let mut renewed = Vec::new();
        for h in 0..=hours {
            let now = t0() + Duration::hours(h);
            if due(&plan(current, ari(current), 0.3), now) {
                renewed.push(now);
                current = cert(now, days);
            }
        }
        renewed
    }

    #[test]
    fn hourly_runs_renew_each_certificate_once() {
        // 6-day certificates over 5 days: renewed once (day 4), not in a loop.
        assert_eq!(hourly(6, 5 * 24, |_| None), [t0() + Duration::days(4)]);
        assert_eq!(hourly(6, 5 * 24, |v| Some(le_window(v))).len(), 1);
        // A CA that always says "now" (a window from before issuance): still once.
        let always_now = |v: Validity| {
            Some(Suggested {
                start: v.not_before - Duration::days(1),
                end: v.not_before,
            })
        };
        assert_eq!(hourly(6, 5 * 24, always_now), [t0() + Duration::days(4)]);
        // 45 and 90 days: once in their first 40 and 70 days.
        assert_eq!(hourly(45, 40 * 24, |_| None), [t0() + Duration::days(30)]);
        assert_eq!(hourly(90, 70 * 24, |_| None), [t0() + Duration::days(60)]);
        assert_eq!(hourly(90, 70 * 24, |v| Some(le_window(v))).len(), 1);
    }

    #[test]
    fn spread_is_stable_and_in_range() {
        let a = spread_of(b"cert a");
        assert_eq!(a, spread_of(b"cert a"));
        assert!((0.0..1.0).contains(&a));
        assert_ne!(a, spread_of(b"cert b"));
    }
}
