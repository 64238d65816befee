//! Several data-plane nodes on one store. On PostgreSQL: a change made on one node reaches the
//! other's subscribers (`NOTIFY` / `LISTEN`) within a second, exactly once, and a node does not
//! hear its own changes twice; a node that stops reporting loses its receivers' sessions, which
//! stop counting against concurrency elsewhere. On both stores: a node that crashed closes the
//! sessions it left open when it starts again. The PostgreSQL tests need
//! `STADION_TEST_POSTGRES_URL` (set by `scripts/test`).

mod common;

use std::time::Duration;

use sqlx::Connection;
use stadion_control::model::{LicenceState, Role};
use stadion_control::store::{Actor, Scope};
use stadion_control::usage::{SessionFilter, SessionKind, UsageEvent, UsageRecord};
use stadion_control::{ControlEvent, ControlPlane, NodeConfig, Refusal};
use tokio::sync::broadcast;

use common::runtime;

/// A fresh database on the test PostgreSQL server: its URL, and a connection to the server to
/// drop it with [`drop_database`].
async fn create_database(admin_url: &str) -> (String, String, sqlx::PgConnection) {
    let db = format!("stadion_test_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut c)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    (format!("{base}/{db}"), db, c)
}

async fn drop_database(db: &str, mut c: sqlx::PgConnection) {
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut c)
        .await;
}

fn connected(licence: uuid::Uuid) -> UsageRecord {
    UsageRecord {
        session: uuid::Uuid::new_v4(),
        licence_id: licence,
        kind: SessionKind::SrtListener,
        peer: "10.0.0.7:4000".parse().unwrap(),
        at: chrono::Utc::now(),
        event: UsageEvent::Connected,
    }
}

fn open_sessions() -> SessionFilter {
    SessionFilter {
        open: Some(true),
        limit: 100,
        ..SessionFilter::default()
    }
}

/// The next event, if one comes within `wait`.
async fn next(
    events: &mut broadcast::Receiver<ControlEvent>,
    wait: Duration,
) -> Option<ControlEvent> {
    tokio::time::timeout(wait, events.recv()).await.ok()?.ok()
}

#[test]
fn a_revocation_on_one_node_reaches_the_other_within_a_second() {
    let Some(admin_url) = common::postgres_url() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let (url, db, c) = create_database(&admin_url).await;
        let a = ControlPlane::open(&url).await.unwrap();
        let b = ControlPlane::open(&url).await.unwrap();
        let mut on_a = a.subscribe();
        let mut on_b = b.subscribe();
        // Let both listeners connect before the first change.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let actor = Actor("test".into());
        let licence = common::seed(&a).await;
        let licence = a.store().get_licence(licence, Scope::All).await.unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(
            next(&mut on_b, second).await,
            Some(ControlEvent::FlowChanged {
                flow_id: licence.flow_id
            })
        );
        assert!(matches!(
            next(&mut on_b, second).await,
            Some(ControlEvent::LicenceChanged {
                new_state: LicenceState::Active,
                ..
            })
        ));

        // The revocation is made on A, timed from the call until B's subscriber has it.
        let started = std::time::Instant::now();
        a.set_licence_state(&actor, licence.id, LicenceState::Revoked, "test".into())
            .await
            .unwrap();
        let seen = next(&mut on_b, second).await;
        let lag = started.elapsed();
        assert_eq!(
            seen,
            Some(ControlEvent::LicenceChanged {
                licence_id: licence.id,
                rhb_org: licence.org_id,
                flow: licence.flow_id,
                new_state: LicenceState::Revoked,
            }),
            "B sees the revocation"
        );
        assert!(lag < second, "B saw the revocation after {lag:?}");
        eprintln!("revocation on A reached B's subscriber after {lag:?}");

        // A change on B reaches A; token revocations travel too.
        let user = b
            .store()
            .create_user(&actor, licence.org_id, "ana", None)
            .await
            .unwrap();
        let (token, _) = b
            .create_token(&actor, user.id, Role::RhbViewer, "t".into())
            .await
            .unwrap();
        b.revoke_token(&actor, &token.id).await.unwrap();

        // Each node heard each change once: its own locally, the other's over the store.
        let drain = |events: &mut broadcast::Receiver<ControlEvent>| {
            let mut seen = Vec::new();
            while let Ok(e) = events.try_recv() {
                seen.push(e);
            }
            seen
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let heard_a = drain(&mut on_a);
        assert_eq!(heard_a.len(), 4, "A: {heard_a:?}");
        assert_eq!(
            heard_a[3],
            ControlEvent::TokenRevoked {
                token_id: token.id.clone()
            }
        );
        let heard_b = drain(&mut on_b);
        assert_eq!(
            heard_b,
            vec![ControlEvent::TokenRevoked { token_id: token.id }],
            "B: its own revocation, once"
        );

        a.store().close().await;
        b.store().close().await;
        drop_database(&db, c).await;
    });
}

#[test]
fn sessions_a_crashed_node_left_open_are_closed_when_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stadion.db").display());
    let rt = runtime();
    let licence = rt.block_on(async {
        let node = ControlPlane::open_node(&url, NodeConfig::named("venue-1"))
            .await
            .unwrap();
        let licence = common::seed(&node).await;
        node.record_usage(&[connected(licence), connected(licence)])
            .await
            .unwrap();
        assert_eq!(
            node.store()
                .list_sessions(&open_sessions(), Scope::All)
                .await
                .unwrap()
                .len(),
            2
        );
        licence
        // The node crashes: nothing reports the sessions' end.
    });
    drop(rt);
    runtime().block_on(async {
        // Another node starting leaves them alone; the same node starting again closes them.
        let other = ControlPlane::open_node(&url, NodeConfig::named("venue-2"))
            .await
            .unwrap();
        let store = other.store().clone();
        assert_eq!(
            store
                .list_sessions(&open_sessions(), Scope::All)
                .await
                .unwrap()
                .len(),
            2
        );
        let again = ControlPlane::open_node(&url, NodeConfig::named("venue-1"))
            .await
            .unwrap();
        assert!(
            store
                .list_sessions(&open_sessions(), Scope::All)
                .await
                .unwrap()
                .is_empty()
        );
        let all = SessionFilter {
            limit: 100,
            ..SessionFilter::default()
        };
        let sessions = store.list_sessions(&all, Scope::All).await.unwrap();
        assert_eq!(sessions.len(), 2);
        for s in &sessions {
            assert_eq!(s.disconnect_reason.as_deref(), Some("node restarted"));
            assert!(s.disconnected_at.unwrap() >= s.connected_at);
            assert_eq!(s.licence_id, licence);
        }
        // Sessions recorded now belong to the new run; a clean shutdown closes what the data
        // plane left open.
        again.record_usage(&[connected(licence)]).await.unwrap();
        again.shutdown().await;
        let sessions = other.store().list_sessions(&all, Scope::All).await.unwrap();
        assert_eq!(
            sessions[0].disconnect_reason.as_deref(),
            Some("node stopped")
        );
    });
}

#[test]
fn a_lost_nodes_sessions_stop_counting_and_are_closed() {
    let Some(admin_url) = common::postgres_url() else {
        return;
    };
    runtime().block_on(async {
        let (url, db, c) = create_database(&admin_url).await;
        let quick = |name: &str| NodeConfig {
            heartbeat: Duration::from_millis(100),
            stale_after: Duration::from_millis(800),
            ..NodeConfig::named(name)
        };
        let a = ControlPlane::open_node(&url, quick("node-a"))
            .await
            .unwrap();
        let b = ControlPlane::open_node(&url, quick("node-b"))
            .await
            .unwrap();
        // The licence admits two receivers; node A holds both.
        let licence = common::seed(&a).await;
        a.record_usage(&[connected(licence), connected(licence)])
            .await
            .unwrap();
        let refused = b.decide("b", &common::request("10.0.0.1")).await.unwrap();
        assert_eq!(refused.unwrap_err().reason, Refusal::ConcurrencyExceeded);
        // A counts its own receivers itself (the data plane's count), not twice.
        let mut own = common::request("10.0.0.1");
        own.connected = 1;
        assert!(a.decide("a", &own).await.unwrap().is_ok());

        // Node A dies. Within its stale time its receivers stop counting at B, and B's
        // heartbeat closes them.
        drop(a);
        let started = std::time::Instant::now();
        loop {
            if b.decide("b", &common::request("10.0.0.1"))
                .await
                .unwrap()
                .is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "A's sessions still count"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let open = b
                .store()
                .list_sessions(&open_sessions(), Scope::All)
                .await
                .unwrap();
            if open.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "A's sessions stay open: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = SessionFilter {
            limit: 100,
            ..SessionFilter::default()
        };
        for s in b.store().list_sessions(&all, Scope::All).await.unwrap() {
            assert_eq!(s.disconnect_reason.as_deref(), Some("node lost"));
        }
        b.store().close().await;
        drop_database(&db, c).await;
    });
}

/// The backend of node B's `LISTEN` connection, once it listens.
async fn listener_pid(c: &mut sqlx::PgConnection, db: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN %'",
    )
    .bind(db)
    .fetch_optional(c)
    .await
    .unwrap()
}

/// Waits up to 5 s for node B's `LISTEN` connection.
async fn wait_for_listener(c: &mut sqlx::PgConnection, db: &str) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(pid) = listener_pid(c, db).await {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no LISTEN connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_revocation_sent_while_the_listener_is_down_is_caught_up() {
    let Some(admin_url) = common::postgres_url() else {
        return;
    };
    runtime().block_on(async {
        let (url, db, mut c) = create_database(&admin_url).await;
        let b = ControlPlane::open_node(&url, NodeConfig::named("node-b"))
            .await
            .unwrap();
        let licence = common::seed(&b).await;
        // The other node is a bare store handle: it writes and notifies, and holds no LISTEN
        // connection of its own, so the only one on the database is B's.
        let other = stadion_control::Store::open(&url).await.unwrap();
        other.ping().await.unwrap();
        let mut on_b = b.subscribe();
        let pid = wait_for_listener(&mut c, &db).await;

        // B's LISTEN connection is cut and cannot come back: the database takes no new
        // connections (the ones already in the pools stay).
        sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
            .execute(&mut c)
            .await
            .unwrap();
        let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert!(cut);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(listener_pid(&mut c, &db).await, None);

        // The revocation is made elsewhere while B listens to nothing: its notification is
        // lost, yet B announces it from the change feed.
        let started = std::time::Instant::now();
        let revoked = other
            .set_licence_state(
                &Actor("other node".into()),
                licence,
                LicenceState::Revoked,
                "test".into(),
            )
            .await
            .unwrap()
            .0;
        let seen = next(&mut on_b, Duration::from_secs(3)).await;
        let lag = started.elapsed();
        assert_eq!(
            seen,
            Some(ControlEvent::LicenceChanged {
                licence_id: licence,
                rhb_org: revoked.org_id,
                flow: revoked.flow_id,
                new_state: LicenceState::Revoked,
            })
        );
        assert_eq!(
            listener_pid(&mut c, &db).await,
            None,
            "B heard of it without a LISTEN connection"
        );
        eprintln!(
            "a revocation sent while B's listener was down reached B's subscriber after {lag:?}"
        );
        assert!(lag < Duration::from_millis(1500), "after {lag:?}");

        // B's decisions refuse the licence; once connections are possible again B listens
        // again (a new backend) and hears the next change, once.
        sqlx::query(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
            .execute(&mut c)
            .await
            .unwrap();
        let refused = b.decide("b", &common::request("10.0.0.1")).await.unwrap();
        assert_eq!(refused.unwrap_err().reason, Refusal::Revoked);
        assert_ne!(wait_for_listener(&mut c, &db).await, pid);
        let user = other
            .create_user(&Actor("other node".into()), revoked.org_id, "ana", None)
            .await
            .unwrap();
        let token = other
            .create_token(
                &Actor("other node".into()),
                "tok".into(),
                user.id,
                Role::RhbViewer,
                "t".into(),
                "hash".into(),
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        other
            .revoke_token(&Actor("other node".into()), &token.id)
            .await
            .unwrap();
        assert_eq!(
            next(&mut on_b, Duration::from_secs(1)).await,
            Some(ControlEvent::TokenRevoked { token_id: token.id })
        );
        eprintln!(
            "after reconnecting, B heard a change after {:?}",
            started.elapsed()
        );
        assert_eq!(on_b.try_recv().ok(), None, "each change once");

        other.close().await;
        b.store().close().await;
        drop_database(&db, c).await;
    });
}

/// Decides on `node` until `done` holds for the answer; the time it took (at most 3 s).
async fn decide_until(
    node: &ControlPlane,
    done: impl Fn(&stadion_control::Decision) -> bool,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let d = node
            .decide("test", &common::request("10.0.0.1"))
            .await
            .unwrap();
        if done(&d) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still {d:?} after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn nodes_with_a_spool_answer_from_their_index_and_see_each_others_changes() {
    let Some(admin_url) = common::postgres_url() else {
        return;
    };
    runtime().block_on(async {
        let (url, db, c) = create_database(&admin_url).await;
        let dir = tempfile::tempdir().unwrap();
        let node = |name: &str| NodeConfig {
            data_dir: Some(dir.path().to_owned()),
            ..NodeConfig::named(name)
        };
        let a = ControlPlane::open_node(&url, node("node-a")).await.unwrap();
        let b = ControlPlane::open_node(&url, node("node/b")).await.unwrap();
        assert!(dir.path().join("decisions-node_b.spool").exists());
        let licence = common::seed(&a).await;
        let refused = |reason: Refusal| {
            move |d: &stadion_control::Decision| d.as_ref().is_err_and(|e| e.reason == reason)
        };
        let lag = decide_until(&b, Result::is_ok).await;
        eprintln!("a licence created on A granted on B after {lag:?}");
        // B's index catches up with the seed; from now on B answers from it.
        tokio::time::sleep(Duration::from_millis(600)).await;

        // A holds both receivers the licence admits: B refuses a third once it has re-read
        // the other nodes' counts (twice a second).
        a.record_usage(&[connected(licence), connected(licence)])
            .await
            .unwrap();
        let lag = decide_until(&b, refused(Refusal::ConcurrencyExceeded)).await;
        eprintln!("A's receivers counted on B after {lag:?}");
        assert!(lag < Duration::from_secs(1), "after {lag:?}");

        // A revocation on A: B refuses as soon as it hears of it.
        a.set_licence_state(
            &Actor("test".into()),
            licence,
            LicenceState::Revoked,
            "test".into(),
        )
        .await
        .unwrap();
        let lag = decide_until(&b, refused(Refusal::Revoked)).await;
        eprintln!("a revocation on A refused on B after {lag:?}");
        assert!(lag < Duration::from_secs(1), "after {lag:?}");

        // Every answer B gave is in the shared audit log once its spool is committed.
        b.flush_decisions().await.unwrap();
        let filter = stadion_control::store::AuditFilter {
            action: Some("access.decide".into()),
            limit: 10_000,
            ..Default::default()
        };
        let log = a.store().audit(&filter).await.unwrap();
        assert!(
            log.iter()
                .any(|e| e.reason.starts_with("concurrency_exceeded"))
        );
        assert!(log.iter().any(|e| e.reason.starts_with("revoked")));
        a.store().close().await;
        b.shutdown().await;
        drop_database(&db, c).await;
    });
}
