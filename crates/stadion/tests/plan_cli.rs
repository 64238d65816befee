//! `stadion plan` through the real binary: a small Solomon-format instance the test writes
//! itself, the repo's sample Games day, and broken inputs that must be refused with the file,
//! the line and (for scenarios) the field. Needs nothing outside the repo.

mod offline;

use offline::{fails, ok, s};
use stadion_plan::games::OUTPUT_FILES;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Eight customers of demand 10 around a depot, capacity 30: at least three routes.
const TINY: &str = "TINY

VEHICLE
NUMBER     CAPACITY
  5          30

CUSTOMER
CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME

    0      50         50          0          0       1000          0
    1      60         50         10          0        900         10
    2      70         50         10          0        900         10
    3      50         60         10          0        900         10
    4      50         70         10          0        900         10
    5      40         50         10          0        900         10
    6      30         50         10          0        900         10
    7      50         40         10          0        900         10
    8      50         30         10          0        900         10
";

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/paris-day")
}

#[test]
fn solve_prints_checked_routes_that_visit_every_customer_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.txt");
    std::fs::write(&file, TINY).unwrap();
    let out = ok(&[
        "plan",
        "solve",
        s(&file),
        "--time-limit",
        "2",
        "--seed",
        "1",
        "--format",
        "json",
    ]);
    let out = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(json["objective"], "distance");
    assert_eq!(json["unassigned"], 0);
    let routes: Vec<Vec<u64>> = serde_json::from_value(json["routes"].clone()).unwrap();
    let visited: Vec<u64> = routes.iter().flatten().copied().collect();
    let distinct: BTreeSet<u64> = visited.iter().copied().collect();
    assert_eq!(visited.len(), 8, "{routes:?}");
    assert_eq!(distinct, (1..=8).collect(), "{routes:?}");
    assert!(
        routes.iter().all(|r| r.len() <= 3),
        "capacity 30: {routes:?}"
    );
    assert_eq!(json["vehicles"], routes.len() as u64);
    // Four spokes of two customers each (10 and 20 away): each route is at least twice its
    // farthest customer's distance, and two far customers on one route cost at least
    // 20 + 28.2 + 20; so four out-and-back spokes, 160, are the optimum.
    let distance = json["distance"].as_f64().unwrap();
    assert!(
        (160.0 - 1e-6..=165.0).contains(&distance),
        "distance {distance}"
    );
}

#[test]
fn solve_refuses_a_broken_instance_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.txt");
    std::fs::write(
        &file,
        TINY.replace("70         50         10", "70         fifty      10"),
    )
    .unwrap();
    let err = fails(&["plan", "solve", s(&file), "--time-limit", "1"]);
    assert!(err.contains("broken.txt"), "{err}");
    assert!(err.contains("line 12"), "{err}");
}

#[test]
fn games_plans_the_sample_day_and_writes_every_output() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = ok(&[
        "plan",
        "games",
        s(&scenario_dir()),
        "--out",
        s(out_dir.path()),
        "--time-limit",
        "3",
        "--seed",
        "1",
        "--quiet",
    ]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("checker: ok"), "{out}");
    for file in OUTPUT_FILES {
        let path = out_dir.path().join(file);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .len();
        assert!(len > 0, "{file} is empty");
    }
    let kpis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("kpis.json")).unwrap()).unwrap();
    assert_eq!(kpis["kpis"]["people_unserved"], 0, "{kpis}");
    // The cost the checker gives the plan is the one in its KPIs.
    let (kpi_cost, checked) = (
        kpis["kpis"]["cost"].as_f64().unwrap(),
        kpis["checker"]["cost"].as_f64().unwrap(),
    );
    assert!((kpi_cost - checked).abs() < 0.01, "{kpi_cost} vs {checked}");
}

#[test]
fn games_refuses_an_unknown_venue_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(scenario_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let sessions = dir.path().join("sessions.csv");
    let text = std::fs::read_to_string(&sessions).unwrap();
    let broken = text.replacen("ath_pm,stade_de_france", "ath_pm,stade_de_marseille", 1);
    assert_ne!(
        text, broken,
        "the sample's sessions changed: update this test"
    );
    std::fs::write(&sessions, broken).unwrap();
    let err = fails(&["plan", "games", s(dir.path()), "--quiet"]);
    assert!(err.contains("sessions.csv:4"), "{err}");
    assert!(err.contains("venue"), "{err}");
    assert!(err.contains("stade_de_marseille"), "{err}");
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().file_name() != "out"),
        "a refused scenario wrote a plan"
    );
}
