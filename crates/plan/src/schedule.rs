//! Timing a given sequence of visits: the earliest schedule, leaving the depot just late
//! enough not to wait at the first stop.

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
    let mut departure = vt.shift.start;
    if let Some(&first @ VisitKind::Request { .. }) = kinds.first() {
        let (to, window, _) = place(first, vt.start_depot);
        departure = departure.max(window.start - instance.duration.get(vt.start_depot, to));
    }
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
