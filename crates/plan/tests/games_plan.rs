//! The shipped sample scenario plans in under 10 s, the plan passes the checker and the
//! time-of-day road check, and every output file is written and consistent with the plan.

use stadion_plan::games::{self, Direction, OUTPUT_FILES, Scenario};
use stadion_plan::{Objective, Progress, SolveConfig};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn the_sample_day_plans_in_under_ten_seconds_and_passes_the_checker() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/paris-day");
    let started = Instant::now();
    let scenario = Scenario::load(&dir).unwrap();
    let last = Arc::new(Mutex::new(None::<Progress>));
    let seen = last.clone();
    let config = SolveConfig {
        objective: Objective::Cost,
        seed: scenario.seed,
        time_limit: Duration::from_secs_f64(scenario.time_limit_s),
        progress: Some(Arc::new(move |p: &Progress| {
            *seen.lock().unwrap() = Some(*p);
        })),
        ..SolveConfig::default()
    };
    let planned = games::plan(&scenario, &config).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "planning took {took:?}");
    // The best cost the progress shows last is the plan's cost as the checker computes it
    // (drivers' breaks included), with the same vehicles.
    let last = last.lock().unwrap().expect("progress reported");
    assert!(
        (last.cost - planned.checked.cost).abs() < 1e-6 * planned.checked.cost,
        "progress ends at {} but the checker says {}",
        last.cost,
        planned.checked.cost
    );
    assert_eq!(last.vehicles, planned.checked.vehicles);

    let r = &planned.report;
    let k = &r.kpis;
    let people: i64 = scenario.demand.iter().map(|d| d.arrive + d.leave).sum();
    assert_eq!(k.people_carried + k.people_unserved, people);
    assert!(r.unserved.iter().all(|u| !u.reason.is_empty()));
    assert!(r.road_violations.is_empty(), "{:#?}", r.road_violations);
    assert_eq!(k.vehicles_used, planned.checked.vehicles);
    assert!((k.cost - planned.checked.cost).abs() < 0.01);
    assert!(k.vehicles_used > 0 && k.empty_km > 0.0 && k.empty_km < k.vehicle_km);
    assert!(
        (k.vehicle_km - planned.checked.distance).abs() < 0.1,
        "{} vs {}",
        k.vehicle_km,
        planned.checked.distance
    );

    // Every trip keeps its group's rules.
    for t in &r.trips {
        let g = scenario.groups.iter().find(|g| g.id == t.group).unwrap();
        assert!(t.ride_min <= g.max_ride_min + 1e-6, "{t:?}");
        if t.direction == Direction::ToVenue {
            let lead = t.lead_min.unwrap();
            assert!(
                lead >= g.arrive_before_min - g.arrive_window_min - 1e-6
                    && lead <= g.arrive_before_min + 1e-6,
                "{t:?}"
            );
        } else {
            assert!(
                t.wait_min >= -1e-6 && t.wait_min <= g.leave_window_min + 1e-6,
                "{t:?}"
            );
        }
    }
    // Blocks respect the drivers' shifts and take their break.
    for b in &r.blocks {
        assert!(b.hours * 60.0 <= 660.0 + 1e-6, "{b:?}");
    }

    let out = tempfile::tempdir().unwrap();
    let files = games::write(&scenario, &planned, out.path()).unwrap();
    assert_eq!(files.len(), OUTPUT_FILES.len());
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() > 0, "{f:?} is empty");
    }
    let trips = std::fs::read_to_string(out.path().join("trips.csv")).unwrap();
    assert_eq!(trips.lines().count(), r.trips.len() + 1);
    let gantt = std::fs::read_to_string(out.path().join("gantt.svg")).unwrap();
    assert!(gantt.contains("<svg") && gantt.contains(&r.blocks[0].vehicle));
    let kpis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("kpis.json")).unwrap())
            .unwrap();
    assert_eq!(kpis["kpis"]["vehicles_used"], k.vehicles_used);
}

#[test]
fn a_fleet_too_small_leaves_people_unserved_with_the_reason_within_the_time_limit() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/paris-day");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&sample).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    // Two buses and two cars for the whole day.
    std::fs::write(
        dir.path().join("fleet.csv"),
        "id,type,depot,count,shift_start,shift_end\nbus,bus,depot_nord,1,06:00,16:30\nbus_late,bus,depot_nord,1,14:30,25:00\ncar,car,depot_ouest,2,06:00,16:30\n",
    )
    .unwrap();
    let scenario = Scenario::load(dir.path()).unwrap();
    let config = SolveConfig {
        time_limit: Duration::from_secs(2),
        ..SolveConfig::default()
    };
    let planned = games::plan(&scenario, &config).unwrap();
    // Every phase (search, repair of an infeasible best, final schedule) keeps to the limit.
    assert!(
        planned.solve_time < config.time_limit + Duration::from_millis(500),
        "solving took {:?}",
        planned.solve_time
    );
    let r = &planned.report;
    assert!(!r.unserved.is_empty());
    assert!(
        r.unserved
            .iter()
            .all(|u| !u.reason.is_empty() && u.source.starts_with("demand.csv:"))
    );
    // Four vehicles cannot carry the day: the solver leaves loads out, and says why.
    assert!(
        r.unserved
            .iter()
            .any(|u| u.reason.starts_with("fleet too small in the peak")),
        "{:#?}",
        r.unserved
    );
    let people: i64 = scenario.demand.iter().map(|d| d.arrive + d.leave).sum();
    assert_eq!(r.kpis.people_carried + r.kpis.people_unserved, people);
    // The header written for an empty list is the one serde writes for rows.
    let out = tempfile::tempdir().unwrap();
    games::write(&scenario, &planned, out.path()).unwrap();
    let unserved = std::fs::read_to_string(out.path().join("unserved.csv")).unwrap();
    assert_eq!(
        unserved.lines().next().unwrap(),
        games::report::Unserved::COLUMNS.join(",")
    );
}

#[test]
fn the_sample_fleet_carries_everyone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/paris-day");
    let scenario = Scenario::load(&dir).unwrap();
    let config = SolveConfig {
        time_limit: Duration::from_secs_f64(scenario.time_limit_s),
        ..SolveConfig::default()
    };
    let planned = games::plan(&scenario, &config).unwrap();
    assert!(
        planned.report.unserved.is_empty(),
        "{:#?}",
        planned.report.unserved
    );
}
