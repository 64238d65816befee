//! Solves benchmark files and prints the gap to the shipped BKS tables.
//!
//! `cargo run --release -p stadion-plan --example benchmark -- [--time S] [--seed N]
//!  [--hierarchical] [--exact] [--iterations N] FILE...`
//!
//! Solomon files use the DIMACS convention (truncated distances, distance objective) unless
//! `--hierarchical`/`--exact` say otherwise; gaps are to `bks_dimacs.csv` or, with
//! `--hierarchical`, to `bks_sintef.csv` found two levels above each file.

use stadion_plan::read::{Rounding, read_bks, read_file};
use stadion_plan::{Objective, SolveConfig, check, solve};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut time, mut seed, mut objective, mut rounding) =
        (10.0, 1u64, Objective::Cost, Rounding::Dimacs);
    let mut files = Vec::new();
    let mut verbose = false;
    let mut iterations = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--time" => {
                time = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--time SECONDS")
            }
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed N"),
            "--hierarchical" => {
                objective = Objective::Hierarchical;
                rounding = Rounding::Exact;
            }
            "--exact" => rounding = Rounding::Exact,
            "--verbose" => verbose = true,
            "--iterations" => {
                iterations = Some(
                    args.next()
                        .and_then(|s| s.parse().ok())
                        .expect("--iterations N"),
                )
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    let (mut gaps, mut extra_vehicles, mut bks_vehicles) = (Vec::new(), 0i64, 0usize);
    println!("instance\tvehicles\tcost\tbks_vehicles\tbks\tgap_%\tseconds");
    for path in files {
        let (_, inst) = read_file(&path, rounding).unwrap_or_else(|e| panic!("{e}"));
        let table = path.parent().and_then(|p| p.parent()).map(|d| {
            d.join(if objective == Objective::Hierarchical {
                "bks_sintef.csv"
            } else {
                "bks_dimacs.csv"
            })
        });
        let bks = table
            .and_then(|t| std::fs::read_to_string(&t).ok().map(|s| (t, s)))
            .and_then(|(t, s)| {
                let name = path.file_stem()?.to_string_lossy().to_lowercase();
                read_bks(&t.display().to_string(), &s)
                    .ok()?
                    .into_iter()
                    .find(|b| b.instance == name)
            });
        let progress: Option<stadion_plan::ProgressFn> = verbose.then(|| {
            std::sync::Arc::new(|p: &stadion_plan::Progress| {
                eprintln!(
                    "  {:.2}s it {} vehicles {} cost {:.1}",
                    p.elapsed.as_secs_f64(),
                    p.iteration,
                    p.vehicles,
                    p.cost
                )
            }) as stadion_plan::ProgressFn
        });
        let config = SolveConfig {
            objective,
            seed,
            time_limit: Duration::from_secs_f64(time),
            max_iterations: iterations,
            progress,
            ..Default::default()
        };
        let started = Instant::now();
        let sol = solve(&inst, &config).unwrap_or_else(|e| panic!("{}: {e}", inst.name));
        let secs = started.elapsed().as_secs_f64();
        let cost = check(&inst, &sol).expect("checked by solve");
        if !sol.unassigned.is_empty() {
            println!(
                "{}: {} requests unassigned",
                inst.name,
                sol.unassigned.len()
            );
            continue;
        }
        let (bv, bd) = bks.map_or((None, f64::NAN), |b| (b.vehicles, b.distance));
        let gap = 100.0 * (cost.distance - bd) / bd;
        if gap.is_finite() {
            gaps.push(gap);
        }
        if let Some(v) = bv {
            extra_vehicles += cost.vehicles as i64 - v as i64;
            bks_vehicles += v;
        }
        println!(
            "{}\t{}\t{:.1}\t{}\t{:.1}\t{:.2}\t{:.1}",
            path.file_stem().unwrap_or_default().to_string_lossy(),
            cost.vehicles,
            cost.distance,
            bv.map_or("-".into(), |v| v.to_string()),
            bd,
            gap,
            secs
        );
    }
    if !gaps.is_empty() {
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        println!("mean gap {mean:.3}% over {} instances", gaps.len());
    }
    if bks_vehicles > 0 {
        println!("vehicles: {extra_vehicles:+} vs BKS total {bks_vehicles}");
    }
}
