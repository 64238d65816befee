//! `stadion plan`: the transport-planning command line. `solve` runs the routing core on a
//! benchmark file; `games` plans a Games scenario from its schedule. Both show the best cost
//! found so far while they search, and both put every answer through the independent checker.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use stadion_plan::games::{self, Scenario};
use stadion_plan::read::{Format, Rounding, read_file};
use stadion_plan::{Instance, Objective, Progress, Solution, SolveConfig, VisitKind, check};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Solve a benchmark instance (Solomon, Gehring-Homberger or Li & Lim text file).
    ///
    /// The file's format is recognised from its content. Solomon and Gehring-Homberger files
    /// are VRPTW: by default distances are truncated to one decimal and the objective is
    /// total distance (the DIMACS 2021 convention, which `bks_dimacs.csv` uses). Li & Lim
    /// files are PDPTW: by default distances are exact and the objective is fewest vehicles,
    /// then distance (the SINTEF convention). The answer is checked by an independent checker
    /// before it is printed; a broken answer makes the command fail.
    #[command(after_help = "Examples:\n  \
        stadion plan solve ../shared/data/vrp/solomon/C101.txt --time-limit 5\n  \
        stadion plan solve lc101.txt --objective hierarchical --format json > lc101.json\n  \
        stadion plan solve R1_2_1.txt --time-limit 60 --seed 3 --target 4667.2")]
    Solve(SolveArgs),
    /// Plan a Games day from a scenario directory: routes, timetables, KPIs and pictures.
    ///
    /// The directory holds scenario.toml (client groups, vehicle types, driver rules, travel
    /// model, solver settings) and the CSV files it names: sites, sessions, demand (people per
    /// session and group), fleet (vehicles per depot and shift) and optionally a travel
    /// matrix. docs/plan.md documents every field. Bad input is reported with file, line and
    /// field; people no vehicle can carry are listed in unserved.csv with the reason.
    ///
    /// Writes into --out: plan.json (everything), kpis.json, trips.csv, blocks.csv (one row per
    /// vehicle), lines.csv (timetable per origin-destination line), depots.csv (pull-outs and
    /// pull-ins per depot), unserved.csv, map.svg (passenger flows) and gantt.svg (vehicle
    /// blocks).
    #[command(after_help = "Example:\n  \
        stadion plan games scenarios/paris-day --out /tmp/paris-day")]
    Games(GamesArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    /// Total distance (DIMACS convention).
    Distance,
    /// Fewest vehicles, then total distance (SINTEF convention).
    Hierarchical,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoundingArg {
    /// Truncate distances to one decimal: floor(10 d) / 10.
    Dimacs,
    /// Double-precision distances.
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// Summary and one line per route (customer ids as in the file).
    Text,
    /// One JSON object: cost, vehicles, routes, the checker's verdict, the improvements.
    Json,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    time_limit: Option<f64>,
    /// Random seed: the same seed and --max-iterations give the same answer.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many genetic iterations (for runs reproducible on any machine).
    #[arg(long)]
    max_iterations: Option<u64>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SolveArgs {
    /// The instance file.
    instance: PathBuf,
    #[command(flatten)]
    search: SearchArgs,
    /// What to minimise [default: distance for VRPTW, hierarchical for Li & Lim].
    #[arg(long, value_enum)]
    objective: Option<ObjectiveArg>,
    /// Distance rounding [default: dimacs for VRPTW, exact for Li & Lim].
    #[arg(long, value_enum)]
    rounding: Option<RoundingArg>,
    /// Stop as soon as a solution costs at most this much (e.g. the BKS).
    #[arg(long)]
    target: Option<f64>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct GamesArgs {
    /// The scenario directory (with scenario.toml).
    scenario: PathBuf,
    /// Where to write the plan [default: <scenario>/out].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overrides the scenario's [solver] settings.
    #[command(flatten)]
    search: SearchArgs,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Solve(args) => solve(args),
        Command::Games(args) => plan_games(args),
    }
}

/// Shows elapsed time against the budget and the best cost so far, and remembers every
/// improvement for the final summary.
struct Watch {
    bar: ProgressBar,
    history: Arc<Mutex<Vec<(f64, f64, usize)>>>,
}

impl Watch {
    fn new(budget: Duration, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(budget.as_millis() as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] best {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("searching...");
        bar.enable_steady_tick(Duration::from_millis(100));
        Self {
            bar,
            history: Arc::default(),
        }
    }

    /// Installs the callback and runs `work`, moving the bar with the clock meanwhile.
    fn run<T: Send>(
        &self,
        config: &mut SolveConfig,
        work: impl FnOnce(&SolveConfig) -> T + Send,
    ) -> T {
        let (bar, history) = (self.bar.clone(), self.history.clone());
        config.progress = Some(Arc::new(move |p: &Progress| {
            bar.set_message(format!(
                "{:.1} with {} vehicles (at {:.1} s)",
                p.cost,
                p.vehicles,
                p.elapsed.as_secs_f64()
            ));
            history.lock().expect("not poisoned").push((
                p.elapsed.as_secs_f64(),
                p.cost,
                p.vehicles,
            ));
        }));
        let started = Instant::now();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    self.bar.set_position(started.elapsed().as_millis() as u64);
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let out = work(config);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            self.bar.finish_and_clear();
            out
        })
    }

    /// Improvements as (seconds, cost, vehicles).
    fn history(&self) -> Vec<(f64, f64, usize)> {
        self.history.lock().expect("not poisoned").clone()
    }
}

fn config(
    search: &SearchArgs,
    objective: Objective,
    default_limit: f64,
    default_seed: u64,
) -> anyhow::Result<SolveConfig> {
    let limit = search.time_limit.unwrap_or(default_limit);
    if !(limit > 0.0 && limit.is_finite()) {
        bail!("--time-limit must be a positive number of seconds");
    }
    Ok(SolveConfig {
        objective,
        seed: search.seed.unwrap_or(default_seed),
        time_limit: Duration::from_secs_f64(limit),
        max_iterations: search.max_iterations,
        ..SolveConfig::default()
    })
}

#[derive(Serialize)]
struct SolveOutput<'a> {
    instance: &'a str,
    objective: &'a str,
    vehicles: usize,
    distance: f64,
    cost: f64,
    unassigned: usize,
    elapsed_s: f64,
    /// Customer ids (file numbering) per route.
    routes: Vec<Vec<usize>>,
    /// Improvements: [seconds, cost, vehicles].
    history: Vec<(f64, f64, usize)>,
}

/// The file's ids of the stops of a route, in order.
fn route_ids(instance: &Instance, solution: &Solution) -> Vec<Vec<usize>> {
    solution
        .routes
        .iter()
        .map(|r| {
            r.visits
                .iter()
                .filter_map(|v| match v.kind {
                    VisitKind::Request { request, side } => {
                        instance.requests[request].stop(side).map(|s| s.location)
                    }
                    VisitKind::Break(_) | VisitKind::Reload => None,
                })
                .collect()
        })
        .collect()
}

fn solve(args: SolveArgs) -> anyhow::Result<()> {
    let (format, default_rounding) = match read_file(&args.instance, Rounding::Dimacs)? {
        (Format::Solomon, _) => (Format::Solomon, RoundingArg::Dimacs),
        (other, _) => (other, RoundingArg::Exact),
    };
    let rounding = match args.rounding.unwrap_or(default_rounding) {
        RoundingArg::Dimacs => Rounding::Dimacs,
        RoundingArg::Exact => Rounding::Exact,
    };
    let (_, instance) = read_file(&args.instance, rounding)?;
    let objective = match args.objective {
        Some(ObjectiveArg::Distance) => Objective::Cost,
        Some(ObjectiveArg::Hierarchical) => Objective::Hierarchical,
        None if format == Format::Solomon => Objective::Cost,
        None => Objective::Hierarchical,
    };
    let mut config = config(&args.search, objective, 10.0, 1)?;
    config.target = args.target;
    let watch = Watch::new(
        config.time_limit,
        args.search.quiet || args.format == OutputFormat::Json,
    );
    let started = Instant::now();
    let solution = watch.run(&mut config, |c| stadion_plan::solve(&instance, c))?;
    let elapsed = started.elapsed().as_secs_f64();
    let checked = check(&instance, &solution).context("the solver's answer fails the checker")?;
    let routes = route_ids(&instance, &solution);
    let objective_name = match objective {
        Objective::Cost => "distance",
        Objective::Hierarchical => "hierarchical",
    };
    match args.format {
        OutputFormat::Json => {
            let out = SolveOutput {
                instance: &instance.name,
                objective: objective_name,
                vehicles: checked.vehicles,
                distance: checked.distance,
                cost: checked.cost,
                unassigned: checked.unassigned,
                elapsed_s: elapsed,
                routes,
                history: watch.history(),
            };
            emit(&format!("{}\n", serde_json::to_string(&out)?))?;
        }
        OutputFormat::Text => {
            let mut text = format!(
                "{}: {} vehicles, distance {:.4}, cost {:.4}, {} unassigned ({objective_name}, {elapsed:.1} s, checker: ok)\n",
                instance.name, checked.vehicles, checked.distance, checked.cost, checked.unassigned
            );
            text += &history_table(&watch.history());
            for (k, r) in routes.iter().enumerate() {
                let ids: Vec<String> = r.iter().map(usize::to_string).collect();
                writeln!(text, "Route {}: {}", k + 1, ids.join(" "))?;
            }
            emit(&text)?;
        }
    }
    Ok(())
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The best cost over time, as a short table.
fn history_table(history: &[(f64, f64, usize)]) -> String {
    let mut text = String::new();
    if history.is_empty() {
        return text;
    }
    // At most a dozen rows: the first, the last and evenly spaced ones between.
    let step = history.len().div_ceil(12).max(1);
    let mut rows: Vec<_> = history.iter().step_by(step).collect();
    if rows.last() != history.last().as_ref() {
        rows.extend(history.last());
    }
    text += "best cost over time:\n";
    for (t, cost, vehicles) in rows {
        text += &format!("  {t:7.2} s  {cost:12.2}  {vehicles:3} vehicles\n");
    }
    text
}

fn plan_games(args: GamesArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    let mut config = config(
        &args.search,
        Objective::Cost,
        scenario.time_limit_s,
        scenario.seed,
    )?;
    let watch = Watch::new(config.time_limit, args.search.quiet);
    let planned = watch.run(&mut config, |c| games::plan(&scenario, c))?;
    let out = args.out.unwrap_or_else(|| args.scenario.join("out"));
    let files = games::write(&scenario, &planned, &out)?;
    let mut text = summary(
        &planned.report.kpis,
        planned.solve_time,
        &planned.report.unserved,
        &out,
    );
    text += &history_table(&watch.history());
    for f in files {
        writeln!(text, "  wrote {}", display(&f))?;
    }
    emit(&text)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn summary(
    k: &games::Kpis,
    took: Duration,
    unserved: &[games::report::Unserved],
    out: &Path,
) -> String {
    let types: Vec<String> = k
        .vehicles_by_type
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    let mut text = format!(
        "{} vehicles ({}), {:.1} vehicle-km ({:.1} empty), {:.1} vehicle-hours; {} people carried, mean ride {:.1} min (max {:.1}), mean wait {:.1} min (max {:.1}); cost {:.2}; planned in {:.1} s; checker: ok\n",
        k.vehicles_used,
        types.join(", "),
        k.vehicle_km,
        k.empty_km,
        k.vehicle_hours,
        k.people_carried,
        k.mean_ride_min,
        k.max_ride_min,
        k.mean_wait_min,
        k.max_wait_min,
        k.cost,
        took.as_secs_f64()
    );
    if !unserved.is_empty() {
        text += &format!(
            "{} people in {} loads not served (see {}):\n",
            k.people_unserved,
            k.loads_unserved,
            display(&out.join("unserved.csv"))
        );
        for u in unserved.iter().take(10) {
            text += &format!(
                "  {} ({} people, {}): {}\n",
                u.id, u.people, u.source, u.reason
            );
        }
    }
    text
}
