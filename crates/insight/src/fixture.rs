//! A small day at one venue, as the API would answer it, for the tests: two broadcasters on
//! two flows, sessions that span hours (one still open), usage per hour, decisions and
//! changes, with passphrases in the answers that must never reach a table.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::records::{HourUsage, Snapshot, decode};

pub const RHB_ONE: &str = "00000000-0000-4000-8000-000000000001";
pub const RHB_TWO: &str = "00000000-0000-4000-8000-000000000002";
pub const HOST: &str = "00000000-0000-4000-8000-000000000003";
pub const FINAL: &str = "00000000-0000-4000-8000-0000000000f1";
pub const HEATS: &str = "00000000-0000-4000-8000-0000000000f2";
pub const L_ONE_FINAL: &str = "00000000-0000-4000-8000-0000000000a1";
pub const L_TWO_FINAL: &str = "00000000-0000-4000-8000-0000000000a2";
pub const L_ONE_HEATS: &str = "00000000-0000-4000-8000-0000000000a3";

/// 2026-07-24 at `h:m` UTC.
pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 24, h, m, 0).unwrap()
}

fn licence(id: &str, org: &str, flow: &str) -> serde_json::Value {
    json!({"id": id, "org_id": org, "flow_id": flow, "valid_from": t(8, 0), "valid_until": t(22, 0),
           "max_concurrent_receivers": 2, "allowed_networks": ["203.0.113.0/24"], "encryption_required": true,
           "passphrase": "licence-secret-0001", "state": "active", "created_at": t(8, 0)})
}

fn session(
    id: u32,
    licence: &str,
    org: &str,
    flow: &str,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    bytes: u64,
) -> serde_json::Value {
    json!({"id": format!("00000000-0000-4000-8000-{id:012}"), "licence_id": licence, "org_id": org, "flow_id": flow,
           "kind": "srt_listener", "peer": "203.0.113.7:40000", "connected_at": from, "disconnected_at": to,
           "disconnect_reason": to.map(|_| "peer_closed"), "packets": bytes / 1316, "bytes": bytes})
}

fn usage(org: &str, flow: &str, bytes: u64, sessions: u64) -> serde_json::Value {
    json!({"org_id": org, "org_name": "", "flow_id": flow, "flow_name": "", "packets": bytes / 1316,
           "bytes": bytes, "sessions": sessions, "open_sessions": 0})
}

fn entry(
    seq: i64,
    at: DateTime<Utc>,
    action: &str,
    decision: &str,
    reason: &str,
    org: Option<&str>,
) -> serde_json::Value {
    json!({"seq": seq, "at": at, "actor": "user/admin", "action": action, "subject": "access/rhb-one/final",
           "org_id": org, "flow_id": org.map(|_| FINAL), "licence_id": null, "decision": decision, "reason": reason})
}

/// Period 10:00 to 13:00, read at 12:30.
pub fn snapshot() -> Snapshot {
    let orgs = decode(
        "/api/v1/orgs",
        json!([
            {"id": HOST, "name": "host", "kind": "host", "created_at": t(7, 0)},
            {"id": RHB_ONE, "name": "rhb-one", "kind": "rights_holder", "created_at": t(7, 30)},
            {"id": RHB_TWO, "name": "rhb-two", "kind": "rights_holder", "created_at": t(7, 40)},
        ]),
    )
    .unwrap();
    let flows = decode(
        "/api/v1/flows",
        json!([
            {"id": FINAL, "name": "ath-100m-final", "description": "", "venue": "Stade de France", "event_code": "ATH-100M-M-FNL",
             "created_at": t(7, 50), "transport": {"redundancy": "none",
             "sources": [{"kind": "srt_listener", "name": "main", "passphrase": "venue-secret-0001"}]}},
            {"id": HEATS, "name": "ath-100m-heats", "description": "round 1", "venue": "Stade de France",
             "event_code": "ATH-100M-M-RD1", "created_at": t(7, 55)},
        ]),
    )
    .unwrap();
    let licences = decode(
        "/api/v1/licences",
        json!([
            licence(L_ONE_FINAL, RHB_ONE, FINAL),
            licence(L_TWO_FINAL, RHB_TWO, FINAL),
            licence(L_ONE_HEATS, RHB_ONE, HEATS)
        ]),
    )
    .unwrap();
    let mut sessions = json!([
        session(
            1,
            L_ONE_FINAL,
            RHB_ONE,
            FINAL,
            t(10, 30),
            Some(t(12, 15)),
            6_300_000_000
        ),
        session(
            2,
            L_TWO_FINAL,
            RHB_TWO,
            FINAL,
            t(11, 0),
            None,
            1_800_000_000
        ),
        session(
            3,
            L_ONE_HEATS,
            RHB_ONE,
            HEATS,
            t(11, 10),
            Some(t(11, 20)),
            600_000_000
        ),
        // Ended before the period: not loaded.
        session(
            4,
            L_ONE_HEATS,
            RHB_ONE,
            HEATS,
            t(9, 0),
            Some(t(9, 30)),
            1_000
        ),
    ]);
    // The heats licence was revoked while its receiver played.
    sessions[2]["disconnect_reason"] = json!("revoked");
    let sessions = decode("/api/v1/sessions", sessions).unwrap();
    let hour = |h: u32, rows: serde_json::Value| HourUsage {
        hour: t(h, 0),
        rows: decode("/api/v1/usage", rows).unwrap(),
    };
    let usage = vec![
        hour(10, json!([usage(RHB_ONE, FINAL, 1_800_000_000, 1)])),
        hour(
            11,
            json!([
                usage(RHB_ONE, FINAL, 3_600_000_000, 0),
                usage(RHB_TWO, FINAL, 1_800_000_000, 1),
                usage(RHB_ONE, HEATS, 600_000_000, 1)
            ]),
        ),
        hour(
            12,
            json!([
                usage(RHB_ONE, FINAL, 900_000_000, 0),
                usage(RHB_TWO, FINAL, 0, 0)
            ]),
        ),
    ];
    let audit = decode(
        "/api/v1/audit",
        json!([
            entry(1, t(8, 0), "licence.create", "done", "", Some(RHB_ONE)),
            entry(
                2,
                t(10, 29),
                "access.decide",
                "allow",
                "granted to 203.0.113.7 (0 connected)",
                Some(RHB_ONE)
            ),
            entry(
                3,
                t(10, 40),
                "access.decide",
                "deny",
                "source_network_not_allowed: 198.51.100.1 (1 connected)",
                Some(RHB_ONE)
            ),
            entry(
                4,
                t(10, 50),
                "access.decide",
                "deny",
                "unknown_organisation: 203.0.113.9 (0 connected)",
                None
            ),
            entry(
                5,
                t(11, 0),
                "access.decide",
                "allow",
                "granted to 203.0.113.8 (0 connected)",
                Some(RHB_TWO)
            ),
            entry(
                6,
                t(12, 10),
                "licence.disable",
                "done",
                "payment overdue",
                Some(RHB_TWO)
            ),
        ]),
    )
    .unwrap();
    Snapshot {
        as_of: t(12, 30),
        from: t(10, 0),
        until: t(13, 0),
        orgs,
        flows,
        licences,
        sessions,
        usage,
        audit,
        notes: Vec::new(),
    }
}
