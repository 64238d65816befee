//! `stadion insight` against a real `stadion serve` on SQLite: broadcasters, a flow and
//! licences made with the CLI, access decisions asked over the API, receiver sessions
//! reported by a second data-plane node on the same store (the data plane's own
//! `record_usage`), then queried, plotted and scoped to a rights holder's token.

mod common;

use std::path::Path;

use common::{Serve, ok_as, stadion};

use stadion_control::usage::{SessionKind, UsageEvent, UsageRecord};
use stadion_control::{ControlPlane, NodeConfig};

const TOKEN: &str = "stn_insighttestinsig_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH";

fn ok(server: &str, args: &[&str]) -> String {
    ok_as(server, TOKEN, &[], args)
}

fn licence(server: &str, org: &str) -> uuid::Uuid {
    let out = ok(
        server,
        &[
            "licence",
            "create",
            "--org",
            org,
            "--flow",
            "final",
            "--from",
            "2020-01-01T00:00:00Z",
            "--until",
            "2099-01-01T00:00:00Z",
            "--network",
            "203.0.113.0/24",
            "--json",
        ],
    );
    let licence: serde_json::Value = serde_json::from_str(&out).unwrap();
    licence["id"].as_str().unwrap().parse().unwrap()
}

/// A session of `bytes` delivered in two halves, `from` to `to` minutes from now.
fn session(licence: uuid::Uuid, from: i64, to: i64, bytes: u64) -> Vec<UsageRecord> {
    let now = chrono::Utc::now();
    let at = |minutes: i64| now + chrono::Duration::minutes(minutes);
    let id = uuid::Uuid::new_v4();
    let record = |t, event| UsageRecord {
        session: id,
        licence_id: licence,
        kind: SessionKind::SrtListener,
        peer: "203.0.113.7:40000".parse().unwrap(),
        at: at(t),
        event,
    };
    let half = UsageEvent::Delivered {
        packets: bytes / 2 / 1316,
        bytes: bytes / 2,
    };
    vec![
        record(from, UsageEvent::Connected),
        record((from + to) / 2, half),
        record(
            to,
            UsageEvent::Disconnected {
                reason: "peer_closed".into(),
                packets: bytes / 1316,
                bytes,
            },
        ),
    ]
}

/// Reports the sessions as a second data-plane node on the server's SQLite file would.
fn report_usage(db: &Path, records: Vec<UsageRecord>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", db.display());
        let node = ControlPlane::open_node(&url, NodeConfig::named("venue-node-2"))
            .await
            .unwrap();
        node.record_usage(&records).await.unwrap();
        node.shutdown().await;
    });
}

#[test]
fn insight_queries_and_plots_what_the_server_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), TOKEN);
    let server = serve.url.clone();

    for org in ["rhb-one", "rhb-two"] {
        ok(&server, &["org", "create", "--name", org]);
    }
    ok(
        &server,
        &[
            "flow",
            "create",
            "--name",
            "final",
            "--venue",
            "SdF",
            "--event-code",
            "ATH",
        ],
    );
    let (one, two) = (licence(&server, "rhb-one"), licence(&server, "rhb-two"));
    for (org, source) in [
        ("rhb-one", "203.0.113.7"),
        ("rhb-one", "198.51.100.1"),
        ("nobody", "203.0.113.9"),
    ] {
        ok(
            &server,
            &[
                "licence", "check", "--org", org, "--flow", "final", "--source", source,
            ],
        );
    }
    let mut records = session(one, -150, -30, 2_000_000_000);
    records.extend(session(two, -100, -70, 500_000_000));
    report_usage(&dir.path().join("stadion.db"), records);

    let query = |token: &str, sql: &str| {
        ok_as(
            &server,
            token,
            &[],
            &["insight", "query", "--format", "csv", sql],
        )
    };
    assert_eq!(
        query(
            TOKEN,
            "SELECT org, SUM(bytes) AS bytes FROM usage_hourly GROUP BY org ORDER BY org"
        ),
        "org,bytes\nrhb-one,2000000000\nrhb-two,500000000\n"
    );
    assert_eq!(
        query(
            TOKEN,
            "SELECT result, reason, COUNT(*) AS n FROM decisions GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        "result,reason,n\nallow,,1\ndeny,source_network_not_allowed,1\ndeny,unknown_organisation,1\n"
    );
    assert_eq!(
        query(
            TOKEN,
            "SELECT org, reason, CAST(duration_s AS INTEGER) AS s FROM sessions ORDER BY org"
        ),
        "org,reason,s\nrhb-one,peer_closed,7200\nrhb-two,peer_closed,1800\n"
    );
    let peak = query(
        TOKEN,
        "SELECT MAX(peak) AS peak FROM receivers_hourly WHERE org = 'rhb-one'",
    );
    assert_eq!(peak, "peak\n1\n");

    let refused = stadion(
        &server,
        TOKEN,
        &[],
        &["insight", "query", "DELETE FROM sessions"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("read-only"),
        "{refused:?}"
    );

    let svg = dir.path().join("delivery.svg");
    ok(
        &server,
        &[
            "insight",
            "plot",
            "delivery",
            "--out",
            svg.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.contains("rhb-one") && text.contains("rhb-two"),
        "{text}"
    );

    // A rights holder's token sees its own organisation only.
    ok(
        &server,
        &["user", "create", "--org", "rhb-two", "--name", "viewer"],
    );
    let created = ok(
        &server,
        &[
            "token",
            "create",
            "--user",
            "viewer",
            "--role",
            "rhb-viewer",
            "--json",
        ],
    );
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let viewer = created["token"].as_str().unwrap();
    assert_eq!(
        query(
            viewer,
            "SELECT (SELECT group_concat(org) FROM orgs) AS orgs, \
                       (SELECT group_concat(DISTINCT org) FROM usage_hourly) AS delivered, \
                       (SELECT COUNT(*) FROM decisions) AS decisions"
        ),
        "orgs,delivered,decisions\nrhb-two,rhb-two,0\n"
    );
}
