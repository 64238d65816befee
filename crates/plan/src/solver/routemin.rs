//! Route minimisation by guided ejection search (Nagata and Bräysy 2009, "A powerful route
//! minimization heuristic for the vehicle routing problem with time windows"; Nagata and
//! Kobayashi 2010 for pickup and delivery). One route of a feasible solution is taken out and
//! its requests go back one at a time. A request that fits nowhere goes in anyway, ejecting up
//! to two requests from the route it enters, those that have failed to fit least
//! often (so that the hard requests end up placed first), and random feasible relocations then
//! shake the solution. Every intermediate solution is feasible: the search only succeeds or
//! runs out of steps.

use super::data::{Data, Seg};
use rand::Rng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// Random feasible relocations after each ejection.
const PERTURB: usize = 50;

/// Positions to insert a request after: its first node after position `.0` and its partner
/// (if any) after position `.1` of the route as it was (`0` is the start depot).
type Place = (usize, usize);

pub(crate) struct RouteMin<'d, 'a> {
    data: &'d Data<'a>,
    /// Node list per vehicle.
    routes: Vec<Vec<usize>>,
    /// Per vehicle: `fwd[i]` is the depot through position `i`, `bwd[i]` position `i`
    /// through the end depot.
    fwd: Vec<Vec<Seg>>,
    bwd: Vec<Vec<Seg>>,
    /// Per request (its first node): how often it fitted nowhere in this search.
    fails: Vec<u32>,
    /// Scratch route (nodes and segments): a route with requests taken out.
    scratch_nodes: Vec<usize>,
    scratch_fwd: Vec<Seg>,
    scratch_bwd: Vec<Seg>,
}

impl<'d, 'a> RouteMin<'d, 'a> {
    pub fn new(data: &'d Data<'a>) -> Self {
        let v = data.vehicles.len();
        Self {
            data,
            routes: vec![Vec::new(); v],
            fwd: vec![Vec::new(); v],
            bwd: vec![Vec::new(); v],
            fails: vec![0; data.nodes.len()],
            scratch_nodes: Vec::new(),
            scratch_fwd: Vec::new(),
            scratch_bwd: Vec::new(),
        }
    }

    /// Takes one route out of `routes` (a feasible solution, one node list per vehicle) and
    /// reinserts its requests; returns the solution with one route fewer, or `None` when
    /// `max_steps` reinsertions or the deadline pass first.
    pub fn remove_route(
        &mut self,
        routes: &[Vec<usize>],
        rng: &mut impl Rng,
        deadline: Instant,
        max_steps: usize,
    ) -> Option<Vec<Vec<usize>>> {
        let used: Vec<usize> = (0..routes.len())
            .filter(|&r| !routes[r].is_empty())
            .collect();
        if used.len() < 2 {
            return None;
        }
        for (r, nodes) in routes.iter().enumerate() {
            self.routes[r].clone_from(nodes);
            self.rebuild(r);
        }
        let out = used[rng.random_range(0..used.len())];
        let mut pool: Vec<usize> = self.units(out);
        pool.shuffle(rng);
        self.routes[out].clear();
        self.rebuild(out);
        self.fails.fill(1);
        let mut places = Vec::new();
        for step in 0.. {
            let Some(&h) = pool.last() else {
                return Some(self.routes.clone());
            };
            if step >= max_steps || (step % 8 == 0 && Instant::now() >= deadline) {
                return None;
            }
            // Anywhere it fits, at random.
            places.clear();
            for r in 0..self.routes.len() {
                if self.routes[r].is_empty() {
                    continue;
                }
                let start = places.len();
                self.places(r, false, h, false, &mut places);
                for p in &mut places[start..] {
                    p.0 = r;
                }
            }
            if !places.is_empty() {
                pool.pop();
                let (r, i, j) = places[rng.random_range(0..places.len())];
                self.insert(r, h, (i, j));
                continue;
            }
            self.fails[h] += 1;
            let Some((r, ejected)) = self.cheapest_ejection(h, rng) else {
                // Not even an ejection helps: try it again later.
                pool.pop();
                pool.insert(0, h);
                self.perturb(rng);
                continue;
            };
            pool.pop();
            self.take_out(r, &ejected);
            places.clear();
            self.places(r, false, h, false, &mut places);
            let (_, i, j) = places[rng.random_range(0..places.len())];
            self.insert(r, h, (i, j));
            pool.extend(ejected);
            self.perturb(rng);
        }
        unreachable!("the loop returns")
    }

    /// The requests of route `r`, by their first node.
    fn units(&self, r: usize) -> Vec<usize> {
        self.routes[r]
            .iter()
            .copied()
            .filter(|&x| self.data.nodes[x].inserted_first())
            .collect()
    }

    fn rebuild(&mut self, r: usize) {
        let (mut f, mut b) = (
            std::mem::take(&mut self.fwd[r]),
            std::mem::take(&mut self.bwd[r]),
        );
        prefix_suffix(self.data, r, &self.routes[r], &mut f, &mut b);
        self.fwd[r] = f;
        self.bwd[r] = b;
    }

    /// Takes the requests `units` out of route `r`.
    fn take_out(&mut self, r: usize, units: &[usize]) {
        let data = self.data;
        let gone = |x: usize| {
            units
                .iter()
                .any(|&u| x == u || data.nodes[u].partner == Some(x))
        };
        self.routes[r].retain(|&x| !gone(x));
        self.rebuild(r);
    }

    fn insert(&mut self, r: usize, unit: usize, (i, j): Place) {
        if let Some(d) = self.data.nodes[unit].partner {
            self.routes[r].insert(j, d);
        }
        self.routes[r].insert(i, unit);
        self.rebuild(r);
    }

    /// Feasible places for request `unit` in route `r` (or, with `scratch`, in the route
    /// [`Self::load_scratch`] made of it), pushed to `out` as `(r, i, j)`. With
    /// `first_only`, stops at the first.
    fn places(
        &self,
        r: usize,
        scratch: bool,
        unit: usize,
        first_only: bool,
        out: &mut Vec<(usize, usize, usize)>,
    ) {
        let d = self.data;
        let (list, fwd, bwd) = if scratch {
            (&self.scratch_nodes, &self.scratch_fwd, &self.scratch_bwd)
        } else {
            (&self.routes[r], &self.fwd[r], &self.bwd[r])
        };
        let k = list.len();
        let ok = |s: &Seg| s.warp <= 1e-9 && d.excess(r, s) == 0;
        let su = d.node_seg(unit);
        let partner = d.nodes[unit].partner;
        // Ride times and breaks: the exact schedule of the candidate route.
        let exact = |i: usize, j: usize| {
            if !d.exact_schedule {
                return true;
            }
            let mut with = list.clone();
            if let Some(p) = partner {
                with.insert(j, p);
            }
            with.insert(i, unit);
            d.schedule_excess(r, &with) <= 1e-9
        };
        for i in 0..=k {
            let head = d.concat(&fwd[i], &su);
            if head.warp > 1e-9 {
                continue;
            }
            let Some(p) = partner else {
                if ok(&d.concat(&head, &bwd[i + 1])) && exact(i, i) {
                    out.push((r, i, i));
                    if first_only {
                        return;
                    }
                }
                continue;
            };
            let sp = d.node_seg(p);
            let mut mid = head;
            for j in i..=k {
                if j > i {
                    mid = d.concat(&mid, &d.node_seg(list[j - 1]));
                    // Warp only grows: no later delivery position fits.
                    if mid.warp > 1e-9 {
                        break;
                    }
                }
                if ok(&d.concat(&d.concat(&mid, &sp), &bwd[j + 1])) && exact(i, j) {
                    out.push((r, i, j));
                    if first_only {
                        return;
                    }
                }
            }
        }
    }

    /// Loads route `r` without the requests `without` into the scratch segments; false if
    /// what is left breaks a constraint (possible where travel times break the triangle
    /// inequality). Segments before the first and after the last node taken out are the
    /// route's own.
    fn load_scratch(&mut self, r: usize, without: &[usize]) -> bool {
        let d = self.data;
        let route = &self.routes[r];
        let gone = |x: usize| {
            without
                .iter()
                .any(|&e| x == e || d.nodes[e].partner == Some(x))
        };
        let mut nodes = std::mem::take(&mut self.scratch_nodes);
        nodes.clear();
        nodes.extend(route.iter().copied().filter(|&x| !gone(x)));
        // 1-based positions of the first and last node taken out.
        let first = 1 + route
            .iter()
            .position(|&x| gone(x))
            .expect("a node taken out");
        let last = 1 + route
            .iter()
            .rposition(|&x| gone(x))
            .expect("a node taken out");
        let out = route.len() - nodes.len();
        let (k, f, b) = (nodes.len(), &mut self.scratch_fwd, &mut self.scratch_bwd);
        f.clear();
        f.extend_from_slice(&self.fwd[r][..first]);
        for i in first..=k {
            let s = d.concat(&f[i - 1], &d.node_seg(nodes[i - 1]));
            f.push(s);
        }
        f.push(d.concat(&f[k], &d.end_seg(r)));
        b.clear();
        b.resize(k + 2, d.end_seg(r));
        b[last + 1 - out..].copy_from_slice(&self.bwd[r][last + 1..]);
        for i in (0..=last - out).rev() {
            let here = if i == 0 {
                d.start_seg(r)
            } else {
                d.node_seg(nodes[i - 1])
            };
            b[i] = d.concat(&here, &b[i + 1]);
        }
        let whole = f[k + 1];
        self.scratch_nodes = nodes;
        whole.warp <= 1e-9 && d.excess(r, &whole) == 0
    }

    /// The route and the set of at most two requests to take out of it so that
    /// `unit` fits, with the least sum of failure counts (routes tried in random order, the
    /// first found among equals).
    fn cheapest_ejection(
        &mut self,
        unit: usize,
        rng: &mut impl Rng,
    ) -> Option<(usize, Vec<usize>)> {
        let mut order: Vec<usize> = (0..self.routes.len())
            .filter(|&r| !self.routes[r].is_empty())
            .collect();
        order.shuffle(rng);
        let mut best: Option<(u32, usize, Vec<usize>)> = None;
        let mut found = Vec::new();
        let mut sets: Vec<(u32, [usize; 2], usize)> = Vec::new();
        for r in order {
            let units = self.units(r);
            sets.clear();
            for (a, &x) in units.iter().enumerate() {
                sets.push((self.fails[x], [x, x], 1));
                for &y in &units[a + 1..] {
                    sets.push((self.fails[x] + self.fails[y], [x, y], 2));
                }
            }
            sets.sort_by_key(|s| s.0);
            for &(sum, set, len) in &sets {
                if best.as_ref().is_some_and(|b| sum >= b.0) {
                    break;
                }
                if !self.load_scratch(r, &set[..len]) {
                    continue;
                }
                found.clear();
                self.places(r, true, unit, true, &mut found);
                if !found.is_empty() {
                    best = Some((sum, r, set[..len].to_vec()));
                    break;
                }
            }
        }
        best.map(|(_, r, set)| (r, set))
    }

    /// Random feasible relocations of requests between routes.
    fn perturb(&mut self, rng: &mut impl Rng) {
        let used: Vec<usize> = (0..self.routes.len())
            .filter(|&r| !self.routes[r].is_empty())
            .collect();
        if used.len() < 2 {
            return;
        }
        let mut places = Vec::new();
        for _ in 0..PERTURB {
            let from = used[rng.random_range(0..used.len())];
            let to = used[rng.random_range(0..used.len())];
            if from == to || self.routes[from].is_empty() {
                continue;
            }
            let units = self.units(from);
            let x = units[rng.random_range(0..units.len())];
            if units.len() == 1 || !self.load_scratch(from, &[x]) {
                continue;
            }
            places.clear();
            self.places(to, false, x, false, &mut places);
            if places.is_empty() {
                continue;
            }
            let (_, i, j) = places[rng.random_range(0..places.len())];
            self.take_out(from, &[x]);
            self.insert(to, x, (i, j));
        }
    }
}

/// Prefix and suffix segments of `nodes` as the route of vehicle `v`, depots included.
fn prefix_suffix(data: &Data, v: usize, nodes: &[usize], fwd: &mut Vec<Seg>, bwd: &mut Vec<Seg>) {
    let k = nodes.len();
    fwd.clear();
    fwd.push(data.start_seg(v));
    for (i, &n) in nodes.iter().enumerate() {
        let s = data.concat(&fwd[i], &data.node_seg(n));
        fwd.push(s);
    }
    let last = data.concat(&fwd[k], &data.end_seg(v));
    fwd.push(last);
    bwd.clear();
    bwd.resize(k + 2, data.end_seg(v));
    for i in (0..=k).rev() {
        let here = if i == 0 {
            data.start_seg(v)
        } else {
            data.node_seg(nodes[i - 1])
        };
        bwd[i] = data.concat(&here, &bwd[i + 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::RouteMin;
    use crate::model::{
        Instance, Location, Matrix, Objective, Request, Stop, TimeWindow, VehicleType,
    };
    use crate::solver::data::Data;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::{Duration, Instant};

    /// `n` pickup-delivery pairs along a line, each pair's windows `window` wide from
    /// `10 * i`, six vehicles of capacity `capacity`.
    fn line(n: usize, window: f64, capacity: i64) -> Instance {
        let mut locations = vec![Location {
            name: "depot".into(),
            x: 0.0,
            y: 0.0,
        }];
        for i in 0..2 * n {
            locations.push(Location {
                name: format!("s{i}"),
                x: 1.0 + i as f64,
                y: 0.0,
            });
        }
        let distance = Matrix::euclidean(&locations, |d| d);
        let stop = |location: usize, from: f64| Stop {
            location,
            service: 1.0,
            window: TimeWindow::new(from, from + window),
        };
        let requests = (0..n)
            .map(|i| Request {
                name: format!("r{i}"),
                demand: 1,
                pickup: Some(stop(1 + 2 * i, 10.0 * i as f64)),
                delivery: Some(stop(2 + 2 * i, 10.0 * i as f64 + 5.0)),
                max_ride_time: None,
            })
            .collect();
        Instance {
            name: "line".into(),
            duration: distance.clone(),
            distance,
            locations,
            requests,
            vehicle_types: vec![VehicleType::simple(
                6,
                capacity,
                0,
                TimeWindow::new(0.0, 1000.0),
            )],
        }
    }

    /// One route per request: pickup then delivery.
    fn one_each(data: &Data) -> Vec<Vec<usize>> {
        let mut routes = vec![Vec::new(); data.vehicles.len()];
        let firsts = (0..data.nodes.len()).filter(|&x| data.nodes[x].inserted_first());
        for (r, x) in firsts.enumerate() {
            routes[r] = vec![x, data.nodes[x].partner.unwrap()];
        }
        routes
    }

    fn feasible(data: &Data, routes: &[Vec<usize>]) -> bool {
        let mut seen = vec![0; data.nodes.len()];
        routes.iter().enumerate().all(|(v, r)| {
            for (i, &x) in r.iter().enumerate() {
                seen[x] += 1;
                let partner = data.nodes[x].partner.unwrap();
                let at = r.iter().position(|&y| y == partner);
                let pickup_first = data.nodes[x].inserted_first() == at.is_some_and(|p| p > i);
                if !pickup_first {
                    return false;
                }
            }
            let seg = data.route_seg(v, r.iter().map(|&x| data.node_seg(x)));
            r.is_empty() || (seg.warp <= 1e-9 && data.excess(v, &seg) == 0)
        }) && seen.iter().all(|&s| s == 1)
    }

    #[test]
    fn takes_routes_out_while_they_fit_elsewhere() {
        let inst = line(6, 200.0, 2);
        let data = Data::new(&inst, Objective::Hierarchical, 10);
        let mut rm = RouteMin::new(&data);
        let mut rng = StdRng::seed_from_u64(1);
        let mut routes = one_each(&data);
        let deadline = Instant::now() + Duration::from_secs(10);
        for used in (1..6).rev() {
            routes = rm
                .remove_route(&routes, &mut rng, deadline, 10_000)
                .expect("wide windows: every request fits in one route");
            assert!(feasible(&data, &routes));
            assert_eq!(routes.iter().filter(|r| !r.is_empty()).count(), used);
        }
        assert!(rm.remove_route(&routes, &mut rng, deadline, 10).is_none());
    }

    #[test]
    fn gives_up_when_no_two_requests_share_a_route() {
        // All pickups due at 20..21 and all deliveries at 25..26, at different places: no
        // two requests share a vehicle.
        let mut inst = line(4, 1.0, 2);
        for r in &mut inst.requests {
            r.pickup.as_mut().unwrap().window = TimeWindow::new(20.0, 21.0);
            r.delivery.as_mut().unwrap().window = TimeWindow::new(25.0, 26.0);
        }
        let data = Data::new(&inst, Objective::Hierarchical, 10);
        let mut rm = RouteMin::new(&data);
        let mut rng = StdRng::seed_from_u64(1);
        let routes = one_each(&data);
        assert!(feasible(&data, &routes));
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(rm.remove_route(&routes, &mut rng, deadline, 500).is_none());
    }
}
