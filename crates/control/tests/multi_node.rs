//! Two nodes sharing one PostgreSQL store: a change made on one reaches the other's
//! subscribers (PostgreSQL `NOTIFY` / `LISTEN`) within a second, exactly once, and a node does
//! not hear its own changes twice. Needs `STADION_TEST_POSTGRES_URL` (set by `scripts/test`).

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::Connection;
use stadion_control::model::{Flow, LicenceState, OrgKind, Passphrase, Role};
use stadion_control::store::{Actor, NewLicence};
use stadion_control::{ControlEvent, ControlPlane};
use tokio::sync::broadcast;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = format!("stadion_test_{}", uuid::Uuid::new_v4().simple());
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{db}");
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&mut c)
            .await
            .unwrap();
        let a = ControlPlane::open(&url).await.unwrap();
        let b = ControlPlane::open(&url).await.unwrap();
        let mut on_a = a.subscribe();
        let mut on_b = b.subscribe();
        // Let both listeners connect before the first change.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let actor = Actor("test".into());
        let org = a
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
            created_at: Utc::now(),
            transport: None,
        };
        let flow = a.create_flow(&actor, flow).await.unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(
            next(&mut on_b, second).await,
            Some(ControlEvent::FlowChanged { flow_id: flow.id })
        );
        let licence = a
            .create_licence(
                &actor,
                NewLicence {
                    org_id: org.id,
                    flow_id: flow.id,
                    valid_from: Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
                    valid_until: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
                    max_concurrent_receivers: 1,
                    allowed_networks: vec!["10.0.0.0/8".parse().unwrap()],
                    encryption_required: false,
                    passphrase: Passphrase::generate(),
                },
            )
            .await
            .unwrap();
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
                rhb_org: org.id,
                flow: flow.id,
                new_state: LicenceState::Revoked,
            }),
            "B sees the revocation"
        );
        assert!(lag < second, "B saw the revocation after {lag:?}");
        eprintln!("revocation on A reached B's subscriber after {lag:?}");

        // A change on B reaches A; token revocations travel too.
        let user = b
            .store()
            .create_user(&actor, org.id, "ana", None)
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
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    });
}
