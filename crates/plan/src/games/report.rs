//! What a planner reads: trips, vehicle blocks, timetables per line and per depot, KPIs and
//! the list of people left without a ride, from a checked solution.

use super::build::{Built, Direction, Load};
use super::clock::format as hhmm;
use super::input::Scenario;
use crate::model::{Reason, Side, Solution, VisitKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// One load of people and the vehicle that carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    pub id: String,
    pub session: String,
    pub group: String,
    pub direction: Direction,
    pub people: i64,
    pub from: String,
    pub to: String,
    pub vehicle: String,
    pub pickup: String,
    pub dropoff: String,
    /// From leaving the pick-up stop to the start of the drop-off, minutes.
    pub ride_min: f64,
    /// After a session: from the opening of the pick-up window (people are out and ready) to
    /// the pick-up. Before a session: 0, they board as the vehicle arrives.
    pub wait_min: f64,
    /// Before a session: from the drop-off to the start of the session.
    pub lead_min: Option<f64>,
}

/// The day of one vehicle (and its driver).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub vehicle: String,
    pub fleet: String,
    pub vehicle_type: String,
    pub depot: String,
    pub pull_out: String,
    pub pull_in: String,
    pub loads: usize,
    pub people: i64,
    pub km: f64,
    pub empty_km: f64,
    pub hours: f64,
    pub break_at: Option<String>,
    /// Every movement and stop, in order.
    pub steps: Vec<Step>,
}

/// One piece of a block: driving (with or without people), serving a stop, a break, a wait.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub what: StepKind,
    pub from_min: f64,
    pub to_min: f64,
    pub site: String,
    pub to_site: Option<String>,
    pub on_board: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Drive,
    Serve,
    Wait,
    Break,
}

/// A departure on a line (origin to destination of the passengers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineDeparture {
    pub line: String,
    pub depart: String,
    pub arrive: String,
    pub vehicle: String,
    pub people: i64,
    pub sessions: String,
}

/// A vehicle leaving or returning to its depot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepotMove {
    pub depot: String,
    pub vehicle: String,
    pub pull_out: String,
    pub pull_in: String,
}

/// People the plan does not carry, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unserved {
    pub id: String,
    pub session: String,
    pub group: String,
    pub direction: Direction,
    pub people: i64,
    pub from: String,
    pub to: String,
    pub pickup_window: String,
    pub dropoff_window: String,
    /// The demand row it comes from, `file:line`.
    pub source: String,
    pub reason: String,
}

impl Unserved {
    /// The CSV header, written even when every load is carried.
    pub const COLUMNS: [&str; 11] = [
        "id",
        "session",
        "group",
        "direction",
        "people",
        "from",
        "to",
        "pickup_window",
        "dropoff_window",
        "source",
        "reason",
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub vehicles_used: usize,
    pub vehicles_by_type: BTreeMap<String, usize>,
    pub vehicle_km: f64,
    pub empty_km: f64,
    pub vehicle_hours: f64,
    pub people_carried: i64,
    pub people_unserved: i64,
    pub loads_unserved: usize,
    pub mean_ride_min: f64,
    pub max_ride_min: f64,
    pub mean_wait_min: f64,
    pub max_wait_min: f64,
    pub cost: f64,
}

/// The planner's view of a solution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub kpis: Kpis,
    pub trips: Vec<Trip>,
    pub blocks: Vec<Block>,
    pub lines: Vec<LineDeparture>,
    pub depots: Vec<DepotMove>,
    pub unserved: Vec<Unserved>,
    /// Legs where the time-of-day travel time would make the vehicle late; empty for a
    /// consistent plan.
    pub road_violations: Vec<String>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Builds the report of a solution that passed [`crate::check`] with cost `cost`.
pub fn report(scenario: &Scenario, built: &Built, solution: &Solution, cost: f64) -> Report {
    let inst = &built.instance;
    let sites = &scenario.sites;
    let site_id = |location: usize| sites[built.site_of_location[location]].id.clone();
    let mut trips = Vec::new();
    let mut blocks = Vec::new();
    let mut lines = Vec::new();
    let mut depots = Vec::new();
    let mut road_violations = Vec::new();
    let mut numbering: BTreeMap<usize, usize> = BTreeMap::new();

    for route in &solution.routes {
        let vt = &inst.vehicle_types[route.vehicle_type];
        let fleet = &scenario.fleet[built.fleet_of_type[route.vehicle_type]];
        let k = numbering.entry(route.vehicle_type).or_default();
        *k += 1;
        let vehicle = format!("{}-{:02}", fleet.id, k);
        let depot = vt.start_depot;

        // Walk the route: legs between locations, service and breaks.
        let mut steps = Vec::new();
        let (mut here, mut t, mut load) = (depot, route.departure, 0i64);
        let (mut km, mut empty_km) = (0.0, 0.0);
        let mut pickup_leave: BTreeMap<usize, f64> = BTreeMap::new();
        let mut break_at = None;
        let mut carried = (0usize, 0i64);
        let ends = route.visits.iter().map(Some).chain([None]);
        for visit in ends {
            let to = match visit.map(|v| v.kind) {
                Some(VisitKind::Request { request, side }) => {
                    inst.requests[request]
                        .stop(side)
                        .expect("checked solution")
                        .location
                }
                Some(VisitKind::Break(_)) => here,
                Some(VisitKind::Reload) | None => vt.end_depot,
            };
            let (a, b) = (built.site_of_location[here], built.site_of_location[to]);
            if a != b {
                let d = scenario.travel.km(a, b);
                km += d;
                if load == 0 {
                    empty_km += d;
                }
                let road = t + scenario.travel.minutes(a, b, t);
                let planned =
                    visit.map_or(t + inst.duration.get(here, to), |v| v.start.max(v.arrival));
                if road > planned + 1e-6 {
                    road_violations.push(format!(
                        "{vehicle}: {} -> {} leaving {} arrives {} on the road, after {} planned",
                        sites[a].id,
                        sites[b].id,
                        hhmm(t),
                        hhmm(road),
                        hhmm(planned)
                    ));
                }
                steps.push(Step {
                    what: StepKind::Drive,
                    from_min: t,
                    to_min: road.min(planned),
                    site: sites[a].id.clone(),
                    to_site: Some(sites[b].id.clone()),
                    on_board: load,
                });
                t = road.min(planned);
            }
            let Some(visit) = visit else { break };
            if visit.start > t + 1e-6 {
                steps.push(Step {
                    what: StepKind::Wait,
                    from_min: t,
                    to_min: visit.start,
                    site: sites[b].id.clone(),
                    to_site: None,
                    on_board: load,
                });
            }
            let (what, length) = match visit.kind {
                VisitKind::Request { request, side } => {
                    let s = inst.requests[request].stop(side).expect("checked solution");
                    let people = inst.requests[request].demand;
                    match side {
                        Side::Pickup => {
                            load += people;
                            pickup_leave.insert(request, visit.start + s.service);
                        }
                        Side::Delivery => {
                            load -= people;
                            carried = (carried.0 + 1, carried.1 + people);
                        }
                    }
                    (StepKind::Serve, s.service)
                }
                VisitKind::Break(i) => {
                    break_at = Some(hhmm(visit.start));
                    (StepKind::Break, vt.breaks[i].duration)
                }
                VisitKind::Reload => (StepKind::Serve, vt.reload_time),
            };
            steps.push(Step {
                what,
                from_min: visit.start,
                to_min: visit.start + length,
                site: sites[b].id.clone(),
                to_site: None,
                on_board: load,
            });
            t = visit.start + length;
            here = to;

            if let VisitKind::Request {
                request,
                side: Side::Delivery,
            } = visit.kind
            {
                let l = &built.loads[built.load_of_request[request]];
                let d = &scenario.demand[l.demand];
                let session = &scenario.sessions[d.session];
                let picked = inst.requests[request].pickup.as_ref().expect("pairs only");
                let left = pickup_leave[&request];
                let pickup_start = left - picked.service;
                trips.push(Trip {
                    id: l.name.clone(),
                    session: session.id.clone(),
                    group: scenario.groups[d.group].id.clone(),
                    direction: l.direction,
                    people: l.people,
                    from: sites[l.from].id.clone(),
                    to: sites[l.to].id.clone(),
                    vehicle: vehicle.clone(),
                    pickup: hhmm(pickup_start),
                    dropoff: hhmm(visit.start),
                    ride_min: round2(visit.start - left),
                    wait_min: match l.direction {
                        Direction::FromVenue => round2(pickup_start - picked.window.start),
                        Direction::ToVenue => 0.0,
                    },
                    lead_min: (l.direction == Direction::ToVenue)
                        .then(|| round2(session.start - visit.start)),
                });
                lines.push(LineDeparture {
                    line: format!("{} -> {}", sites[l.from].id, sites[l.to].id),
                    depart: hhmm(left),
                    arrive: hhmm(visit.start),
                    vehicle: vehicle.clone(),
                    people: l.people,
                    sessions: session.id.clone(),
                });
            }
        }
        depots.push(DepotMove {
            depot: site_id(depot),
            vehicle: vehicle.clone(),
            pull_out: hhmm(route.departure),
            pull_in: hhmm(t),
        });
        blocks.push(Block {
            vehicle,
            fleet: fleet.id.clone(),
            vehicle_type: scenario.kinds[fleet.kind].id.clone(),
            depot: site_id(depot),
            pull_out: hhmm(route.departure),
            pull_in: hhmm(t),
            loads: carried.0,
            people: carried.1,
            km: round2(km),
            empty_km: round2(empty_km),
            hours: round2((t - route.departure) / 60.0),
            break_at,
            steps,
        });
    }

    // One departure per vehicle, line and moment: loads that leave together ride together.
    lines.sort_by(|a, b| (&a.line, &a.depart, &a.vehicle).cmp(&(&b.line, &b.depart, &b.vehicle)));
    lines.dedup_by(|later, first| {
        let same = later.line == first.line
            && later.depart == first.depart
            && later.vehicle == first.vehicle;
        if same {
            first.people += later.people;
            if !first.sessions.split(' ').any(|s| s == later.sessions) {
                first.sessions = format!("{} {}", first.sessions, later.sessions);
            }
            first.arrive = first.arrive.clone().max(later.arrive.clone());
        }
        same
    });
    depots.sort_by(|a, b| {
        (&a.depot, &a.pull_out, &a.vehicle).cmp(&(&b.depot, &b.pull_out, &b.vehicle))
    });
    trips.sort_by(|a, b| (&a.pickup, &a.id).cmp(&(&b.pickup, &b.id)));

    let unserved = unserved(scenario, built, solution);
    let rides: Vec<f64> = trips.iter().map(|t| t.ride_min).collect();
    let waits: Vec<f64> = trips
        .iter()
        .filter(|t| t.direction == Direction::FromVenue)
        .map(|t| t.wait_min)
        .collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            round2(v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mut by_type = BTreeMap::new();
    for b in &blocks {
        *by_type.entry(b.vehicle_type.clone()).or_default() += 1;
    }
    let kpis = Kpis {
        vehicles_used: blocks.len(),
        vehicles_by_type: by_type,
        vehicle_km: round2(blocks.iter().map(|b| b.km).sum()),
        empty_km: round2(blocks.iter().map(|b| b.empty_km).sum()),
        vehicle_hours: round2(blocks.iter().map(|b| b.hours).sum()),
        people_carried: trips.iter().map(|t| t.people).sum(),
        people_unserved: unserved.iter().map(|u| u.people).sum(),
        loads_unserved: unserved.len(),
        mean_ride_min: mean(&rides),
        max_ride_min: max(&rides),
        mean_wait_min: mean(&waits),
        max_wait_min: max(&waits),
        cost: round2(cost),
    };
    Report {
        scenario: scenario.name.clone(),
        kpis,
        trips,
        blocks,
        lines,
        depots,
        unserved,
        road_violations,
    }
}

/// The solver's reason for leaving `load` unserved, in the planner's terms and clock times.
fn reason_text(load: &Load, reason: &Reason) -> String {
    let (p, d) = (load.pickup.window, load.delivery.window);
    match *reason {
        Reason::Capacity { demand, largest } => {
            format!("exceeds every vehicle's capacity: {demand} people, the largest vehicle holds {largest}")
        }
        Reason::RideTime { shortest, max } => format!(
            "max ride time shorter than direct travel: the shortest possible ride takes {shortest:.0} min, the group allows {max:.0} min"
        ),
        Reason::Windows { earliest, close } => format!(
            "the drop-off window closes at {}, before a vehicle leaving at the pick-up's opening arrives ({})",
            hhmm(close),
            hhmm(earliest)
        ),
        Reason::Unreachable { earliest, close } => format!(
            "time window cannot be met from any depot: the earliest vehicle that holds them arrives at {}, the window closes at {}",
            hhmm(earliest),
            hhmm(close)
        ),
        Reason::Shift => "no driver's shift fits it: carried alone it keeps every vehicle past its shift end or leaves no room for the break".to_string(),
        Reason::FleetBusy { vehicles } => format!(
            "fleet too small in the peak: {} between {} and {}, and no route of the plan can take it",
            if vehicles == 1 {
                "the one vehicle that could carry it alone is busy".to_string()
            } else {
                format!("all {vehicles} vehicles that could carry it alone are busy")
            },
            hhmm(p.start),
            hhmm(d.end)
        ),
        Reason::NotPlaced => "the solver found no feasible place for it within the time limit (a longer search may)".to_string(),
    }
}

/// Loads screened out before solving, and loads the solver could not fit into the fleet.
fn unserved(scenario: &Scenario, built: &Built, solution: &Solution) -> Vec<Unserved> {
    let screened = built.unservable.iter().map(|u| (u.load, u.reason.clone()));
    let dropped = solution.unassigned.iter().map(|u| {
        let load = built.load_of_request[u.request];
        (load, reason_text(&built.loads[load], &u.reason))
    });
    let mut out: Vec<Unserved> = screened
        .chain(dropped)
        .map(|(i, reason)| {
            let l = &built.loads[i];
            let d = &scenario.demand[l.demand];
            let w = |tw: crate::model::TimeWindow| format!("{}-{}", hhmm(tw.start), hhmm(tw.end));
            Unserved {
                id: l.name.clone(),
                session: scenario.sessions[d.session].id.clone(),
                group: scenario.groups[d.group].id.clone(),
                direction: l.direction,
                people: l.people,
                from: scenario.sites[l.from].id.clone(),
                to: scenario.sites[l.to].id.clone(),
                pickup_window: w(l.pickup.window),
                dropoff_window: w(l.delivery.window),
                source: format!("{}:{}", d.source.file, d.source.line),
                reason,
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
