//! The decision, without sockets, files or a clock of its own: from the
//! presented certificate's inventory row, whether it is a renewal waiting
//! for confirmation, the time and the policy, what the service does.

use devtls_fleet::renewal::CertRow;

/// Why a device is refused (the `X-Devtls-Status` header of a 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The certificate is revoked.
    Revoked,
    /// Signed by the fleet CA but not in the inventory (or a certificate
    /// `fleet issue` has not finished making).
    Unknown,
    /// Replaced by a renewal the device already confirmed.
    Superseded,
    /// Past its end of validity (and past `--grace`, if any).
    Expired,
    /// A renewal of this certificate is pending and the request asks for
    /// another one (another kind, another CSR key, or a key another
    /// service keeps): 409.
    Pending,
}

impl Refusal {
    /// The word the header and the body carry.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Revoked => "revoked",
            Refusal::Unknown => "unknown",
            Refusal::Superseded => "superseded",
            Refusal::Expired => "expired",
            Refusal::Pending => "pending",
        }
    }

    /// The HTTP status: 409 for [`Refusal::Pending`] (the request conflicts
    /// with the renewal already made), 403 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Pending => 409,
            _ => 403,
        }
    }

    /// What the device can do, when more than the name says.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Refusal::Pending => Some(
                "a new certificate was already made for this one; send the same request \
                 again to get it, or connect with it to confirm it",
            ),
            _ => None,
        }
    }
}

/// When devices renew and what happens to their old certificates.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Seconds after a certificate's start of validity when it may be
    /// renewed; `None`: two thirds of its lifetime.
    pub renew_after: Option<i64>,
    /// Seconds after expiry during which an expired certificate may still renew.
    pub grace: Option<i64>,
    /// Revoke (rather than supersede) the old certificate on confirmation.
    pub revoke_old: bool,
    /// Lifetime of new certificates in seconds; `None`: the old one's.
    pub lifetime: Option<i64>,
}

impl Policy {
    /// When `row` enters its renewal window (Unix seconds).
    pub fn renew_at(&self, row: &CertRow) -> i64 {
        let lifetime = (row.not_after - row.not_before).max(0);
        row.not_before + self.renew_after.unwrap_or(lifetime * 2 / 3)
    }

    /// What the old certificate becomes once the device confirms its new one.
    pub fn old_becomes(&self) -> &'static str {
        if self.revoke_old {
            "revoked"
        } else {
            "superseded"
        }
    }

    /// The lifetime of the certificate replacing `row`, in seconds.
    pub fn new_lifetime(&self, row: &CertRow) -> i64 {
        // The old one's includes the minute of clock skew its start was moved back.
        self.lifetime
            .unwrap_or(row.not_after - row.not_before - 60)
            .max(3600)
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refuse with a 403 and this status.
    Refuse(Refusal),
    /// The device presents its pending new certificate: make it active.
    Confirm,
    /// Active and not yet in its window: nothing to renew.
    Current,
    /// In its renewal window (or expired within the grace): renew.
    Renew,
}

/// Decides from the row of the presented certificate (`None`: not in the
/// inventory), whether that row is a renewal waiting for confirmation, and
/// the time `now` (Unix seconds).
pub fn decide(row: Option<&CertRow>, renewal_pending: bool, now: i64, policy: &Policy) -> Verdict {
    let Some(row) = row else {
        return Verdict::Refuse(Refusal::Unknown);
    };
    let expired = now >= row.not_after;
    match row.status.as_str() {
        "revoked" => Verdict::Refuse(Refusal::Revoked),
        "superseded" => Verdict::Refuse(Refusal::Superseded),
        "pending" if renewal_pending && !expired => Verdict::Confirm,
        "pending" if renewal_pending => Verdict::Refuse(Refusal::Expired),
        "active" if expired => match policy.grace {
            Some(grace) if now < row.not_after + grace => Verdict::Renew,
            _ => Verdict::Refuse(Refusal::Expired),
        },
        "active" if now >= policy.renew_at(row) => Verdict::Renew,
        "active" => Verdict::Current,
        _ => Verdict::Refuse(Refusal::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    fn row(status: &str) -> CertRow {
        CertRow {
            id: 1,
            device: "cam-1".into(),
            serial: "01".into(),
            status: status.into(),
            role: "client".into(),
            key_type: "p256".into(),
            dns: String::new(),
            ips: String::new(),
            not_before: 0,
            not_after: 30 * DAY,
            owner: None,
        }
    }

    #[test]
    fn the_window_opens_at_two_thirds_by_default() {
        let p = Policy::default();
        let active = row("active");
        assert_eq!(decide(Some(&active), false, 19 * DAY, &p), Verdict::Current);
        assert_eq!(decide(Some(&active), false, 20 * DAY, &p), Verdict::Renew);
        let early = Policy {
            renew_after: Some(5 * DAY),
            ..Policy::default()
        };
        assert_eq!(
            decide(Some(&active), false, 5 * DAY, &early),
            Verdict::Renew
        );
        assert_eq!(
            decide(Some(&active), false, 4 * DAY, &early),
            Verdict::Current
        );
    }

    #[test]
    fn expired_renews_only_within_the_grace() {
        let active = row("active");
        let none = Policy::default();
        assert_eq!(
            decide(Some(&active), false, 30 * DAY, &none),
            Verdict::Refuse(Refusal::Expired)
        );
        let grace = Policy {
            grace: Some(7 * DAY),
            ..Policy::default()
        };
        assert_eq!(
            decide(Some(&active), false, 36 * DAY, &grace),
            Verdict::Renew
        );
        assert_eq!(
            decide(Some(&active), false, 37 * DAY, &grace),
            Verdict::Refuse(Refusal::Expired)
        );
    }

    #[test]
    fn a_device_that_never_confirms_keeps_its_old_certificate_until_expiry() {
        // The old row stays active while its renewal is pending: it renews
        // (getting the same pending credentials) until its own expiry, then is refused.
        let old = row("active");
        let p = Policy::default();
        assert_eq!(decide(Some(&old), false, 29 * DAY, &p), Verdict::Renew);
        assert_eq!(
            decide(Some(&old), false, 30 * DAY, &p),
            Verdict::Refuse(Refusal::Expired)
        );
    }

    #[test]
    fn statuses_refuse_and_pending_confirms() {
        let p = Policy::default();
        assert_eq!(
            decide(None, false, 0, &p),
            Verdict::Refuse(Refusal::Unknown)
        );
        assert_eq!(
            decide(Some(&row("revoked")), false, 1, &p),
            Verdict::Refuse(Refusal::Revoked)
        );
        assert_eq!(
            decide(Some(&row("superseded")), false, 1, &p),
            Verdict::Refuse(Refusal::Superseded)
        );
        assert_eq!(decide(Some(&row("pending")), true, 1, &p), Verdict::Confirm);
        // A certificate `fleet issue` is still making was never given to anyone.
        assert_eq!(
            decide(Some(&row("pending")), false, 1, &p),
            Verdict::Refuse(Refusal::Unknown)
        );
    }
}
