//! The control plane's HTTP API over real sockets, against SQLite and PostgreSQL.

mod common;

use common::{Reply, Server};
use serde_json::{Value, json};

fn assert_status(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
}

/// The problem document's status and named field.
fn assert_problem(r: &Reply, status: u16, field: &str) {
    assert_status(r, status);
    assert_eq!(r.problem_field(), Some(field), "{r:?}");
    assert_eq!(r.body["status"], status, "{r:?}");
}

struct World {
    rhb_a: String,
    rhb_b: String,
    a_token: String,
    b_token: String,
    operator: String,
    flow: String,
}

fn world(s: &Server) -> World {
    let host = s.get("/api/v1/orgs", &s.admin).body[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rhb_a = s.org("rhb-a", "rights_holder");
    let rhb_b = s.org("rhb-b", "rights_holder");
    World {
        a_token: s.token(&rhb_a, "alice", "rhb_viewer"),
        b_token: s.token(&rhb_b, "bob", "rhb_viewer"),
        operator: s.token(&host, "oscar", "host_operator"),
        rhb_a,
        rhb_b,
        flow: s.flow("ath-100m-final"),
    }
}

fn lifecycle_and_passphrase_visibility(s: &Server) {
    let w = world(s);
    let r = s.licence(
        &w.rhb_a,
        &w.flow,
        json!({"passphrase": "correct horse battery"}),
    );
    assert_status(&r, 201);
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["passphrase"], "correct horse battery");
    assert_eq!(
        r.body["allowed_networks"],
        json!(["127.0.0.0/8", "2001:db8::/32"])
    );
    let id = r.body["id"].as_str().unwrap();
    let path = format!("/api/v1/licences/{id}");
    assert_eq!(
        s.get(&path, &s.admin).body["passphrase"],
        "correct horse battery"
    );
    assert_eq!(
        s.get(&path, &w.a_token).body["passphrase"],
        "correct horse battery"
    );
    let op = s.get(&path, &w.operator);
    assert_status(&op, 200);
    assert!(
        op.body.get("passphrase").is_none(),
        "operators do not see passphrases: {op:?}"
    );
    // A generated passphrase satisfies SRT's length rule.
    let flow2 = s.flow("swim-200m-heat");
    let r = s.licence(&w.rhb_a, &flow2, json!({}));
    let generated = r.body["passphrase"].as_str().unwrap();
    assert!((10..=79).contains(&generated.len()));
    let me = s.get("/api/v1/me", &w.a_token);
    assert_eq!(me.body["role"], "rhb_viewer");
    assert_eq!(me.body["org_id"], w.rhb_a.as_str());
}

fn every_refusal_reason(s: &Server) {
    let w = world(s);
    let mut events = s.control.subscribe();
    let live = s.licence(&w.rhb_a, &w.flow, json!({}));
    let live_id = live.body["id"].as_str().unwrap().to_owned();
    let future = s.flow("future");
    s.licence(
        &w.rhb_a,
        &future,
        json!({"valid_from": "2099-01-01T00:00:00Z", "valid_until": "2099-02-01T00:00:00Z"}),
    );
    let past = s.flow("past");
    s.licence(
        &w.rhb_a,
        &past,
        json!({"valid_from": "2001-01-01T00:00:00Z", "valid_until": "2001-02-01T00:00:00Z"}),
    );

    let op = &w.operator;
    let granted = s.decide(op, "rhb-a", "ath-100m-final", "127.0.0.1", 1);
    assert_status(&granted, 200);
    assert_eq!(granted.body["allowed"], true, "{granted:?}");
    assert_eq!(granted.body["grant"]["licence_id"], live_id.as_str());
    assert_eq!(granted.body["grant"]["encryption_required"], true);
    assert!(
        granted.body["grant"].get("passphrase").is_none(),
        "only admins get the passphrase over HTTP"
    );
    let admin_grant = s.decide(&s.admin, &w.rhb_a, &w.flow, "2001:db8::7", 0);
    assert!(
        admin_grant.body["grant"]["passphrase"].is_string(),
        "{admin_grant:?}"
    );

    let deny = |org: &str, flow: &str, source: &str, connected: u32, reason: &str, code: u16| {
        let r = s.decide(op, org, flow, source, connected);
        assert_status(&r, 200);
        assert_eq!(r.body["allowed"], false, "{reason}: {r:?}");
        assert_eq!(r.body["denial"]["reason"], reason, "{r:?}");
        assert_eq!(r.body["denial"]["srt_reject_code"], code, "{r:?}");
    };
    deny(
        "no-such-org",
        "ath-100m-final",
        "127.0.0.1",
        0,
        "unknown_organisation",
        1404,
    );
    deny(
        "host",
        "ath-100m-final",
        "127.0.0.1",
        0,
        "unknown_organisation",
        1404,
    );
    deny(
        "rhb-a",
        "no-such-flow",
        "127.0.0.1",
        0,
        "unknown_flow",
        1404,
    );
    deny(
        "rhb-b",
        "ath-100m-final",
        "127.0.0.1",
        0,
        "no_licence",
        1404,
    );
    deny("rhb-a", "future", "127.0.0.1", 0, "not_yet_valid", 1403);
    deny("rhb-a", "past", "127.0.0.1", 0, "expired", 1403);
    deny(
        "rhb-a",
        "ath-100m-final",
        "198.51.100.1",
        0,
        "source_network_not_allowed",
        1403,
    );
    deny(
        "rhb-a",
        "ath-100m-final",
        "127.0.0.1",
        2,
        "concurrency_exceeded",
        1402,
    );

    // Drain the creation events, then disable: the data plane hears of it at once.
    while events.try_recv().is_ok() {}
    assert_status(
        &s.post(
            &format!("/api/v1/licences/{live_id}/disable"),
            op,
            json!({"reason": "test"}),
        ),
        200,
    );
    s.expect_licence_change(
        &mut events,
        &live_id,
        stadion_control::model::LicenceState::Disabled,
    );
    deny("rhb-a", "ath-100m-final", "127.0.0.1", 0, "disabled", 1403);
    assert_status(
        &s.post(&format!("/api/v1/licences/{live_id}/enable"), op, json!({})),
        200,
    );
    assert_eq!(
        s.decide(op, "rhb-a", "ath-100m-final", "127.0.0.1", 0).body["allowed"],
        true
    );
    // Operators may not revoke; admins may, and it is final.
    assert_status(
        &s.post(&format!("/api/v1/licences/{live_id}/revoke"), op, json!({})),
        403,
    );
    assert_status(
        &s.request(
            "POST",
            &format!("/api/v1/licences/{live_id}/revoke"),
            &s.admin,
            None,
        ),
        200,
    );
    deny("rhb-a", "ath-100m-final", "127.0.0.1", 0, "revoked", 1403);
    assert_problem(
        &s.post(&format!("/api/v1/licences/{live_id}/enable"), op, json!({})),
        409,
        "state",
    );
    // A revoked licence can be replaced by a new one.
    assert_status(&s.licence(&w.rhb_a, &w.flow, json!({})), 201);
    assert_eq!(
        s.decide(op, "rhb-a", "ath-100m-final", "127.0.0.1", 0).body["allowed"],
        true
    );

    // Every decision is on record, in order, with its reason.
    let log = s.get("/api/v1/audit?action=access.decide&limit=1000", &s.admin);
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 14, "{log:?}");
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[2].starts_with("unknown_organisation"),
        "{reasons:?}"
    );
    assert!(
        reasons[9].starts_with("concurrency_exceeded"),
        "{reasons:?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["actor"].as_str().unwrap().starts_with("user/"))
    );
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]));
}

fn rhb_isolation(s: &Server) {
    let w = world(s);
    let a_lic = s.licence(&w.rhb_a, &w.flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_lic = s.licence(&w.rhb_b, &w.flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A sees its own, and B's only as something that does not exist.
    assert_status(
        &s.get(&format!("/api/v1/licences/{a_lic}"), &w.a_token),
        200,
    );
    let theirs = s.get(&format!("/api/v1/licences/{b_lic}"), &w.a_token);
    let nothing = s.get(
        &format!("/api/v1/licences/{}", uuid::Uuid::new_v4()),
        &w.a_token,
    );
    assert_status(&theirs, 404);
    assert_eq!(
        theirs.body, nothing.body,
        "another RHB's licence must look exactly like a missing one"
    );
    for action in ["disable", "enable", "revoke"] {
        let r = s.post(
            &format!("/api/v1/licences/{b_lic}/{action}"),
            &w.a_token,
            json!({}),
        );
        assert_status(&r, 404);
        assert_eq!(r.body, nothing.body);
        // Its own licence: known, but the role may not change it.
        assert_status(
            &s.post(
                &format!("/api/v1/licences/{a_lic}/{action}"),
                &w.a_token,
                json!({}),
            ),
            403,
        );
    }
    let list = s.get("/api/v1/licences", &w.a_token);
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a_lic.as_str()]);
    let filtered = s.get(&format!("/api/v1/licences?org_id={}", w.rhb_b), &w.a_token);
    assert_eq!(filtered.body, json!([]));
    assert_status(
        &s.get(&format!("/api/v1/orgs/{}", w.rhb_b), &w.a_token),
        404,
    );
    let orgs = s.get("/api/v1/orgs", &w.a_token);
    assert_eq!(orgs.body.as_array().unwrap().len(), 1);
    assert!(
        !s.get("/api/v1/users", &w.a_token)
            .body
            .to_string()
            .contains("bob")
    );

    // Audit: only A's entries; asking for B's yields nothing.
    let mine = s.get("/api/v1/audit", &w.a_token);
    let entries = mine.body["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["org_id"] == w.rhb_a.as_str()),
        "{mine:?}"
    );
    assert_eq!(
        s.get(&format!("/api/v1/audit?org_id={}", w.rhb_b), &w.a_token)
            .body["entries"],
        json!([])
    );
    assert_eq!(
        s.get(&format!("/api/v1/audit?licence_id={b_lic}"), &w.a_token)
            .body["entries"],
        json!([])
    );
    assert!(
        !s.get("/api/v1/audit", &w.b_token)
            .body
            .to_string()
            .contains(&a_lic)
    );

    // RHBs administer nothing.
    assert_status(
        &s.post(
            "/api/v1/orgs",
            &w.a_token,
            json!({"name": "x", "kind": "rights_holder"}),
        ),
        403,
    );
    assert_status(
        &s.decide(&w.a_token, "rhb-a", "ath-100m-final", "127.0.0.1", 0),
        403,
    );
}

fn revoked_tokens_stop_at_once(s: &Server) {
    let w = world(s);
    assert_status(&s.get("/api/v1/me", &w.a_token), 200);
    let id = s.get("/api/v1/me", &w.a_token).body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_status(
        &s.request(
            "POST",
            &format!("/api/v1/tokens/{id}/revoke"),
            &s.admin,
            None,
        ),
        200,
    );
    // The very next request fails, although the token was verified (and cached) just now.
    let r = s.get("/api/v1/me", &w.a_token);
    assert_problem(&r, 401, "Authorization");
    // Revocation bypassing this process's cache (another instance) also holds at once.
    let op_id = s.get("/api/v1/me", &w.operator).body["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.rt.block_on(async {
        sqlx::query("UPDATE api_tokens SET revoked_at = 1 WHERE id = $1")
            .bind(&op_id)
            .execute(s.control.store().pool())
            .await
            .unwrap();
    });
    assert_status(&s.get("/api/v1/me", &w.operator), 401);
    // Wrong secrets with a real id, garbage and missing tokens: 401.
    let forged = format!("stn_{id}_{}", "x".repeat(40));
    assert_status(&s.get("/api/v1/me", &forged), 401);
    assert_status(&s.get("/api/v1/me", "garbage"), 401);
    assert_status(&s.get("/api/v1/me", ""), 401);
    let tokens = s.get("/api/v1/tokens", &s.admin);
    assert!(
        tokens
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["revoked_at"].is_string())
    );
    assert!(
        !tokens.body.to_string().contains(&w.b_token),
        "token listings never carry secrets"
    );
}

fn bad_input_names_the_field(s: &Server) {
    let w = world(s);
    let a = &s.admin;
    assert_problem(
        &s.post_raw("/api/v1/flows", a, "application/json", b"{\"name\": \"x\""),
        400,
        "body",
    );
    assert_problem(
        &s.post_raw("/api/v1/flows", a, "application/json", b"not json"),
        400,
        "body",
    );
    assert_problem(
        &s.post_raw("/api/v1/flows", a, "text/plain", b"{}"),
        415,
        "Content-Type",
    );
    assert_problem(
        &s.post(
            "/api/v1/flows",
            a,
            json!({"name": "f", "venue": "v", "event_code": "e", "colour": "red"}),
        ),
        400,
        "colour",
    );
    assert_problem(
        &s.post("/api/v1/flows", a, json!({"name": "f", "venue": "v"})),
        400,
        "event_code",
    );
    assert_problem(
        &s.post(
            "/api/v1/flows",
            a,
            json!({"name": "", "venue": "v", "event_code": "e"}),
        ),
        422,
        "name",
    );
    assert_problem(
        &s.post("/api/v1/orgs", a, json!({"name": "x", "kind": "pirate"})),
        400,
        "kind",
    );
    assert_problem(
        &s.post(
            "/api/v1/orgs",
            a,
            json!({"name": "rhb-a", "kind": "rights_holder"}),
        ),
        409,
        "name",
    );
    assert_problem(
        &s.post(
            "/api/v1/orgs",
            a,
            json!({"name": "second-host", "kind": "host"}),
        ),
        409,
        "kind",
    );
    assert_problem(
        &s.post(
            "/api/v1/flows",
            a,
            json!({"name": "ath-100m-final", "venue": "v", "event_code": "e"}),
        ),
        409,
        "name",
    );
    assert_problem(
        &s.licence(
            &w.rhb_a,
            &w.flow,
            json!({"allowed_networks": ["10.0.0.0/8", "10.0.0.0/33"]}),
        ),
        422,
        "allowed_networks[1]",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"allowed_networks": ["banana"]})),
        422,
        "allowed_networks[0]",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"allowed_networks": []})),
        422,
        "allowed_networks",
    );
    assert_problem(
        &s.licence(
            &w.rhb_a,
            &w.flow,
            json!({"valid_until": "2019-01-01T00:00:00Z"}),
        ),
        422,
        "valid_until",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"valid_from": "yesterday"})),
        400,
        "valid_from",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"max_concurrent_receivers": -1})),
        400,
        "max_concurrent_receivers",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"passphrase": "short"})),
        422,
        "passphrase",
    );
    assert_problem(
        &s.licence(&w.rhb_a, &w.flow, json!({"passphrase": "x".repeat(80)})),
        422,
        "passphrase",
    );
    let host = s
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
    assert_problem(&s.licence(&host, &w.flow, json!({})), 422, "org_id");
    assert_problem(
        &s.licence(&w.rhb_a, &uuid::Uuid::new_v4().to_string(), json!({})),
        422,
        "flow_id",
    );
    assert_status(&s.licence(&w.rhb_a, &w.flow, json!({})), 201);
    assert_problem(&s.licence(&w.rhb_a, &w.flow, json!({})), 409, "flow_id");
    let user = s
        .post(
            "/api/v1/users",
            a,
            json!({"org_id": w.rhb_a, "name": "carol"}),
        )
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(
        &s.post(
            "/api/v1/tokens",
            a,
            json!({"user_id": user, "role": "host_admin"}),
        ),
        422,
        "role",
    );
    assert_problem(
        &s.post(
            "/api/v1/users",
            a,
            json!({"org_id": w.rhb_a, "name": "carol"}),
        ),
        409,
        "name",
    );
    assert_problem(&s.get("/api/v1/audit?since=tomorrow", a), 400, "since");
    assert_problem(&s.get("/api/v1/audit?colour=red", a), 400, "colour");
    assert_problem(&s.get("/api/v1/audit?limit=0", a), 422, "limit");
    assert_problem(&s.decide(a, "rhb-a", "f", "not-an-ip", 0), 400, "source");
    let huge = vec![b' '; 200 * 1024];
    assert_problem(
        &s.post_raw("/api/v1/flows", a, "application/json", &huge),
        413,
        "body",
    );
    // Nothing of the refused requests was stored.
    let flows = s.get("/api/v1/flows", a).body;
    assert_eq!(flows.as_array().unwrap().len(), 1, "{flows}");
}

fn store_failure_gives_503_and_nothing_partial(s: &Server) {
    let _ = world(s);
    let before = s.get("/api/v1/audit?limit=1000", &s.admin).body["entries"]
        .as_array()
        .unwrap()
        .len();
    // A failure inside the transaction (here: the audit insert) leaves nothing behind.
    let (create, drop) = match s.control.store().backend() {
        stadion_control::store::Backend::Sqlite => (
            vec![
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            ],
            "DROP TRIGGER fail_audit",
        ),
        stadion_control::store::Backend::Postgres => (
            vec![
                "CREATE FUNCTION fail_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_audit()",
            ],
            "DROP TRIGGER fail_audit ON audit_log",
        ),
    };
    let exec = |sql: &str| {
        s.rt.block_on(async {
            sqlx::query(sql)
                .execute(s.control.store().pool())
                .await
                .unwrap()
        })
    };
    create.iter().for_each(|q| {
        exec(q);
    });
    let r = s.post(
        "/api/v1/flows",
        &s.admin,
        json!({"name": "half", "venue": "v", "event_code": "e"}),
    );
    assert!(r.status >= 500, "{r:?}");
    assert_eq!(r.content_type, "application/problem+json");
    exec(drop);
    let flows = s.get("/api/v1/flows", &s.admin).body.to_string();
    assert!(
        !flows.contains("half"),
        "the flow must not exist without its audit entry: {flows}"
    );
    assert_eq!(
        s.get("/api/v1/audit?limit=1000", &s.admin).body["entries"]
            .as_array()
            .unwrap()
            .len(),
        before
    );
    assert_status(
        &s.post(
            "/api/v1/flows",
            &s.admin,
            json!({"name": "half", "venue": "v", "event_code": "e"}),
        ),
        201,
    );

    // The store goes away: readiness, reads, writes and decisions are 503, liveness stays up.
    assert_status(&s.get("/readyz", ""), 200);
    s.rt.block_on(s.control.store().close());
    let unavailable = |r: Reply| {
        assert_status(&r, 503);
        assert_eq!(r.content_type, "application/problem+json", "{r:?}");
        assert_eq!(
            r.body["type"], "urn:stadion:problem:store-unavailable",
            "{r:?}"
        );
    };
    unavailable(s.get("/readyz", ""));
    unavailable(s.get("/api/v1/flows", &s.admin));
    unavailable(s.post(
        "/api/v1/flows",
        &s.admin,
        json!({"name": "gone", "venue": "v", "event_code": "e"}),
    ));
    unavailable(s.decide(&s.admin, "rhb-a", "ath-100m-final", "127.0.0.1", 0));
    assert_status(&s.get("/healthz", ""), 200);
    let in_process = s.rt.block_on(s.control.decide(
        "test",
        &stadion_control::AccessRequest {
            org: "rhb-a".into(),
            flow: "ath-100m-final".into(),
            source: "127.0.0.1".parse().unwrap(),
            connected: 0,
        },
    ));
    assert!(
        matches!(in_process, Err(stadion_control::StoreError::Unavailable(_))),
        "{in_process:?}"
    );
}

fn openapi_health_metrics(s: &Server) {
    let doc = s.get("/api/openapi.json", "");
    assert_status(&doc, 200);
    assert!(
        doc.body["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc.body["openapi"]
    );
    for path in [
        "/api/v1/licences",
        "/api/v1/licences/{id}/revoke",
        "/api/v1/access/decide",
        "/api/v1/audit",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(doc.body["components"]["schemas"].get("Licence").is_some());
    assert_eq!(s.get("/healthz", "").body["status"], "ok");
    assert_status(&s.get("/api/v1/flows", "nope"), 401);
    let metrics = s.get("/metrics", "");
    assert_status(&metrics, 200);
    assert!(
        metrics
            .body
            .as_str()
            .unwrap()
            .contains("stadion_http_requests_total"),
        "{metrics:?}"
    );
    let missing = s.get("/no/such/route", "");
    assert_status(&missing, 404);
    assert_eq!(missing.content_type, "application/problem+json");
}

fn audit_paging_and_filters(s: &Server) {
    let w = world(s);
    for i in 0..5 {
        s.flow(&format!("page-{i}"));
    }
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let q = after.map_or(String::new(), |a| format!("&after={a}"));
        let page = s.get(
            &format!("/api/v1/audit?action=flow.create&limit=2{q}"),
            &s.admin,
        );
        assert_status(&page, 200);
        for e in page.body["entries"].as_array().unwrap() {
            seen.push(e["subject"].as_str().unwrap().to_owned());
        }
        match page.body["next_after"].as_i64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 6);
    let flow_entries = s.get(&format!("/api/v1/audit?flow_id={}", w.flow), &s.admin);
    assert_eq!(flow_entries.body["entries"].as_array().unwrap().len(), 1);
    let future = s.get("/api/v1/audit?since=2099-01-01T00:00:00Z", &s.admin);
    assert_eq!(future.body["entries"], json!([]));
    let past = s.get("/api/v1/audit?until=2000-01-01T00:00:00Z", &s.admin);
    assert_eq!(past.body["entries"], json!([]));
    let org = s.get(&format!("/api/v1/audit?org_id={}", w.rhb_b), &s.admin);
    let actions: Vec<&str> = org.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["org.create", "user.create", "token.create"]);
}

/// Random bytes and random JSON at every endpoint, with and without valid tokens: every
/// answer is a 4xx (or a 2xx when the garbage happens to be valid), never a 5xx, never a hang.
fn garbage_everywhere(s: &Server) {
    use rand::{Rng, SeedableRng};
    let w = world(s);
    let lic = s.licence(&w.rhb_a, &w.flow, json!({})).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let ids = [
        lic.clone(),
        uuid::Uuid::new_v4().to_string(),
        "..".into(),
        "%00".into(),
        "x".repeat(300),
        "1".into(),
    ];
    let tokens = [
        s.admin.clone(),
        w.a_token.clone(),
        w.operator.clone(),
        "stn_aaaaaaaaaaaaaaaa_bbbb".into(),
        String::new(),
    ];
    let routes = [
        "/api/v1/me",
        "/api/v1/orgs",
        "/api/v1/orgs/{id}",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}/revoke",
        "/api/v1/flows",
        "/api/v1/flows/{id}",
        "/api/v1/licences",
        "/api/v1/licences/{id}",
        "/api/v1/licences/{id}/disable",
        "/api/v1/licences/{id}/enable",
        "/api/v1/licences/{id}/revoke",
        "/api/v1/audit",
        "/api/v1/access/decide",
        "/healthz",
        "/readyz",
        "/api/openapi.json",
    ];
    let fields = [
        "name",
        "kind",
        "org_id",
        "flow_id",
        "user_id",
        "role",
        "valid_from",
        "valid_until",
        "max_concurrent_receivers",
        "allowed_networks",
        "passphrase",
        "org",
        "flow",
        "source",
        "connected",
        "reason",
        "venue",
        "event_code",
        "label",
        "email",
    ];
    let random_value = |rng: &mut rand::rngs::StdRng| -> Value {
        match rng.random_range(0..9) {
            0 => Value::Null,
            1 => json!(rng.random::<i64>()),
            2 => json!(rng.random::<f64>() * 1e12),
            3 => json!(rng.random::<bool>()),
            4 => json!("x".repeat(rng.random_range(0..300))),
            5 => json!(["10.0.0.0/8", rng.random::<u32>().to_string()]),
            6 => json!(uuid::Uuid::new_v4().to_string()),
            7 => json!("2026-07-24T10:00:00Z"),
            _ => json!({"nested": [1, {"deeper": null}]}),
        }
    };
    let mut requests = 0;
    for round in 0..8 {
        for route in routes {
            let path = route.replace("{id}", &ids[rng.random_range(0..ids.len())]);
            let token = &tokens[(round + requests) % tokens.len()];
            let body: Vec<u8> = match rng.random_range(0..4) {
                0 => (0..rng.random_range(0..256))
                    .map(|_| rng.random::<u8>())
                    .collect(),
                1 => {
                    let mut obj = serde_json::Map::new();
                    for _ in 0..rng.random_range(0..6) {
                        obj.insert(
                            fields[rng.random_range(0..fields.len())].into(),
                            random_value(&mut rng),
                        );
                    }
                    serde_json::to_vec(&obj).unwrap()
                }
                2 => serde_json::to_vec(&random_value(&mut rng)).unwrap(),
                _ => b"{\"name\":\"\\ud800\"}".to_vec(),
            };
            let query = [
                "",
                "?limit=99999999999",
                "?since=%ff",
                "?after=-1&state=revoked",
                "?org_id=zzz",
            ][rng.random_range(0..5)];
            for method in ["GET", "POST", "PUT", "DELETE"] {
                let r = s.request(method, &format!("{path}{query}"), token, Some(&body));
                requests += 1;
                assert!(
                    r.status < 500,
                    "{method} {path}{query} with {} body bytes: {r:?}",
                    body.len()
                );
            }
        }
    }
    assert!(requests > 500);
    assert_status(&s.get("/readyz", ""), 200);
}

on_both_stores!(
    lifecycle_and_passphrase_visibility,
    every_refusal_reason,
    rhb_isolation,
    revoked_tokens_stop_at_once,
    bad_input_names_the_field,
    store_failure_gives_503_and_nothing_partial,
    openapi_health_metrics,
    audit_paging_and_filters,
    garbage_everywhere,
);
