//! The independent solution checker.
//!
//! It shares no code with the solver: it walks every route with the instance's matrices,
//! verifies each constraint against the times the solution claims, and recomputes the cost.
//! Every solver output goes through it (see [`crate::solve`]).

use crate::model::{Instance, InstanceError, Side, Solution, VisitKind};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Slack for floating-point sums of travel and service times.
const EPS: f64 = 1e-6;

/// The cost of a feasible solution, recomputed from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckedCost {
    /// Routes with at least one visit.
    pub vehicles: usize,
    pub distance: f64,
    /// Sum of route durations, depot to depot.
    pub duration: f64,
    /// Fixed, distance and time costs of the vehicle types.
    pub cost: f64,
    pub unassigned: usize,
}

/// One broken constraint; `route` and `visit` are positions in the solution.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Violation {
    #[error("invalid instance: {0}")]
    Instance(#[from] InstanceError),
    #[error("route {route}: unknown vehicle type {vehicle_type}")]
    UnknownVehicleType { route: usize, vehicle_type: usize },
    #[error("vehicle type {vehicle_type}: {used} routes but only {count} vehicles")]
    TooManyVehicles {
        vehicle_type: usize,
        used: usize,
        count: usize,
    },
    #[error("route {route}: leaves the depot at {departure}, before the shift starts at {shift}")]
    EarlyDeparture {
        route: usize,
        departure: f64,
        shift: f64,
    },
    #[error("route {route} visit {visit}: unknown request {request} or it has no {side:?} stop")]
    UnknownStop {
        route: usize,
        visit: usize,
        request: usize,
        side: Side,
    },
    #[error("request {request} {side:?} is served more than once")]
    Duplicate { request: usize, side: Side },
    #[error("request {request} is neither fully served nor listed as unassigned")]
    Missing { request: usize },
    #[error("request {request} is listed as unassigned but (partly) served, or listed twice")]
    WronglyUnassigned { request: usize },
    #[error("route {route} visit {visit}: arrives at {arrival}, earliest possible is {earliest}")]
    ArrivalTooEarly {
        route: usize,
        visit: usize,
        arrival: f64,
        earliest: f64,
    },
    #[error("route {route} visit {visit}: starts at {start}, before arrival at {arrival}")]
    StartBeforeArrival {
        route: usize,
        visit: usize,
        start: f64,
        arrival: f64,
    },
    #[error("route {route} visit {visit}: starts at {start}, outside the window [{open}, {close}]")]
    TimeWindow {
        route: usize,
        visit: usize,
        start: f64,
        open: f64,
        close: f64,
    },
    #[error("route {route}: back at the end depot at {end}, after the shift ends at {shift_end}")]
    LateReturn {
        route: usize,
        end: f64,
        shift_end: f64,
    },
    #[error("route {route} visit {visit}: load {load} exceeds capacity {capacity}")]
    Capacity {
        route: usize,
        visit: usize,
        load: i64,
        capacity: i64,
    },
    #[error(
        "route {route} visit {visit}: delivery of request {request} without its pickup before it in the same trip"
    )]
    Precedence {
        route: usize,
        visit: usize,
        request: usize,
    },
    #[error("route {route}: request {request} picked up but not delivered in the same trip")]
    NotDelivered { route: usize, request: usize },
    #[error("request {request}: ride time {ride} exceeds the maximum {max}")]
    RideTime { request: usize, ride: f64, max: f64 },
    #[error("route {route} visit {visit}: unknown or repeated break {index}")]
    BadBreak {
        route: usize,
        visit: usize,
        index: usize,
    },
    #[error("route {route}: break {index} is not taken although the route overlaps its window")]
    MissingBreak { route: usize, index: usize },
    #[error("route {route}: {trips} trips but the vehicle type allows {max}")]
    TooManyTrips {
        route: usize,
        trips: usize,
        max: usize,
    },
}

/// Every violation found, in route order.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{} violation(s); first: {}", .0.len(), .0[0])]
pub struct Violations(pub Vec<Violation>);

/// Verifies `solution` against `instance` and recomputes its cost.
pub fn check(instance: &Instance, solution: &Solution) -> Result<CheckedCost, Violations> {
    if let Err(e) = instance.validate() {
        return Err(Violations(vec![e.into()]));
    }
    let mut v = Vec::new();
    let nreq = instance.requests.len();
    // served[r] = (pickup seen, delivery seen)
    let mut served = vec![[false; 2]; nreq];
    let mut used = vec![0usize; instance.vehicle_types.len()];
    let mut total = CheckedCost {
        vehicles: 0,
        distance: 0.0,
        duration: 0.0,
        cost: 0.0,
        unassigned: 0,
    };

    for (ri, route) in solution.routes.iter().enumerate() {
        let Some(vt) = instance.vehicle_types.get(route.vehicle_type) else {
            v.push(Violation::UnknownVehicleType {
                route: ri,
                vehicle_type: route.vehicle_type,
            });
            continue;
        };
        if route.visits.is_empty() {
            continue;
        }
        used[route.vehicle_type] += 1;
        if route.departure < vt.shift.start - EPS {
            v.push(Violation::EarlyDeparture {
                route: ri,
                departure: route.departure,
                shift: vt.shift.start,
            });
        }
        // Load on board at the start of each trip: the depot deliveries of that trip.
        let mut trip_loads = vec![0i64];
        for visit in &route.visits {
            match visit.kind {
                VisitKind::Reload => trip_loads.push(0),
                VisitKind::Request {
                    request,
                    side: Side::Delivery,
                } => {
                    if let Some(r) = instance.requests.get(request)
                        && r.pickup.is_none()
                    {
                        *trip_loads.last_mut().expect("non-empty") += r.demand;
                    }
                }
                _ => {}
            }
        }
        if trip_loads.len() > vt.max_trips {
            v.push(Violation::TooManyTrips {
                route: ri,
                trips: trip_loads.len(),
                max: vt.max_trips,
            });
        }
        let mut trip = 0;
        let mut load = trip_loads[0];
        let mut loc = vt.start_depot;
        let mut t = route.departure;
        let mut dist = 0.0;
        // Requests picked up in the current trip and not yet delivered, with departure time.
        let mut open: Vec<(usize, f64)> = Vec::new();
        let mut breaks_taken = vec![false; vt.breaks.len()];
        for (vi, visit) in route.visits.iter().enumerate() {
            let (to, window, service) = match visit.kind {
                VisitKind::Request { request, side } => {
                    match instance.requests.get(request).and_then(|r| r.stop(side)) {
                        Some(s) => (s.location, s.window, s.service),
                        None => {
                            v.push(Violation::UnknownStop {
                                route: ri,
                                visit: vi,
                                request,
                                side,
                            });
                            continue;
                        }
                    }
                }
                VisitKind::Break(b) => match vt.breaks.get(b) {
                    Some(br) if !breaks_taken[b] => {
                        breaks_taken[b] = true;
                        (loc, br.window, br.duration)
                    }
                    _ => {
                        v.push(Violation::BadBreak {
                            route: ri,
                            visit: vi,
                            index: b,
                        });
                        continue;
                    }
                },
                VisitKind::Reload => (
                    vt.start_depot,
                    crate::model::TimeWindow::UNBOUNDED,
                    vt.reload_time,
                ),
            };
            dist += instance.distance.get(loc, to);
            let earliest = t + instance.duration.get(loc, to);
            if visit.arrival < earliest - EPS {
                v.push(Violation::ArrivalTooEarly {
                    route: ri,
                    visit: vi,
                    arrival: visit.arrival,
                    earliest,
                });
            }
            if visit.start < visit.arrival - EPS {
                v.push(Violation::StartBeforeArrival {
                    route: ri,
                    visit: vi,
                    start: visit.start,
                    arrival: visit.arrival,
                });
            }
            if visit.start < window.start - EPS || visit.start > window.end + EPS {
                v.push(Violation::TimeWindow {
                    route: ri,
                    visit: vi,
                    start: visit.start,
                    open: window.start,
                    close: window.end,
                });
            }
            t = visit.start.max(earliest) + service;
            loc = to;
            match visit.kind {
                VisitKind::Request { request, side } => {
                    let r = &instance.requests[request];
                    let seen = &mut served[request][side as usize];
                    if *seen {
                        v.push(Violation::Duplicate { request, side });
                    }
                    *seen = true;
                    match side {
                        Side::Pickup => {
                            load += r.demand;
                            if r.delivery.is_some() {
                                open.push((request, t));
                            }
                        }
                        Side::Delivery => {
                            load -= r.demand;
                            if r.pickup.is_some() {
                                match open.iter().position(|&(q, _)| q == request) {
                                    Some(p) => {
                                        let (_, left) = open.swap_remove(p);
                                        let ride = visit.start - left;
                                        if let Some(max) = r.max_ride_time
                                            && ride > max + EPS
                                        {
                                            v.push(Violation::RideTime { request, ride, max });
                                        }
                                    }
                                    None => v.push(Violation::Precedence {
                                        route: ri,
                                        visit: vi,
                                        request,
                                    }),
                                }
                            }
                        }
                    }
                    if load > vt.capacity {
                        v.push(Violation::Capacity {
                            route: ri,
                            visit: vi,
                            load,
                            capacity: vt.capacity,
                        });
                    }
                }
                VisitKind::Reload => {
                    for (request, _) in open.drain(..) {
                        v.push(Violation::NotDelivered { route: ri, request });
                    }
                    trip += 1;
                    load = trip_loads[trip];
                    if load > vt.capacity {
                        v.push(Violation::Capacity {
                            route: ri,
                            visit: vi,
                            load,
                            capacity: vt.capacity,
                        });
                    }
                }
                VisitKind::Break(_) => {}
            }
        }
        if trip_loads[0] > vt.capacity {
            v.push(Violation::Capacity {
                route: ri,
                visit: 0,
                load: trip_loads[0],
                capacity: vt.capacity,
            });
        }
        for (request, _) in open {
            v.push(Violation::NotDelivered { route: ri, request });
        }
        dist += instance.distance.get(loc, vt.end_depot);
        let end = t + instance.duration.get(loc, vt.end_depot);
        if end > vt.shift.end + EPS {
            v.push(Violation::LateReturn {
                route: ri,
                end,
                shift_end: vt.shift.end,
            });
        }
        for (b, br) in vt.breaks.iter().enumerate() {
            if !breaks_taken[b] && route.departure < br.window.end && end > br.window.start {
                v.push(Violation::MissingBreak {
                    route: ri,
                    index: b,
                });
            }
        }
        let duration = end - route.departure;
        total.vehicles += 1;
        total.distance += dist;
        total.duration += duration;
        total.cost += vt.fixed_cost + vt.cost_per_distance * dist + vt.cost_per_time * duration;
    }

    for (t, (&n, vt)) in used.iter().zip(&instance.vehicle_types).enumerate() {
        if n > vt.count {
            v.push(Violation::TooManyVehicles {
                vehicle_type: t,
                used: n,
                count: vt.count,
            });
        }
    }
    let mut listed = vec![false; nreq];
    for r in solution.unassigned.iter().map(|u| u.request) {
        if r >= nreq || listed[r] || served[r].iter().any(|&s| s) {
            v.push(Violation::WronglyUnassigned { request: r });
            continue;
        }
        listed[r] = true;
        total.unassigned += 1;
    }
    for (r, req) in instance.requests.iter().enumerate() {
        let complete =
            (req.pickup.is_none() || served[r][0]) && (req.delivery.is_none() || served[r][1]);
        if !complete && !listed[r] {
            v.push(Violation::Missing { request: r });
        }
    }
    if v.is_empty() {
        Ok(total)
    } else {
        Err(Violations(v))
    }
}
