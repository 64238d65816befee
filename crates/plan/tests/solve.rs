//! Smoke tests of the solver: a few benchmark instances for a few seconds, determinism, and
//! small hand-made instances exercising pairs, mixed fleets, breaks and ride times.

mod common;

use stadion_plan::read::{Rounding, read_bks, read_file};
use stadion_plan::{
    Break, Instance, Location, Matrix, Objective, Progress, Reason, Request, Side, SolveConfig,
    Stop, TimeWindow, VehicleType, VisitKind, check, solve,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(seed: u64, secs: f64, iterations: u64, objective: Objective) -> SolveConfig {
    SolveConfig {
        objective,
        seed,
        time_limit: Duration::from_secs_f64(secs),
        max_iterations: Some(iterations),
        ..Default::default()
    }
}

/// A few Solomon instances end feasible and close to the DIMACS BKS after a short run.
#[test]
fn solomon_smoke() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let bks = read_bks("bks_dimacs.csv", &common::read(&dir.join("bks_dimacs.csv"))).unwrap();
    for name in ["C101", "R101", "RC105"] {
        let (_, inst) = read_file(
            &dir.join("solomon").join(format!("{name}.txt")),
            Rounding::Dimacs,
        )
        .unwrap();
        let sol = solve(&inst, &config(7, 2.0, 300, Objective::Cost)).unwrap();
        assert!(sol.unassigned.is_empty(), "{name}");
        let cost = check(&inst, &sol).unwrap();
        let best = bks
            .iter()
            .find(|b| b.instance == name.to_lowercase())
            .unwrap()
            .distance;
        let gap = (cost.distance - best) / best;
        assert!(gap < 0.05, "{name}: {} vs BKS {best}", cost.distance);
        assert!(
            gap > -1e-6,
            "{name}: {} beats the optimum {best}",
            cost.distance
        );
    }
}

/// Li & Lim: pairs stay together, pickup first, few routes.
#[test]
fn lilim_smoke() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let (_, inst) = read_file(&dir.join("lilim/lc101.txt"), Rounding::Exact).unwrap();
    let last = Arc::new(Mutex::new(None::<Progress>));
    let seen = last.clone();
    let config = SolveConfig {
        progress: Some(Arc::new(move |p: &Progress| {
            *seen.lock().unwrap() = Some(*p);
        })),
        ..config(3, 2.0, 200, Objective::Hierarchical)
    };
    let sol = solve(&inst, &config).unwrap();
    assert!(sol.unassigned.is_empty());
    let cost = check(&inst, &sol).unwrap();
    assert!(cost.vehicles <= 11, "{} vehicles (BKS 10)", cost.vehicles);
    assert!(cost.distance < 828.94 * 1.05, "{}", cost.distance);
    // The progress ends at the answer: its vehicles and its distance, without the
    // hierarchical objective's weight per vehicle.
    let last = last.lock().unwrap().expect("progress reported");
    assert_eq!(last.vehicles, cost.vehicles);
    assert!(
        (last.cost - cost.distance).abs() < 1e-6,
        "{last:?} vs {cost:?}"
    );
}

#[test]
fn same_seed_same_solution() {
    let inst = grid_instance(30);
    let a = solve(&inst, &config(5, 60.0, 40, Objective::Cost)).unwrap();
    let b = solve(&inst, &config(5, 60.0, 40, Objective::Cost)).unwrap();
    assert_eq!(a, b);
}

/// 3 delivery requests per row of a grid, depot at the origin, two vehicle types.
fn grid_instance(n: usize) -> Instance {
    let mut locations = vec![Location {
        name: "depot".into(),
        x: 0.0,
        y: 0.0,
    }];
    for i in 0..n {
        locations.push(Location {
            name: format!("c{i}"),
            x: (i % 6) as f64 * 7.0,
            y: (i / 6) as f64 * 5.0,
        });
    }
    let distance = Matrix::euclidean(&locations, |d| d);
    let requests = (1..=n)
        .map(|i| Request {
            name: format!("r{i}"),
            demand: 1 + (i % 4) as i64,
            pickup: None,
            delivery: Some(Stop {
                location: i,
                service: 2.0,
                window: TimeWindow::new(0.0, 400.0),
            }),
            max_ride_time: None,
        })
        .collect();
    let mut big = VehicleType::simple(3, 30, 0, TimeWindow::new(0.0, 500.0));
    big.fixed_cost = 50.0;
    let small = VehicleType {
        name: "van".into(),
        cost_per_distance: 0.5,
        ..VehicleType::simple(4, 8, 0, TimeWindow::new(0.0, 500.0))
    };
    Instance {
        name: "grid".into(),
        duration: distance.clone(),
        distance,
        locations,
        requests,
        vehicle_types: vec![big, small],
    }
}

#[test]
fn mixed_fleet_breaks_and_unservable_requests() {
    let mut inst = grid_instance(24);
    inst.vehicle_types[1].breaks.push(Break {
        // Every route serves a window ending at 400, so it overlaps this one.
        window: TimeWindow::new(100.0, 450.0),
        duration: 15.0,
    });
    // Impossible: due before the vehicle can get there.
    inst.requests[5].delivery.as_mut().unwrap().window = TimeWindow::new(0.0, 1.0);
    let sol = solve(&inst, &config(1, 10.0, 100, Objective::Cost)).unwrap();
    let unassigned: Vec<usize> = sol.unassigned.iter().map(|u| u.request).collect();
    assert_eq!(unassigned, vec![5]);
    assert!(
        matches!(sol.unassigned[0].reason, Reason::Unreachable { close, .. } if close == 1.0),
        "{:?}",
        sol.unassigned
    );
    let cost = check(&inst, &sol).unwrap();
    assert!(cost.vehicles >= 2);
    // Every van route overlaps the break window, so every van takes the break.
    for r in sol.routes.iter().filter(|r| r.vehicle_type == 1) {
        assert!(
            r.visits.iter().any(|v| v.kind == VisitKind::Break(0)),
            "van without its break: {r:?}"
        );
    }
}

#[test]
fn pickup_delivery_pairs_with_ride_times() {
    // Passengers between two clusters; each must ride at most 40.
    let mut locations = vec![Location {
        name: "depot".into(),
        x: 0.0,
        y: 0.0,
    }];
    let mut requests = Vec::new();
    for i in 0..8 {
        let a = locations.len();
        locations.push(Location {
            name: format!("hotel{i}"),
            x: 10.0 + i as f64,
            y: 0.0,
        });
        locations.push(Location {
            name: format!("venue{i}"),
            x: 0.0,
            y: 20.0 + i as f64,
        });
        requests.push(Request {
            name: format!("p{i}"),
            demand: 1,
            pickup: Some(Stop {
                location: a,
                service: 1.0,
                window: TimeWindow::new(0.0, 200.0),
            }),
            delivery: Some(Stop {
                location: a + 1,
                service: 1.0,
                window: TimeWindow::new(0.0, 300.0),
            }),
            max_ride_time: Some(40.0),
        });
    }
    let distance = Matrix::euclidean(&locations, |d| d);
    let inst = Instance {
        name: "pairs".into(),
        duration: distance.clone(),
        distance,
        locations,
        requests,
        vehicle_types: vec![VehicleType::simple(3, 4, 0, TimeWindow::new(0.0, 400.0))],
    };
    let sol = solve(&inst, &config(2, 10.0, 100, Objective::Hierarchical)).unwrap();
    let cost = check(&inst, &sol).unwrap();
    assert!(sol.unassigned.is_empty() && cost.vehicles <= 3);
    for r in &sol.routes {
        let pos = |req: usize, side: Side| {
            r.visits
                .iter()
                .position(|v| v.kind == VisitKind::Request { request: req, side })
        };
        for req in 0..inst.requests.len() {
            if let Some(p) = pos(req, Side::Pickup) {
                assert!(pos(req, Side::Delivery).is_some_and(|d| d > p));
            }
        }
    }
}

/// Each request the solver leaves out comes with the specific reason: too big for every
/// vehicle, a ride limit below the direct ride, a window no depot reaches, no shift long
/// enough, or every capable vehicle busy at that time.
#[test]
fn every_unserved_request_says_why() {
    // On a line: depot at 0, a hotel at 10, a venue at 30 (travel = distance).
    let at = |x: f64| Location {
        name: format!("x{x}"),
        x,
        y: 0.0,
    };
    let locations = vec![at(0.0), at(10.0), at(30.0)];
    let distance = Matrix::euclidean(&locations, |d| d);
    let stop = |location: usize, from: f64, to: f64| Stop {
        location,
        service: 0.0,
        window: TimeWindow::new(from, to),
    };
    let ride = |name: &str, demand: i64, p: (f64, f64), d: (f64, f64), max: f64| Request {
        name: name.into(),
        demand,
        pickup: Some(stop(1, p.0, p.1)),
        delivery: Some(stop(2, d.0, d.1)),
        max_ride_time: Some(max),
    };
    let requests = vec![
        ride("too big", 9, (100.0, 200.0), (100.0, 300.0), 100.0),
        ride("ride limit", 1, (100.0, 200.0), (100.0, 300.0), 15.0),
        ride("too early", 1, (0.0, 5.0), (0.0, 300.0), 100.0),
        ride("too late", 1, (960.0, 975.0), (960.0, 995.0), 100.0),
        // One vehicle, two full loads that must both ride between 200 and 240.
        ride("peak a", 4, (200.0, 205.0), (220.0, 240.0), 40.0),
        ride("peak b", 4, (200.0, 205.0), (220.0, 240.0), 40.0),
    ];
    let inst = Instance {
        name: "reasons".into(),
        duration: distance.clone(),
        distance,
        locations,
        requests,
        vehicle_types: vec![VehicleType::simple(1, 4, 0, TimeWindow::new(0.0, 1000.0))],
    };
    let sol = solve(&inst, &config(1, 5.0, 50, Objective::Cost)).unwrap();
    check(&inst, &sol).unwrap();
    let why = |r: usize| {
        sol.unassigned
            .iter()
            .find(|u| u.request == r)
            .map(|u| u.reason.clone())
    };
    assert_eq!(
        why(0),
        Some(Reason::Capacity {
            demand: 9,
            largest: 4
        })
    );
    assert_eq!(
        why(1),
        Some(Reason::RideTime {
            shortest: 20.0,
            max: 15.0
        })
    );
    assert_eq!(
        why(2),
        Some(Reason::Unreachable {
            earliest: 10.0,
            close: 5.0
        })
    );
    assert_eq!(why(3), Some(Reason::Shift));
    // One of the peak loads is carried, the other finds the only vehicle busy.
    let peak: Vec<Reason> = [4, 5].into_iter().filter_map(why).collect();
    assert_eq!(peak, vec![Reason::FleetBusy { vehicles: 1 }]);
    assert_eq!(sol.unassigned.len(), 5);
    for u in &sol.unassigned {
        assert!(!u.reason.to_string().is_empty());
    }
}

/// One vehicle, capacity for two customers a trip: with three trips it serves all six
/// (reloading at the depot in between); with two, two customers find it busy.
#[test]
fn one_vehicle_serves_everyone_in_several_trips() {
    let mut locations = vec![Location {
        name: "depot".into(),
        x: 0.0,
        y: 0.0,
    }];
    for i in 0..6 {
        let angle = i as f64;
        locations.push(Location {
            name: format!("c{i}"),
            x: 10.0 * angle.cos(),
            y: 10.0 * angle.sin(),
        });
    }
    let distance = Matrix::euclidean(&locations, |d| d);
    let requests = (1..=6)
        .map(|i| Request {
            name: format!("r{i}"),
            demand: 5,
            pickup: None,
            delivery: Some(Stop {
                location: i,
                service: 1.0,
                window: TimeWindow::new(0.0, 1000.0),
            }),
            max_ride_time: None,
        })
        .collect();
    let vehicle = |trips: usize| VehicleType {
        max_trips: trips,
        reload_time: 5.0,
        ..VehicleType::simple(1, 10, 0, TimeWindow::new(0.0, 1000.0))
    };
    let mut inst = Instance {
        name: "trips".into(),
        duration: distance.clone(),
        distance,
        locations,
        requests,
        vehicle_types: vec![vehicle(3)],
    };
    let sol = solve(&inst, &config(1, 10.0, 200, Objective::Cost)).unwrap();
    check(&inst, &sol).unwrap();
    assert!(sol.unassigned.is_empty(), "{:?}", sol.unassigned);
    assert_eq!(sol.routes.len(), 1);
    let reloads = sol.routes[0]
        .visits
        .iter()
        .filter(|v| v.kind == VisitKind::Reload)
        .count();
    assert_eq!(reloads, 2);

    inst.vehicle_types[0] = vehicle(2);
    let sol = solve(&inst, &config(1, 10.0, 200, Objective::Cost)).unwrap();
    check(&inst, &sol).unwrap();
    assert_eq!(sol.unassigned.len(), 2, "{:?}", sol.unassigned);
    assert!(
        sol.unassigned
            .iter()
            .all(|u| u.reason == Reason::FleetBusy { vehicles: 1 })
    );
}
