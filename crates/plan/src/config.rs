//! Solver settings and progress reports.

use crate::model::Objective;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A snapshot of the search, sent to [`SolveConfig::progress`] whenever the best feasible
/// solution improves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub iteration: u64,
    /// Vehicles used by the best feasible solution.
    pub vehicles: usize,
    /// Its cost ([`crate::Objective::Cost`] units, without the hierarchical objective's
    /// vehicle weight): fixed, distance and time costs with the drivers' breaks placed as
    /// the final answer places them, so the last report equals the cost [`crate::check`]
    /// gives the answer. Vehicle types with several trips per vehicle are the exception:
    /// the search prices each trip on its own (its fixed cost, its own duration), the
    /// answer's vehicle days once each with the reloads and waits between trips.
    pub cost: f64,
}

/// A progress callback, shared with the caller.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to solve: objective, seed and when to stop.
#[derive(Clone)]
pub struct SolveConfig {
    pub objective: Objective,
    /// Same seed, same instance and same iteration limit give the same solution.
    pub seed: u64,
    /// Wall-clock budget.
    pub time_limit: Duration,
    /// Stop after this many genetic iterations; with it (and a generous time limit) runs are
    /// reproducible regardless of machine speed.
    pub max_iterations: Option<u64>,
    /// Stop as soon as a feasible solution costs at most this much.
    pub target: Option<f64>,
    /// Called on every improvement of the best feasible solution.
    pub progress: Option<ProgressFn>,
}

impl Default for SolveConfig {
    fn default() -> Self {
        Self {
            objective: Objective::Cost,
            seed: 1,
            time_limit: Duration::from_secs(10),
            max_iterations: None,
            target: None,
            progress: None,
        }
    }
}

impl fmt::Debug for SolveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolveConfig")
            .field("objective", &self.objective)
            .field("seed", &self.seed)
            .field("time_limit", &self.time_limit)
            .field("max_iterations", &self.max_iterations)
            .field("target", &self.target)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}
