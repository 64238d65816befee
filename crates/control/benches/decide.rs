//! Access-decision latency: p50/p99 over 10 000 decisions against a store with 200 rights
//! holders, 200 flows and 5 000 licences. Each decision includes the lookup, the rule and
//! putting its audit entry on record (what a data plane waits for on a connection): through a
//! control plane with a decision spool, the in-memory index and the spool (`sqlite`,
//! `postgres`: a node with a data directory); on the same store through a second control plane
//! without one, the SQL lookup and the committed entry (`sqlite-wait`, `postgres-wait`); at
//! the end of each run, the time until every entry is committed.
//!
//! `cargo bench -p stadion-control --bench decide` (SQLite in a temp dir); with
//! `STADION_BENCH_POSTGRES_URL=postgres://...` it measures PostgreSQL as well, in a fresh
//! database it creates on that server and drops at the end.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sqlx::Connection;
use stadion_control::model::{OrgKind, Passphrase};
use stadion_control::store::{Actor, NewLicence};
use stadion_control::{AccessRequest, ControlPlane, NodeConfig};

const ORGS: usize = 200;
const FLOWS: usize = 200;
const LICENCES: usize = 5000;
const DECISIONS: usize = 10_000;

async fn seed(control: &ControlPlane) {
    let actor = Actor("bench".into());
    let store = control.store();
    let mut orgs = Vec::new();
    for i in 0..ORGS {
        orgs.push(
            store
                .create_org(&actor, &format!("rhb-{i}"), OrgKind::RightsHolder)
                .await
                .unwrap()
                .id,
        );
    }
    let mut flows = Vec::new();
    for i in 0..FLOWS {
        let flow = stadion_control::model::Flow {
            id: uuid::Uuid::new_v4(),
            name: format!("flow-{i}"),
            description: String::new(),
            venue: "venue".into(),
            event_code: "EVT".into(),
            created_at: Utc::now(),
            transport: None,
        };
        flows.push(store.create_flow(&actor, flow).await.unwrap().id);
    }
    for k in 0..LICENCES {
        // Distinct (org, flow) pairs: org k mod 200 gets flows 8q + org for q < 25.
        let (o, f) = (k % ORGS, (k / ORGS * 8 + k % ORGS) % FLOWS);
        let new = NewLicence {
            org_id: orgs[o],
            flow_id: flows[f],
            valid_from: Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
            valid_until: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
            max_concurrent_receivers: 4,
            allowed_networks: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            encryption_required: true,
            passphrase: Passphrase::generate(),
        };
        control.create_licence(&actor, new).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn open_seeded(label: &str, url: &str, data_dir: &std::path::Path) -> ControlPlane {
    let node = NodeConfig {
        data_dir: Some(data_dir.to_owned()),
        ..NodeConfig::named("bench")
    };
    let control = ControlPlane::open_node(url, node).await.unwrap();
    let t = Instant::now();
    seed(&control).await;
    eprintln!(
        "{label}: seeded {ORGS} orgs, {FLOWS} flows, {LICENCES} licences in {:.1?}",
        t.elapsed()
    );
    control
}

async fn measure(label: &str, control: &ControlPlane) {
    let mut samples = Vec::with_capacity(DECISIONS);
    let (mut granted, mut denied) = (0, 0);
    for i in 0..DECISIONS {
        // Mostly licensed pairs, some unlicensed ones, some from outside the allowed networks.
        let k = (i * 7919) % LICENCES;
        let o = k % ORGS;
        let f = if i % 10 == 9 {
            (o * 8 + 1) % FLOWS
        } else {
            (k / ORGS * 8 + k % ORGS) % FLOWS
        };
        let source = if i % 10 == 8 { "192.0.2.1" } else { "10.1.2.3" };
        let req = AccessRequest {
            org: format!("rhb-{o}"),
            flow: format!("flow-{f}"),
            source: source.parse().unwrap(),
            connected: (i % 5) as u32,
        };
        let start = Instant::now();
        let d = control.decide("bench", &req).await.unwrap();
        samples.push(start.elapsed());
        if d.is_ok() { granted += 1 } else { denied += 1 }
    }
    samples.sort();
    let total: Duration = samples.iter().sum();
    println!(
        "{label}: {DECISIONS} sequential decisions ({granted} granted, {denied} denied): p50 {:.0?}  p90 {:.0?}  p99 {:.0?}  max {:.0?}  mean {:.0?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        total / DECISIONS as u32
    );
    let t = Instant::now();
    control.flush_decisions().await.unwrap();
    println!(
        "{label}: every entry committed {:.1?} after the last answer",
        t.elapsed()
    );

    // Concurrent callers share audit transactions (group commit).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..DECISIONS / 32 {
                let k = (c * 1000 + i * 31) % LICENCES;
                let req = AccessRequest {
                    org: format!("rhb-{}", k % ORGS),
                    flow: format!("flow-{}", (k / ORGS * 8 + k % ORGS) % FLOWS),
                    source: "10.0.0.1".parse().unwrap(),
                    connected: 0,
                };
                let s = Instant::now();
                control.decide("bench", &req).await.unwrap().unwrap();
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    lat.sort();
    println!(
        "{label}: {} decisions from 32 concurrent callers: {:.0} decisions/s, p50 {:.0?}  p99 {:.0?}",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    control.flush_decisions().await.unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a tiny smoke.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    rt.block_on(async {
        let control = open_seeded("sqlite", &url, dir.path()).await;
        measure("sqlite", &control).await;
        // The spool is taken: this one reads the store and waits for its commits.
        let waiting = ControlPlane::open(&url).await.unwrap();
        measure("sqlite-wait", &waiting).await;
    });
    if let Ok(server) = std::env::var("STADION_BENCH_POSTGRES_URL") {
        rt.block_on(async {
            let db = format!("stadion_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut admin)
                .await
                .unwrap();
            let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
            let url = format!("{base}/{db}");
            let control = open_seeded("postgres", &url, dir.path()).await;
            measure("postgres", &control).await;
            // Without a data directory: no spool, decisions read the store and wait.
            let waiting = ControlPlane::open_node(&url, NodeConfig::named("bench-wait"))
                .await
                .unwrap();
            measure("postgres-wait", &waiting).await;
            control.store().close().await;
            waiting.store().close().await;
            sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        });
    }
}
