//! Tokens and passphrases never reach the logs: everything the process logs at TRACE level
//! (request spans, sqlx statements, hyper) while tokens are minted, used, revoked and
//! passphrases are set and read, is captured and searched for every secret.

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
