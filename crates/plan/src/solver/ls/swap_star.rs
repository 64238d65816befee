//! SWAP* (Vidal 2020, "Hybrid genetic search for the CVRP: open-source implementation and
//! SWAP* neighborhood"): exchange a node `u` of one route with a node `v` of another, each
//! reinserted at its best place in the other route instead of in the other's position.
//!
//! For each pair of routes whose polar sectors around their depots overlap, removal costs and
//! insertion costs (the three cheapest places, and the exchanged node's place) are costed with
//! travel and time warp from cached segments, the load penalty from the route totals; the best
//! candidate pair is then costed exactly and applied if it pays. For single-stop requests
//! only (pairs move together).

use super::{EPS, LocalSearch, Seg};

/// Angles in 1/65536 of a turn.
const TURN: i32 = 1 << 16;

fn wrap(a: i32) -> i32 {
    a.rem_euclid(TURN)
}

/// The smallest arc around the depot holding a route's stops (Vidal's circle sector).
#[derive(Debug, Clone, Copy)]
struct Sector {
    start: i32,
    end: i32,
}

impl Sector {
    fn new(angle: i32) -> Self {
        Self {
            start: angle,
            end: angle,
        }
    }

    fn contains(&self, a: i32) -> bool {
        wrap(a - self.start) <= wrap(self.end - self.start)
    }

    fn extend(&mut self, a: i32) {
        if !self.contains(a) {
            if wrap(a - self.end) <= wrap(self.start - a) {
                self.end = a;
            } else {
                self.start = a;
            }
        }
    }

    fn overlaps(&self, other: &Sector) -> bool {
        wrap(other.start - self.start) <= wrap(self.end - self.start)
            || wrap(self.start - other.start) <= wrap(other.end - other.start)
    }
}

/// Where a node goes in the other route: after position `p` (0 = the start depot) of the
/// route as it was, or in the place of the node it is exchanged with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    After(usize),
    Instead,
}

impl<'d, 'a> LocalSearch<'d, 'a> {
    /// Whether SWAP* applies: single-stop requests and no exact schedule to keep.
    pub(super) fn swap_star_applies(&self) -> bool {
        !self.has_pairs && !self.data.exact_schedule
    }

    fn sector(&self, r: usize) -> Option<Sector> {
        let route = &self.routes[r];
        let locs = &self.data.inst.locations;
        let depot = &locs[self.data.vehicles[route.vehicle].start];
        let mut sector: Option<Sector> = None;
        for &n in &route.nodes {
            let l = &locs[self.data.nodes[n].loc];
            let turn = (l.y - depot.y).atan2(l.x - depot.x) / std::f64::consts::TAU;
            let a = wrap((turn * TURN as f64) as i32);
            match &mut sector {
                Some(s) => s.extend(a),
                None => sector = Some(Sector::new(a)),
            }
        }
        sector
    }

    /// One pass of SWAP* over the pairs of routes changed since they were last tried;
    /// returns whether any exchange was applied.
    pub(super) fn swap_star(&mut self) -> bool {
        let n = self.routes.len();
        let mut sectors: Vec<Option<Sector>> = (0..n).map(|r| self.sector(r)).collect();
        let mut improved = false;
        for ru in 0..n {
            let tested = self.swap_tested[ru];
            self.swap_tested[ru] = self.step;
            // Each pair of routes once (the exchange is symmetric), as in HGS-CVRP.
            for rv in ru + 1..n {
                if self.routes[ru].modified.max(self.routes[rv].modified) <= tested {
                    continue;
                }
                let (Some(a), Some(b)) = (sectors[ru], sectors[rv]) else {
                    continue;
                };
                if a.overlaps(&b) && self.swap_star_routes(ru, rv) {
                    improved = true;
                    sectors[ru] = self.sector(ru);
                    sectors[rv] = self.sector(rv);
                }
            }
        }
        improved
    }

    /// Cost of a route segment without its load penalty: travel, fixed cost and time warp.
    fn timed_cost(&self, r: usize, seg: &Seg) -> f64 {
        let v = self.routes[r].vehicle;
        self.data.base_cost(v, seg) + self.pen.warp * seg.warp
    }

    /// [`Self::timed_cost`] of route `r` made of `parts`.
    fn timed(&self, r: usize, parts: &[Seg]) -> f64 {
        let mut s = parts[0];
        for p in &parts[1..] {
            s = self.data.concat(&s, p);
        }
        self.timed_cost(r, &s)
    }

    /// The three cheapest places for node `x` in route `r` (travel and time warp), as
    /// (cost increase, position after which to insert), cheapest first.
    fn top_three(&self, r: usize, x: usize) -> [(f64, usize); 3] {
        let route = &self.routes[r];
        let k = route.len();
        let now = self.timed_cost(r, &route.fwd[k + 1]);
        let sx = self.data.node_seg(x);
        let at = self.data.nodes[x].loc;
        let rate = self.data.vehicles[route.vehicle].per_distance;
        let mut best = [(f64::INFINITY, usize::MAX); 3];
        for p in 0..=k {
            // Where cost is travel plus warp, the detour alone bounds the increase (warp
            // does not shrink when a stop is added): most places need no segment.
            if self.prunable {
                let (a, b) = (route.locs[p], route.locs[p + 1]);
                let detour = rate * (self.d(a, at) + self.d(at, b) - self.d(a, b));
                if detour >= best[2].0 {
                    continue;
                }
            }
            let c = self.timed(r, &[route.fwd[p], sx, route.bwd[p + 1]]) - now;
            if c < best[2].0 {
                best[2] = (c, p);
                best.sort_by(|x, y| x.0.total_cmp(&y.0));
            }
        }
        best
    }

    /// Cheapest place for `x` in route `r` once its node at position `j` has left: in that
    /// node's place (exact) or at one of the three places found with it still there.
    fn best_place(&self, r: usize, x: usize, j: usize, top: &[(f64, usize); 3]) -> (f64, Place) {
        let route = &self.routes[r];
        let (before, after) = (route.fwd[j - 1], route.bwd[j + 1]);
        let mut best = (
            self.timed(r, &[before, self.data.node_seg(x), after])
                - self.timed(r, &[before, after]),
            Place::Instead,
        );
        if let Some(&(c, p)) = top
            .iter()
            .find(|&&(c, p)| c.is_finite() && p != j - 1 && p != j)
            && c < best.0
        {
            best = (c, Place::After(p));
        }
        best
    }

    /// Node list of route `r` with position `j` replaced by `x` placed at `place`.
    fn swapped_list(&self, r: usize, j: usize, x: usize, place: Place) -> Vec<usize> {
        let mut nodes = self.routes[r].nodes.clone();
        match place {
            Place::Instead => nodes[j - 1] = x,
            Place::After(p) => {
                nodes.remove(j - 1);
                nodes.insert(if p < j { p } else { p - 1 }, x);
            }
        }
        nodes
    }

    /// The best SWAP* exchange between routes `ru` and `rv`, applied if it pays.
    fn swap_star_routes(&mut self, ru: usize, rv: usize) -> bool {
        let removal = |r: usize| -> Vec<f64> {
            let route = &self.routes[r];
            let now = self.timed_cost(r, &route.fwd[route.len() + 1]);
            (1..=route.len())
                .map(|p| self.timed(r, &[route.fwd[p - 1], route.bwd[p + 1]]) - now)
                .collect()
        };
        let (rem_u, rem_v) = (removal(ru), removal(rv));
        let (nu, nv) = (self.routes[ru].nodes.clone(), self.routes[rv].nodes.clone());
        let top_in_v: Vec<[(f64, usize); 3]> = nu.iter().map(|&u| self.top_three(rv, u)).collect();
        let top_in_u: Vec<[(f64, usize); 3]> = nv.iter().map(|&v| self.top_three(ru, v)).collect();
        let load = |r: usize| {
            let route = &self.routes[r];
            route.fwd[route.len() + 1].depot_load + route.fwd[route.len() + 1].peak
        };
        let (load_u, load_v) = (load(ru), load(rv));
        let cap = |r: usize| self.data.vehicles[self.routes[r].vehicle].capacity;
        let (cap_u, cap_v) = (cap(ru), cap(rv));
        let demand = |x: usize| self.data.nodes[x].depot_load + self.data.nodes[x].net.max(0);
        let over = |l: i64, c: i64| self.pen.load * (l - c).max(0) as f64;
        let mut best: Option<(f64, usize, Place, usize, Place)> = None;
        for (i, &u) in nu.iter().enumerate() {
            for (j, &v) in nv.iter().enumerate() {
                let (du, dv) = (demand(u), demand(v));
                let mut delta = rem_u[i] + rem_v[j];
                delta += over(load_u - du + dv, cap_u) - over(load_u - du, cap_u);
                delta += over(load_v - dv + du, cap_v) - over(load_v - dv, cap_v);
                if delta >= -EPS {
                    continue;
                }
                let (into_v, place_u) = self.best_place(rv, u, j + 1, &top_in_v[i]);
                delta += into_v;
                if delta >= -EPS {
                    continue;
                }
                let (into_u, place_v) = self.best_place(ru, v, i + 1, &top_in_u[j]);
                delta += into_u;
                if delta < -EPS && best.is_none_or(|b| delta < b.0) {
                    best = Some((delta, i + 1, place_v, j + 1, place_u));
                }
            }
        }
        let Some((_, pu, place_v, pv, place_u)) = best else {
            return false;
        };
        let (u, v) = (nu[pu - 1], nv[pv - 1]);
        let new_u = self.swapped_list(ru, pu, v, place_v);
        let new_v = self.swapped_list(rv, pv, u, place_u);
        let cost = |r: usize, nodes: &[usize]| {
            let veh = self.routes[r].vehicle;
            let seg = self
                .data
                .route_seg(veh, nodes.iter().map(|&x| self.data.node_seg(x)));
            self.data.penalised(veh, &seg, self.pen)
        };
        let delta =
            cost(ru, &new_u) + cost(rv, &new_v) - self.routes[ru].cost - self.routes[rv].cost;
        if delta >= -EPS {
            return false;
        }
        self.routes[ru].nodes = new_u;
        self.routes[rv].nodes = new_v;
        self.update(ru);
        self.update(rv);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Sector;

    #[test]
    fn sectors_wrap_around_and_overlap() {
        let mut a = Sector::new(65000);
        a.extend(200);
        assert!(a.contains(0) && a.contains(65500) && !a.contains(30000));
        let b = Sector::new(100);
        assert!(a.overlaps(&b) && b.overlaps(&a));
        let mut c = Sector::new(20000);
        c.extend(25000);
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }
}
