//! Timing a given sequence of visits: leave the depot as late as the route allows, then
//! start every visit as soon as possible.

use crate::model::{Instance, Route, TimeWindow, Visit, VisitKind};

/// Times `kinds` for a vehicle of type `vehicle_type`. Infeasible sequences get times anyway
/// (service starts late); [`crate::check`] reports them.
pub fn schedule(instance: &Instance, vehicle_type: usize, kinds: &[VisitKind]) -> Route {
    let vt = &instance.vehicle_types[vehicle_type];
    let place = |kind: VisitKind, here: usize| -> (usize, TimeWindow, f64) {
        match kind {
            VisitKind::Request { request, side } => {
                let s = instance.requests[request].stop(side).expect("stop exists");
                (s.location, s.window, s.service)
            }
            VisitKind::Break(b) => (here, vt.breaks[b].window, vt.breaks[b].duration),
            VisitKind::Reload => (vt.start_depot, TimeWindow::UNBOUNDED, vt.reload_time),
        }
    };
    // Leave as late as the windows and the shift allow (latest start at each stop, walking
    // back from the end depot): no waiting with passengers on board that could be avoided.
    let mut here = vt.start_depot;
    let stops: Vec<(usize, TimeWindow, f64)> = kinds
        .iter()
        .map(|&kind| {
            let stop = place(kind, here);
            here = stop.0;
            stop
        })
        .collect();
    let mut latest = vt.shift.end;
    let mut next = vt.end_depot;
    for &(at, window, service) in stops.iter().rev() {
        latest = (latest - instance.duration.get(at, next) - service).min(window.end);
        next = at;
    }
    let departure = if kinds.is_empty() {
        vt.shift.start
    } else {
        (latest - instance.duration.get(vt.start_depot, next)).max(vt.shift.start)
    };
    let mut here = vt.start_depot;
    let mut t = departure;
    let visits = kinds
        .iter()
        .map(|&kind| {
            let (to, window, service) = place(kind, here);
            let arrival = t + instance.duration.get(here, to);
            let start = arrival.max(window.start);
            t = start + service;
            here = to;
            Visit {
                kind,
                arrival,
                start,
            }
        })
        .collect();
    Route {
        vehicle_type,
        departure,
        visits,
    }
}
