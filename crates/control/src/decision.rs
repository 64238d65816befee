//! The access decision: may this rights holder receive this flow now, from this address?
//!
//! [`evaluate`] is the pure rule over one licence row, the time, the address and the number of
//! receivers already connected; the store lookup around it lives in
//! [`crate::ControlPlane::decide`]. Keeping it pure keeps it exhaustively testable.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::{LicenceState, Passphrase};

/// SRT extended rejection codes (`SRT_REJX_*` in libsrt's `access_control.h`), which a data
/// plane puts into the handshake when it refuses a caller.
pub mod srt_reject {
    /// Authentication failed (e.g. wrong passphrase or stream-id credentials).
    pub const UNAUTHORIZED: u16 = 1401;
    /// Credits for the resource exceeded (libsrt folds HTTP 429 into this code).
    pub const OVERLOAD: u16 = 1402;
    /// Access to the resource denied.
    pub const FORBIDDEN: u16 = 1403;
    /// Resource not found.
    pub const NOT_FOUND: u16 = 1404;
    /// The service is down (the control plane's store is unreachable).
    pub const DOWN: u16 = 1503;
}

/// Why access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    #[error("no such rights-holding organisation")]
    UnknownOrganisation,
    #[error("no such flow")]
    UnknownFlow,
    #[error("the organisation holds no licence for this flow")]
    NoLicence,
    #[error("the licence's validity window has not started")]
    NotYetValid,
    #[error("the licence's validity window has ended")]
    Expired,
    #[error("the licence is disabled")]
    Disabled,
    #[error("the licence is revoked")]
    Revoked,
    #[error("the source address is outside the licence's allowed networks")]
    SourceNetworkNotAllowed,
    #[error("the licence's maximum of concurrent receivers is reached")]
    ConcurrencyExceeded,
}

impl Refusal {
    /// Every refusal reason, for exhaustive tests and documentation.
    pub const ALL: [Refusal; 9] = [
        Refusal::UnknownOrganisation,
        Refusal::UnknownFlow,
        Refusal::NoLicence,
        Refusal::NotYetValid,
        Refusal::Expired,
        Refusal::Disabled,
        Refusal::Revoked,
        Refusal::SourceNetworkNotAllowed,
        Refusal::ConcurrencyExceeded,
    ];

    /// The SRT rejection code a data plane sends for this refusal. Unknown things are
    /// "not found" so that a caller cannot probe which organisations or flows exist.
    pub fn srt_reject_code(self) -> u16 {
        match self {
            Refusal::UnknownOrganisation | Refusal::UnknownFlow | Refusal::NoLicence => {
                srt_reject::NOT_FOUND
            }
            Refusal::NotYetValid
            | Refusal::Expired
            | Refusal::Disabled
            | Refusal::Revoked
            | Refusal::SourceNetworkNotAllowed => srt_reject::FORBIDDEN,
            Refusal::ConcurrencyExceeded => srt_reject::OVERLOAD,
        }
    }

    /// The snake_case name used in the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownOrganisation => "unknown_organisation",
            Refusal::UnknownFlow => "unknown_flow",
            Refusal::NoLicence => "no_licence",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::Disabled => "disabled",
            Refusal::Revoked => "revoked",
            Refusal::SourceNetworkNotAllowed => "source_network_not_allowed",
            Refusal::ConcurrencyExceeded => "concurrency_exceeded",
        }
    }
}

/// The parts of a licence the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Terms<'a> {
    pub state: LicenceState,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub max_concurrent_receivers: u32,
    pub allowed_networks: &'a [IpNet],
}

/// The rule. Checks run from the most final to the most transient reason, so the reason a
/// caller sees is the one that would still hold after the others were fixed: a revoked licence
/// says `revoked` even outside its window, a full licence says `concurrency_exceeded` last.
pub fn evaluate(
    terms: &Terms<'_>,
    now: DateTime<Utc>,
    source: IpAddr,
    connected: u32,
) -> Result<(), Refusal> {
    match terms.state {
        LicenceState::Revoked => return Err(Refusal::Revoked),
        LicenceState::Disabled => return Err(Refusal::Disabled),
        LicenceState::Active => {}
    }
    if now < terms.valid_from {
        return Err(Refusal::NotYetValid);
    }
    if now >= terms.valid_until {
        return Err(Refusal::Expired);
    }
    // An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let source = source.to_canonical();
    if !terms
        .allowed_networks
        .iter()
        .any(|net| net.contains(&source))
    {
        return Err(Refusal::SourceNetworkNotAllowed);
    }
    if connected >= terms.max_concurrent_receivers {
        return Err(Refusal::ConcurrencyExceeded);
    }
    Ok(())
}

/// What a data plane needs to admit a receiver.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub licence_id: Uuid,
    pub org_id: Uuid,
    pub flow_id: Uuid,
    /// The SRT passphrase of the licence; over HTTP only host admins get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<Passphrase>,
    pub encryption_required: bool,
    /// The grant holds until then at the latest; the data plane cuts the receiver there.
    pub valid_until: DateTime<Utc>,
}

/// A refusal with what the data plane needs to reject the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Denial {
    pub reason: Refusal,
    /// The SRT rejection code for the handshake.
    pub srt_reject_code: u16,
    /// The licence the refusal is about, when one was found.
    pub licence_id: Option<Uuid>,
}

/// The answer to one access question.
pub type Decision = Result<Grant, Denial>;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 24, hour, 0, 0).unwrap()
    }

    fn nets() -> Vec<IpNet> {
        vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]
    }

    fn terms(nets: &[IpNet]) -> Terms<'_> {
        Terms {
            state: LicenceState::Active,
            valid_from: t(10),
            valid_until: t(12),
            max_concurrent_receivers: 2,
            allowed_networks: nets,
        }
    }

    const INSIDE: &str = "203.0.113.7";

    #[test]
    fn grants_inside_window_network_and_capacity() {
        let n = nets();
        assert_eq!(
            evaluate(&terms(&n), t(11), INSIDE.parse().unwrap(), 1),
            Ok(())
        );
        assert_eq!(
            evaluate(&terms(&n), t(11), "2001:db8::5".parse().unwrap(), 0),
            Ok(())
        );
    }

    #[test]
    fn window_is_inclusive_start_exclusive_end() {
        let n = nets();
        let a = INSIDE.parse().unwrap();
        assert_eq!(evaluate(&terms(&n), t(10), a, 0), Ok(()));
        let just_before = t(10) - chrono::Duration::microseconds(1);
        assert_eq!(
            evaluate(&terms(&n), just_before, a, 0),
            Err(Refusal::NotYetValid)
        );
        assert_eq!(evaluate(&terms(&n), t(12), a, 0), Err(Refusal::Expired));
        let just_inside = t(12) - chrono::Duration::microseconds(1);
        assert_eq!(evaluate(&terms(&n), just_inside, a, 0), Ok(()));
    }

    #[test]
    fn state_wins_over_window_and_network() {
        let n = nets();
        let outside = "198.51.100.1".parse().unwrap();
        for (state, want) in [
            (LicenceState::Revoked, Refusal::Revoked),
            (LicenceState::Disabled, Refusal::Disabled),
        ] {
            let tm = Terms { state, ..terms(&n) };
            assert_eq!(evaluate(&tm, t(11), INSIDE.parse().unwrap(), 0), Err(want));
            assert_eq!(evaluate(&tm, t(20), outside, 99), Err(want));
        }
    }

    #[test]
    fn network_checks_v4_v6_and_mapped_addresses() {
        let n = nets();
        let tm = terms(&n);
        for (addr, ok) in [
            ("203.0.113.0", true),
            ("203.0.113.255", true),
            ("203.0.114.0", false),
            ("::ffff:203.0.113.9", true),
            ("::ffff:198.51.100.9", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
        ] {
            let got = evaluate(&tm, t(11), addr.parse().unwrap(), 0);
            let want = if ok {
                Ok(())
            } else {
                Err(Refusal::SourceNetworkNotAllowed)
            };
            assert_eq!(got, want, "{addr}");
        }
        let none = Terms {
            allowed_networks: &[],
            ..tm
        };
        assert_eq!(
            evaluate(&none, t(11), INSIDE.parse().unwrap(), 0),
            Err(Refusal::SourceNetworkNotAllowed)
        );
    }

    #[test]
    fn concurrency_limit_is_exclusive() {
        let n = nets();
        let a = INSIDE.parse().unwrap();
        assert_eq!(evaluate(&terms(&n), t(11), a, 1), Ok(()));
        assert_eq!(
            evaluate(&terms(&n), t(11), a, 2),
            Err(Refusal::ConcurrencyExceeded)
        );
        let zero = Terms {
            max_concurrent_receivers: 0,
            ..terms(&n)
        };
        assert_eq!(
            evaluate(&zero, t(11), a, 0),
            Err(Refusal::ConcurrencyExceeded)
        );
    }

    #[test]
    fn refusals_map_to_srt_codes() {
        for r in Refusal::ALL {
            let code = r.srt_reject_code();
            assert!(matches!(code, 1402..=1404), "{r:?}");
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json, r.as_str());
        }
        assert_eq!(Refusal::NoLicence.srt_reject_code(), 1404);
        assert_eq!(Refusal::Expired.srt_reject_code(), 1403);
        assert_eq!(Refusal::ConcurrencyExceeded.srt_reject_code(), 1402);
    }

    proptest::proptest! {
        /// Exhaustive over the whole input space in the small: the rule grants exactly when
        /// every individual condition holds.
        #[test]
        fn grants_iff_every_condition_holds(
            state in 0u8..3, now_h in 0u32..24, last_octet in 0u8..=255, v4_net in 0u8..3,
            max in 0u32..4, connected in 0u32..5,
        ) {
            let n = nets();
            let state = [LicenceState::Active, LicenceState::Disabled, LicenceState::Revoked][state as usize];
            let tm = Terms { state, max_concurrent_receivers: max, ..terms(&n) };
            let addr: IpAddr = format!("{}.{}", ["203.0.113", "198.51.100", "10.0.0"][v4_net as usize], last_octet).parse().unwrap();
            let ok = state == LicenceState::Active && (10..12).contains(&now_h) && v4_net == 0 && connected < max;
            proptest::prop_assert_eq!(evaluate(&tm, t(now_h), addr, connected).is_ok(), ok);
        }
    }
}
