//! The routing problem and its solutions, as plain data.
//!
//! Times and distances are `f64` in whatever unit the matrices use (the benchmark readers use
//! the instance's own units); loads are integers. All indices are positions in the owning
//! vectors of [`Instance`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A closed interval `[start, end]` of time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: f64,
    pub end: f64,
}

impl TimeWindow {
    pub const fn new(start: f64, end: f64) -> Self {
        Self { start, end }
    }

    /// A window that never binds.
    pub const UNBOUNDED: TimeWindow = TimeWindow {
        start: 0.0,
        end: f64::MAX,
    };
}

/// A place: a depot, a customer, a venue, a hotel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub x: f64,
    pub y: f64,
}

/// A square matrix indexed by location, row-major (`from * n + to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    n: usize,
    values: Vec<f64>,
}

impl Matrix {
    /// Builds a matrix from `n * n` row-major values.
    pub fn new(n: usize, values: Vec<f64>) -> Result<Self, InstanceError> {
        if values.len() != n * n {
            return Err(InstanceError::MatrixSize {
                expected: n * n,
                got: values.len(),
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(InstanceError::MatrixValue {
                from: i / n.max(1),
                to: i % n.max(1),
            });
        }
        Ok(Self { n, values })
    }

    /// Euclidean distances between `locations`, passed through `round` (e.g. the DIMACS
    /// truncation to one decimal).
    pub fn euclidean(locations: &[Location], round: impl Fn(f64) -> f64) -> Self {
        let n = locations.len();
        let mut values = Vec::with_capacity(n * n);
        for a in locations {
            for b in locations {
                values.push(round((a.x - b.x).hypot(a.y - b.y)));
            }
        }
        Self { n, values }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline]
    pub fn get(&self, from: usize, to: usize) -> f64 {
        self.values[from * self.n + to]
    }
}

/// One end of a request: where, how long the service takes and when it may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    pub location: usize,
    pub service: f64,
    pub window: TimeWindow,
}

/// Something to carry.
///
/// - only `delivery`: loaded at the depot at the start of a trip, unloaded at the stop
///   (classic VRPTW customers);
/// - only `pickup`: loaded at the stop, unloaded at the depot at the end of the trip;
/// - both: loaded at the pickup and unloaded at the delivery, by the same vehicle in the same
///   trip, pickup first (PDPTW, passengers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub name: String,
    pub demand: i64,
    pub pickup: Option<Stop>,
    pub delivery: Option<Stop>,
    /// Longest time from leaving the pickup to the start of service at the delivery
    /// (paired requests only).
    pub max_ride_time: Option<f64>,
}

impl Request {
    pub fn is_pair(&self) -> bool {
        self.pickup.is_some() && self.delivery.is_some()
    }

    /// The stop on the given side, if the request has one.
    pub fn stop(&self, side: Side) -> Option<&Stop> {
        match side {
            Side::Pickup => self.pickup.as_ref(),
            Side::Delivery => self.delivery.as_ref(),
        }
    }
}

/// Which end of a request a visit serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Pickup,
    Delivery,
}

/// A driver break: `duration` long, starting inside `window`, taken where the vehicle is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Break {
    pub window: TimeWindow,
    pub duration: f64,
}

/// A kind of vehicle, `count` of them available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleType {
    pub name: String,
    pub count: usize,
    pub capacity: i64,
    /// Paid once per vehicle used.
    pub fixed_cost: f64,
    pub cost_per_distance: f64,
    /// Per unit of route duration (from leaving the start depot to reaching the end depot).
    pub cost_per_time: f64,
    /// Leave the start depot no earlier than `shift.start`, be back by `shift.end`.
    pub shift: TimeWindow,
    pub start_depot: usize,
    pub end_depot: usize,
    /// Trips per shift; a new trip starts with a reload at the start depot.
    pub max_trips: usize,
    pub reload_time: f64,
    /// Breaks every used vehicle of this type takes while its route overlaps their window.
    pub breaks: Vec<Break>,
}

impl VehicleType {
    /// A vehicle of unit distance cost, one trip and no breaks: the benchmark convention.
    pub fn simple(count: usize, capacity: i64, depot: usize, shift: TimeWindow) -> Self {
        Self {
            name: "vehicle".into(),
            count,
            capacity,
            fixed_cost: 0.0,
            cost_per_distance: 1.0,
            cost_per_time: 0.0,
            shift,
            start_depot: depot,
            end_depot: depot,
            max_trips: 1,
            reload_time: 0.0,
            breaks: Vec::new(),
        }
    }
}

/// A routing problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub locations: Vec<Location>,
    pub distance: Matrix,
    pub duration: Matrix,
    pub requests: Vec<Request>,
    pub vehicle_types: Vec<VehicleType>,
}

/// Why an [`Instance`] is unusable.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InstanceError {
    #[error("matrix has {got} values, expected {expected}")]
    MatrixSize { expected: usize, got: usize },
    #[error("matrix value from {from} to {to} is negative or not finite")]
    MatrixValue { from: usize, to: usize },
    #[error("distance and duration matrices must both cover the {0} locations")]
    MatrixLocations(usize),
    #[error("request {request} ({name}): {what}")]
    Request {
        request: usize,
        name: String,
        what: String,
    },
    #[error("vehicle type {vehicle_type} ({name}): {what}")]
    VehicleType {
        vehicle_type: usize,
        name: String,
        what: String,
    },
    #[error("the instance has no vehicles")]
    NoVehicles,
}

impl Instance {
    /// Checks indices, windows and signs; the solver and the checker call it first.
    pub fn validate(&self) -> Result<(), InstanceError> {
        let n = self.locations.len();
        if self.distance.len() != n || self.duration.len() != n {
            return Err(InstanceError::MatrixLocations(n));
        }
        for (i, r) in self.requests.iter().enumerate() {
            let bad = |what: String| InstanceError::Request {
                request: i,
                name: r.name.clone(),
                what,
            };
            if r.pickup.is_none() && r.delivery.is_none() {
                return Err(bad("has neither a pickup nor a delivery".into()));
            }
            if r.demand < 0 {
                return Err(bad(format!("negative demand {}", r.demand)));
            }
            for s in r.pickup.iter().chain(&r.delivery) {
                if s.location >= n {
                    return Err(bad(format!("location {} out of range (< {n})", s.location)));
                }
                if !le(s.window.start, s.window.end) || !le(0.0, s.service) {
                    return Err(bad(format!(
                        "time window [{}, {}] or service {} is invalid",
                        s.window.start, s.window.end, s.service
                    )));
                }
            }
            if r.max_ride_time.is_some_and(|m| !le(0.0, m)) {
                return Err(bad("max ride time must be non-negative".into()));
            }
        }
        if self.vehicle_types.iter().all(|v| v.count == 0) {
            return Err(InstanceError::NoVehicles);
        }
        for (i, v) in self.vehicle_types.iter().enumerate() {
            let bad = |what: String| InstanceError::VehicleType {
                vehicle_type: i,
                name: v.name.clone(),
                what,
            };
            if v.start_depot >= n || v.end_depot >= n {
                return Err(bad("depot out of range".into()));
            }
            if !le(v.shift.start, v.shift.end) {
                return Err(bad("shift ends before it starts".into()));
            }
            if v.capacity < 0 || v.max_trips == 0 {
                return Err(bad("capacity must be >= 0 and max_trips >= 1".into()));
            }
            for c in [
                v.fixed_cost,
                v.cost_per_distance,
                v.cost_per_time,
                v.reload_time,
            ] {
                if !le(0.0, c) {
                    return Err(bad("costs and reload time must be non-negative".into()));
                }
            }
            for b in &v.breaks {
                if !le(b.window.start, b.window.end) || !le(0.0, b.duration) {
                    return Err(bad("break window or duration invalid".into()));
                }
            }
        }
        Ok(())
    }

    /// Total number of vehicles over all types.
    pub fn fleet_size(&self) -> usize {
        self.vehicle_types.iter().map(|v| v.count).sum()
    }
}

/// `a <= b`, false when either is NaN: so that `!le(..)` rejects NaN.
fn le(a: f64, b: f64) -> bool {
    a <= b
}

/// What to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Objective {
    /// Total route cost: fixed cost per vehicle used plus distance and time costs. With the
    /// benchmark readers' unit distance cost this is total distance, the DIMACS convention.
    #[default]
    Cost,
    /// Fewest vehicles first, then total route cost (the SINTEF convention for
    /// Gehring-Homberger and Li & Lim).
    Hierarchical,
}

/// What a visit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VisitKind {
    /// Serve one side of a request.
    Request { request: usize, side: Side },
    /// Take the vehicle type's break with this index, where the vehicle is.
    Break(usize),
    /// Return to the start depot, unload and reload, start a new trip.
    Reload,
}

/// One timed visit of a route.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    pub kind: VisitKind,
    /// When the vehicle gets there.
    pub arrival: f64,
    /// When service starts (after any wait for the window).
    pub start: f64,
}

/// The route of one vehicle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub vehicle_type: usize,
    /// When the vehicle leaves its start depot.
    pub departure: f64,
    pub visits: Vec<Visit>,
}

/// A solution: routes (one per vehicle used) and the requests left unserved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Solution {
    pub routes: Vec<Route>,
    pub unassigned: Vec<Unassigned>,
}

/// A request left unserved, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unassigned {
    pub request: usize,
    pub reason: Reason,
}

/// Why the solver left a request unserved. Times are in the instance's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    #[error("it exceeds every vehicle's capacity ({demand} to carry, the largest holds {largest})")]
    Capacity { demand: i64, largest: i64 },
    #[error(
        "its maximum ride time ({max:.1}) is shorter than the shortest possible ride ({shortest:.1})"
    )]
    RideTime { shortest: f64, max: f64 },
    #[error(
        "the drop-off window closes at {close:.1}, before a vehicle leaving the pick-up at its opening can arrive ({earliest:.1})"
    )]
    Windows { earliest: f64, close: f64 },
    #[error(
        "its time window cannot be met from any depot: the earliest vehicle arrives at {earliest:.1}, the window closes at {close:.1}"
    )]
    Unreachable { earliest: f64, close: f64 },
    #[error(
        "no shift can fit it: carried alone it keeps a vehicle past the end of its shift or leaves no room for the driver's break"
    )]
    Shift,
    #[error(
        "the fleet is too small in the peak: every vehicle that could carry it alone ({vehicles}) is busy then, and no route of the plan can take it"
    )]
    FleetBusy { vehicles: usize },
    #[error("the search found no feasible place for it within the time limit")]
    NotPlaced,
}
