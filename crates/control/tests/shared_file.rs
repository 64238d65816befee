//! Two processes on one SQLite file: the one holding the decision spool answers from its
//! in-memory index, and a change committed by the other process reaches that index (and the
//! first process's subscribers, through the change feed) within a second. The other process
//! is this test binary run again for the ignored test `other_process_revokes`.

mod common;

use std::time::Duration;

use chrono::Utc;
use stadion_control::model::LicenceState;
use stadion_control::store::{Actor, LicenceFilter, Scope};
use stadion_control::{ControlEvent, ControlPlane, NodeConfig, Refusal, Store};

/// The SQLite URL the other process opens.
const OTHER_PROCESS_URL: &str = "STADION_TEST_OTHER_PROCESS_URL";

#[test]
fn a_change_by_another_process_reaches_decisions_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stadion.db").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = ControlPlane::open_node(&url, NodeConfig::named("venue-1"))
            .await
            .unwrap();
        let licence = common::seed(&node).await;
        let mut events = node.subscribe();
        // Let the index catch up with the seed: decisions answer from it from then on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let granted = node.decide("t", &common::request("10.0.0.1")).await.unwrap();
        assert!(granted.is_ok(), "{granted:?}");
        while events.try_recv().is_ok() {}

        let out = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "other_process_revokes", "--ignored", "--nocapture"])
            .env(OTHER_PROCESS_URL, &url)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed: i64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("committed at "))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("the other process did not revoke: {stdout}"));
        let committed = chrono::DateTime::from_timestamp_micros(committed).unwrap();

        // The decision refuses within a second of the commit.
        let lag = loop {
            let d = node.decide("t", &common::request("10.0.0.1")).await.unwrap();
            let lag = Utc::now() - committed;
            if let Err(denial) = d {
                assert_eq!(denial.reason, Refusal::Revoked);
                break lag;
            }
            assert!(lag < chrono::Duration::seconds(2), "still granted after {lag}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        eprintln!("a revocation by another process reached the decisions after {lag}");
        assert!(lag < chrono::Duration::seconds(1), "after {lag}");
        // And the subscribers hear of it.
        let event = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        assert!(
            matches!(
                event,
                Ok(Ok(ControlEvent::LicenceChanged { licence_id, new_state: LicenceState::Revoked, .. }))
                    if licence_id == licence
            ),
            "{event:?}"
        );
        node.shutdown().await;
    });
}

/// The other process of `a_change_by_another_process_reaches_decisions_within_a_second`:
/// revokes the only licence in the store it is given and prints when that committed.
#[test]
#[ignore = "run by a_change_by_another_process_reaches_decisions_within_a_second as the other process"]
fn other_process_revokes() {
    let url = std::env::var(OTHER_PROCESS_URL)
        .expect("run by a_change_by_another_process_reaches_decisions_within_a_second");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let licences = store
            .list_licences(&LicenceFilter::default(), Scope::All)
            .await
            .unwrap();
        assert_eq!(licences.len(), 1);
        store
            .set_licence_state(
                &Actor("other process".into()),
                licences[0].id,
                LicenceState::Revoked,
                "test".into(),
            )
            .await
            .unwrap();
        println!("committed at {}", Utc::now().timestamp_micros());
        store.close().await;
    });
}
