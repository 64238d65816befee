//! A real control-plane server on 127.0.0.1:0 over a fresh SQLite file or a fresh PostgreSQL
//! database, and a blocking HTTP client (ureq) to talk to it.

#![allow(dead_code)]

use chrono::TimeZone;
use serde_json::{Value, json};
use sqlx::Connection;
use stadion_control::model::{Flow, LicenceState, OrgKind, Passphrase};
use stadion_control::store::{Actor, NewLicence};
use stadion_control::{ControlPlane, NodeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests use: `STADION_TEST_POSTGRES_URL` (`scripts/test` starts a
/// throwaway one and sets it). Without it the PostgreSQL tests are skipped with a note.
pub fn postgres_url() -> Option<String> {
    match std::env::var("STADION_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED: STADION_TEST_POSTGRES_URL is not set; PostgreSQL test not run (scripts/test sets it)"
            );
            None
        }
    }
}

pub struct Server {
    pub rt: tokio::runtime::Runtime,
    pub base: String,
    pub control: ControlPlane,
    pub admin: String,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

/// Sets up one server; `None` when the backend is unavailable and the test is skipped.
pub fn server(backend: Backend) -> Option<Server> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, pg) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("stadion.db").display()),
            None,
        ),
        Backend::Postgres => {
            let admin_url = postgres_url()?;
            let db = format!("stadion_test_{}", uuid::Uuid::new_v4().simple());
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to test PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {db}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            });
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b);
            (format!("{base}/{db}"), Some((admin_url.clone(), db)))
        }
    };
    let (control, admin, base) = rt.block_on(async {
        // With a data directory: the fast decision path on PostgreSQL too, as `stadion serve`.
        let node = NodeConfig {
            data_dir: Some(dir.path().to_owned()),
            ..NodeConfig::from_host()
        };
        let control = ControlPlane::open_node(&url, node)
            .await
            .expect("open store");
        let admin = control
            .bootstrap("host", None)
            .await
            .unwrap()
            .expect("fresh store mints a token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = stadion_control::api::router(control.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (control, admin.expose().to_owned(), format!("http://{addr}"))
    });
    // A fresh connection per request: the server may answer before reading a body it refuses
    // and then close the connection, which a pooled connection would trip on.
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build(),
    );
    Some(Server {
        rt,
        base,
        control,
        admin,
        agent,
        _dir: dir,
        pg,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((admin_url, db)) = self.pg.take() {
            let control = self.control.clone();
            self.rt.block_on(async move {
                control.store().close().await;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        }
    }
}

/// A response: status, content type and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    pub fn problem_field(&self) -> Option<&str> {
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        self.body["field"].as_str()
    }
}

impl Server {
    fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut resp = resp.expect("HTTP exchange");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            content_type,
            body,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        Self::finish(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {token}"))
                .call(),
        )
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        Self::finish(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {token}"))
                .send_json(body),
        )
    }

    pub fn post_raw(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> Reply {
        Self::finish(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// Any method with any body.
    pub fn request(&self, method: &str, path: &str, token: &str, body: Option<&[u8]>) -> Reply {
        let uri = format!("{}{path}", self.base);
        let auth = format!("Bearer {token}");
        let agent = &self.agent;
        let resp = match (method, body) {
            ("GET", _) => agent.get(uri).header("Authorization", auth).call(),
            ("DELETE", _) => agent.delete(uri).header("Authorization", auth).call(),
            ("POST", Some(b)) => agent
                .post(uri)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send(b),
            ("POST", None) => agent.post(uri).header("Authorization", auth).send_empty(),
            ("PUT", Some(b)) => agent
                .put(uri)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send(b),
            (_, _) => agent
                .patch(uri)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(b"{}")),
        };
        Self::finish(resp)
    }

    // ---- fixtures ----

    pub fn org(&self, name: &str, kind: &str) -> String {
        let r = self.post(
            "/api/v1/orgs",
            &self.admin,
            json!({"name": name, "kind": kind}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// A user in `org_id` and a token with `role` for it.
    pub fn token(&self, org_id: &str, user: &str, role: &str) -> String {
        let r = self.post(
            "/api/v1/users",
            &self.admin,
            json!({"org_id": org_id, "name": user}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        let user_id = r.body["id"].as_str().unwrap();
        let r = self.post(
            "/api/v1/tokens",
            &self.admin,
            json!({"user_id": user_id, "role": role, "label": "test"}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub fn flow(&self, name: &str) -> String {
        let r = self.post(
            "/api/v1/flows",
            &self.admin,
            json!({"name": name, "description": "test flow", "venue": "Stade de France", "event_code": "ATH-100M-M-FNL"}),
        );
        assert_eq!(r.status, 201, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub fn licence(&self, org: &str, flow: &str, extra: Value) -> Reply {
        let mut body = json!({
            "org_id": org, "flow_id": flow,
            "valid_from": "2020-01-01T00:00:00Z", "valid_until": "2100-01-01T00:00:00Z",
            "max_concurrent_receivers": 2, "allowed_networks": ["127.0.0.0/8", "2001:db8::/32"],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("/api/v1/licences", &self.admin, body)
    }

    /// Waits up to 1 s for the next event of `events` and checks that it says licence
    /// `licence_id` moved to `state`.
    pub fn expect_licence_change(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<stadion_control::ControlEvent>,
        licence_id: &str,
        state: LicenceState,
    ) {
        let event = self.rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), events.recv()).await
        });
        match event {
            Ok(Ok(stadion_control::ControlEvent::LicenceChanged {
                licence_id: id,
                new_state,
                ..
            })) => {
                assert_eq!(id.to_string(), licence_id);
                assert_eq!(new_state, state);
            }
            other => {
                panic!("expected licence {licence_id} to become {state} within 1 s, got {other:?}")
            }
        }
    }

    pub fn decide(
        &self,
        token: &str,
        org: &str,
        flow: &str,
        source: &str,
        connected: u32,
    ) -> Reply {
        self.post(
            "/api/v1/access/decide",
            token,
            json!({"org": org, "flow": flow, "source": source, "connected": connected}),
        )
    }
}

/// Runs each scenario against SQLite and PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { if let Some(s) = $crate::common::server($crate::common::Backend::Sqlite) { super::$name(&s) } } )*
        }
        mod postgres {
            $( #[test] fn $name() { if let Some(s) = $crate::common::server($crate::common::Backend::Postgres) { super::$name(&s) } } )*
        }
    };
}

/// In-process: one rights holder `rhb` licensed for flow `feed` from 10.0.0.0/8 with at most
/// two receivers; returns the licence id.
pub async fn seed(control: &ControlPlane) -> uuid::Uuid {
    let actor = Actor("test".into());
    let org = control
        .store()
        .create_org(&actor, "rhb", OrgKind::RightsHolder)
        .await
        .unwrap();
    let flow = Flow {
        id: uuid::Uuid::new_v4(),
        name: "feed".into(),
        description: String::new(),
        venue: "stadium".into(),
        event_code: "ATH".into(),
        created_at: chrono::Utc::now(),
        transport: None,
    };
    let flow = control.create_flow(&actor, flow).await.unwrap();
    control
        .create_licence(
            &actor,
            NewLicence {
                org_id: org.id,
                flow_id: flow.id,
                valid_from: chrono::Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
                valid_until: chrono::Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
                max_concurrent_receivers: 2,
                allowed_networks: vec!["10.0.0.0/8".parse().unwrap()],
                encryption_required: false,
                passphrase: Passphrase::generate(),
            },
        )
        .await
        .unwrap()
        .id
}

pub fn request(source: &str) -> stadion_control::AccessRequest {
    stadion_control::AccessRequest {
        org: "rhb".into(),
        flow: "feed".into(),
        source: source.parse().unwrap(),
        connected: 0,
    }
}

/// A two-thread runtime for tests that drive several control planes at once.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
