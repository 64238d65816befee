//! `stadion-plan`: the vehicle-routing core of transport planning.
//!
//! - The model ([`Instance`]): locations, distance and duration [`Matrix`]es, [`Request`]s
//!   (single-stop deliveries or pickups, and pickup-delivery pairs with a maximum ride
//!   time), each with demand, service time and a [`TimeWindow`]; heterogeneous
//!   [`VehicleType`]s with capacity, fixed/distance/time costs, a shift window, start and
//!   end depots, a count, driver [`Break`]s and several trips per shift.
//! - [`solve`]: a hybrid genetic search (in the manner of HGS-CVRP and PyVRP) for
//!   [`Objective::Cost`] (total distance under the benchmark readers: the DIMACS convention)
//!   or [`Objective::Hierarchical`] (fewest vehicles, then cost), deterministic for a seed and
//!   an iteration limit, stopping at a time limit or a target value ([`SolveConfig`]).
//! - [`check`]: an independent checker that recomputes the cost ([`CheckedCost`]) and
//!   verifies every constraint ([`Violations`]).
//! - [`read`]: Solomon / Gehring-Homberger and Li & Lim instances, SINTEF solution files and
//!   the shipped BKS tables.
//!
//! How the solver treats the richer constraints: capacity, time windows, shifts, pair
//! precedence and fleet limits are handled inside the local search (penalised, O(1) per
//! move); maximum ride times and driver breaks are priced on the route's exact schedule
//! (latest departure, breaks at their cheapest place) for the moves that pay without them;
//! a vehicle type allowed several trips offers that many trip slots per vehicle, and trips
//! are chained into vehicle days with a reload at the depot between them (solutions whose
//! trips need more vehicles than the fleet are infeasible). Requests left unserved are
//! returned as [`Unassigned`] with the [`Reason`].
//!
//! Benchmark runs: `cargo run --release -p stadion-plan --example benchmark -- --time 10
//! ../shared/data/vrp/solomon/*.txt` (add `--hierarchical` for Li & Lim / SINTEF).

pub mod check;
pub mod config;
pub mod games;
pub mod model;
pub mod read;
pub mod schedule;
pub mod solver;

pub use check::{CheckedCost, Violation, Violations, check};
pub use config::{Progress, ProgressFn, SolveConfig};
pub use model::{
    Break, Instance, InstanceError, Location, Matrix, Objective, Reason, Request, Route, Side,
    Solution, Stop, TimeWindow, Unassigned, VehicleType, Visit, VisitKind,
};
pub use schedule::schedule;
pub use solver::{SolveError, solve};
