//! Local search over granular neighbourhoods: segment exchanges (relocate, swap, 1 to 2
//! nodes), 2-opt* tail swaps and pickup-delivery pair relocation, each evaluated in O(1)
//! (pairs: O(route length)) by concatenating cached prefix and suffix segments, first
//! improvement; then SWAP* between routes ([`swap_star`]) until neither improves.
//! Pairs stay in one route with the pickup first: inter-route moves only move whole pairs.

mod swap_star;

use super::data::{Data, NONE, Penalties, Seg};
use rand::Rng;
use rand::seq::SliceRandom;
use std::time::Instant;

const EPS: f64 = 1e-7;

/// One route of the search, positions `0` (start depot) to `len + 1` (end depot).
#[derive(Debug, Clone)]
pub(crate) struct LsRoute {
    pub vehicle: usize,
    pub nodes: Vec<usize>,
    /// `fwd[i]`: depot through position `i`.
    fwd: Vec<Seg>,
    /// `bwd[i]`: position `i` through the end depot.
    bwd: Vec<Seg>,
    /// `open[i]`: pairs picked up at or before `i` and delivered after it.
    open: Vec<u32>,
    /// Location at each position, depots included.
    locs: Vec<usize>,
    pub cost: f64,
    /// The penalty part of `cost`: the most any move can save on this route beyond travel.
    penalty: f64,
    modified: u64,
}

impl LsRoute {
    fn len(&self) -> usize {
        self.nodes.len()
    }
}

pub(crate) struct LocalSearch<'d, 'a> {
    pub data: &'d Data<'a>,
    pub routes: Vec<LsRoute>,
    route_of: Vec<usize>,
    pos_of: Vec<usize>,
    pub pen: Penalties,
    order: Vec<usize>,
    last_tested: Vec<u64>,
    /// Per route: the step at which SWAP* last tried it.
    swap_tested: Vec<u64>,
    step: u64,
    /// Whether route cost is fixed plus distance only, so that travel deltas bound moves.
    prunable: bool,
    has_pairs: bool,
    /// When [`Self::search`] must stop, local optimum or not.
    pub deadline: Option<Instant>,
    /// Most routes in use: no move opens a route beyond it (the hierarchical objective
    /// searches at the best known vehicle count).
    pub max_routes: usize,
}

impl<'d, 'a> LocalSearch<'d, 'a> {
    pub fn new(data: &'d Data<'a>) -> Self {
        let n = data.nodes.len();
        let routes = (0..data.vehicles.len())
            .map(|v| LsRoute {
                vehicle: v,
                nodes: Vec::new(),
                fwd: Vec::new(),
                bwd: Vec::new(),
                open: Vec::new(),
                locs: Vec::new(),
                cost: 0.0,
                penalty: 0.0,
                modified: 0,
            })
            .collect();
        Self {
            data,
            routes,
            route_of: vec![NONE; n],
            pos_of: vec![NONE; n],
            pen: Penalties {
                load: 1.0,
                warp: 1.0,
            },
            order: (0..n).collect(),
            last_tested: vec![0; n],
            swap_tested: vec![0; data.vehicles.len()],
            step: 1,
            // Ride times can shrink when nodes are inserted (waits absorb delays): no bound.
            prunable: !data.exact_schedule && data.vehicles.iter().all(|v| v.per_time == 0.0),
            has_pairs: data.nodes.iter().any(|n| n.partner.is_some()),
            deadline: None,
            max_routes: usize::MAX,
        }
    }

    /// Whether a move may put nodes into an empty route.
    fn may_open(&self) -> bool {
        self.max_routes == usize::MAX
            || self.routes.iter().filter(|r| !r.nodes.is_empty()).count() < self.max_routes
    }

    /// Loads one node list per vehicle; nodes in none of them are inserted by
    /// [`Self::insert_missing`].
    pub fn load(&mut self, routes: &[Vec<usize>], pen: Penalties) {
        self.pen = pen;
        self.route_of.fill(NONE);
        self.pos_of.fill(NONE);
        self.last_tested.fill(0);
        self.swap_tested.fill(0);
        self.step = 1;
        for (r, nodes) in routes.iter().enumerate() {
            self.routes[r].nodes.clone_from(nodes);
            self.update(r);
        }
    }

    pub fn export(&self) -> Vec<Vec<usize>> {
        self.routes.iter().map(|r| r.nodes.clone()).collect()
    }

    /// Recomputes the caches of route `r` after its node list changed.
    fn update(&mut self, r: usize) {
        let d = self.data;
        let route = &mut self.routes[r];
        let k = route.nodes.len();
        route.fwd.clear();
        route.fwd.push(d.start_seg(route.vehicle));
        for i in 0..k {
            let s = d.concat(&route.fwd[i], &d.node_seg(route.nodes[i]));
            route.fwd.push(s);
        }
        let last = d.concat(&route.fwd[k], &d.end_seg(route.vehicle));
        route.fwd.push(last);
        route.bwd.clear();
        route.bwd.resize(k + 2, d.end_seg(route.vehicle));
        for i in (0..=k).rev() {
            let here = if i == 0 {
                d.start_seg(route.vehicle)
            } else {
                d.node_seg(route.nodes[i - 1])
            };
            route.bwd[i] = d.concat(&here, &route.bwd[i + 1]);
        }
        route.open.clear();
        route.open.push(0);
        let mut open = 0u32;
        for (i, &n) in route.nodes.iter().enumerate() {
            self.route_of[n] = r;
            self.pos_of[n] = i + 1;
            match d.nodes[n].partner {
                Some(_) if d.nodes[n].side == crate::model::Side::Pickup => open += 1,
                Some(_) => open -= 1,
                None => {}
            }
            route.open.push(open);
        }
        route.open.push(0);
        route.locs.clear();
        route.locs.push(d.vehicles[route.vehicle].start);
        route
            .locs
            .extend(route.nodes.iter().map(|&n| d.nodes[n].loc));
        route.locs.push(d.vehicles[route.vehicle].end);
        route.cost = if k == 0 {
            0.0
        } else {
            d.penalised(route.vehicle, &route.fwd[k + 1], self.pen)
        };
        route.cost += d.exact_cost(route.vehicle, &route.nodes, self.pen);
        route.penalty = if k == 0 {
            0.0
        } else {
            route.cost - d.base_cost(route.vehicle, &route.fwd[k + 1])
        };
        self.step += 1;
        route.modified = self.step;
    }

    #[inline]
    fn seg_at(&self, r: usize, i: usize) -> Seg {
        let route = &self.routes[r];
        if i == 0 {
            self.data.start_seg(route.vehicle)
        } else if i > route.len() {
            self.data.end_seg(route.vehicle)
        } else {
            self.data.node_seg(route.nodes[i - 1])
        }
    }

    /// Location at position `i` of route `r`, depots included.
    #[inline(always)]
    fn loc(&self, r: usize, i: usize) -> usize {
        self.routes[r].locs[i]
    }

    #[inline(always)]
    fn d(&self, a: usize, b: usize) -> f64 {
        self.data.inst.distance.get(a, b)
    }

    /// Travel cost change of replacing edges `(a, b)` (old) by `(c, d)` (new) on vehicle `v`.
    #[inline(always)]
    fn travel_delta(&self, v: usize, old: &[(usize, usize)], new: &[(usize, usize)]) -> f64 {
        let sum = |e: &[(usize, usize)]| e.iter().map(|&(a, b)| self.d(a, b)).sum::<f64>();
        self.data.vehicles[v].per_distance * (sum(new) - sum(old))
    }

    /// The exact schedule's share of the cost of `nodes` as a route of vehicle `v`: break
    /// time, and penalties for ride times over their maximum and break-induced warp.
    fn exact_cost(&self, v: usize, nodes: &[usize]) -> f64 {
        self.data.exact_cost(v, nodes, self.pen)
    }

    /// Node lists of `ru` (and `rv` if different) after [`Self::exchange`].
    fn exchange_lists(
        &self,
        ru: usize,
        pu: usize,
        n: usize,
        rv: usize,
        pv: usize,
        m: usize,
    ) -> (Vec<usize>, Option<Vec<usize>>) {
        if ru != rv {
            let (u, v) = (&self.routes[ru].nodes, &self.routes[rv].nodes);
            let block_u = &u[pu - 1..pu - 1 + n];
            if m == 0 {
                let new_u = [&u[..pu - 1], &u[pu - 1 + n..]].concat();
                let new_v = [&v[..pv], block_u, &v[pv..]].concat();
                (new_u, Some(new_v))
            } else {
                let block_v = &v[pv - 1..pv - 1 + m];
                let new_u = [&u[..pu - 1], block_v, &u[pu - 1 + n..]].concat();
                let new_v = [&v[..pv - 1], block_u, &v[pv - 1 + m..]].concat();
                (new_u, Some(new_v))
            }
        } else {
            let old = &self.routes[ru].nodes;
            let range = |i: usize, j: usize| if i <= j { &old[i - 1..j] } else { &old[0..0] };
            let (a, b) = (pu, pu + n - 1);
            let k = old.len();
            let new = if m == 0 {
                if pv < a {
                    [
                        range(1, pv),
                        range(a, b),
                        range(pv + 1, a - 1),
                        range(b + 1, k),
                    ]
                    .concat()
                } else {
                    [
                        range(1, a - 1),
                        range(b + 1, pv),
                        range(a, b),
                        range(pv + 1, k),
                    ]
                    .concat()
                }
            } else {
                let (c, d) = (pv, pv + m - 1);
                let ((s1, e1), (s2, e2)) = if b < c {
                    ((a, b), (c, d))
                } else {
                    ((c, d), (a, b))
                };
                [
                    range(1, s1 - 1),
                    range(s2, e2),
                    range(e1 + 1, s2 - 1),
                    range(s1, e1),
                    range(e2 + 1, k),
                ]
                .concat()
            };
            (new, None)
        }
    }

    fn same_rates(&self, a: usize, b: usize) -> bool {
        self.data.vehicles[a].per_distance == self.data.vehicles[b].per_distance
    }

    /// Positions `i..=j` of route `r` (`i <= j`), in O(j - i).
    fn between(&self, r: usize, i: usize, j: usize) -> Seg {
        let mut s = self.seg_at(r, i);
        for p in i + 1..=j {
            s = self.data.concat(&s, &self.seg_at(r, p));
        }
        s
    }

    /// Penalised cost of a route of vehicle `v` made of `parts` (depots included).
    fn eval(&self, v: usize, parts: &[Seg], empty: bool) -> f64 {
        if empty {
            return 0.0;
        }
        let mut s = parts[0];
        for p in &parts[1..] {
            s = self.data.concat(&s, p);
        }
        self.data.penalised(v, &s, self.pen)
    }

    /// Whether every pair node in positions `a..=b` of `r` has its partner there too.
    fn closed(&self, r: usize, a: usize, b: usize) -> bool {
        if !self.has_pairs {
            return true;
        }
        let route = &self.routes[r];
        (a..=b).all(|p| {
            self.data.nodes[route.nodes[p - 1]]
                .partner
                .is_none_or(|q| self.route_of[q] == r && (a..=b).contains(&self.pos_of[q]))
        })
    }

    /// Runs the local search to a local optimum.
    pub fn search(&mut self, rng: &mut impl Rng) {
        self.insert_missing(rng);
        self.order.shuffle(rng);
        let mut first = true;
        loop {
            let mut improved = false;
            for oi in 0..self.order.len() {
                if oi % 16 == 0 && self.deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let u = self.order[oi];
                if self.route_of[u] == NONE {
                    continue;
                }
                let tested = self.last_tested[u];
                self.last_tested[u] = self.step;
                for ni in 0..self.data.neighbours[u].len() {
                    let v = self.data.neighbours[u][ni];
                    if self.route_of[v] == NONE || self.route_of[u] == NONE {
                        continue;
                    }
                    let (ru, rv) = (self.route_of[u], self.route_of[v]);
                    if !first && self.routes[ru].modified.max(self.routes[rv].modified) <= tested {
                        continue;
                    }
                    if self.node_moves(u, v) {
                        improved = true;
                    }
                }
                if self.empty_route_moves(u) {
                    improved = true;
                }
            }
            first = false;
            // At a local optimum of the node moves, SWAP* between routes (which changes the
            // routes, so the node moves get another pass).
            let in_time = self.deadline.is_none_or(|d| Instant::now() < d);
            let swapped = !improved && self.swap_star_applies() && in_time && self.swap_star();
            if !(improved || swapped) {
                break;
            }
        }
    }

    /// Whether route `r` breaks a constraint (load, time, ride or break).
    fn infeasible(&self, r: usize) -> bool {
        let route = &self.routes[r];
        let k = route.len();
        k > 0
            && (self.data.excess(route.vehicle, &route.fwd[k + 1]) > 0
                || route.fwd[k + 1].warp > 1e-9
                || self.data.schedule_excess(route.vehicle, &route.nodes) > 1e-9)
    }

    /// Takes requests out of every infeasible route until it is feasible, the one whose
    /// removal leaves the cheapest route first; [`Self::search`] reinserts them where they
    /// fit best. Escapes the plateaus of peak overload that no single move lowers (two
    /// overlapping rides each over capacity). Returns whether anything was taken out.
    pub fn unload_infeasible(&mut self) -> bool {
        let mut any = false;
        for r in 0..self.routes.len() {
            while self.infeasible(r) {
                let route = &self.routes[r];
                let v = route.vehicle;
                let without = |x: usize| -> Vec<usize> {
                    let partner = self.data.nodes[x].partner;
                    route
                        .nodes
                        .iter()
                        .copied()
                        .filter(|&y| y != x && Some(y) != partner)
                        .collect()
                };
                // Load and time windows first; the costlier exact schedule only when they
                // are already kept.
                let k = route.len();
                let timed =
                    self.data.excess(v, &route.fwd[k + 1]) == 0 && route.fwd[k + 1].warp <= 1e-9;
                let cost = |nodes: &[usize]| {
                    let seg = self
                        .data
                        .route_seg(v, nodes.iter().map(|&x| self.data.node_seg(x)));
                    let c = self.data.penalised(v, &seg, self.pen);
                    if timed {
                        c + self.exact_cost(v, nodes)
                    } else {
                        c
                    }
                };
                let out = route
                    .nodes
                    .iter()
                    .copied()
                    .filter(|&x| self.data.nodes[x].inserted_first())
                    .map(|x| (cost(&without(x)), x))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, x)| x)
                    .expect("an infeasible route has a request");
                let rest = without(out);
                for x in std::iter::once(out).chain(self.data.nodes[out].partner) {
                    self.route_of[x] = NONE;
                    self.pos_of[x] = NONE;
                }
                self.routes[r].nodes = rest;
                self.update(r);
                any = true;
            }
        }
        any
    }

    /// Inserts every unrouted request at its cheapest place that keeps every constraint, if
    /// it has one (routes in use, and one empty vehicle of each type); returns the requests
    /// (their first node) that fit nowhere. For a feasible solution's leftovers.
    pub fn insert_feasible(&mut self) -> Vec<usize> {
        let mut left = Vec::new();
        let missing: Vec<usize> = (0..self.data.nodes.len())
            .filter(|&n| self.route_of[n] == NONE && self.data.nodes[n].inserted_first())
            .collect();
        for u in missing {
            let mut seen_types = Vec::new();
            let mut best: Option<(f64, usize, usize, usize)> = None;
            for r in 0..self.routes.len() {
                if self.routes[r].nodes.is_empty() {
                    let t = self.data.vehicles[self.routes[r].vehicle].vehicle_type;
                    if seen_types.contains(&t) {
                        continue;
                    }
                    seen_types.push(t);
                }
                if let Some((delta, i, j)) = self.feasible_insertion(r, u)
                    && best.is_none_or(|b| delta < b.0)
                {
                    best = Some((delta, r, i, j));
                }
            }
            let Some((_, r, i, j)) = best else {
                left.push(u);
                continue;
            };
            if let Some(d) = self.data.nodes[u].partner {
                self.routes[r].nodes.insert(j, d);
            }
            self.routes[r].nodes.insert(i, u);
            self.update(r);
        }
        left
    }

    /// The cheapest insertion of `u` (with its partner) into route `r` that keeps every
    /// constraint: (cost increase, position of `u`, position of the partner) as "insert
    /// after". The exact schedule is checked for the few cheapest candidates only.
    fn feasible_insertion(&self, r: usize, u: usize) -> Option<(f64, usize, usize)> {
        const SCHEDULE_TRIES: usize = 8;
        let route = &self.routes[r];
        let (v, k) = (route.vehicle, route.len());
        let old = if k == 0 {
            0.0
        } else {
            self.data.base_cost(v, &route.fwd[k + 1])
        };
        let su = self.data.node_seg(u);
        let partner = self.data.nodes[u].partner;
        let ok = |s: &Seg| s.warp <= 1e-9 && self.data.excess(v, s) == 0;
        let mut candidates = Vec::new();
        for i in 0..=k {
            let head = self.data.concat(&route.fwd[i], &su);
            let Some(d) = partner else {
                let full = self.data.concat(&head, &route.bwd[i + 1]);
                if ok(&full) {
                    candidates.push((self.data.base_cost(v, &full) - old, i, i));
                }
                continue;
            };
            let sd = self.data.node_seg(d);
            let mut mid = head;
            for j in i..=k {
                if j > i {
                    mid = self.data.concat(&mid, &self.seg_at(r, j));
                }
                if mid.warp > 1e-9 {
                    break;
                }
                let full = self
                    .data
                    .concat(&self.data.concat(&mid, &sd), &route.bwd[j + 1]);
                if ok(&full) {
                    candidates.push((self.data.base_cost(v, &full) - old, i, j));
                }
            }
        }
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !self.data.exact_schedule {
            return candidates.first().copied();
        }
        candidates
            .into_iter()
            .take(SCHEDULE_TRIES)
            .find(|&(_, i, j)| {
                let mut with = route.nodes.clone();
                if let Some(d) = partner {
                    with.insert(j, d);
                }
                with.insert(i, u);
                self.data.schedule_excess(v, &with) <= 1e-9
            })
    }

    /// Tries the node moves between `u` and its neighbour `v`; applies the first improving.
    fn node_moves(&mut self, u: usize, v: usize) -> bool {
        let (ru, pu) = (self.route_of[u], self.pos_of[u]);
        let (rv, pv) = (self.route_of[v], self.pos_of[v]);
        let pair = self.data.nodes[u].partner.is_some();
        // Relocate u (and its successor) after v, or before v when v starts its route.
        for n in 1..=2 {
            if self.exchange(ru, pu, n, rv, pv, 0) {
                return true;
            }
            if pv == 1 && self.exchange(ru, pu, n, rv, 0, 0) {
                return true;
            }
        }
        for (n, m) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            if self.exchange(ru, pu, n, rv, pv, m) {
                return true;
            }
        }
        if ru != rv && (self.tails(ru, pu, rv, pv) || (pv == 1 && self.tails(ru, pu, rv, 0))) {
            return true;
        }
        pair && ru != rv && self.pair_relocate(u, rv, pv)
    }

    /// Moves `u` (or its pair) into an empty vehicle of each type, if that pays.
    fn empty_route_moves(&mut self, u: usize) -> bool {
        if !self.may_open() {
            return false;
        }
        let mut seen_types = Vec::new();
        for r in 0..self.routes.len() {
            let t = self.data.vehicles[self.routes[r].vehicle].vehicle_type;
            if !self.routes[r].nodes.is_empty() || seen_types.contains(&t) {
                continue;
            }
            seen_types.push(t);
            let (ru, pu) = (self.route_of[u], self.pos_of[u]);
            if ru == NONE {
                return false;
            }
            let moved = if self.data.nodes[u].partner.is_some() {
                self.pair_relocate(u, r, 0)
            } else {
                self.exchange(ru, pu, 1, r, 0, 0)
            };
            if moved {
                return true;
            }
        }
        false
    }

    /// Exchanges positions `pu..pu+n` of `ru` with `pv..pv+m` of `rv`; with `m == 0`, moves
    /// them to just after position `pv`.
    fn exchange(&mut self, ru: usize, pu: usize, n: usize, rv: usize, pv: usize, m: usize) -> bool {
        let (ku, kv) = (self.routes[ru].len(), self.routes[rv].len());
        if pu == 0 || pu + n - 1 > ku || (m > 0 && (pv == 0 || pv + m - 1 > kv)) {
            return false;
        }
        if kv == 0 && ku > n && !self.may_open() {
            return false;
        }
        let (vu, vv) = (self.routes[ru].vehicle, self.routes[rv].vehicle);
        let old = self.routes[ru].cost + if ru != rv { self.routes[rv].cost } else { 0.0 };
        let new = if ru != rv {
            if !self.closed(ru, pu, pu + n - 1) || (m > 0 && !self.closed(rv, pv, pv + m - 1)) {
                return false;
            }
            if self.prunable && self.same_rates(vu, vv) {
                // Penalties on the receiving side only grow: travel minus the current
                // penalties (and the fixed cost of a route emptied) bounds the gain.
                let (l, ln) = (|i| self.loc(ru, i), |i| self.loc(rv, i));
                let (first, last) = (l(pu), l(pu + n - 1));
                let mut bound = if m == 0 {
                    self.travel_delta(
                        vu,
                        &[(l(pu - 1), first), (last, l(pu + n))],
                        &[(l(pu - 1), l(pu + n))],
                    ) + self.travel_delta(
                        vv,
                        &[(ln(pv), ln(pv + 1))],
                        &[(ln(pv), first), (last, ln(pv + 1))],
                    ) - self.routes[ru].penalty
                } else {
                    let (vf, vl) = (ln(pv), ln(pv + m - 1));
                    self.travel_delta(
                        vu,
                        &[(l(pu - 1), first), (last, l(pu + n))],
                        &[(l(pu - 1), vf), (vl, l(pu + n))],
                    ) + self.travel_delta(
                        vv,
                        &[(ln(pv - 1), vf), (vl, ln(pv + m))],
                        &[(ln(pv - 1), first), (last, ln(pv + m))],
                    ) - self.routes[ru].penalty
                        - self.routes[rv].penalty
                };
                if m == 0 && ku == n {
                    bound -= self.data.vehicles[vu].fixed;
                }
                if kv == 0 {
                    bound += self.data.vehicles[vv].fixed;
                }
                if bound >= -EPS {
                    return false;
                }
            }
            let (fu, bu) = (&self.routes[ru].fwd, &self.routes[ru].bwd);
            let (fv, bv) = (&self.routes[rv].fwd, &self.routes[rv].bwd);
            let seg_u = self.between(ru, pu, pu + n - 1);
            if m == 0 {
                let new_u = self.eval(vu, &[fu[pu - 1], bu[pu + n]], ku == n);
                let new_v = self.eval(vv, &[fv[pv], seg_u, bv[pv + 1]], false);
                new_u + new_v
            } else {
                let seg_v = self.between(rv, pv, pv + m - 1);
                let new_u = self.eval(vu, &[fu[pu - 1], seg_v, bu[pu + n]], false);
                let new_v = self.eval(vv, &[fv[pv - 1], seg_u, bv[pv + m]], false);
                new_u + new_v
            }
        } else {
            let (a, b) = (pu, pu + n - 1);
            if self.prunable && !self.intra_may_improve(ru, a, b, pv, m) {
                return false;
            }
            let parts = if m == 0 {
                if pv + 1 >= a && pv <= b {
                    return false;
                }
                if !self.intra_relocate_keeps_order(ru, a, b, pv) {
                    return false;
                }
                let f = &self.routes[ru].fwd;
                let bw = &self.routes[ru].bwd;
                if pv < a {
                    vec![
                        f[pv],
                        self.between(ru, a, b),
                        self.between(ru, pv + 1, a - 1),
                        bw[b + 1],
                    ]
                } else {
                    vec![
                        f[a - 1],
                        self.between(ru, b + 1, pv),
                        self.between(ru, a, b),
                        bw[pv + 1],
                    ]
                }
            } else {
                let (c, d) = (pv, pv + m - 1);
                let Some(((s1, e1), (s2, e2))) = in_route_order((a, b), (c, d)) else {
                    return false;
                };
                if !self.closed(ru, s1, e1) || !self.closed(ru, s2, e2) {
                    return false;
                }
                let route = &self.routes[ru];
                let mut parts = vec![route.fwd[s1 - 1], self.between(ru, s2, e2)];
                if e1 + 1 < s2 {
                    parts.push(self.between(ru, e1 + 1, s2 - 1));
                }
                parts.push(self.between(ru, s1, e1));
                parts.push(route.bwd[e2 + 1]);
                parts
            };
            self.eval(vu, &parts, false)
        };
        // Schedule penalties are never negative: a move that does not pay without them
        // cannot pay with them, so the costly exact schedule is timed only for the rest.
        if new - old >= -EPS {
            return false;
        }
        let (lu, lv) = self.exchange_lists(ru, pu, n, rv, pv, m);
        if self.data.exact_schedule
            && new + self.exact_cost(vu, &lu) + lv.as_ref().map_or(0.0, |l| self.exact_cost(vv, l))
                - old
                >= -EPS
        {
            return false;
        }
        self.routes[ru].nodes = lu;
        self.update(ru);
        if let Some(lv) = lv {
            self.routes[rv].nodes = lv;
            self.update(rv);
        }
        true
    }

    /// Travel bound for moving `a..=b` after `p` (`m == 0`) or swapping it with `p..p+m` in
    /// the same route: false when the move cannot beat the current cost.
    fn intra_may_improve(&self, r: usize, a: usize, b: usize, p: usize, m: usize) -> bool {
        let l = |i| self.loc(r, i);
        let v = self.routes[r].vehicle;
        let delta = if m == 0 {
            if p + 1 >= a && p <= b {
                return false;
            }
            self.travel_delta(
                v,
                &[(l(a - 1), l(a)), (l(b), l(b + 1)), (l(p), l(p + 1))],
                &[(l(a - 1), l(b + 1)), (l(p), l(a)), (l(b), l(p + 1))],
            )
        } else {
            let (c, d) = (p, p + m - 1);
            let Some(((s1, e1), (s2, e2))) = in_route_order((a, b), (c, d)) else {
                return false;
            };
            if e1 + 1 == s2 {
                self.travel_delta(
                    v,
                    &[(l(s1 - 1), l(s1)), (l(e1), l(s2)), (l(e2), l(e2 + 1))],
                    &[(l(s1 - 1), l(s2)), (l(e2), l(s1)), (l(e1), l(e2 + 1))],
                )
            } else {
                self.travel_delta(
                    v,
                    &[
                        (l(s1 - 1), l(s1)),
                        (l(e1), l(e1 + 1)),
                        (l(s2 - 1), l(s2)),
                        (l(e2), l(e2 + 1)),
                    ],
                    &[
                        (l(s1 - 1), l(s2)),
                        (l(e2), l(e1 + 1)),
                        (l(s2 - 1), l(s1)),
                        (l(e1), l(e2 + 1)),
                    ],
                )
            }
        };
        delta - self.routes[r].penalty < -EPS
    }

    /// Whether moving positions `a..=b` after `p` in the same route keeps every pickup
    /// before its delivery.
    fn intra_relocate_keeps_order(&self, r: usize, a: usize, b: usize, p: usize) -> bool {
        let route = &self.routes[r];
        (a..=b).all(|i| {
            let node = &self.data.nodes[route.nodes[i - 1]];
            let Some(q) = node.partner else { return true };
            let qp = self.pos_of[q];
            if (a..=b).contains(&qp) {
                return true;
            }
            let pickup = node.side == crate::model::Side::Pickup;
            if p < a {
                // Block moves earlier, past positions p+1..a-1.
                !(!pickup && qp > p && qp < a)
            } else {
                // Block moves later, past positions b+1..=p.
                !(pickup && qp > b && qp <= p)
            }
        })
    }

    /// The part of route `r` from position `from` to its end depot, ending instead at the end
    /// depot of vehicle `v`.
    fn tail_for(&self, r: usize, from: usize, v: usize) -> Seg {
        let route = &self.routes[r];
        let end = self.data.end_seg(v);
        if self.data.end_seg(route.vehicle) == end {
            return route.bwd[from];
        }
        if from > route.len() {
            return end;
        }
        self.data.concat(&self.between(r, from, route.len()), &end)
    }

    /// 2-opt*: route `ru` keeps positions up to `pu` and takes `rv`'s tail after `pv`; `rv`
    /// keeps up to `pv` and takes `ru`'s tail.
    fn tails(&mut self, ru: usize, pu: usize, rv: usize, pv: usize) -> bool {
        if self.routes[ru].open[pu] != 0 || self.routes[rv].open[pv] != 0 {
            return false;
        }
        let (vu, vv) = (self.routes[ru].vehicle, self.routes[rv].vehicle);
        let (ku, kv) = (self.routes[ru].len(), self.routes[rv].len());
        if self.prunable
            && self.same_rates(vu, vv)
            && self.data.vehicles[vu].end == self.data.vehicles[vv].end
        {
            let (a, b) = (self.loc(ru, pu), self.loc(ru, pu + 1));
            let (c, e) = (self.loc(rv, pv), self.loc(rv, pv + 1));
            let mut bound = self.travel_delta(vu, &[(a, b), (c, e)], &[(a, e), (c, b)])
                - self.routes[ru].penalty
                - self.routes[rv].penalty;
            if pv == 0 && pu >= ku {
                bound -= self.data.vehicles[vv].fixed;
            }
            if bound >= -EPS {
                return false;
            }
        }
        let new_u = self.eval(
            vu,
            &[self.routes[ru].fwd[pu], self.tail_for(rv, pv + 1, vu)],
            pu == 0 && pv >= kv,
        );
        let new_v = self.eval(
            vv,
            &[self.routes[rv].fwd[pv], self.tail_for(ru, pu + 1, vv)],
            pv == 0 && pu >= ku,
        );
        let mut new = new_u + new_v;
        let old = self.routes[ru].cost + self.routes[rv].cost;
        if new - old >= -EPS {
            return false;
        }
        if self.data.exact_schedule {
            let (u, v) = (&self.routes[ru].nodes, &self.routes[rv].nodes);
            new += self.exact_cost(vu, &[&u[..pu], &v[pv..]].concat())
                + self.exact_cost(vv, &[&v[..pv], &u[pu..]].concat());
            if new - old >= -EPS {
                return false;
            }
        }
        let tail_u: Vec<usize> = self.routes[ru].nodes.drain(pu..).collect();
        let tail_v: Vec<usize> = self.routes[rv].nodes.drain(pv..).collect();
        self.routes[ru].nodes.extend(tail_v);
        self.routes[rv].nodes.extend(tail_u);
        self.update(ru);
        self.update(rv);
        true
    }

    /// Best insertion of a pickup `p` and delivery `d` into route `r` (neither in it), either
    /// with the pickup right after position `anchor`, or anywhere (`anchor == NONE`).
    /// Returns (new route cost, pickup position, delivery position) as "insert after".
    fn best_pair_insertion(
        &self,
        r: usize,
        p: usize,
        d: usize,
        anchor: usize,
    ) -> Option<(f64, usize, usize)> {
        let route = &self.routes[r];
        let k = route.len();
        let (sp, sd) = (self.data.node_seg(p), self.data.node_seg(d));
        let mut best: Option<(f64, usize, usize)> = None;
        let starts: Vec<usize> = if anchor == NONE {
            (0..=k).collect()
        } else {
            vec![anchor]
        };
        for i in starts {
            let head = self.data.concat(&route.fwd[i], &sp);
            // Delivery right after the pickup, then after each later position.
            let mut mid = head;
            for j in i..=k {
                if j > i {
                    mid = self.data.concat(&mid, &self.seg_at(r, j));
                }
                let with_d = self.data.concat(&mid, &sd);
                let full = self.data.concat(&with_d, &route.bwd[j + 1]);
                let c = self.data.penalised(route.vehicle, &full, self.pen);
                if best.is_none_or(|b| c < b.0) {
                    best = Some((c, i, j));
                }
                // Warp only grows with longer segments: no later delivery position can win.
                if best.is_some_and(|b| self.pen.warp * mid.warp > b.0) {
                    break;
                }
            }
        }
        best
    }

    /// Moves the pair of `u` into route `rv` (different from its own), pickup after `anchor`
    /// if `u` is the pickup, else delivery after `anchor`.
    fn pair_relocate(&mut self, u: usize, rv: usize, anchor: usize) -> bool {
        let ru = self.route_of[u];
        if ru == rv {
            return false;
        }
        let partner = self.data.nodes[u].partner.expect("pair node");
        let (p, d) = if self.data.nodes[u].side == crate::model::Side::Pickup {
            (u, partner)
        } else {
            (partner, u)
        };
        if self.routes[rv].nodes.is_empty() && self.routes[ru].len() > 2 && !self.may_open() {
            return false;
        }
        let (pp, pd) = (self.pos_of[p], self.pos_of[d]);
        let route = &self.routes[ru];
        let mut parts = vec![route.fwd[pp - 1]];
        if pp + 1 < pd {
            parts.push(self.between(ru, pp + 1, pd - 1));
        }
        parts.push(route.bwd[pd + 1]);
        let new_u = self.eval(route.vehicle, &parts, route.len() == 2);
        let insertion = if u == p {
            self.best_pair_insertion(rv, p, d, anchor)
        } else {
            self.best_delivery_anchored(rv, p, d, anchor)
        };
        let Some((new_v, i, j)) = insertion else {
            return false;
        };
        let mut new = new_u + new_v;
        let old = self.routes[ru].cost + self.routes[rv].cost;
        if new - old >= -EPS {
            return false;
        }
        if self.data.exact_schedule {
            let rest: Vec<usize> = self.routes[ru]
                .nodes
                .iter()
                .copied()
                .filter(|&x| x != p && x != d)
                .collect();
            let mut with = self.routes[rv].nodes.clone();
            with.insert(j, d);
            with.insert(i, p);
            new += self.exact_cost(self.routes[ru].vehicle, &rest)
                + self.exact_cost(self.routes[rv].vehicle, &with);
            if new - old >= -EPS {
                return false;
            }
        }
        self.routes[ru].nodes.retain(|&x| x != p && x != d);
        self.routes[rv].nodes.insert(j, d);
        self.routes[rv].nodes.insert(i, p);
        self.update(ru);
        self.update(rv);
        true
    }

    /// Best insertion with the delivery right after `anchor` and the pickup at or before it.
    fn best_delivery_anchored(
        &self,
        r: usize,
        p: usize,
        d: usize,
        anchor: usize,
    ) -> Option<(f64, usize, usize)> {
        let route = &self.routes[r];
        let (sp, sd) = (self.data.node_seg(p), self.data.node_seg(d));
        let tail = self.data.concat(&sd, &route.bwd[anchor + 1]);
        let mut best: Option<(f64, usize, usize)> = None;
        let mut mid = tail;
        for i in (0..=anchor).rev() {
            if i < anchor {
                mid = self.data.concat(&self.seg_at(r, i + 1), &mid);
            }
            let full = self
                .data
                .concat(&self.data.concat(&route.fwd[i], &sp), &mid);
            let c = self.data.penalised(route.vehicle, &full, self.pen);
            if best.is_none_or(|b| c < b.0) {
                best = Some((c, i, anchor));
            }
        }
        best
    }

    /// Inserts every unrouted request at its cheapest position near its neighbours.
    fn insert_missing(&mut self, rng: &mut impl Rng) {
        let mut missing: Vec<usize> = (0..self.data.nodes.len())
            .filter(|&n| self.route_of[n] == NONE && self.data.nodes[n].inserted_first())
            .collect();
        missing.shuffle(rng);
        for u in missing {
            let partner = self.data.nodes[u].partner;
            let mut candidates: Vec<usize> = self.data.neighbours[u]
                .iter()
                .chain(partner.iter().flat_map(|&q| self.data.neighbours[q].iter()))
                .map(|&w| self.route_of[w])
                .filter(|&r| r != NONE)
                .collect();
            if self.may_open() {
                let mut seen_types = Vec::new();
                for (r, route) in self.routes.iter().enumerate() {
                    let t = self.data.vehicles[route.vehicle].vehicle_type;
                    if route.nodes.is_empty() && !seen_types.contains(&t) {
                        seen_types.push(t);
                        candidates.push(r);
                    }
                }
            }
            if candidates.is_empty() {
                // At the fleet cap with no neighbour routed: any route in use.
                candidates
                    .extend((0..self.routes.len()).filter(|&r| !self.routes[r].nodes.is_empty()));
            }
            candidates.sort_unstable();
            candidates.dedup();
            let mut best: Option<(f64, usize, usize, usize)> = None;
            for r in candidates {
                let old = self.routes[r].cost;
                let found = match partner {
                    Some(d) => self.best_pair_insertion(r, u, d, NONE),
                    None => self.best_single_insertion(r, u).map(|(c, i)| (c, i, i)),
                };
                if let Some((c, i, j)) = found
                    && best.is_none_or(|b| c - old < b.0)
                {
                    best = Some((c - old, r, i, j));
                }
            }
            let Some((_, r, i, j)) = best else { continue };
            if let Some(d) = partner {
                self.routes[r].nodes.insert(j, d);
            }
            self.routes[r].nodes.insert(i, u);
            self.update(r);
        }
    }

    fn best_single_insertion(&self, r: usize, u: usize) -> Option<(f64, usize)> {
        let route = &self.routes[r];
        let su = self.data.node_seg(u);
        (0..=route.len())
            .map(|i| {
                let full = self
                    .data
                    .concat(&self.data.concat(&route.fwd[i], &su), &route.bwd[i + 1]);
                (self.data.penalised(route.vehicle, &full, self.pen), i)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }
}

/// Two disjoint index ranges of one route, first the one that comes first; `None` when they
/// overlap.
fn in_route_order(
    x: (usize, usize),
    y: (usize, usize),
) -> Option<((usize, usize), (usize, usize))> {
    if x.1 < y.0 {
        Some((x, y))
    } else if y.1 < x.0 {
        Some((y, x))
    } else {
        None
    }
}
