//! From a scenario to a routing [`Instance`]: people become loads, loads become
//! pickup-delivery requests with windows from the schedule, and the time-of-day travel model
//! becomes one static duration matrix that is safe for the schedule.
//!
//! Every stop of every load gets a location of its own in the instance, so the travel time of
//! an arc can depend on when it can be driven: it is the longest real travel time over the
//! departures the windows of its two ends allow. A schedule the solver finds feasible with
//! those durations is feasible on the road at any of those departures (first-in, first-out),
//! which [`super::report`] verifies again leg by leg.

use super::clock;
use super::input::{Demand, Scenario, Source};
use crate::model::{Break, Instance, Location, Matrix, Request, Stop, TimeWindow, VehicleType};

/// Which way a load travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the origin to the venue, before the session.
    ToVenue,
    /// From the venue back to the origin, after the session.
    FromVenue,
}

/// People of one demand row travelling together in one vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub name: String,
    pub demand: usize,
    pub direction: Direction,
    pub people: i64,
    pub from: usize,
    pub to: usize,
    pub pickup: Stop,
    pub delivery: Stop,
    pub max_ride: f64,
}

/// A load that no vehicle of the fleet can carry, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unservable {
    pub load: usize,
    pub reason: String,
}

/// The routing instance and the mapping back to the scenario.
#[derive(Debug, Clone)]
pub struct Built {
    pub instance: Instance,
    pub loads: Vec<Load>,
    /// Instance request index -> load index.
    pub load_of_request: Vec<usize>,
    pub unservable: Vec<Unservable>,
    /// Instance location index -> site index.
    pub site_of_location: Vec<usize>,
    /// Instance vehicle type index -> fleet row index.
    pub fleet_of_type: Vec<usize>,
}

/// Splits `people` into loads of `size`: full loads first, then the remainder.
fn split(people: i64, size: i64) -> Vec<i64> {
    let mut loads = vec![size; (people / size) as usize];
    if people % size > 0 {
        loads.push(people % size);
    }
    loads
}

fn loads_of(scenario: &Scenario, index: usize, d: &Demand) -> Vec<Load> {
    let group = &scenario.groups[d.group];
    let session = &scenario.sessions[d.session];
    let venue = session.venue;
    let size = group
        .load_size
        .unwrap_or_else(|| scenario.kinds.iter().map(|k| k.capacity).max().unwrap_or(1));
    let travel = &scenario.travel;
    let service = |site: usize, people: i64| {
        scenario.sites[site].stop_min + people as f64 * group.board_min_per_person
    };
    let mut out = Vec::new();
    for (direction, people, from, to) in [
        (Direction::ToVenue, d.arrive, d.origin, venue),
        (Direction::FromVenue, d.leave, venue, d.origin),
    ] {
        let fastest = travel.min_minutes(from, to);
        for (k, people) in split(people, size).into_iter().enumerate() {
            let (sp, sd) = (service(from, people), service(to, people));
            let (pickup, delivery) = match direction {
                Direction::ToVenue => {
                    let (open, close) = d.arrive_window;
                    let p = TimeWindow::new(
                        (open - group.max_ride_min - sp).max(0.0),
                        (close - sp - fastest).max(0.0),
                    );
                    (p, TimeWindow::new(open, close))
                }
                Direction::FromVenue => {
                    let (open, close) = d.leave_window;
                    (
                        TimeWindow::new(open, close),
                        TimeWindow::new(open + sp + fastest, close + sp + group.max_ride_min),
                    )
                }
            };
            let arrow = if direction == Direction::ToVenue {
                "to"
            } else {
                "from"
            };
            out.push(Load {
                name: format!("{}/{}/{arrow}/{}", session.id, group.id, k + 1),
                demand: index,
                direction,
                people,
                from,
                to,
                pickup: Stop {
                    location: 0,
                    service: sp,
                    window: pickup,
                },
                delivery: Stop {
                    location: 0,
                    service: sd,
                    window: delivery,
                },
                max_ride: group.max_ride_min,
            });
        }
    }
    out
}

/// Where an instance location is and when a vehicle can leave it / must reach it.
struct Node {
    site: usize,
    /// Earliest departure (end of service at the window's opening); depots: none.
    leave_from: Option<f64>,
    /// Latest departure, allowing for a break taken there; depots: none.
    leave_by: Option<f64>,
    /// Window of the service start; depots: none.
    window: Option<TimeWindow>,
}

/// Builds the instance; loads no vehicle can serve are left out and listed with why.
pub fn build(scenario: &Scenario) -> Built {
    let travel = &scenario.travel;
    let break_len = scenario.driver_break.map_or(0.0, |b| b.min);
    let loads: Vec<Load> = scenario
        .demand
        .iter()
        .enumerate()
        .flat_map(|(i, d)| loads_of(scenario, i, d))
        .collect();

    // Depots first, one location each.
    let mut depots: Vec<usize> = scenario.fleet.iter().map(|f| f.depot).collect();
    depots.sort_unstable();
    depots.dedup();
    let mut nodes: Vec<Node> = depots
        .iter()
        .map(|&site| Node {
            site,
            leave_from: None,
            leave_by: None,
            window: None,
        })
        .collect();
    let depot_location = |site: usize| depots.iter().position(|&d| d == site).unwrap_or(0);

    // Vehicle types: one per fleet row, with its depot and shift.
    let mut vehicle_types = Vec::new();
    let mut fleet_of_type = Vec::new();
    for (i, f) in scenario.fleet.iter().enumerate() {
        if f.count == 0 {
            continue;
        }
        let kind = &scenario.kinds[f.kind];
        let depot = depot_location(f.depot);
        let breaks = scenario
            .driver_break
            .map(|b| Break {
                window: TimeWindow::new(f.shift.0 + b.from_min, f.shift.0 + b.by_min),
                duration: b.min,
            })
            .into_iter()
            .collect();
        vehicle_types.push(VehicleType {
            name: f.id.clone(),
            count: f.count,
            capacity: kind.capacity,
            fixed_cost: kind.fixed_cost,
            cost_per_distance: kind.cost_per_km,
            cost_per_time: kind.cost_per_hour / 60.0,
            shift: TimeWindow::new(f.shift.0, f.shift.1),
            start_depot: depot,
            end_depot: depot,
            max_trips: 1,
            reload_time: 0.0,
            breaks,
        });
        fleet_of_type.push(i);
    }

    // Screen loads no vehicle can serve, then give the others their two locations.
    let mut requests = Vec::new();
    let mut load_of_request = Vec::new();
    let mut unservable = Vec::new();
    let mut loads = loads;
    for (i, load) in loads.iter_mut().enumerate() {
        if let Some(reason) = why_unservable(scenario, load, &vehicle_types, &depots) {
            unservable.push(Unservable { load: i, reason });
            continue;
        }
        for (stop, site) in [(&mut load.pickup, load.from), (&mut load.delivery, load.to)] {
            stop.location = nodes.len();
            let w = stop.window;
            nodes.push(Node {
                site,
                leave_from: Some(w.start + stop.service),
                leave_by: Some(w.end + stop.service + break_len),
                window: Some(w),
            });
        }
        requests.push(Request {
            name: load.name.clone(),
            demand: load.people,
            pickup: Some(load.pickup.clone()),
            delivery: Some(load.delivery.clone()),
            max_ride_time: Some(load.max_ride),
        });
        load_of_request.push(i);
    }

    let n = nodes.len();
    let slowest = travel.profile.max_factor();
    let mut distance = Vec::with_capacity(n * n);
    let mut duration = Vec::with_capacity(n * n);
    for a in &nodes {
        for b in &nodes {
            distance.push(travel.km(a.site, b.site));
            let base = travel.base_min(a.site, b.site);
            let minutes = if a.site == b.site {
                0.0
            } else {
                match (a.leave_from, b.window) {
                    // Stop to stop: leave after service, arrive by the close of the next window.
                    (Some(lo), Some(w)) => travel.profile.max_travel(base, lo, w.end.max(lo)),
                    // Depot to stop: leave at most the slowest drive before the window opens.
                    (None, Some(w)) => {
                        travel
                            .profile
                            .max_travel(base, w.start - base * slowest, w.end)
                    }
                    // Stop to depot: right after service, or after a break taken there.
                    (Some(lo), None) => {
                        travel
                            .profile
                            .max_travel(base, lo, a.leave_by.unwrap_or(lo))
                    }
                    (None, None) => base * slowest,
                }
            };
            duration.push(minutes);
        }
    }
    let locations = nodes
        .iter()
        .map(|node| {
            let site = &scenario.sites[node.site];
            let (x, y) = project(site.lat, site.lon);
            let when = node
                .window
                .map(|w| format!("@{}", clock::format(w.start)))
                .unwrap_or_default();
            Location {
                name: format!("{}{when}", site.id),
                x,
                y,
            }
        })
        .collect();
    let instance = Instance {
        name: scenario.name.clone(),
        locations,
        distance: Matrix::new(n, distance).expect("finite, non-negative km"),
        duration: Matrix::new(n, duration).expect("finite, non-negative minutes"),
        requests,
        vehicle_types,
    };
    let site_of_location = nodes.iter().map(|node| node.site).collect();
    Built {
        instance,
        loads,
        load_of_request,
        unservable,
        site_of_location,
        fleet_of_type,
    }
}

/// Local planar km (equirectangular around Paris' latitude is plenty for a city).
pub fn project(lat: f64, lon: f64) -> (f64, f64) {
    const KM_PER_DEGREE: f64 = 111.195;
    (
        lon * KM_PER_DEGREE * lat.to_radians().cos(),
        lat * KM_PER_DEGREE,
    )
}

/// Why no vehicle of the fleet can carry `load` on its own, if that is so: too many people
/// for any vehicle, a ride longer than allowed, or no shift from any depot that reaches it in
/// time and gets back.
fn why_unservable(
    scenario: &Scenario,
    load: &Load,
    types: &[VehicleType],
    depots: &[usize],
) -> Option<String> {
    let travel = &scenario.travel;
    let f = clock::format;
    let (p, d) = (&load.pickup, &load.delivery);
    let leave = p.window.start + p.service;
    let ride = travel.max_minutes(load.from, load.to, leave, d.window.end.max(leave));
    if ride > load.max_ride + 1e-9 {
        return Some(format!(
            "the direct ride takes {ride:.0} min, more than the maximum ride of {:.0} min",
            load.max_ride
        ));
    }
    if leave + ride > d.window.end + 1e-9 {
        return Some(format!(
            "leaving {} at {} at the earliest, it cannot reach {} by {}",
            scenario.sites[load.from].id,
            f(leave),
            scenario.sites[load.to].id,
            f(d.window.end)
        ));
    }
    let mut best: Option<(f64, String)> = None;
    let big_enough: Vec<&VehicleType> =
        types.iter().filter(|v| v.capacity >= load.people).collect();
    if big_enough.is_empty() {
        return Some(format!("no vehicle holds {} people", load.people));
    }
    for v in big_enough {
        let depot = depots[v.start_depot];
        let to_pickup = travel.max_minutes(depot, load.from, v.shift.start, p.window.end);
        let at_pickup = (v.shift.start + to_pickup).max(p.window.start);
        let at_delivery = (at_pickup
            + p.service
            + travel.max_minutes(load.from, load.to, at_pickup + p.service, d.window.end))
        .max(d.window.start);
        let done = at_delivery + d.service;
        let back = done + travel.max_minutes(load.to, depot, done, v.shift.end);
        let late = (at_pickup - p.window.end)
            .max(at_delivery - d.window.end)
            .max(back - v.shift.end);
        if late <= 1e-9 {
            return None;
        }
        if best.as_ref().is_none_or(|(l, _)| late < *l) {
            let why = if at_pickup > p.window.end {
                format!(
                    "the earliest vehicle ({} from {} at {}) reaches {} at {}, after the pick-up window closes at {}",
                    v.name,
                    scenario.sites[depot].id,
                    f(v.shift.start),
                    scenario.sites[load.from].id,
                    f(at_pickup),
                    f(p.window.end)
                )
            } else if at_delivery > d.window.end {
                format!(
                    "the earliest vehicle ({}) reaches {} at {}, after the window closes at {}",
                    v.name,
                    scenario.sites[load.to].id,
                    f(at_delivery),
                    f(d.window.end)
                )
            } else {
                format!(
                    "no shift lasts long enough: {} would be back at {} at {}, after its shift ends at {}",
                    v.name,
                    scenario.sites[depot].id,
                    f(back),
                    f(v.shift.end)
                )
            };
            best = Some((late, why));
        }
    }
    best.map(|(_, why)| why)
}

/// Where a load's people come from in the input files, for messages.
pub fn source_of<'a>(scenario: &'a Scenario, load: &Load) -> &'a Source {
    &scenario.demand[load.demand].source
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_full_loads_then_the_remainder() {
        assert_eq!(split(160, 50), vec![50, 50, 50, 10]);
        assert_eq!(split(100, 50), vec![50, 50]);
        assert_eq!(split(3, 4), vec![3]);
        assert!(split(0, 4).is_empty());
    }
}
