//! The Games layer: from a competition schedule to vehicle routes, timetables and fleet size.
//!
//! A scenario directory (format in `docs/plan.md`) holds the sites, the sessions, how many
//! people of each client group travel to and from each session, the fleet with its depots and
//! driver rules, and the travel model (a matrix or distances, with time-of-day bands for lane
//! hours). [`Scenario::load`] reads and validates it (every problem with file, line and
//! field), [`plan`] turns it into a pickup-delivery [`crate::Instance`], solves it, checks the
//! result with [`crate::check`] and builds the planner's [`Report`], and [`write`] puts that on
//! disk as JSON, CSV and two pictures.

pub mod build;
pub mod clock;
pub mod draw;
pub mod input;
pub mod report;
pub mod travel;

pub use build::{Built, Direction, build};
pub use input::{InputError, InputErrors, Scenario, ScenarioError};
pub use report::{Kpis, Report};

use crate::{CheckedCost, Solution, SolveConfig, SolveError, Violations, check};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a scenario could not be planned or written.
#[derive(Debug, Error)]
pub enum GamesError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("solver: {0}")]
    Solve(#[from] SolveError),
    #[error("the plan fails the checker: {0}")]
    Check(#[from] Violations),
    #[error("the plan is late on the road (time-of-day travel): {0}")]
    Road(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error(transparent)]
    Draw(#[from] draw::DrawError),
}

/// A solved and checked scenario.
#[derive(Debug, Clone)]
pub struct Planned {
    pub built: Built,
    pub solution: Solution,
    pub checked: CheckedCost,
    pub report: Report,
    pub solve_time: Duration,
}

/// Builds the routing instance, solves it with `config`, checks the solution and reports it.
pub fn plan(scenario: &Scenario, config: &SolveConfig) -> Result<Planned, GamesError> {
    let built = build(scenario);
    let started = Instant::now();
    let solution = if built.instance.requests.is_empty() {
        Solution::default()
    } else {
        crate::solve(&built.instance, config)?
    };
    let solve_time = started.elapsed();
    let checked = check(&built.instance, &solution)?;
    let report = report::report(scenario, &built, &solution, checked.cost);
    if let Some(first) = report.road_violations.first() {
        return Err(GamesError::Road(first.clone()));
    }
    Ok(Planned {
        built,
        solution,
        checked,
        report,
        solve_time,
    })
}

/// The planner's files, written by [`write`].
pub const OUTPUT_FILES: [&str; 9] = [
    "plan.json",
    "kpis.json",
    "trips.csv",
    "blocks.csv",
    "lines.csv",
    "depots.csv",
    "unserved.csv",
    "map.svg",
    "gantt.svg",
];

/// A block without its steps, one CSV row.
#[derive(Serialize)]
struct BlockRow<'a> {
    vehicle: &'a str,
    fleet: &'a str,
    vehicle_type: &'a str,
    depot: &'a str,
    pull_out: &'a str,
    pull_in: &'a str,
    loads: usize,
    people: i64,
    km: f64,
    empty_km: f64,
    hours: f64,
    break_at: Option<&'a str>,
}

#[derive(Serialize)]
struct KpiFile<'a> {
    scenario: &'a str,
    kpis: &'a Kpis,
    checker: &'a CheckedCost,
    solve_s: f64,
}

/// Writes [`OUTPUT_FILES`] into `dir` (created if needed) and returns their paths.
pub fn write(
    scenario: &Scenario,
    planned: &Planned,
    dir: &Path,
) -> Result<Vec<PathBuf>, GamesError> {
    let fail = |path: &Path, e: &dyn std::fmt::Display| GamesError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    let r = &planned.report;
    fn json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| e.to_string())
    }
    let plan_json = dir.join("plan.json");
    json(&plan_json, r).map_err(|e| fail(&plan_json, &e))?;
    let kpis = KpiFile {
        scenario: &r.scenario,
        kpis: &r.kpis,
        checker: &planned.checked,
        solve_s: planned.solve_time.as_secs_f64(),
    };
    let kpis_json = dir.join("kpis.json");
    json(&kpis_json, &kpis).map_err(|e| fail(&kpis_json, &e))?;
    /// Rows under the header serde derives from them, or `empty_header` when there are none.
    fn csv_file<T: Serialize>(
        path: &Path,
        rows: impl IntoIterator<Item = T>,
        empty_header: &[&str],
    ) -> Result<(), String> {
        let mut w = csv::Writer::from_path(path).map_err(|e| e.to_string())?;
        let mut any = false;
        for row in rows {
            w.serialize(row).map_err(|e| e.to_string())?;
            any = true;
        }
        if !any && !empty_header.is_empty() {
            w.write_record(empty_header).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())
    }
    let csv_at = |name: &str| dir.join(name);
    let wrap = |name: &str, res: Result<(), String>| res.map_err(|e| fail(&csv_at(name), &e));
    wrap("trips.csv", csv_file(&csv_at("trips.csv"), &r.trips, &[]))?;
    wrap(
        "blocks.csv",
        csv_file(
            &csv_at("blocks.csv"),
            r.blocks.iter().map(|b| BlockRow {
                vehicle: &b.vehicle,
                fleet: &b.fleet,
                vehicle_type: &b.vehicle_type,
                depot: &b.depot,
                pull_out: &b.pull_out,
                pull_in: &b.pull_in,
                loads: b.loads,
                people: b.people,
                km: b.km,
                empty_km: b.empty_km,
                hours: b.hours,
                break_at: b.break_at.as_deref(),
            }),
            &[],
        ),
    )?;
    wrap("lines.csv", csv_file(&csv_at("lines.csv"), &r.lines, &[]))?;
    wrap(
        "depots.csv",
        csv_file(&csv_at("depots.csv"), &r.depots, &[]),
    )?;
    wrap(
        "unserved.csv",
        csv_file(
            &csv_at("unserved.csv"),
            &r.unserved,
            &report::Unserved::COLUMNS,
        ),
    )?;
    draw::map(scenario, r, &dir.join("map.svg"))?;
    draw::gantt(r, &dir.join("gantt.svg"))?;
    Ok(OUTPUT_FILES.iter().map(|f| dir.join(f)).collect())
}
