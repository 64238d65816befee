//! Tokens and passphrases never reach the logs: everything the process logs at TRACE level
//! (request spans, sqlx statements, hyper) while tokens are minted, used, revoked, licence
//! passphrases and flow sources' passphrases are set and read (over HTTP and in-process, as
//! the data plane does), is captured and searched for every secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn exercise(s: &common::Server, secrets: &mut Vec<String>) {
    secrets.push(s.admin.clone());
    let rhb = s.org("rhb-logs", "rights_holder");
    let token = s.token(&rhb, "lena", "rhb_viewer");
    secrets.push(token.clone());
    let flow = s.flow("logged-flow");
    let chosen = "my very secret SRT passphrase".to_owned();
    let r = s.licence(&rhb, &flow, json!({"passphrase": chosen}));
    assert_eq!(r.status, 201, "{r:?}");
    secrets.push(chosen.clone());
    let id = r.body["id"].as_str().unwrap().to_owned();
    // Reads of the passphrase by the admin, the owner and a decision.
    assert_eq!(
        s.get(&format!("/api/v1/licences/{id}"), &token).body["passphrase"],
        chosen.as_str()
    );
    assert_eq!(
        s.get("/api/v1/licences", &s.admin).body[0]["passphrase"],
        chosen.as_str()
    );
    let d = s.decide(&s.admin, "rhb-logs", "logged-flow", "127.0.0.1", 0);
    assert_eq!(d.body["grant"]["passphrase"], chosen.as_str());
    // A generated passphrase, a refused one, failed logins and a revocation.
    let other_flow = s.flow("other-flow");
    let generated = s.licence(&rhb, &other_flow, json!({})).body["passphrase"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(generated);
    let too_long = "L".repeat(90);
    assert_eq!(
        s.licence(&rhb, &flow, json!({"passphrase": too_long}))
            .status,
        422
    );
    secrets.push(too_long);
    let wrong = format!("{}X", &token[..token.len() - 1]);
    assert_eq!(s.get("/api/v1/me", &wrong).status, 401);
    secrets.push(wrong);
    let token_id = s.get("/api/v1/me", &token).body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.post(
            &format!("/api/v1/tokens/{token_id}/revoke"),
            &s.admin,
            json!({})
        )
        .status,
        200
    );
    assert_eq!(s.get("/api/v1/me", &token).status, 401);

    // The data plane's reads: a decision with the licence's passphrase, in-process.
    let grant =
        s.rt.block_on(s.control.decide(
            "live/node",
            &stadion_control::AccessRequest {
                org: "rhb-logs".into(),
                flow: "logged-flow".into(),
                source: "127.0.0.1".parse().unwrap(),
                connected: 0,
            },
        ))
        .unwrap()
        .unwrap();
    assert_eq!(grant.passphrase.unwrap().expose(), chosen);

    // Flow sources: a venue encoder's publisher passphrase and a pulled source's passphrase,
    // set at creation, replaced, refused when too long, and read by the admin and the data
    // plane.
    let publisher = "venue encoder publishes with this".to_owned();
    let pulled = "stadion pulls the backup with this".to_owned();
    let transport = |listener: &str| {
        json!({"redundancy": "failover", "sources": [
            {"kind": "srt_listener", "name": "main", "passphrase": listener},
            {"kind": "srt_caller", "name": "backup", "address": "198.51.100.20:9000",
             "passphrase": pulled},
        ]})
    };
    let r = s.post(
        "/api/v1/flows",
        &s.admin,
        json!({"name": "sourced", "venue": "v", "event_code": "e", "transport": transport(&publisher)}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    secrets.extend([publisher.clone(), pulled.clone()]);
    let path = format!("/api/v1/flows/{}", r.body["id"].as_str().unwrap());
    let replaced = "the venue's new publisher secret".to_owned();
    let put = |body: serde_json::Value| {
        s.request(
            "PUT",
            &format!("{path}/transport"),
            &s.admin,
            Some(&serde_json::to_vec(&body).unwrap()),
        )
    };
    assert_eq!(put(transport(&replaced)).status, 200);
    secrets.push(replaced.clone());
    let refused = "P".repeat(81);
    assert_eq!(put(transport(&refused)).status, 422);
    secrets.push(refused);
    let read = s.get(&path, &s.admin).body;
    assert_eq!(
        read["transport"]["sources"][0]["passphrase"],
        replaced.as_str()
    );
    let setup = s.rt.block_on(s.control.flow_setup("sourced")).unwrap();
    let sources = serde_json::to_string(&setup.flow.transport).unwrap();
    assert!(sources.contains(&pulled) && sources.contains(&replaced));
}

#[test]
fn no_secret_in_any_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut secrets = Vec::new();
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        if let Some(s) = common::server(backend) {
            exercise(&s, &mut secrets);
        }
    }
    let log = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture works and saw the requests, including their bodies being handled.
    assert!(
        log.contains("/api/v1/licences"),
        "request spans were not captured"
    );
    assert!(
        log.contains("INSERT INTO licences"),
        "store statements were not captured"
    );
    assert!(
        log.contains("INSERT INTO flow_sources") && log.contains("/transport"),
        "flow source writes were not captured"
    );
    assert!(
        log.len() > 10_000,
        "suspiciously little logged: {} bytes",
        log.len()
    );
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret ({} chars) appears in the log",
            secret.len()
        );
        // Tokens' secret part alone (after the public id) must not appear either.
        if let Some((_, tail)) = secret.strip_prefix("stn_").and_then(|t| t.split_once('_')) {
            assert!(
                !log.contains(tail),
                "a token's secret part appears in the log"
            );
        }
    }
}
