//! The hot path: one solver iteration is a local search (granular neighbourhoods, O(1)
//! segment-concatenation move evaluation). `solve` with one iteration runs the initial
//! population's 25 cheapest-insertion + local-search descents and one crossover.

use criterion::{Criterion, criterion_group, criterion_main};
use stadion_plan::read::{Rounding, read_solomon};
use stadion_plan::{Objective, SolveConfig, solve};
use std::path::PathBuf;
use std::time::Duration;

fn data(name: &str) -> Option<String> {
    let dir = std::env::var_os("STADION_VRP_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/vrp")
        });
    std::fs::read_to_string(dir.join("solomon").join(format!("{name}.txt"))).ok()
}

fn local_search(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_search");
    group.sample_size(10);
    for name in ["C101", "R101", "RC201"] {
        let Some(text) = data(name) else {
            eprintln!("benchmark data not found; set STADION_VRP_DATA");
            return;
        };
        let inst = read_solomon(name, &text, Rounding::Dimacs).expect("instance");
        let config = SolveConfig {
            objective: Objective::Cost,
            seed: 1,
            time_limit: Duration::from_secs(60),
            max_iterations: Some(1),
            ..Default::default()
        };
        group.bench_function(format!("{name}_26_descents"), |b| {
            b.iter(|| solve(&inst, &config).expect("solve"))
        });
    }
    group.finish();
}

criterion_group!(benches, local_search);
criterion_main!(benches);
