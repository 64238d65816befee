//! Hybrid genetic search (Vidal et al. 2012/2013; Wouda, Lan and Kool 2024, PyVRP): a
//! population of locally optimal solutions, feasible and infeasible kept apart, selected by
//! a fitness that rewards both cost and diversity (broken-pairs distance); offspring from
//! selective route exchange (SREX), educated by [`ls::LocalSearch`] under capacity and
//! time-warp penalties that adapt to keep a target share of feasible offspring; infeasible
//! offspring are repaired with boosted penalties.

pub(crate) mod data;
pub(crate) mod ls;
pub(crate) mod routemin;
pub(crate) mod trips;

use crate::check::{Violation, Violations, check};
use crate::config::{Progress, SolveConfig};
use crate::model::{
    Instance, InstanceError, Objective, Reason, Route, Solution, Unassigned, VisitKind,
};
use crate::schedule::schedule;
use data::{Data, NONE, Penalties};
use ls::LocalSearch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use routemin::RouteMin;
use std::time::Instant;
use thiserror::Error;

/// Why [`solve`] gave no solution.
#[derive(Debug, Error)]
pub enum SolveError {
    #[error("invalid instance: {0}")]
    Instance(#[from] InstanceError),
    /// A bug: the solver's own result did not pass the independent checker.
    #[error("the solver's result failed the checker: {0}")]
    Check(#[from] Violations),
}

/// Population sizes and rates (PyVRP's defaults where it has them).
const MIN_POP: usize = 25;
const GENERATION: usize = 40;
const ELITE: usize = 4;
const CLOSE: usize = 5;
const GRANULARITY: usize = 40;
const TARGET_FEASIBLE: f64 = 0.65;
const PENALTY_WINDOW: usize = 25;
const REPAIR_PROBABILITY: f64 = 0.8;
const REPAIR_BOOST: f64 = 10.0;
const ITERATIONS_BEFORE_RESTART: u64 = 20_000;
/// Most of the time limit spent building a population (the first, or one after a restart or
/// a route fewer) before crossover starts.
const INITIAL_SHARE: f64 = 0.2;
/// Share of the time limit kept for the final repair while no feasible solution is known.
const REPAIR_SHARE: f64 = 0.1;
/// Share of the time limit the route minimisation after the initial population may take
/// (hierarchical objective).
const ROUTE_MIN_SHARE: f64 = 0.3;
/// Share of the requests taken out of the best solution (with one route) to seed the
/// population after a route fewer.
const RUIN_SHARE: f64 = 0.1;

/// A complete assignment of nodes to vehicles with its cost components.
#[derive(Debug, Clone)]
struct Indiv {
    routes: Vec<Vec<usize>>,
    /// Fixed, distance and time costs (with the hierarchical vehicle weight), break time
    /// included: what the checker charges once the breaks are placed as the solver places
    /// them.
    base: f64,
    excess: i64,
    warp: f64,
    /// Vehicles the trips need beyond the fleet (types with several trips per vehicle), and
    /// its price.
    fleet_excess: usize,
    fleet_penalty: f64,
    vehicles: usize,
    /// Successor and predecessor of every node (`NONE` for a depot), for diversity.
    succ: Vec<usize>,
    pred: Vec<usize>,
}

impl Indiv {
    fn new(data: &Data, routes: Vec<Vec<usize>>) -> Self {
        let n = data.nodes.len();
        let (mut base, mut excess, mut warp, mut vehicles) = (0.0, 0, 0.0, 0);
        let mut succ = vec![NONE; n];
        let mut pred = vec![NONE; n];
        // Trip spans per vehicle type with several trips per vehicle.
        let mut spans: Vec<Vec<trips::Span>> = vec![Vec::new(); data.inst.vehicle_types.len()];
        for (v, r) in routes.iter().enumerate() {
            if r.is_empty() {
                continue;
            }
            let seg = data.route_seg(v, r.iter().map(|&x| data.node_seg(x)));
            if data.vehicles[v].trips > 1 {
                spans[data.vehicles[v].vehicle_type].push(data.span(v, &seg));
            }
            let exact = data.exact(v, r);
            base += data.base_cost(v, &seg) + data.vehicles[v].per_time * exact.time;
            excess += data.excess(v, &seg);
            warp += seg.warp + exact.excess;
            vehicles += 1;
            for w in r.windows(2) {
                succ[w[0]] = w[1];
                pred[w[1]] = w[0];
            }
        }
        let mut fleet_excess = 0;
        for (t, spans) in spans.iter().enumerate() {
            let vt = &data.inst.vehicle_types[t];
            if !spans.is_empty() {
                let needed = trips::chain(spans, vt.reload_time, vt.max_trips, |_, _| true).len();
                fleet_excess += needed.saturating_sub(vt.count);
            }
        }
        Self {
            routes,
            base,
            excess,
            warp,
            fleet_excess,
            fleet_penalty: data.vehicle_penalty * fleet_excess as f64,
            vehicles,
            succ,
            pred,
        }
    }

    fn feasible(&self) -> bool {
        self.excess == 0 && self.warp <= 1e-9 && self.fleet_excess == 0
    }

    fn penalised(&self, p: Penalties) -> f64 {
        self.base + p.load * self.excess as f64 + p.warp * self.warp + self.fleet_penalty
    }

    /// Broken-pairs distance in [0, 1].
    fn distance(&self, other: &Indiv) -> f64 {
        let n = self.succ.len().max(1);
        let broken = (0..self.succ.len())
            .filter(|&j| self.succ[j] != other.succ[j] && self.succ[j] != other.pred[j])
            .count();
        broken as f64 / n as f64
    }
}

/// A subpopulation: members with their mutual distances and biased fitness.
#[derive(Default)]
struct SubPop {
    members: Vec<Indiv>,
    dist: Vec<Vec<f64>>,
    fitness: Vec<f64>,
}

impl SubPop {
    fn add(&mut self, ind: Indiv, p: Penalties) {
        let row: Vec<f64> = self.members.iter().map(|m| m.distance(&ind)).collect();
        for (d, x) in self.dist.iter_mut().zip(&row) {
            d.push(*x);
        }
        let mut row = row;
        row.push(0.0);
        self.dist.push(row);
        self.members.push(ind);
        if self.members.len() > MIN_POP + GENERATION {
            while self.members.len() > MIN_POP {
                self.update_fitness(p);
                let clone =
                    |i: usize| (0..self.members.len()).any(|j| j != i && self.dist[i][j] < 1e-12);
                let worst = (0..self.members.len())
                    .max_by(|&a, &b| {
                        (clone(a), self.fitness[a])
                            .partial_cmp(&(clone(b), self.fitness[b]))
                            .expect("finite")
                    })
                    .expect("non-empty");
                self.remove(worst);
            }
        }
        self.update_fitness(p);
    }

    /// Keeps the members that `keep` accepts; returns the others.
    fn retain(&mut self, keep: impl Fn(&Indiv) -> bool, p: Penalties) -> Vec<Indiv> {
        let mut gone = Vec::new();
        // Backwards: `remove` moves the last member, already kept, into the gap.
        for i in (0..self.members.len()).rev() {
            if !keep(&self.members[i]) {
                gone.push(self.remove(i));
            }
        }
        self.update_fitness(p);
        gone
    }

    fn remove(&mut self, i: usize) -> Indiv {
        let gone = self.members.swap_remove(i);
        self.dist.swap_remove(i);
        for d in &mut self.dist {
            d.swap_remove(i);
        }
        gone
    }

    fn update_fitness(&mut self, p: Penalties) {
        let m = self.members.len();
        self.fitness = vec![0.0; m];
        if m <= 1 {
            return;
        }
        let mut by_cost: Vec<usize> = (0..m).collect();
        by_cost.sort_by(|&a, &b| {
            self.members[a]
                .penalised(p)
                .total_cmp(&self.members[b].penalised(p))
        });
        let diversity: Vec<f64> = (0..m)
            .map(|i| {
                let mut d: Vec<f64> = (0..m)
                    .filter(|&j| j != i)
                    .map(|j| self.dist[i][j])
                    .collect();
                d.sort_by(f64::total_cmp);
                let k = CLOSE.min(d.len());
                d[..k].iter().sum::<f64>() / k as f64
            })
            .collect();
        let mut by_div: Vec<usize> = (0..m).collect();
        by_div.sort_by(|&a, &b| diversity[b].total_cmp(&diversity[a]));
        let mut div_rank = vec![0.0; m];
        for (r, &i) in by_div.iter().enumerate() {
            div_rank[i] = r as f64 / (m - 1) as f64;
        }
        let elite_weight = 1.0 - ELITE.min(m) as f64 / m as f64;
        for (r, &i) in by_cost.iter().enumerate() {
            self.fitness[i] = r as f64 / (m - 1) as f64 + elite_weight * div_rank[i];
        }
    }
}

struct Search<'d, 'a> {
    data: &'d Data<'a>,
    objective: Objective,
    rng: StdRng,
    ls: LocalSearch<'d, 'a>,
    routemin: RouteMin<'d, 'a>,
    pen: Penalties,
    feasible: SubPop,
    infeasible: SubPop,
    load_history: Vec<bool>,
    warp_history: Vec<bool>,
    best: Option<Indiv>,
    best_infeasible: Option<Indiv>,
    /// Members taken out of the population after a route fewer ([`Self::reduced_start`]).
    purged: Vec<Indiv>,
}

impl<'d, 'a> Search<'d, 'a> {
    fn educate(&mut self, routes: &[Vec<usize>]) -> Indiv {
        self.ls.load(routes, self.pen);
        self.ls.search(&mut self.rng);
        let ind = Indiv::new(self.data, self.ls.export());
        self.load_history.push(ind.excess == 0);
        self.warp_history.push(ind.warp <= 1e-9);
        if !ind.feasible() && self.rng.random_bool(REPAIR_PROBABILITY) {
            // Repair with boosted penalties, boosting once more if that is not enough.
            // The second time, requests are first taken out of the infeasible routes.
            for (boost, unload) in [(REPAIR_BOOST, false), (REPAIR_BOOST * REPAIR_BOOST, true)] {
                let boosted = Penalties {
                    load: self.pen.load * boost,
                    warp: self.pen.warp * boost,
                };
                self.ls.load(&ind.routes, boosted);
                if unload {
                    self.ls.unload_infeasible();
                }
                self.ls.search(&mut self.rng);
                let repaired = Indiv::new(self.data, self.ls.export());
                if repaired.feasible() {
                    self.insert(ind);
                    return repaired;
                }
            }
        }
        ind
    }

    /// Adds to the population; returns true if it is a new best feasible solution.
    fn insert(&mut self, ind: Indiv) -> bool {
        let improved = ind.feasible() && self.best.as_ref().is_none_or(|b| self.better(&ind, b));
        if improved {
            self.best = Some(ind.clone());
        }
        if ind.feasible() {
            self.feasible.add(ind, self.pen);
        } else {
            if self
                .best_infeasible
                .as_ref()
                .is_none_or(|b| ind.penalised(self.pen) < b.penalised(self.pen))
            {
                self.best_infeasible = Some(ind.clone());
            }
            self.infeasible.add(ind, self.pen);
        }
        improved
    }

    /// The objective's order on feasible solutions: cost, or vehicles then cost.
    fn better(&self, a: &Indiv, b: &Indiv) -> bool {
        let cost = |x: &Indiv| x.base - self.data.vehicle_weight * x.vehicles as f64;
        match self.objective {
            Objective::Cost => cost(a) < cost(b) - 1e-9,
            Objective::Hierarchical => (a.vehicles, cost(a) + 1e-9) < (b.vehicles, cost(b)),
        }
    }

    fn adapt_penalties(&mut self) {
        let adapt = |history: &mut Vec<bool>, weight: &mut f64| {
            if history.len() < PENALTY_WINDOW {
                return;
            }
            let share = history.iter().filter(|&&f| f).count() as f64 / history.len() as f64;
            if share < TARGET_FEASIBLE - 0.05 {
                *weight = (*weight * 1.25).min(1e6);
            } else if share > TARGET_FEASIBLE + 0.05 {
                *weight = (*weight * 0.85).max(0.01);
            }
            history.clear();
        };
        adapt(&mut self.load_history, &mut self.pen.load);
        adapt(&mut self.warp_history, &mut self.pen.warp);
    }

    fn tournament(&mut self) -> &Indiv {
        let total = self.feasible.members.len() + self.infeasible.members.len();
        let pick = |rng: &mut StdRng| rng.random_range(0..total);
        let (a, b) = (pick(&mut self.rng), pick(&mut self.rng));
        let get = |i: usize| -> (&Indiv, f64) {
            if i < self.feasible.members.len() {
                (&self.feasible.members[i], self.feasible.fitness[i])
            } else {
                let j = i - self.feasible.members.len();
                (&self.infeasible.members[j], self.infeasible.fitness[j])
            }
        };
        let (x, y) = (get(a), get(b));
        if x.1 <= y.1 { x.0 } else { y.0 }
    }

    /// Selective route exchange: a run of `A`'s routes (by polar angle) replaces the
    /// closest run of `B`'s; nodes left out are reinserted by the local search.
    fn srex(&mut self, a: &Indiv, b: &Indiv) -> Vec<Vec<usize>> {
        let angle_order = |ind: &Indiv| -> Vec<(f64, usize)> {
            let mut rs: Vec<(f64, usize)> = ind
                .routes
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_empty())
                .map(|(v, r)| {
                    let depot = &self.data.inst.locations[self.data.vehicles[v].start];
                    let (mut x, mut y) = (0.0, 0.0);
                    for &n in r {
                        let l = &self.data.inst.locations[self.data.nodes[n].loc];
                        x += l.x - depot.x;
                        y += l.y - depot.y;
                    }
                    (y.atan2(x), v)
                })
                .collect();
            rs.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
            rs
        };
        let (oa, ob) = (angle_order(a), angle_order(b));
        if oa.is_empty() || ob.is_empty() {
            return b.routes.clone();
        }
        let k = self.rng.random_range(1..=oa.len().min(ob.len()));
        let start_a = self.rng.random_range(0..oa.len());
        // B's run starts at the route nearest in angle to A's first, so that the runs overlap.
        let angular = |x: f64, y: f64| {
            let d = (x - y).abs() % std::f64::consts::TAU;
            d.min(std::f64::consts::TAU - d)
        };
        let start_b = (0..ob.len())
            .min_by(|&i, &j| {
                angular(ob[i].0, oa[start_a].0).total_cmp(&angular(ob[j].0, oa[start_a].0))
            })
            .expect("non-empty");
        let from_a: Vec<usize> = (0..k).map(|i| oa[(start_a + i) % oa.len()].1).collect();
        let from_b: Vec<usize> = (0..k).map(|i| ob[(start_b + i) % ob.len()].1).collect();
        let n = self.data.nodes.len();
        let mut in_a = vec![false; n];
        for &v in &from_a {
            for &x in &a.routes[v] {
                in_a[x] = true;
            }
        }
        // Two children: A's routes kept whole (B's other routes lose those nodes), or B's
        // other routes kept whole (A's routes lose what they contain).
        let mut best: Option<(f64, Vec<Vec<usize>>)> = None;
        for keep_a in [true, false] {
            let mut routes = b.routes.clone();
            for &v in &from_b {
                routes[v].clear();
            }
            let mut in_rest = vec![false; n];
            if keep_a {
                for r in &mut routes {
                    r.retain(|&x| !in_a[x]);
                }
            } else {
                for r in &routes {
                    for &x in r {
                        in_rest[x] = true;
                    }
                }
            }
            for &v in &from_a {
                let nodes: Vec<usize> = a.routes[v]
                    .iter()
                    .copied()
                    .filter(|&x| !in_rest[x])
                    .collect();
                let slot = if routes[v].is_empty() {
                    Some(v)
                } else {
                    let t = self.data.vehicles[v].vehicle_type;
                    (0..routes.len())
                        .filter(|&w| routes[w].is_empty())
                        .min_by_key(|&w| (self.data.vehicles[w].vehicle_type != t, w))
                };
                if let Some(s) = slot {
                    routes[s] = nodes;
                }
            }
            // Pairs split by the exchange would break precedence: drop their halves.
            let mut count = vec![0u8; self.data.inst.requests.len()];
            for r in &routes {
                for &x in r {
                    count[self.data.nodes[x].request] += 1;
                }
            }
            for r in &mut routes {
                r.retain(|&x| {
                    self.data.nodes[x].partner.is_none() || count[self.data.nodes[x].request] == 2
                });
            }
            let cost = Indiv::new(self.data, routes.clone()).penalised(self.pen);
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, routes));
            }
        }
        best.expect("two candidates").1
    }

    /// Guided ejection search ([`RouteMin`]) on the best solution until `until`: on success
    /// (one route fewer) the solution enters the population, the local search then opens no
    /// route beyond its count, and true is returned.
    fn remove_route(&mut self, until: Instant) -> bool {
        let Some(best) = &self.best else { return false };
        let routes = best.routes.clone();
        let Some(fewer) = self
            .routemin
            .remove_route(&routes, &mut self.rng, until, usize::MAX)
        else {
            return false;
        };
        let ind = Indiv::new(self.data, fewer);
        if !ind.feasible() {
            return false;
        }
        // Members with more routes can no longer become the best: the search goes on
        // from the new count.
        let cap = ind.vehicles;
        self.ls.max_routes = cap;
        self.purged = self.feasible.retain(|m| m.vehicles <= cap, self.pen);
        self.purged
            .extend(self.infeasible.retain(|m| m.vehicles <= cap, self.pen));
        self.insert(ind)
    }

    /// A start for the population after a route fewer: a member taken out for having more
    /// routes, without its smallest routes; once none is left, the best solution with one
    /// random route and a few random requests taken out. The local search puts the requests
    /// back without opening routes.
    fn reduced_start(&mut self) -> Vec<Vec<usize>> {
        let cap = self.ls.max_routes;
        if let Some(member) = self.purged.pop() {
            let mut routes = member.routes;
            let mut used: Vec<usize> = (0..routes.len())
                .filter(|&r| !routes[r].is_empty())
                .collect();
            used.sort_by_key(|&r| routes[r].len());
            for &r in &used[..used.len().saturating_sub(cap)] {
                routes[r].clear();
            }
            return routes;
        }
        let mut routes = self.best.as_ref().expect("a best solution").routes.clone();
        let used: Vec<usize> = (0..routes.len())
            .filter(|&r| !routes[r].is_empty())
            .collect();
        routes[used[self.rng.random_range(0..used.len())]].clear();
        let out: Vec<usize> = (0..self.data.inst.requests.len())
            .filter(|_| self.rng.random_bool(RUIN_SHARE))
            .collect();
        for r in &mut routes {
            r.retain(|&x| !out.contains(&self.data.nodes[x].request));
        }
        routes
    }

    /// The best feasible solution without its smallest route, for route minimisation.
    fn without_smallest_route(&self, ind: &Indiv) -> Vec<Vec<usize>> {
        let mut routes = ind.routes.clone();
        if let Some(v) = (0..routes.len())
            .filter(|&v| !routes[v].is_empty())
            .min_by_key(|&v| routes[v].len())
        {
            routes[v].clear();
        }
        routes
    }
}

/// Solves `instance`; the result has passed [`check`].
pub fn solve(instance: &Instance, config: &SolveConfig) -> Result<Solution, SolveError> {
    instance.validate()?;
    let started = Instant::now();
    let data = Data::new(instance, config.objective, GRANULARITY);
    // One unit of time warp weighs like the distance cost of ten units of travel time.
    let (mut dist_sum, mut time_sum) = (0.0, 0.0);
    for i in 0..instance.locations.len() {
        for j in 0..instance.locations.len() {
            dist_sum += instance.distance.get(i, j);
            time_sum += instance.duration.get(i, j);
        }
    }
    let per_distance = data
        .vehicles
        .iter()
        .map(|v| v.per_distance + v.per_time)
        .fold(0.0, f64::max)
        .max(1e-3);
    let n2 = (instance.locations.len() * instance.locations.len()).max(1) as f64;
    // With fixed costs, a unit of excess load or a travel time's worth of warp must weigh
    // about a vehicle's share, or the search prefers overloading to opening a route.
    let fixed = |t: &crate::model::VehicleType| t.fixed_cost;
    let most_fixed = instance.vehicle_types.iter().map(fixed).fold(0.0, f64::max);
    let warp = (10.0 * per_distance * dist_sum / time_sum.max(1e-9))
        .max(most_fixed / (time_sum / n2).max(1e-9))
        .clamp(0.1, 1e4);
    let mut search = Search {
        data: &data,
        objective: config.objective,
        rng: StdRng::seed_from_u64(config.seed),
        ls: LocalSearch::new(&data),
        routemin: RouteMin::new(&data),
        pen: Penalties {
            load: (data.max_dist
                / instance
                    .requests
                    .iter()
                    .map(|r| r.demand)
                    .max()
                    .unwrap_or(1)
                    .max(1) as f64)
                .max(
                    instance
                        .vehicle_types
                        .iter()
                        .map(|t| fixed(t) / t.capacity.max(1) as f64)
                        .fold(0.0, f64::max),
                )
                .clamp(0.1, 1000.0),
            warp,
        },
        feasible: SubPop::default(),
        infeasible: SubPop::default(),
        load_history: Vec::new(),
        warp_history: Vec::new(),
        best: None,
        best_infeasible: None,
        purged: Vec::new(),
    };
    let empty = vec![Vec::new(); data.vehicles.len()];
    let deadline = started + config.time_limit;
    // While nothing feasible is known, the search stops early enough to leave the final
    // repair a share of the budget.
    let search_deadline = |search: &Search| {
        if search.best.is_some() {
            deadline
        } else {
            started + config.time_limit.mul_f64(1.0 - REPAIR_SHARE)
        }
    };
    let out_of_time = |search: &Search, iteration: u64| {
        Instant::now() >= search_deadline(search)
            || config.max_iterations.is_some_and(|m| iteration >= m)
    };
    let report = |search: &Search, iteration: u64| {
        if let (Some(cb), Some(best)) = (&config.progress, &search.best) {
            cb(&Progress {
                elapsed: started.elapsed(),
                iteration,
                vehicles: best.vehicles,
                cost: best.base - data.vehicle_weight * best.vehicles as f64,
            });
        }
    };
    let reached_target = |search: &Search| {
        config.target.is_some_and(|t| {
            search
                .best
                .as_ref()
                .is_some_and(|b| b.base - data.vehicle_weight * b.vehicles as f64 <= t + 1e-9)
        })
    };
    // Route minimisation needs every route to be a vehicle of its own.
    let route_min =
        config.objective == Objective::Hierarchical && data.vehicles.iter().all(|v| v.trips == 1);
    // Takes routes out of the best solution while the route minimisation's share of the
    // budget lasts; true if any.
    let minimise_routes = |search: &mut Search, iteration: u64| {
        let until = (Instant::now() + config.time_limit.mul_f64(ROUTE_MIN_SHARE))
            .min(search_deadline(search));
        let mut fewer = false;
        while search.remove_route(until) {
            fewer = true;
            report(search, iteration);
        }
        fewer
    };
    let mut route_min_pending = route_min;
    let mut iteration = 0u64;
    let mut last_improvement = 0u64;
    'outer: loop {
        // (Re)start: a population of randomised cheapest-insertion solutions, or, once
        // the route minimisation has taken routes out, of starts at its count.
        let filling = Instant::now();
        while search.feasible.members.len() + search.infeasible.members.len() < MIN_POP {
            if out_of_time(&search, iteration) {
                break 'outer;
            }
            // Where one local search takes long against the budget, crossover starts early.
            // Timed from the start of this filling: after a route fewer, the population
            // holds only the new best until it is rebuilt at the new count (timed from the
            // start of the search, that rebuild was cut off after two members).
            let members = search.feasible.members.len() + search.infeasible.members.len();
            if members >= 2 && filling.elapsed() > config.time_limit.mul_f64(INITIAL_SHARE) {
                break;
            }
            search.ls.deadline = Some(search_deadline(&search));
            let start = if search.ls.max_routes < usize::MAX {
                search.reduced_start()
            } else {
                empty.clone()
            };
            let ind = search.educate(&start);
            if search.insert(ind) {
                report(&search, iteration);
            }
            search.adapt_penalties();
        }
        while !out_of_time(&search, iteration) && !reached_target(&search) {
            if route_min_pending && search.best.is_some() {
                // After the initial population (started from the first feasible solution,
                // an easy reduction leaves a population of near copies and costs distance);
                // after a route fewer, the population is rebuilt at the new count.
                route_min_pending = false;
                if minimise_routes(&mut search, iteration) {
                    continue 'outer;
                }
            }
            iteration += 1;
            search.ls.deadline = Some(search_deadline(&search));
            let routes = match (&search.best, config.objective) {
                (Some(best), Objective::Hierarchical) if iteration.is_multiple_of(50) => {
                    let best = best.clone();
                    search.without_smallest_route(&best)
                }
                _ => {
                    let a = search.tournament().clone();
                    let b = search.tournament().clone();
                    search.srex(&a, &b)
                }
            };
            let child = search.educate(&routes);
            if search.insert(child) {
                last_improvement = iteration;
                report(&search, iteration);
            }
            search.adapt_penalties();
            if iteration - last_improvement > ITERATIONS_BEFORE_RESTART {
                search.feasible = SubPop::default();
                search.infeasible = SubPop::default();
                last_improvement = iteration;
                continue 'outer;
            }
        }
        break;
    }
    report(&search, iteration);
    // Nothing feasible in time: take requests out of the infeasible routes of the best
    // infeasible solution, let the local search put them back where they fit under heavy
    // penalties while time is left, and take out again whatever still breaks a constraint;
    // those requests are returned unassigned.
    if search.best.is_none()
        && let Some(inf) = search.best_infeasible.clone()
    {
        search.ls.deadline = Some(deadline);
        let boosted = Penalties {
            load: search.pen.load * 1e3,
            warp: search.pen.warp * 1e3,
        };
        search.ls.load(&inf.routes, boosted);
        search.ls.unload_infeasible();
        if Instant::now() < deadline {
            search.ls.search(&mut search.rng);
            search.ls.unload_infeasible();
        }
        search.best_infeasible = Some(Indiv::new(&data, search.ls.export()));
    }
    let best = search
        .best
        .or(search.best_infeasible)
        .unwrap_or_else(|| Indiv::new(&data, empty.clone()));
    // Requests the repair took out go wherever they still fit; the rest found every vehicle
    // that could carry them busy.
    search.ls.load(&best.routes, search.pen);
    let busy: Vec<usize> = search
        .ls
        .insert_feasible()
        .into_iter()
        .map(|n| data.nodes[n].request)
        .collect();
    let solution = finish(&data, &search.ls.export(), &busy);
    check(instance, &solution)?;
    Ok(solution)
}

/// Turns node lists into a timed [`Solution`]: breaks are placed where they fit, requests on
/// routes that still break a constraint are dropped (a last resort: the solver's own schedule
/// found them feasible), requests in no route are listed with why: `busy` ones found every
/// vehicle that could carry them busy, the others could not be served at all.
fn finish(data: &Data, routes: &[Vec<usize>], busy: &[usize]) -> Solution {
    let inst = data.inst;
    let mut unassigned = data.unservable.clone();
    let mut dropped = Vec::new();
    let mut out = Vec::new();
    for (v, nodes) in routes.iter().enumerate() {
        let mut nodes = nodes.clone();
        let vt = data.vehicles[v].vehicle_type;
        loop {
            if nodes.is_empty() {
                break;
            }
            // Breaks where the search costed them, so that the checker's cost is the
            // search's; elsewhere if that schedule fails after all.
            let planned = schedule(inst, vt, &data.visits(v, &nodes));
            if passes(inst, &planned) {
                out.push(planned);
                break;
            }
            let kinds: Vec<VisitKind> = nodes
                .iter()
                .map(|&n| VisitKind::Request {
                    request: data.nodes[n].request,
                    side: data.nodes[n].side,
                })
                .collect();
            if let Some(route) = place_breaks(inst, vt, &kinds) {
                out.push(route);
                break;
            }
            // Drop the request whose removal leaves the least penalised route.
            let worst = nodes
                .iter()
                .map(|&n| data.nodes[n].request)
                .min_by(|&a, &b| {
                    let cost = |r: usize| {
                        let rest: Vec<usize> = nodes
                            .iter()
                            .copied()
                            .filter(|&x| data.nodes[x].request != r)
                            .collect();
                        let s = data.route_seg(v, rest.iter().map(|&x| data.node_seg(x)));
                        (s.warp + data.schedule_excess(v, &rest)) * 1e6
                            + data.excess(v, &s) as f64 * 1e6
                            + s.dist
                    };
                    cost(a).total_cmp(&cost(b))
                })
                .expect("non-empty");
            nodes.retain(|&x| data.nodes[x].request != worst);
            dropped.push(worst);
        }
    }
    let (out, left_out) = chain_trips(data, out);
    let busy: Vec<usize> = busy.iter().copied().chain(left_out).collect();
    let mut seen = vec![false; inst.requests.len()];
    for r in &out {
        for v in &r.visits {
            if let VisitKind::Request { request, .. } = v.kind {
                seen[request] = true;
            }
        }
    }
    let screened: Vec<usize> = unassigned.iter().map(|u| u.request).collect();
    for (request, s) in seen.iter().enumerate() {
        if *s || screened.contains(&request) {
            continue;
        }
        let reason = if busy.contains(&request) && !dropped.contains(&request) {
            Reason::FleetBusy {
                vehicles: data.capable[request],
            }
        } else {
            Reason::NotPlaced
        };
        unassigned.push(Unassigned { request, reason });
    }
    unassigned.sort_by_key(|u| u.request);
    Solution {
        routes: out,
        unassigned,
    }
}

/// Chains the trips of vehicle types allowed several trips per vehicle into vehicle days, a
/// reload at the depot between trips ([`trips::chain`], each chain checked with its breaks
/// placed again). Trips that would need more vehicles than the type has are left out (the
/// ones serving fewest requests): their requests are returned.
fn chain_trips(data: &Data, routes: Vec<Route>) -> (Vec<Route>, Vec<usize>) {
    let inst = data.inst;
    let mut out = Vec::new();
    let mut left = Vec::new();
    let mut by_type: Vec<Vec<Route>> = vec![Vec::new(); inst.vehicle_types.len()];
    for r in routes {
        if inst.vehicle_types[r.vehicle_type].max_trips > 1 {
            by_type[r.vehicle_type].push(r);
        } else {
            out.push(r);
        }
    }
    for (t, trips) in by_type.into_iter().enumerate() {
        if trips.is_empty() {
            continue;
        }
        let vt = &inst.vehicle_types[t];
        let kinds: Vec<Vec<VisitKind>> = trips
            .iter()
            .map(|r| {
                r.visits
                    .iter()
                    .map(|v| v.kind)
                    .filter(|k| !matches!(k, VisitKind::Break(_)))
                    .collect()
            })
            .collect();
        let joined = |chain: &[usize]| {
            let mut all = Vec::new();
            for (i, &c) in chain.iter().enumerate() {
                if i > 0 {
                    all.push(VisitKind::Reload);
                }
                all.extend_from_slice(&kinds[c]);
            }
            all
        };
        // Spans from the solver's segments (breaks are placed again when chaining).
        let v = data.first_vehicle(t);
        let spans: Vec<trips::Span> = kinds
            .iter()
            .map(|k| {
                let nodes = k.iter().filter_map(|&kind| match kind {
                    VisitKind::Request { request, side } => Some(data.node_of(request, side)),
                    _ => None,
                });
                data.span(v, &data.route_seg(v, nodes.map(|n| data.node_seg(n))))
            })
            .collect();
        let chains = trips::chain(&spans, vt.reload_time, vt.max_trips, |chain, next| {
            let mut with = chain.to_vec();
            with.push(next);
            place_breaks(inst, t, &joined(&with)).is_some()
        });
        let mut days: Vec<(Vec<usize>, Route)> = chains
            .into_iter()
            .map(|c| {
                let route = if c.len() == 1 {
                    trips[c[0]].clone()
                } else {
                    place_breaks(inst, t, &joined(&c)).expect("checked while chaining")
                };
                (c, route)
            })
            .collect();
        // Busiest days first; those beyond the fleet are left out.
        days.sort_by_key(|(c, _)| {
            std::cmp::Reverse(c.iter().map(|&i| kinds[i].len()).sum::<usize>())
        });
        for (i, (_, route)) in days.into_iter().enumerate() {
            if i < vt.count {
                out.push(route);
            } else {
                left.extend(route.visits.iter().filter_map(|v| match v.kind {
                    VisitKind::Request { request, .. } => Some(request),
                    _ => None,
                }));
            }
        }
    }
    (out, left)
}

/// Whether `route` alone passes the checker (the requests it leaves out aside).
fn passes(inst: &Instance, route: &Route) -> bool {
    let single = Solution {
        routes: vec![route.clone()],
        unassigned: Vec::new(),
    };
    match check(inst, &single) {
        Ok(_) => true,
        Err(Violations(v)) => v.iter().all(|x| matches!(x, Violation::Missing { .. })),
    }
}

/// Schedules `kinds` with the vehicle type's breaks inserted at the first place each fits;
/// `None` if the route (with its breaks) violates any constraint.
fn place_breaks(inst: &Instance, vt: usize, kinds: &[VisitKind]) -> Option<Route> {
    let ok = |route: &Route| passes(inst, route);
    let mut kinds = kinds.to_vec();
    for b in 0..inst.vehicle_types[vt].breaks.len() {
        let route = schedule(inst, vt, &kinds);
        if ok(&route) {
            return Some(route);
        }
        let placed = (0..=kinds.len()).find_map(|at| {
            let mut with = kinds.clone();
            with.insert(at, VisitKind::Break(b));
            let r = schedule(inst, vt, &with);
            let only_missing_breaks = {
                let single = Solution {
                    routes: vec![r.clone()],
                    unassigned: Vec::new(),
                };
                match check(inst, &single) {
                    Ok(_) => true,
                    Err(Violations(v)) => v.iter().all(|x| {
                        matches!(x, Violation::Missing { .. })
                            || matches!(x, Violation::MissingBreak { index, .. } if *index > b)
                    }),
                }
            };
            only_missing_breaks.then_some(with)
        });
        kinds = placed?;
    }
    let route = schedule(inst, vt, &kinds);
    ok(&route).then_some(route)
}
