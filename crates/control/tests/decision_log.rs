//! The access-decision log on an embedded SQLite store: decisions are answered once their audit
//! entry is spooled, and every answered decision ends up in the audit log — after a flush, a
//! shutdown, or a crash while the store was refusing the entries.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{request, runtime, seed};
use sqlx::Connection;
use stadion_control::store::{Actor, AuditFilter};
use stadion_control::{ControlPlane, StoreError};

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("stadion.db").display())
}

/// The reasons of the decision entries in the audit log, in order.
async fn decided(control: &ControlPlane) -> Vec<String> {
    let filter = AuditFilter {
        action: Some("access.decide".into()),
        limit: 1000,
        ..AuditFilter::default()
    };
    let entries = control.store().audit(&filter).await.unwrap();
    entries
        .into_iter()
        .map(|e| format!("{} {}", e.decision, e.reason))
        .collect()
}

#[test]
fn answered_decisions_are_committed_by_flush_and_by_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let control = ControlPlane::open(&url(dir.path())).await.unwrap();
        seed(&control).await;
        for source in ["10.0.0.1", "192.0.2.1", "10.0.0.2"] {
            control.decide("test", &request(source)).await.unwrap().ok();
        }
        // Read through the store at once, the log already has them (the read waits for them).
        let log = decided(&control).await;
        assert_eq!(log.len(), 3, "{log:?}");
        control.flush_decisions().await.unwrap();
        assert!(log[0].starts_with("allow granted to 10.0.0.1"), "{log:?}");
        assert!(
            log[1].starts_with("deny source_network_not_allowed"),
            "{log:?}"
        );

        // Answered, then the process shuts down at once: the entry is committed on the way.
        control
            .decide("test", &request("10.0.0.3"))
            .await
            .unwrap()
            .unwrap();
        control.shutdown().await;
        assert!(matches!(
            control.decide("test", &request("10.0.0.4")).await,
            Err(StoreError::Unavailable(_))
        ));
    });
    drop(rt);
    let rt = runtime();
    rt.block_on(async {
        let control = ControlPlane::open(&url(dir.path())).await.unwrap();
        let log = decided(&control).await;
        assert_eq!(log.len(), 4, "{log:?}");
        assert!(log[3].starts_with("allow granted to 10.0.0.3"), "{log:?}");
    });
}

#[test]
fn decisions_left_in_the_spool_by_a_crash_are_committed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stadion.db");
    let rt = runtime();
    let answered = rt.block_on(async {
        let control = ControlPlane::open(&url(dir.path())).await.unwrap();
        seed(&control).await;
        // The store starts refusing audit entries.
        sqlx::query(
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .execute(control.store().pool())
        .await
        .unwrap();
        // This decision is answered (its entry is spooled) ...
        let granted = control.decide("test", &request("10.0.0.9")).await.unwrap();
        assert!(granted.is_ok(), "{granted:?}");
        // ... its commit fails and is retried; from then on decisions are refused, visibly
        // (those answered before the writer saw the failure are spooled too).
        let mut answered = 1;
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match control.decide("test", &request("10.0.0.10")).await {
                    Err(StoreError::Spool(why)) => return why,
                    Ok(_) => {
                        answered += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        })
        .await
        .expect("decisions are refused while the log cannot commit");
        assert!(refused.contains("failing"), "{refused}");
        assert!(!control.decision_log_healthy(), "readiness reports it");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), control.flush_decisions())
                .await
                .is_err(),
            "a flush cannot complete while the store refuses the entries"
        );
        // The process dies here: the runtime drops the writer mid-retry.
        answered
    });
    drop(rt);
    let spool = std::fs::read_to_string(dir.path().join("stadion.db.decisions")).unwrap();
    assert!(
        spool.contains("10.0.0.9"),
        "the answered decision is in the spool: {spool}"
    );

    let rt = runtime();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER fail_audit")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let control = ControlPlane::open(&url(dir.path())).await.unwrap();
        let log = decided(&control).await;
        // Exactly the answered decisions, once: the refused ones were never answered.
        assert_eq!(log.len(), answered, "{log:?}");
        assert!(log[0].starts_with("allow granted to 10.0.0.9"), "{log:?}");
        control
            .decide("test", &request("10.0.0.11"))
            .await
            .unwrap()
            .unwrap();
        control.shutdown().await;
    });
    drop(rt);
    let spool = std::fs::read_to_string(dir.path().join("stadion.db.decisions")).unwrap();
    assert!(
        spool.is_empty(),
        "committed entries leave the spool: {spool}"
    );
    let rt = runtime();
    rt.block_on(async {
        let control = ControlPlane::open(&url(dir.path())).await.unwrap();
        assert_eq!(decided(&control).await.len(), answered + 1);
    });
}

#[test]
fn a_second_control_plane_on_the_same_file_waits_for_the_store() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let first = ControlPlane::open(&url(dir.path())).await.unwrap();
        seed(&first).await;
        let second = ControlPlane::open(&url(dir.path())).await.unwrap();
        // The second one has no spool: its decision is committed when it returns.
        second
            .decide("second", &request("10.0.0.1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decided(&second).await.len(), 1);
        // A change made through one is seen by the other's next decision.
        let licence = first
            .store()
            .list_licences(&Default::default(), stadion_control::store::Scope::All)
            .await
            .unwrap()
            .remove(0);
        second
            .set_licence_state(
                &Actor("test".into()),
                licence.id,
                stadion_control::model::LicenceState::Disabled,
                "test".into(),
            )
            .await
            .unwrap();
        let d = first.decide("first", &request("10.0.0.1")).await.unwrap();
        assert_eq!(
            d.unwrap_err().reason,
            stadion_control::Refusal::Disabled,
            "the first plane's decision sees the second's change"
        );
    });
}

/// On PostgreSQL each node with a data directory has a spool of its own, whose progress the
/// store keeps per node: what a crashed node answered but could not commit is committed when
/// the node starts again, exactly once, and another node's spool is not disturbed by it.
#[test]
fn a_postgres_nodes_spool_is_committed_when_it_starts_again() {
    let Some(admin_url) = common::postgres_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("stadion_test_{}", uuid::Uuid::new_v4().simple());
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{db}");
    let node = |name: &str| stadion_control::NodeConfig {
        data_dir: Some(dir.path().to_owned()),
        ..stadion_control::NodeConfig::named(name)
    };
    let rt = runtime();
    let (answered, others) = rt.block_on(async {
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let control = ControlPlane::open_node(&url, node("venue-1"))
            .await
            .unwrap();
        let other = ControlPlane::open_node(&url, node("venue-2"))
            .await
            .unwrap();
        seed(&control).await;
        // The other node answers from its index once it heard of the seed.
        let mut others = 1;
        while other
            .decide("other", &request("10.0.0.1"))
            .await
            .unwrap()
            .is_err()
        {
            assert!(others < 300, "the other node never heard of the licence");
            others += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        other.flush_decisions().await.unwrap();
        // The store starts refusing audit entries.
        for sql in [
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql \
             AS 'BEGIN RAISE EXCEPTION ''injected failure''; END'",
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION fail_audit()",
        ] {
            sqlx::query(sql)
                .execute(control.store().pool())
                .await
                .unwrap();
        }
        let mut answered = 0;
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match control.decide("test", &request("10.0.0.9")).await {
                    Err(StoreError::Spool(_)) => return,
                    Ok(_) => answered += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("decisions are refused while the log cannot commit");
        // The process dies here.
        (answered, others)
    });
    drop(rt);
    assert!(answered > 0);
    runtime().block_on(async {
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("DROP TRIGGER fail_audit ON audit_log")
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let control = ControlPlane::open_node(&url, node("venue-1"))
            .await
            .unwrap();
        let log = decided(&control).await;
        assert_eq!(log.len(), answered + others, "{log:?}");
        assert_eq!(
            log.iter().filter(|e| e.contains("10.0.0.9")).count(),
            answered
        );
        control.shutdown().await;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
}
