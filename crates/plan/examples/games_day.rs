//! Plans a Games scenario and prints its figures, without building the whole CLI (which does
//! the same and writes the output files: `stadion plan games <dir>`).
//!
//! `cargo run --release -p stadion-plan --example games_day -- scenarios/paris-day [SECONDS]`

use stadion_plan::SolveConfig;
use stadion_plan::games::{self, Scenario};
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: games_day <scenario dir> [seconds]");
    let started = Instant::now();
    let scenario = Scenario::load(Path::new(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let seconds = args
        .next()
        .map(|s| s.parse().expect("seconds"))
        .unwrap_or(scenario.time_limit_s);
    let config = SolveConfig {
        seed: scenario.seed,
        time_limit: Duration::from_secs_f64(seconds),
        ..SolveConfig::default()
    };
    let planned = games::plan(&scenario, &config).unwrap_or_else(|e| panic!("{e}"));
    let k = &planned.report.kpis;
    println!(
        "{}: {} loads, {} vehicles used, {:.1} vehicle-km ({:.1} empty), cost {:.1} (checker {:.1}), {} people carried, {} unserved; solve {:.2} s, total {:.2} s",
        scenario.name,
        planned.built.loads.len(),
        k.vehicles_used,
        k.vehicle_km,
        k.empty_km,
        k.cost,
        planned.checked.cost,
        k.people_carried,
        k.people_unserved,
        planned.solve_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for u in &planned.report.unserved {
        println!("unserved {} ({}): {}", u.id, u.source, u.reason);
    }
}
