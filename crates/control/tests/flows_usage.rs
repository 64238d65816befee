//! Issue 4's control-plane side over real HTTP, against SQLite and PostgreSQL: flows with
//! their transport, push outputs, accounting, and the live events (expiry) a data plane acts on.

mod common;

use std::time::{Duration, Instant};

use common::{Reply, Server};
use serde_json::{Value, json};
use stadion_control::ControlEvent;
use stadion_control::usage::{SessionKind, UsageEvent, UsageRecord};

fn assert_status(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
}

fn assert_problem(r: &Reply, status: u16, field: &str) {
    assert_status(r, status);
    assert_eq!(r.problem_field(), Some(field), "{r:?}");
}

fn put(s: &Server, path: &str, token: &str, body: Value) -> Reply {
    s.request(
        "PUT",
        path,
        token,
        Some(&serde_json::to_vec(&body).unwrap()),
    )
}

fn failover() -> Value {
    json!({
        "redundancy": "failover",
        "failover": {"stall_timeout_ms": 150, "recovery_ms": 3000},
        "sources": [
            {"kind": "srt_listener", "name": "main", "passphrase": "venue publisher secret"},
            {"kind": "srt_caller", "name": "backup", "address": "198.51.100.20:9000",
             "stream_id": "#!::r=feed", "passphrase": "backup caller secret", "latency_ms": 200},
        ],
    })
}

fn transport_crud_and_validation(s: &Server) {
    let a = &s.admin;
    let rhb = s.org("rhb-a", "rights_holder");
    let viewer = s.token(&rhb, "alice", "rhb_viewer");
    let host = s.get("/api/v1/orgs", a).body[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let operator = s.token(&host, "oscar", "host_operator");

    let r = s.post(
        "/api/v1/flows",
        a,
        json!({"name": "f1", "venue": "v", "event_code": "e", "transport": failover()}),
    );
    assert_status(&r, 201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let t = &r.body["transport"];
    assert_eq!(t["redundancy"], "failover");
    assert_eq!(t["failover"]["stall_timeout_ms"], 150);
    assert_eq!(
        t["failover"]["degrade_errors"], 5,
        "defaults fill what is not given"
    );
    assert_eq!(t["sources"][1]["address"], "198.51.100.20:9000");
    assert_eq!(t["sources"][0]["passphrase"], "venue publisher secret");

    // Who sees what: admins all, operators no passphrases, rights holders no transport.
    let path = format!("/api/v1/flows/{id}");
    let op = s.get(&path, &operator);
    assert_eq!(
        op.body["transport"]["sources"][1]["address"],
        "198.51.100.20:9000"
    );
    assert!(!op.body.to_string().contains("secret"), "{op:?}");
    let rh = s.get(&path, &viewer);
    assert_status(&rh, 200);
    assert!(rh.body.get("transport").is_none(), "{rh:?}");
    assert!(
        !s.get("/api/v1/flows", &viewer)
            .body
            .to_string()
            .contains("secret")
    );
    // Only admins change flows.
    assert_status(
        &put(s, &format!("{path}/transport"), &operator, json!({})),
        403,
    );
    assert_status(
        &put(s, &format!("{path}/transport"), &viewer, json!({})),
        403,
    );

    // The data plane's view: by name, with passphrases.
    let setup = s.rt.block_on(s.control.flow_setup("f1")).unwrap();
    let transport = setup.flow.transport.unwrap();
    assert_eq!(transport.sources.len(), 2);
    assert_eq!(transport.sources[0].name(), "main");

    // Replace with a 2022-7 merge of two RTP multicast sources, then back to one UDP source.
    let merge = json!({"redundancy": "merge", "merge": {"window_ms": 80}, "sources": [
        {"kind": "rtp", "name": "red", "address": "239.1.1.1:5000", "interface": "10.0.0.5"},
        {"kind": "rtp", "name": "blue", "address": "239.1.1.2:5000"}]});
    let r = put(s, &format!("{path}/transport"), a, merge);
    assert_status(&r, 200);
    assert_eq!(r.body["transport"]["merge"]["window_ms"], 80);
    assert_eq!(r.body["transport"]["sources"][0]["interface"], "10.0.0.5");
    let one = json!({"sources": [{"kind": "udp", "name": "only", "address": "0.0.0.0:6000"}]});
    assert_status(&put(s, &format!("{path}/transport"), a, one), 200);
    assert_eq!(s.get(&path, a).body["transport"]["redundancy"], "none");

    // Every invalid transport names its field; none of them changes the flow.
    let bad = |body: Value, status: u16, field: &str| {
        assert_problem(
            &put(s, &format!("{path}/transport"), a, body),
            status,
            field,
        );
    };
    let listener =
        |name: &str| json!({"kind": "srt_listener", "name": name, "passphrase": "0123456789"});
    bad(
        json!({"sources": [listener("a"), listener("b"), listener("c")]}),
        422,
        "sources",
    );
    bad(
        json!({"sources": [listener("a"), listener("b")]}),
        422,
        "redundancy",
    );
    bad(
        json!({"redundancy": "failover", "sources": [listener("a")]}),
        422,
        "sources",
    );
    bad(
        json!({"redundancy": "failover", "sources": [listener("a"), listener("a")]}),
        422,
        "sources[1].name",
    );
    bad(
        json!({"redundancy": "merge", "sources": [listener("a"), {"kind": "rtp", "name": "b", "address": "239.1.1.1:5000"}]}),
        422,
        "sources[0].kind",
    );
    bad(
        json!({"sources": [{"kind": "srt_listener", "name": "a"}]}),
        422,
        "sources[0].passphrase",
    );
    bad(
        json!({"sources": [{"kind": "srt_listener", "name": "a", "passphrase": "short"}]}),
        422,
        "sources[0].passphrase",
    );
    bad(
        json!({"sources": [{"kind": "srt_caller", "name": "a", "address": "0.0.0.0:9000"}]}),
        422,
        "sources[0].address",
    );
    bad(
        json!({"sources": [{"kind": "srt_caller", "name": "a", "address": "198.51.100.1:0"}]}),
        422,
        "sources[0].address",
    );
    bad(
        json!({"sources": [{"kind": "srt_caller", "name": "a", "address": "198.51.100.1:9000", "latency_ms": 5}]}),
        422,
        "sources[0].latency_ms",
    );
    bad(
        json!({"sources": [{"kind": "udp", "name": "a", "address": "10.0.0.1:5000", "interface": "10.0.0.2"}]}),
        422,
        "sources[0].interface",
    );
    bad(
        json!({"sources": [{"kind": "udp", "name": "bad name!", "address": "10.0.0.1:5000"}]}),
        422,
        "sources[0].name",
    );
    bad(
        json!({"failover": {"stall_timeout_ms": 1}}),
        422,
        "failover.stall_timeout_ms",
    );
    bad(json!({"merge": {"window_ms": 0}}), 422, "merge.window_ms");
    bad(
        json!({"sources": [{"kind": "udp", "name": "a", "address": "not-an-address"}]}),
        400,
        "sources[0]",
    );
    bad(
        json!({"sources": [{"kind": "carrier-pigeon", "name": "a"}]}),
        400,
        "sources[0].kind",
    );
    bad(
        json!({"sources": [{"kind": "udp", "name": "a", "address": "10.0.0.1:5000", "colour": 1}]}),
        400,
        "sources[0].colour",
    );
    bad(json!({"redundancy": "sometimes"}), 400, "redundancy");
    assert_eq!(
        s.get(&path, a).body["transport"]["sources"][0]["name"],
        "only",
        "refused changes left the flow as it was"
    );
    // Creation reports transport fields under `transport.`.
    let r = s.post(
        "/api/v1/flows",
        a,
        json!({"name": "f2", "venue": "v", "event_code": "e",
        "transport": {"sources": [{"kind": "srt_listener", "name": "a"}]}}),
    );
    assert_problem(&r, 422, "transport.sources[0].passphrase");
    // Two flows cannot receive on the same UDP/RTP address.
    let r = s.post(
        "/api/v1/flows",
        a,
        json!({"name": "f3", "venue": "v", "event_code": "e",
        "transport": {"sources": [{"kind": "rtp", "name": "x", "address": "0.0.0.0:6000"}]}}),
    );
    assert_problem(&r, 409, "transport.sources[0].address");
    assert!(
        s.get("/api/v1/flows", a).body.as_array().unwrap().len() == 1,
        "nothing of f2/f3 was stored"
    );

    // Descriptive fields change; the name does not.
    let r = put(
        s,
        &path,
        a,
        json!({"description": "new", "venue": "Stade de France", "event_code": "ATH"}),
    );
    assert_status(&r, 200);
    assert_eq!(r.body["venue"], "Stade de France");
    assert_problem(
        &put(
            s,
            &path,
            a,
            json!({"name": "renamed", "venue": "v", "event_code": "e"}),
        ),
        400,
        "name",
    );

    // Deleting: refused while a licence refers to the flow, allowed without.
    let lic = s.licence(&rhb, &id, json!({}));
    assert_status(&lic, 201);
    assert_problem(&s.request("DELETE", &path, a, None), 409, "id");
    let spare = s.flow("spare");
    assert_status(
        &s.request("DELETE", &format!("/api/v1/flows/{spare}"), &operator, None),
        403,
    );
    assert_status(
        &s.request("DELETE", &format!("/api/v1/flows/{spare}"), a, None),
        200,
    );
    assert_status(&s.get(&format!("/api/v1/flows/{spare}"), a), 404);
    let actions: Vec<String> = s.get("/api/v1/audit?limit=1000", a).body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for want in [
        "flow.create",
        "flow.transport",
        "flow.update",
        "flow.delete",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} missing from {actions:?}"
        );
    }
    let log = s.get("/api/v1/audit?limit=1000", a).body.to_string();
    assert!(
        !log.contains("venue publisher secret"),
        "passphrases stay out of the audit log"
    );
}

fn push_outputs(s: &Server) {
    let a = &s.admin;
    let rhb_a = s.org("rhb-a", "rights_holder");
    let rhb_b = s.org("rhb-b", "rights_holder");
    let a_token = s.token(&rhb_a, "alice", "rhb_viewer");
    let b_token = s.token(&rhb_b, "bob", "rhb_viewer");
    let flow = s.flow("feed");
    let other_flow = s.flow("other");
    let lic_a = s
        .licence(
            &rhb_a,
            &flow,
            json!({"allowed_networks": ["203.0.113.0/24"]}),
        )
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let clear = s.licence(
        &rhb_b,
        &flow,
        json!({"allowed_networks": ["198.51.100.0/24"], "encryption_required": false}),
    );
    let lic_b = clear.body["id"].as_str().unwrap().to_owned();
    let lic_other = s.licence(&rhb_a, &other_flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = s.control.subscribe();

    let new = |licence: &str, name: &str, target: Value| {
        s.post(
            "/api/v1/outputs",
            a,
            json!({"flow_id": flow, "licence_id": licence, "name": name, "target": target}),
        )
    };
    // Allowed: SRT push inside the licence's networks; UDP push on a licence without encryption.
    let srt = new(
        &lic_a,
        "a-srt",
        json!({"kind": "srt_caller", "address": "203.0.113.10:9000", "latency_ms": 300}),
    );
    assert_status(&srt, 201);
    assert_eq!(srt.body["org_id"], rhb_a.as_str());
    let srt_id = srt.body["id"].as_str().unwrap().to_owned();
    assert_status(
        &new(
            &lic_b,
            "b-udp",
            json!({"kind": "udp", "address": "198.51.100.7:5000"}),
        ),
        201,
    );
    let event =
        s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), events.recv()).await });
    assert!(
        matches!(event, Ok(Ok(ControlEvent::FlowChanged { .. }))),
        "{event:?}"
    );
    // Refused, each naming the field: outside the networks, UDP where encryption is required,
    // another flow's licence, unknown licence, bad address, duplicate name, revoked licence.
    assert_problem(
        &new(
            &lic_a,
            "x",
            json!({"kind": "srt_caller", "address": "192.0.2.1:9000"}),
        ),
        422,
        "target.address",
    );
    assert_problem(
        &new(
            &lic_a,
            "x",
            json!({"kind": "udp", "address": "203.0.113.10:5000"}),
        ),
        422,
        "target.kind",
    );
    assert_problem(
        &new(
            &lic_other,
            "x",
            json!({"kind": "srt_caller", "address": "127.0.0.1:9000"}),
        ),
        422,
        "licence_id",
    );
    assert_problem(
        &new(
            &uuid::Uuid::new_v4().to_string(),
            "x",
            json!({"kind": "udp", "address": "198.51.100.7:5001"}),
        ),
        422,
        "licence_id",
    );
    assert_problem(
        &new(
            &lic_a,
            "x",
            json!({"kind": "srt_caller", "address": "203.0.113.10:0"}),
        ),
        422,
        "target.address",
    );
    assert_problem(
        &new(
            &lic_a,
            "x",
            json!({"kind": "srt_caller", "address": "203.0.113.10:9000", "colour": 1}),
        ),
        400,
        "target.colour",
    );
    assert_problem(
        &new(
            &lic_a,
            "a-srt",
            json!({"kind": "srt_caller", "address": "203.0.113.11:9000"}),
        ),
        409,
        "name",
    );
    let op_host = s
        .get("/api/v1/orgs", a)
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "host")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let operator = s.token(&op_host, "oscar", "host_operator");
    let r = s.post("/api/v1/outputs", &operator, json!({"flow_id": flow, "licence_id": lic_a, "name": "op", "target": {"kind": "udp", "address": "203.0.113.1:1"}}));
    assert_status(&r, 403);

    // Rights holders see their own outputs only; another's is 404, also for deletion.
    let mine = s.get("/api/v1/outputs", &a_token);
    assert_eq!(mine.body.as_array().unwrap().len(), 1, "{mine:?}");
    assert_eq!(mine.body[0]["name"], "a-srt");
    assert_status(&s.get(&format!("/api/v1/outputs/{srt_id}"), &a_token), 200);
    assert_status(&s.get(&format!("/api/v1/outputs/{srt_id}"), &b_token), 404);
    assert_status(
        &s.request(
            "DELETE",
            &format!("/api/v1/outputs/{srt_id}"),
            &b_token,
            None,
        ),
        404,
    );
    assert_status(
        &s.request(
            "DELETE",
            &format!("/api/v1/outputs/{srt_id}"),
            &a_token,
            None,
        ),
        403,
    );
    assert_eq!(
        s.get("/api/v1/outputs", a).body.as_array().unwrap().len(),
        2
    );

    // The data plane gets each flow with its outputs.
    let setups = s.rt.block_on(s.control.flow_setups()).unwrap();
    let feed = setups.iter().find(|f| f.flow.name == "feed").unwrap();
    assert_eq!(feed.outputs.len(), 2);
    assert!(
        setups
            .iter()
            .find(|f| f.flow.name == "other")
            .unwrap()
            .outputs
            .is_empty()
    );

    assert_status(
        &s.request("DELETE", &format!("/api/v1/outputs/{srt_id}"), a, None),
        200,
    );
    assert_status(&s.get(&format!("/api/v1/outputs/{srt_id}"), a), 404);
    assert_status(
        &s.request("POST", &format!("/api/v1/licences/{lic_b}/revoke"), a, None),
        200,
    );
    assert_problem(
        &new(
            &lic_b,
            "late",
            json!({"kind": "udp", "address": "198.51.100.8:5000"}),
        ),
        422,
        "licence_id",
    );
}

fn record(session: uuid::Uuid, licence: uuid::Uuid, at: &str, event: UsageEvent) -> UsageRecord {
    UsageRecord {
        session,
        licence_id: licence,
        kind: SessionKind::SrtListener,
        peer: "203.0.113.7:40000".parse().unwrap(),
        at: at.parse().unwrap(),
        event,
    }
}

fn accounting(s: &Server) {
    let a = &s.admin;
    let rhb_a = s.org("rhb-a", "rights_holder");
    let rhb_b = s.org("rhb-b", "rights_holder");
    let a_token = s.token(&rhb_a, "alice", "rhb_viewer");
    let b_token = s.token(&rhb_b, "bob", "rhb_viewer");
    let flow = s.flow("feed");
    let lic_a: uuid::Uuid = s.licence(&rhb_a, &flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lic_b: uuid::Uuid = s.licence(&rhb_b, &flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (s1, s2, s3) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let batch = vec![
        record(s1, lic_a, "2026-07-24T10:00:00Z", UsageEvent::Connected),
        record(
            s1,
            lic_a,
            "2026-07-24T10:00:05Z",
            UsageEvent::Delivered {
                packets: 100,
                bytes: 131_600,
            },
        ),
        record(
            s1,
            lic_a,
            "2026-07-24T11:00:05Z",
            UsageEvent::Delivered {
                packets: 10,
                bytes: 13_160,
            },
        ),
        // The disconnect's totals exceed what was reported: the difference is counted once.
        record(
            s1,
            lic_a,
            "2026-07-24T11:00:07Z",
            UsageEvent::Disconnected {
                reason: "revoked".into(),
                packets: 115,
                bytes: 151_340,
            },
        ),
        // A session whose `connected` was lost still counts.
        record(
            s2,
            lic_a,
            "2026-07-24T10:30:00Z",
            UsageEvent::Delivered {
                packets: 7,
                bytes: 9_212,
            },
        ),
        record(s3, lic_b, "2026-07-24T10:10:00Z", UsageEvent::Connected),
        record(
            s3,
            lic_b,
            "2026-07-24T10:10:02Z",
            UsageEvent::Delivered {
                packets: 1,
                bytes: 1_316,
            },
        ),
    ];
    s.rt.block_on(s.control.record_usage(&batch)).unwrap();
    // A retried disconnect counts nothing more.
    let again = [record(
        s1,
        lic_a,
        "2026-07-24T11:00:09Z",
        UsageEvent::Disconnected {
            reason: "revoked".into(),
            packets: 115,
            bytes: 151_340,
        },
    )];
    s.rt.block_on(s.control.record_usage(&again)).unwrap();
    // A bad record fails the whole batch, naming it; nothing of the batch is stored.
    let s4 = uuid::Uuid::new_v4();
    let broken = [
        record(
            s4,
            lic_a,
            "2026-07-24T12:00:00Z",
            UsageEvent::Delivered {
                packets: 1,
                bytes: 1,
            },
        ),
        record(
            s4,
            uuid::Uuid::new_v4(),
            "2026-07-24T12:00:00Z",
            UsageEvent::Delivered {
                packets: 1,
                bytes: 1,
            },
        ),
    ];
    match s.rt.block_on(s.control.record_usage(&broken)) {
        Err(stadion_control::StoreError::Invalid { field, .. }) => {
            assert_eq!(field, "records[1].session")
        }
        other => panic!("expected an invalid record, got {other:?}"),
    }
    let unknown = [record(
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        "2026-07-24T12:00:00Z",
        UsageEvent::Connected,
    )];
    match s.rt.block_on(s.control.record_usage(&unknown)) {
        Err(stadion_control::StoreError::Invalid { field, .. }) => {
            assert_eq!(field, "records[0].licence_id")
        }
        other => panic!("expected an unknown licence, got {other:?}"),
    }

    let report = s.get("/api/v1/usage", a);
    assert_status(&report, 200);
    let rows = report.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report:?}");
    let row_a = &rows[0];
    assert_eq!(row_a["org_name"], "rhb-a");
    assert_eq!(row_a["flow_name"], "feed");
    assert_eq!(row_a["packets"], 115 + 7);
    assert_eq!(row_a["bytes"], 151_340 + 9_212);
    assert_eq!(row_a["sessions"], 2);
    assert_eq!(row_a["open_sessions"], 1);
    assert_eq!(rows[1]["org_name"], "rhb-b");
    assert_eq!(rows[1]["bytes"], 1_316);
    // Whole hours: 10:00-11:00 holds the first deliveries only.
    let hour = s.get(
        &format!(
            "/api/v1/usage?org_id={rhb_a}&since=2026-07-24T10:20:00Z&until=2026-07-24T11:00:00Z"
        ),
        a,
    );
    assert_eq!(hour.body[0]["bytes"], 131_600 + 9_212, "{hour:?}");
    assert_problem(
        &s.get(
            "/api/v1/usage?since=2026-07-24T11:00:00Z&until=2026-07-24T10:00:00Z",
            a,
        ),
        422,
        "until",
    );
    assert_problem(&s.get("/api/v1/usage?colour=red", a), 400, "colour");

    // Rights holders see their own usage and sessions only.
    let theirs = s.get("/api/v1/usage", &b_token);
    assert_eq!(theirs.body.as_array().unwrap().len(), 1);
    assert_eq!(theirs.body[0]["org_name"], "rhb-b");
    assert_eq!(
        s.get(&format!("/api/v1/usage?org_id={rhb_a}"), &b_token)
            .body,
        json!([])
    );
    let sessions = s.get("/api/v1/sessions", &a_token);
    let list = sessions.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "{sessions:?}");
    assert!(list.iter().all(|x| x["org_id"] == rhb_a.as_str()));
    let ended = s.get("/api/v1/sessions?open=false", a);
    assert_eq!(ended.body.as_array().unwrap().len(), 1);
    assert_eq!(ended.body[0]["disconnect_reason"], "revoked");
    assert_eq!(ended.body[0]["bytes"], 151_340);
    assert_eq!(ended.body[0]["peer"], "203.0.113.7:40000");
    assert_eq!(
        s.get("/api/v1/sessions?open=true", a)
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_problem(&s.get("/api/v1/sessions?limit=0", a), 422, "limit");
}

/// Licence state changes and window ends reach subscribers at once: disable, revoke, and an
/// expiry announced within a second of `valid_until`; other licences send nothing.
fn licence_events_for_the_data_plane(s: &Server) {
    let rhb = s.org("rhb-a", "rights_holder");
    let other = s.org("rhb-b", "rights_holder");
    let flow = s.flow("feed");
    let mut events = s.control.subscribe();
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let lic = s.licence(
        &rhb,
        &flow,
        json!({"valid_from": "2020-01-01T00:00:00Z", "valid_until": until.to_rfc3339()}),
    );
    assert_status(&lic, 201);
    let lic_id = lic.body["id"].as_str().unwrap().to_owned();
    let stays = s.licence(&other, &flow, json!({}));
    let stays_id = stays.body["id"].as_str().unwrap().to_owned();
    let expired = s.rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ControlEvent::LicenceExpired {
                    licence_id,
                    valid_until,
                    ..
                })) => {
                    return Some((licence_id, valid_until, chrono::Utc::now()));
                }
                Ok(Ok(_)) => continue,
                _ => return None,
            }
        }
    });
    let (id, valid_until, seen) = expired.expect("an expiry event within 5 s");
    assert_eq!(id.to_string(), lic_id);
    assert!(seen >= valid_until, "announced before the window ended");
    let lag = seen - valid_until;
    assert!(
        lag < chrono::Duration::seconds(1),
        "expiry announced {lag} after the window ended"
    );
    // The expired licence is refused; the other still granted.
    let op = &s.admin;
    assert_eq!(
        s.decide(op, "rhb-a", "feed", "127.0.0.1", 0).body["denial"]["reason"],
        "expired"
    );
    assert_eq!(
        s.decide(op, "rhb-b", "feed", "127.0.0.1", 0).body["allowed"],
        true
    );

    // Revoking sends the change at once.
    while events.try_recv().is_ok() {}
    assert_status(
        &s.request(
            "POST",
            &format!("/api/v1/licences/{stays_id}/revoke"),
            op,
            None,
        ),
        200,
    );
    s.expect_licence_change(
        &mut events,
        &stays_id,
        stadion_control::model::LicenceState::Revoked,
    );
}

on_both_stores!(
    transport_crud_and_validation,
    push_outputs,
    accounting,
    licence_events_for_the_data_plane
);
