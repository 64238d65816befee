//! The instance flattened for search: one node per request side, one entry per vehicle, route
//! segments with constant-time concatenation, and the granular neighbourhoods.

use super::trips::Span;
use crate::model::{Instance, Objective, Reason, Side, Unassigned, VisitKind};

/// "No location / no position / no route."
pub(crate) const NONE: usize = usize::MAX;

/// One stop to visit: a side of a request.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub loc: usize,
    pub service: f64,
    pub early: f64,
    pub late: f64,
    /// Load taken from the depot at the start of the trip (delivery-only requests).
    pub depot_load: i64,
    /// Load change at this stop.
    pub net: i64,
    pub request: usize,
    pub side: Side,
    /// The other side of a paired request.
    pub partner: Option<usize>,
}

impl Node {
    /// The node that stands for its request when inserting: the pickup of a pair.
    pub fn inserted_first(&self) -> bool {
        self.partner.is_none() || self.side == Side::Pickup
    }
}

/// One physical vehicle.
#[derive(Debug, Clone)]
pub(crate) struct Vehicle {
    pub vehicle_type: usize,
    pub start: usize,
    pub end: usize,
    pub shift_start: f64,
    pub shift_end: f64,
    pub capacity: i64,
    /// Fixed cost, plus the per-vehicle weight of the hierarchical objective.
    pub fixed: f64,
    pub per_distance: f64,
    pub per_time: f64,
    /// Trips one physical vehicle of this type may make: every physical vehicle is that many
    /// trip slots in the search, chained into vehicle days at the end.
    pub trips: usize,
}

/// A route segment summary (Vidal et al. 2013 for time windows, prefix maxima for loads):
/// two segments concatenate in O(1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seg {
    pub first: usize,
    pub last: usize,
    pub dist: f64,
    /// Duration including waiting, excluding time warp.
    pub dur: f64,
    pub warp: f64,
    /// Earliest and latest start of the segment without extra warp.
    pub early: f64,
    pub late: f64,
    pub depot_load: i64,
    pub net: i64,
    /// Highest prefix sum of `net` (at least 0).
    pub peak: i64,
}

/// What the exact schedule (breaks, ride times) adds to a route beyond its segment summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Exact {
    /// Ride time over the maxima plus the extra time warp the breaks cause.
    pub excess: f64,
    /// The longer duration the breaks cause (their length less the waits they fill).
    pub time: f64,
}

/// A stop of a route or one of the vehicle's breaks, for exact scheduling.
#[derive(Debug, Clone, Copy)]
enum Item {
    Node(usize),
    Break(usize),
}

/// Penalty weights for infeasible intermediates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Penalties {
    pub load: f64,
    pub warp: f64,
}

pub(crate) struct Data<'a> {
    pub inst: &'a Instance,
    pub nodes: Vec<Node>,
    pub vehicles: Vec<Vehicle>,
    /// For each node, the nearest other nodes by time-window-aware proximity.
    pub neighbours: Vec<Vec<usize>>,
    /// Requests excluded up front because no vehicle can serve them even alone, and why.
    pub unservable: Vec<Unassigned>,
    /// For each request, how many vehicles could serve it alone.
    pub capable: Vec<usize>,
    /// Scale of one unit of distance cost, for initial penalties.
    pub max_dist: f64,
    /// Extra fixed cost per vehicle under the hierarchical objective.
    pub vehicle_weight: f64,
    /// Price of each vehicle that chained trips need beyond the fleet: ten vehicles' worth.
    pub vehicle_penalty: f64,
    /// Whether any request has a maximum ride time.
    pub ride_limits: bool,
    /// Whether routes need a full schedule to be judged (ride times or breaks).
    pub exact_schedule: bool,
}

impl<'a> Data<'a> {
    pub fn new(inst: &'a Instance, objective: Objective, granularity: usize) -> Self {
        let max_dist = inst
            .locations
            .iter()
            .enumerate()
            .flat_map(|(i, _)| (0..inst.locations.len()).map(move |j| (i, j)))
            .map(|(i, j)| inst.distance.get(i, j))
            .fold(1.0f64, f64::max);
        let vehicle_weight = match objective {
            Objective::Cost => 0.0,
            // Pulls the local search towards fewer routes; the exact order (vehicles first)
            // is applied when comparing solutions, a larger weight would swamp the penalties.
            Objective::Hierarchical => 2.0 * max_dist,
        };
        let mut vehicles = Vec::new();
        for (t, vt) in inst.vehicle_types.iter().enumerate() {
            for _ in 0..vt.count * vt.max_trips {
                vehicles.push(Vehicle {
                    vehicle_type: t,
                    start: vt.start_depot,
                    end: vt.end_depot,
                    shift_start: vt.shift.start,
                    shift_end: vt.shift.end,
                    capacity: vt.capacity,
                    fixed: vt.fixed_cost + vehicle_weight,
                    per_distance: vt.cost_per_distance,
                    per_time: vt.cost_per_time,
                    trips: vt.max_trips,
                });
            }
        }
        let mut data = Data {
            inst,
            nodes: Vec::new(),
            vehicles,
            neighbours: Vec::new(),
            unservable: Vec::new(),
            capable: Vec::new(),
            max_dist,
            vehicle_weight,
            vehicle_penalty: 10.0
                * inst
                    .vehicle_types
                    .iter()
                    .map(|t| t.fixed_cost + vehicle_weight + 2.0 * max_dist * t.cost_per_distance)
                    .fold(0.0, f64::max),
            ride_limits: inst.requests.iter().any(|r| r.max_ride_time.is_some()),
            exact_schedule: inst.requests.iter().any(|r| r.max_ride_time.is_some())
                || inst.vehicle_types.iter().any(|t| !t.breaks.is_empty()),
        };
        for (request, r) in inst.requests.iter().enumerate() {
            let node = |side: Side, depot_load: i64, net: i64| {
                let s = r.stop(side).expect("side exists");
                Node {
                    loc: s.location,
                    service: s.service,
                    early: s.window.start,
                    late: s.window.end,
                    depot_load,
                    net,
                    request,
                    side,
                    partner: None,
                }
            };
            let mut new = match (&r.pickup, &r.delivery) {
                (Some(_), Some(_)) => {
                    vec![
                        node(Side::Pickup, 0, r.demand),
                        node(Side::Delivery, 0, -r.demand),
                    ]
                }
                (Some(_), None) => vec![node(Side::Pickup, 0, r.demand)],
                _ => vec![node(Side::Delivery, r.demand, -r.demand)],
            };
            let base = data.nodes.len();
            if new.len() == 2 {
                new[0].partner = Some(base + 1);
                new[1].partner = Some(base);
            }
            // Keep a request only if some vehicle serves it alone without violation (vehicles
            // of one type are alike: one of each is tried).
            let ids: Vec<usize> = (base..base + new.len()).collect();
            data.nodes.extend(new);
            let mut capable = 0;
            let mut first = 0;
            for vt in &inst.vehicle_types {
                if vt.count > 0 && data.serves_alone(first, &ids) {
                    capable += vt.count;
                }
                first += vt.count * vt.max_trips;
            }
            data.capable.push(capable);
            if capable == 0 {
                let reason = data.why_not_alone(request, &ids);
                data.nodes.truncate(base);
                data.unservable.push(Unassigned { request, reason });
            }
        }
        data.neighbours = data.proximity(granularity);
        data
    }

    /// Whether vehicle `v` serves the request of nodes `ids` alone without violation.
    fn serves_alone(&self, v: usize, ids: &[usize]) -> bool {
        let seg = self.route_seg(v, ids.iter().map(|&n| self.node_seg(n)));
        seg.warp <= 1e-9 && self.excess(v, &seg) == 0 && self.schedule_excess(v, ids) <= 1e-9
    }

    /// Why no vehicle serves the request of nodes `ids` alone: the first of capacity, ride
    /// time, the pair's own windows, reaching the first stop in time, and the shift.
    fn why_not_alone(&self, request: usize, ids: &[usize]) -> Reason {
        let inst = self.inst;
        let r = &inst.requests[request];
        let largest = self.vehicles.iter().map(|v| v.capacity).max().unwrap_or(0);
        if r.demand > largest {
            return Reason::Capacity {
                demand: r.demand,
                largest,
            };
        }
        if let (Some(p), Some(d)) = (&r.pickup, &r.delivery) {
            let direct = inst.duration.get(p.location, d.location);
            let latest_leave = p.window.end + p.service;
            let shortest = direct.max(d.window.start - latest_leave);
            if r.max_ride_time.is_some_and(|m| shortest > m + 1e-9) {
                return Reason::RideTime {
                    shortest,
                    max: r.max_ride_time.unwrap_or(0.0),
                };
            }
            let earliest = p.window.start + p.service + direct;
            if earliest > d.window.end + 1e-9 {
                return Reason::Windows {
                    earliest,
                    close: d.window.end,
                };
            }
        }
        let first = &self.nodes[ids[0]];
        let big = || (0..self.vehicles.len()).filter(|&v| self.vehicles[v].capacity >= r.demand);
        let earliest = big()
            .map(|v| {
                let veh = &self.vehicles[v];
                veh.shift_start + inst.duration.get(veh.start, first.loc)
            })
            .fold(f64::INFINITY, f64::min);
        if earliest > first.late + 1e-9 {
            return Reason::Unreachable {
                earliest,
                close: first.late,
            };
        }
        Reason::Shift
    }

    #[inline]
    pub fn node_seg(&self, n: usize) -> Seg {
        let node = &self.nodes[n];
        Seg {
            first: node.loc,
            last: node.loc,
            dist: 0.0,
            dur: node.service,
            warp: 0.0,
            early: node.early,
            late: node.late,
            depot_load: node.depot_load,
            net: node.net,
            peak: node.net.max(0),
        }
    }

    fn depot_seg(&self, loc: usize, v: &Vehicle) -> Seg {
        Seg {
            first: loc,
            last: loc,
            dist: 0.0,
            dur: 0.0,
            warp: 0.0,
            early: v.shift_start,
            late: v.shift_end,
            depot_load: 0,
            net: 0,
            peak: 0,
        }
    }

    pub fn start_seg(&self, v: usize) -> Seg {
        let veh = &self.vehicles[v];
        self.depot_seg(veh.start, veh)
    }

    pub fn end_seg(&self, v: usize) -> Seg {
        let veh = &self.vehicles[v];
        self.depot_seg(veh.end, veh)
    }

    #[inline]
    pub fn concat(&self, a: &Seg, b: &Seg) -> Seg {
        let travel = self.inst.duration.get(a.last, b.first);
        let delta = a.dur - a.warp + travel;
        let wait = (b.early - delta - a.late).max(0.0);
        let warp = (a.early + delta - b.late).max(0.0);
        Seg {
            first: a.first,
            last: b.last,
            dist: a.dist + b.dist + self.inst.distance.get(a.last, b.first),
            dur: a.dur + b.dur + travel + wait,
            warp: a.warp + b.warp + warp,
            early: (b.early - delta).max(a.early) - wait,
            late: (b.late - delta).min(a.late) + warp,
            depot_load: a.depot_load + b.depot_load,
            net: a.net + b.net,
            peak: a.peak.max(a.net + b.peak),
        }
    }

    /// The whole route of vehicle `v` through the given segments, depots included.
    pub fn route_seg(&self, v: usize, segs: impl IntoIterator<Item = Seg>) -> Seg {
        let mut acc = self.start_seg(v);
        for s in segs {
            acc = self.concat(&acc, &s);
        }
        self.concat(&acc, &self.end_seg(v))
    }

    #[inline]
    pub fn excess(&self, v: usize, s: &Seg) -> i64 {
        (s.depot_load + s.peak - self.vehicles[v].capacity).max(0)
    }

    /// Cost of a full route segment (depot to depot) for vehicle `v`, without penalties.
    #[inline]
    pub fn base_cost(&self, v: usize, s: &Seg) -> f64 {
        let veh = &self.vehicles[v];
        veh.fixed + veh.per_distance * s.dist + veh.per_time * s.dur
    }

    #[inline]
    pub fn penalised(&self, v: usize, s: &Seg, p: Penalties) -> f64 {
        self.base_cost(v, s) + p.load * self.excess(v, s) as f64 + p.warp * s.warp
    }

    /// What the exact schedule of route `r` on vehicle `v` adds to its segment summary.
    pub fn exact(&self, v: usize, r: &[usize]) -> Exact {
        if !self.exact_schedule || r.is_empty() {
            return Exact::default();
        }
        let plain: Vec<Item> = r.iter().map(|&x| Item::Node(x)).collect();
        let before = self.items_seg(v, &plain);
        let items = self.with_breaks(v, plain);
        let seg = self.items_seg(v, &items);
        let ride = if self.ride_limits {
            self.timeline(v, &items, self.departure(v, &seg)).1
        } else {
            0.0
        };
        Exact {
            excess: (seg.warp - before.warp).max(0.0) + ride,
            time: (seg.dur - before.dur).max(0.0),
        }
    }

    /// Ride-time excess plus the extra time warp the vehicle's breaks cause: zero for a
    /// feasible route.
    pub fn schedule_excess(&self, v: usize, r: &[usize]) -> f64 {
        self.exact(v, r).excess
    }

    /// The exact schedule's share of the penalised cost of route `r`: the break time the
    /// driver is paid for, and the excess under the time-warp penalty. Never negative, so
    /// a move that does not pay without it cannot pay with it.
    pub fn exact_cost(&self, v: usize, r: &[usize], p: Penalties) -> f64 {
        let e = self.exact(v, r);
        p.warp * e.excess + self.vehicles[v].per_time * e.time
    }

    /// Route `r` with the breaks of vehicle `v` where [`Self::exact`] takes them, as the
    /// visits [`crate::schedule`] times.
    pub fn visits(&self, v: usize, r: &[usize]) -> Vec<VisitKind> {
        let plain: Vec<Item> = r.iter().map(|&x| Item::Node(x)).collect();
        let items = if self.exact_schedule && !r.is_empty() {
            self.with_breaks(v, plain)
        } else {
            plain
        };
        items
            .into_iter()
            .map(|it| match it {
                Item::Node(x) => VisitKind::Request {
                    request: self.nodes[x].request,
                    side: self.nodes[x].side,
                },
                Item::Break(b) => VisitKind::Break(b),
            })
            .collect()
    }

    /// Inserts each break the route overlaps on the schedule that leaves the depot as late
    /// as the route allows (least waiting with passengers on board): at a place of least
    /// time warp, preferring one with nobody on board (a break during a ride lengthens it),
    /// then the one that lengthens the route least (a break can fill a wait). O(route
    /// length) per break.
    fn with_breaks(&self, v: usize, mut items: Vec<Item>) -> Vec<Item> {
        let breaks = &self.inst.vehicle_types[self.vehicles[v].vehicle_type].breaks;
        for (b, br) in breaks.iter().enumerate() {
            let seg = self.items_seg(v, &items);
            let departure = self.departure(v, &seg);
            let (end, _) = self.timeline(v, &items, departure);
            if !(departure < br.window.end && end > br.window.start) {
                continue;
            }
            // The route with the break after each prefix, from cached prefix and suffix
            // segments.
            let k = items.len();
            let mut prefix = Vec::with_capacity(k + 1);
            prefix.push(self.start_seg(v));
            for (i, &it) in items.iter().enumerate() {
                let s = self.concat(&prefix[i], &self.item_seg(v, it, prefix[i].last));
                prefix.push(s);
            }
            let mut suffix = vec![self.end_seg(v); k + 1];
            for i in (0..k).rev() {
                let here = if i == 0 {
                    self.vehicles[v].start
                } else {
                    prefix[i].last
                };
                suffix[i] = self.concat(&self.item_seg(v, items[i], here), &suffix[i + 1]);
            }
            let with_at: Vec<Seg> = (0..=k)
                .map(|i| {
                    let with = self.concat(
                        &prefix[i],
                        &self.item_seg(v, Item::Break(b), prefix[i].last),
                    );
                    self.concat(&with, &suffix[i])
                })
                .collect();
            let mut on_board = 0i32;
            let mut occupied = Vec::with_capacity(k + 1);
            occupied.push(false);
            for &it in &items {
                if let Item::Node(x) = it
                    && self.nodes[x].partner.is_some()
                {
                    on_board += if self.nodes[x].side == Side::Pickup {
                        1
                    } else {
                        -1
                    };
                }
                occupied.push(on_board != 0);
            }
            let least = with_at.iter().map(|s| s.warp).fold(f64::INFINITY, f64::min);
            let at = (0..=k)
                .filter(|&i| with_at[i].warp <= least + 1e-9)
                .min_by(|&i, &j| {
                    (occupied[i].cmp(&occupied[j]))
                        .then(with_at[i].dur.total_cmp(&with_at[j].dur))
                        .then(i.cmp(&j))
                })
                .expect("at least one place");
            items.insert(at, Item::Break(b));
        }
        items
    }

    /// The segment of one item; a break is taken at `here`, where the vehicle is.
    fn item_seg(&self, v: usize, item: Item, here: usize) -> Seg {
        match item {
            Item::Node(x) => self.node_seg(x),
            Item::Break(b) => {
                let br = &self.inst.vehicle_types[self.vehicles[v].vehicle_type].breaks[b];
                Seg {
                    first: here,
                    last: here,
                    dist: 0.0,
                    dur: br.duration,
                    warp: 0.0,
                    early: br.window.start,
                    late: br.window.end,
                    depot_load: 0,
                    net: 0,
                    peak: 0,
                }
            }
        }
    }

    /// The whole route of `items` on vehicle `v`, depots included.
    fn items_seg(&self, v: usize, items: &[Item]) -> Seg {
        let mut acc = self.start_seg(v);
        for &it in items {
            acc = self.concat(&acc, &self.item_seg(v, it, acc.last));
        }
        self.concat(&acc, &self.end_seg(v))
    }

    /// When the route `seg` of vehicle `v` can leave without warp, and how long it takes.
    pub fn span(&self, v: usize, seg: &Seg) -> Span {
        let latest = self.departure(v, seg);
        Span {
            earliest: seg.early.clamp(self.vehicles[v].shift_start, latest),
            latest,
            duration: seg.dur,
        }
    }

    /// The first vehicle (trip slot) of vehicle type `t`.
    pub fn first_vehicle(&self, t: usize) -> usize {
        self.vehicles
            .iter()
            .position(|v| v.vehicle_type == t)
            .expect("a type with trips has vehicles")
    }

    /// The node serving `side` of `request` (a request the search routes).
    pub fn node_of(&self, request: usize, side: Side) -> usize {
        self.nodes
            .iter()
            .position(|n| n.request == request && n.side == side)
            .expect("a routed request has its nodes")
    }

    /// The latest departure that adds no time warp: as [`crate::schedule`] does.
    pub fn departure(&self, v: usize, route: &Seg) -> f64 {
        let veh = &self.vehicles[v];
        route
            .late
            .clamp(veh.shift_start, veh.shift_end.max(veh.shift_start))
    }

    /// Walks `items` from `departure` (late starts clipped to the window, as time warp does):
    /// (return to the depot, ride time over the maxima).
    fn timeline(&self, v: usize, items: &[Item], departure: f64) -> (f64, f64) {
        let inst = self.inst;
        let veh = &self.vehicles[v];
        let breaks = &inst.vehicle_types[veh.vehicle_type].breaks;
        let (mut here, mut t, mut ride) = (veh.start, departure, 0.0);
        // Pickups on board: (request, time they left the pickup).
        let mut on_board: Vec<(usize, f64)> = Vec::new();
        for &it in items {
            let (arrive, early, late, service) = match it {
                Item::Node(x) => {
                    let n = &self.nodes[x];
                    let a = t + inst.duration.get(here, n.loc);
                    here = n.loc;
                    (a, n.early, n.late, n.service)
                }
                Item::Break(b) => (
                    t,
                    breaks[b].window.start,
                    breaks[b].window.end,
                    breaks[b].duration,
                ),
            };
            let start = arrive.max(early).min(late);
            t = start + service;
            let Item::Node(x) = it else { continue };
            let n = &self.nodes[x];
            if n.partner.is_none() {
                continue;
            }
            if n.side == Side::Pickup {
                on_board.push((n.request, t));
            } else if let Some(i) = on_board.iter().position(|&(q, _)| q == n.request) {
                let (_, left) = on_board.swap_remove(i);
                if let Some(max) = inst.requests[n.request].max_ride_time {
                    ride += (start - left - max).max(0.0);
                }
            }
        }
        (t + inst.duration.get(here, veh.end), ride)
    }

    /// Granular neighbourhoods: distance plus weighted waiting and time warp the pair would
    /// cause in either order (Vidal et al. 2013), symmetrised.
    fn proximity(&self, k: usize) -> Vec<Vec<usize>> {
        let n = self.nodes.len();
        let one_way = |i: usize, j: usize| {
            let (a, b) = (&self.nodes[i], &self.nodes[j]);
            let t = self.inst.duration.get(a.loc, b.loc);
            let wait = (b.early - t - a.service - a.late).max(0.0);
            let warp = (a.early + a.service + t - b.late).max(0.0);
            self.inst.distance.get(a.loc, b.loc) + 0.2 * wait + warp
        };
        (0..n)
            .map(|i| {
                let mut cand: Vec<(f64, usize)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (one_way(i, j).min(one_way(j, i)), j))
                    .collect();
                let k = k.min(cand.len());
                if k > 0 && k < cand.len() {
                    cand.select_nth_unstable_by(k - 1, |a, b| {
                        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
                    });
                    cand.truncate(k);
                }
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                cand.into_iter().map(|(_, j)| j).collect()
            })
            .collect()
    }
}
