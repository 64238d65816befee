//! The checker against published best-known solutions, and against broken routes.

mod common;

use stadion_plan::read::{
    Rounding, read_bks, read_file, read_lilim, read_sintef_solution, read_solomon,
};
use stadion_plan::{Side, Violation, VisitKind, check, schedule};

/// Every SINTEF solution of the 100- and 200-customer instances reproduces its published
/// route count and distance (double precision).
#[test]
fn sintef_solutions_reproduce_published_values() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let table = read_bks("bks_sintef.csv", &common::read(&dir.join("bks_sintef.csv"))).unwrap();
    let mut checked = 0;
    for bks in table {
        let (family, folder) = if bks.instance.starts_with('l') {
            ("LiLim", "lilim")
        } else {
            ("GehringHomberger", "homberger")
        };
        let small = bks.instance.len() <= 6 || bks.instance.contains("_2_");
        if !small {
            continue;
        }
        let name = if folder == "homberger" {
            bks.instance.to_uppercase()
        } else {
            bks.instance.clone()
        };
        let path = dir.join(folder).join(format!("{name}.txt"));
        if !path.exists() {
            // Solomon-sized SINTEF rows refer to instances shipped only in `solomon/`.
            continue;
        }
        let (_, instance) = read_file(&path, Rounding::Exact).unwrap();
        let sol_path = dir
            .join("sintef_solutions")
            .join(family)
            .join(format!("{}.txt", bks.instance));
        let solution = read_sintef_solution(
            &sol_path.display().to_string(),
            &common::read(&sol_path),
            &instance,
        )
        .unwrap();
        let cost = check(&instance, &solution).unwrap_or_else(|v| panic!("{}: {v}", bks.instance));
        assert_eq!(Some(cost.vehicles), bks.vehicles, "{}", bks.instance);
        assert!(
            (cost.distance - bks.distance).abs() < 5e-3,
            "{}: {} vs published {}",
            bks.instance,
            cost.distance,
            bks.distance
        );
        checked += 1;
    }
    assert!(checked >= 56 + 60, "only {checked} instances checked");
}

const TINY: &str = "TINY

VEHICLE
NUMBER     CAPACITY
  2         10

CUSTOMER
CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME
    0      0          0          0          0       100          0
    1      3          4          6          0        20          1
    2      6          8          4          0        30          1
    3      0          3          5         10        15          2
";

fn tiny_route(ids: &[usize]) -> Vec<VisitKind> {
    ids.iter()
        .map(|&i| VisitKind::Request {
            request: i - 1,
            side: Side::Delivery,
        })
        .collect()
}

#[test]
fn checker_accepts_a_feasible_tiny_solution_and_recomputes_its_distance() {
    let inst = read_solomon("tiny", TINY, Rounding::Dimacs).unwrap();
    let sol = stadion_plan::Solution {
        routes: vec![
            schedule(&inst, 0, &tiny_route(&[1, 2])),
            schedule(&inst, 0, &tiny_route(&[3])),
        ],
        unassigned: vec![],
    };
    let cost = check(&inst, &sol).unwrap();
    assert_eq!(cost.vehicles, 2);
    assert!((cost.distance - (5.0 + 5.0 + 10.0 + 6.0)).abs() < 1e-9);
}

#[test]
fn checker_rejects_broken_routes() {
    let inst = read_solomon("tiny", TINY, Rounding::Dimacs).unwrap();
    let violations = |routes: Vec<Vec<usize>>, unassigned: Vec<usize>| {
        let sol = stadion_plan::Solution {
            routes: routes
                .iter()
                .map(|r| schedule(&inst, 0, &tiny_route(r)))
                .collect(),
            unassigned: unassigned
                .into_iter()
                .map(|request| stadion_plan::Unassigned {
                    request,
                    reason: stadion_plan::Reason::NotPlaced,
                })
                .collect(),
        };
        check(&inst, &sol).expect_err("must be rejected").0
    };
    // Capacity: 6 + 5 > 10.
    let v = violations(vec![vec![3, 1], vec![2]], vec![]);
    assert!(
        v.iter().any(|v| matches!(v, Violation::Capacity { .. })),
        "{v:?}"
    );
    // Time window: customer 3 closes at 15 but is reached after 2.
    let v = violations(vec![vec![2, 3]], vec![0]);
    assert!(
        v.iter().any(|v| matches!(v, Violation::TimeWindow { .. })),
        "{v:?}"
    );
    // Missing customer, duplicated customer, too many vehicles.
    let v = violations(vec![vec![1, 2]], vec![]);
    assert!(v.contains(&Violation::Missing { request: 2 }), "{v:?}");
    let v = violations(vec![vec![1, 2], vec![3, 2]], vec![]);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::Duplicate { request: 1, .. })),
        "{v:?}"
    );
    let v = violations(vec![vec![1], vec![2], vec![3]], vec![]);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::TooManyVehicles { used: 3, .. })),
        "{v:?}"
    );
    // Claimed times that the travel times cannot achieve.
    let mut sol = stadion_plan::Solution {
        routes: vec![
            schedule(&inst, 0, &tiny_route(&[1, 2])),
            schedule(&inst, 0, &tiny_route(&[3])),
        ],
        unassigned: vec![],
    };
    sol.routes[0].visits[1].arrival -= 1.0;
    let v = check(&inst, &sol).unwrap_err().0;
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::ArrivalTooEarly { .. })),
        "{v:?}"
    );
}

const TINY_PDP: &str = "2 10 1
0 0 0 0 0 100 0 0 0
1 3 4 5 0 50 1 0 2
2 6 8 -5 0 60 1 1 0
";

#[test]
fn checker_enforces_pickup_before_delivery_in_one_route() {
    let inst = read_lilim("tiny.txt", TINY_PDP, Rounding::Exact).unwrap();
    assert_eq!(inst.requests.len(), 1);
    let p = VisitKind::Request {
        request: 0,
        side: Side::Pickup,
    };
    let d = VisitKind::Request {
        request: 0,
        side: Side::Delivery,
    };
    let ok = stadion_plan::Solution {
        routes: vec![schedule(&inst, 0, &[p, d])],
        unassigned: vec![],
    };
    assert!((check(&inst, &ok).unwrap().distance - 20.0).abs() < 1e-9);
    let reversed = stadion_plan::Solution {
        routes: vec![schedule(&inst, 0, &[d, p])],
        unassigned: vec![],
    };
    let v = check(&inst, &reversed).unwrap_err().0;
    assert!(
        v.iter().any(|v| matches!(v, Violation::Precedence { .. })),
        "{v:?}"
    );
    let split = stadion_plan::Solution {
        routes: vec![schedule(&inst, 0, &[p]), schedule(&inst, 0, &[d])],
        unassigned: vec![],
    };
    let v = check(&inst, &split).unwrap_err().0;
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::NotDelivered { .. })),
        "{v:?}"
    );
    // Ride time: leave the pickup at 6, start the delivery at 11.
    let mut tight = inst.clone();
    tight.requests[0].max_ride_time = Some(2.0);
    let v = check(&tight, &ok).unwrap_err().0;
    assert!(
        v.iter().any(|v| matches!(v, Violation::RideTime { .. })),
        "{v:?}"
    );
}

#[test]
fn readers_report_file_and_line() {
    let bad = TINY.replace("    2      6          8", "    2      6          x");
    let err = read_solomon("tiny.txt", &bad, Rounding::Dimacs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tiny.txt") && err.contains("line 11"), "{err}");
    let err = read_lilim(
        "p.txt",
        "2 10 1\n0 0 0 0 0 100 0 0 0\n1 3 4 5 0 50 1 0 9\n",
        Rounding::Exact,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("p.txt: line 3"), "{err}");
}
