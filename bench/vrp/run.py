#!/usr/bin/env python3
"""Runs stadion's routing core against PyVRP, OR-Tools and VROOM on the same VRP instances.

Every solver gets the same integer arc matrix, the same time budget, one thread, and (where the
solver takes one) the same seeds. Each run is a child process; its routes come back as customer
ids and are checked and costed here, by one independent piece of code, under the convention of
the instance's best-known solution (BKS):

* Solomon and Gehring-Homberger (VRPTW), DIMACS 2021 convention: arc = floor(10 * euclid) / 10,
  objective = total distance, at most the instance's vehicle count. The solvers see 10 x arc as
  an integer; so the matrix is exactly the truncated one of the convention.
* Li & Lim (PDPTW), SINTEF convention: fewest routes, then distance in double precision. The
  solvers see round(1000 * euclid) as cost and ceil(1000 * euclid) as travel time (so a schedule
  feasible for them is feasible in exact arithmetic); each route carries a fixed cost that
  dominates any distance.

    bench/vrp/run.py --smoke                      # 3 instances x 1 s: a CI-size run
    bench/vrp/run.py --set solomon --sample 12 --time-limit 10 --seeds 1,2,3
    bench/vrp/run.py --instances C101,R205,RC103 --solvers stadion,pyvrp
    bench/vrp/run.py --from-json a.json,b.json    # one table from earlier runs (e.g. more seeds)

--sample spreads the instances evenly over the classes (C1, C2, R1, R2, RC1, RC2; LC1 ... for
Li & Lim). It prints a markdown table of gaps to the BKS (also written to --markdown): per
instance, mean per class and over the set, and for hierarchical instances the vehicle gap
(routes over BKS routes); it writes every run to --json. OR-Tools and VROOM take no seed and are
deterministic; they run once per instance. The stadion binary is $STADION_BIN, else
$CARGO_TARGET_DIR/release/stadion, else target/release/stadion.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = Path(os.environ.get("STADION_VRP_DATA", REPO.parent / "shared" / "data" / "vrp"))
SOLVERS = ("stadion", "pyvrp", "ortools", "vroom")
DETERMINISTIC = {"ortools", "vroom"}
SMOKE = ["C101", "R201", "RC105"]
# Fixed cost per route in the hierarchical (Li & Lim) runs: above any route set's distance.
ROUTE_COST = 10**9


@dataclass
class Instance:
    name: str
    kind: str  # "vrptw" or "pdptw"
    path: Path
    vehicles: int
    capacity: int
    xy: list[tuple[float, float]]
    demand: list[int]
    ready: list[int]
    due: list[int]
    service: list[int]
    # PDPTW only: delivery node of each pickup (0 elsewhere).
    delivery_of: list[int] = field(default_factory=list)
    scale: int = 10

    @property
    def n(self) -> int:
        return len(self.xy)

    def euclid(self, i: int, j: int) -> float:
        (xi, yi), (xj, yj) = self.xy[i], self.xy[j]
        return math.hypot(xi - xj, yi - yj)

    def cost_matrix(self) -> list[list[int]]:
        """Integer arc costs the solvers minimise (scaled by self.scale)."""
        if self.kind == "vrptw":
            return [[math.floor(10 * self.euclid(i, j)) for j in range(self.n)] for i in range(self.n)]
        return [[round(1000 * self.euclid(i, j)) for j in range(self.n)] for i in range(self.n)]

    def time_matrix(self) -> list[list[int]]:
        if self.kind == "vrptw":
            return self.cost_matrix()
        return [[math.ceil(1000 * self.euclid(i, j)) for j in range(self.n)] for i in range(self.n)]


def read_instance(path: Path) -> Instance:
    lines = [ln.split() for ln in path.read_text().splitlines()]
    name = path.stem
    if path.parent.name == "lilim":
        vehicles, capacity, _speed = (int(float(v)) for v in lines[0][:3])
        rows = [[int(float(v)) for v in ln] for ln in lines[1:] if len(ln) >= 9]
        inst = Instance(name, "pdptw", path, vehicles, capacity, [], [], [], [], [], scale=1000)
        inst.delivery_of = []
        for r in rows:
            inst.xy.append((float(r[1]), float(r[2])))
            inst.demand.append(r[3])
            inst.ready.append(r[4])
            inst.due.append(r[5])
            inst.service.append(r[6])
            inst.delivery_of.append(r[8])
        # Li & Lim times are integers in distance units; scale them like the matrix.
        inst.ready = [1000 * v for v in inst.ready]
        inst.due = [1000 * v for v in inst.due]
        inst.service = [1000 * v for v in inst.service]
        return inst
    vehicles = capacity = None
    rows = []
    for i, ln in enumerate(lines):
        if ln[:2] == ["NUMBER", "CAPACITY"]:
            nxt = next(x for x in lines[i + 1 :] if x)
            vehicles, capacity = int(nxt[0]), int(nxt[1])
        elif len(ln) == 7 and all(tok.lstrip("-").isdigit() for tok in ln):
            rows.append([int(v) for v in ln])
    if vehicles is None or not rows:
        raise ValueError(f"{path}: not a Solomon/Homberger file")
    inst = Instance(name, "vrptw", path, vehicles, capacity, [], [], [], [], [], scale=10)
    for r in rows:
        inst.xy.append((float(r[1]), float(r[2])))
        inst.demand.append(r[3])
        inst.ready.append(10 * r[4])
        inst.due.append(10 * r[5])
        inst.service.append(10 * r[6])
    return inst


def find_instance(name: str) -> Path:
    for folder in ("solomon", "homberger", "lilim"):
        for p in (DATA / folder).glob("*.txt"):
            if p.stem.lower() == name.lower():
                return p
    raise SystemExit(f"no instance named {name} under {DATA}")


def instance_class(name: str) -> str:
    """Class of an instance from its name: C101 -> C1, RC2_2_1 -> RC2, lrc104 -> LRC1."""
    m = re.match(r"([A-Za-z]+)(\d)", name)
    return (m.group(1) + m.group(2)).upper() if m else name.upper()


def stratified_sample(names: list[str], k: int) -> list[str]:
    """k names spread evenly over the classes (seeded shuffle inside each class, then round robin)."""
    rng = random.Random(0)
    by_class: dict[str, list[str]] = {}
    for n in sorted(names):
        by_class.setdefault(instance_class(n), []).append(n)
    for members in by_class.values():
        rng.shuffle(members)
    picked: list[str] = []
    while len(picked) < k:
        for members in by_class.values():
            if members and len(picked) < k:
                picked.append(members.pop())
    return sorted(picked, key=lambda n: (instance_class(n), n))


def load_bks() -> dict[str, tuple[int | None, float]]:
    """Instance name (lower case) -> (routes or None, distance) under the instance's convention."""
    bks: dict[str, tuple[int | None, float]] = {}
    with open(DATA / "bks_dimacs.csv") as f:
        for row in csv.DictReader(f):
            bks[row["instance"].lower()] = (None, float(row["bks_distance"]))
    with open(DATA / "bks_sintef.csv") as f:
        for row in csv.DictReader(f):
            if row["benchmark"] == "LiLim":
                key = row["instance"].lower()
                cand = (int(row["routes"]), float(row["distance"]))
                if key not in bks or cand < bks[key]:  # type: ignore[operator]
                    bks[key] = cand
    return bks


# ---------------------------------------------------------------- the independent checker


def check(inst: Instance, routes: list[list[int]]) -> tuple[float, list[str]]:
    """Returns (objective distance under the instance's convention, list of violations)."""
    errors: list[str] = []
    routes = [r for r in routes if r]
    if len(routes) > inst.vehicles:
        errors.append(f"{len(routes)} routes > {inst.vehicles} vehicles")
    seen: dict[int, int] = {}
    cost = inst.cost_matrix()
    tt = inst.time_matrix()
    total = 0.0
    for k, route in enumerate(routes):
        load = 0 if inst.kind == "pdptw" else sum(inst.demand[c] for c in route)
        if load > inst.capacity:
            errors.append(f"route {k}: load {load} > capacity {inst.capacity}")
        t, prev, dist = inst.ready[0], 0, 0.0
        for pos, c in enumerate(route + [0]):
            if c != 0:
                if not 0 < c < inst.n:
                    errors.append(f"route {k}: unknown customer {c}")
                    break
                if c in seen:
                    errors.append(f"customer {c} visited twice")
                seen[c] = k
            t = max(t + inst.service[prev] + tt[prev][c], inst.ready[c])
            if t > inst.due[c]:
                errors.append(f"route {k} stop {pos}: customer {c} served at {t / inst.scale} > due {inst.due[c] / inst.scale}")
            if inst.kind == "pdptw" and c != 0:
                load += inst.demand[c]
                if load > inst.capacity:
                    errors.append(f"route {k}: load {load} > capacity at customer {c}")
                d = inst.delivery_of[c]
                if d and d not in route[pos + 1 :]:
                    errors.append(f"route {k}: pickup {c} without its delivery {d} later on the route")
            dist += inst.euclid(prev, c) if inst.kind == "pdptw" else cost[prev][c] / 10
            prev = c
        total += dist
    missing = [c for c in range(1, inst.n) if c not in seen]
    if missing:
        errors.append(f"{len(missing)} customers not served (first {missing[:5]})")
    return round(total, 4), errors


# ---------------------------------------------------------------- solvers (child processes)


def solve_pyvrp(inst: Instance, seed: int, budget: float) -> list[list[int]]:
    import numpy as np
    from pyvrp import Client, Depot, Location, ProblemData, Shipment, VehicleType, solve
    from pyvrp.stop import MaxRuntime

    locs = [Location(x, y) for x, y in inst.xy]
    depots = [Depot(0, tw_early=inst.ready[0], tw_late=inst.due[0])]
    fixed = ROUTE_COST if inst.kind == "pdptw" else 0
    vt = VehicleType(inst.vehicles, [inst.capacity], 0, 0, fixed_cost=fixed, tw_early=inst.ready[0], tw_late=inst.due[0])
    dist = np.array(inst.cost_matrix(), dtype=np.int64)
    dur = np.array(inst.time_matrix(), dtype=np.int64)
    if inst.kind == "vrptw":
        clients = [
            Client(i, delivery=[inst.demand[i]], service_duration=inst.service[i], tw_early=inst.ready[i], tw_late=inst.due[i])
            for i in range(1, inst.n)
        ]
        data = ProblemData(locs, clients, depots, [vt], [dist], [dur])
    else:
        shipments = []
        for p in range(1, inst.n):
            d = inst.delivery_of[p]
            if not d:
                continue
            shipments.append(
                Shipment(p, d, inst.ready[p], inst.due[p], inst.service[p], inst.ready[d], inst.due[d], inst.service[d], amount=[inst.demand[p]], name=f"{p}")
            )
        data = ProblemData(locs, [], depots, [vt], [dist], [dur], shipments=shipments)
    res = solve(data, stop=MaxRuntime(budget), seed=seed, display=False)
    # Activities name clients by client index and shipments by shipment index.
    pairs = [(p, inst.delivery_of[p]) for p in range(1, inst.n) if inst.kind == "pdptw" and inst.delivery_of[p]]
    routes = []
    for route in res.best.routes():
        stops = []
        for act in route.schedule():
            if act.is_client():
                stops.append(act.idx + 1)
            elif act.is_shipment():
                stops.append(pairs[act.idx][0 if act.is_pickup() else 1])
        routes.append(stops)
    return routes


def solve_ortools(inst: Instance, seed: int, budget: float) -> list[list[int]]:
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    n, k = inst.n, inst.vehicles
    cost, tt = inst.cost_matrix(), inst.time_matrix()
    manager = pywrapcp.RoutingIndexManager(n, k, 0)
    routing = pywrapcp.RoutingModel(manager)
    arc = routing.RegisterTransitCallback(lambda a, b: cost[manager.IndexToNode(a)][manager.IndexToNode(b)])
    routing.SetArcCostEvaluatorOfAllVehicles(arc)
    if inst.kind == "pdptw":
        routing.SetFixedCostOfAllVehicles(ROUTE_COST)

    def travel(a: int, b: int) -> int:
        i, j = manager.IndexToNode(a), manager.IndexToNode(b)
        return inst.service[i] + tt[i][j]

    horizon = inst.due[0]
    routing.AddDimension(routing.RegisterTransitCallback(travel), horizon, horizon, False, "Time")
    time_dim = routing.GetDimensionOrDie("Time")
    for node in range(1, n):
        time_dim.CumulVar(manager.NodeToIndex(node)).SetRange(inst.ready[node], inst.due[node])
    for v in range(k):
        time_dim.CumulVar(routing.Start(v)).SetRange(inst.ready[0], inst.due[0])
        time_dim.CumulVar(routing.End(v)).SetRange(inst.ready[0], inst.due[0])
    demand = routing.RegisterUnaryTransitCallback(lambda a: inst.demand[manager.IndexToNode(a)])
    routing.AddDimensionWithVehicleCapacity(demand, 0, [inst.capacity] * k, inst.kind == "vrptw", "Load")
    if inst.kind == "pdptw":
        solver = routing.solver()
        for p in range(1, n):
            d = inst.delivery_of[p]
            if d:
                pi, di = manager.NodeToIndex(p), manager.NodeToIndex(d)
                routing.AddPickupAndDelivery(pi, di)
                solver.Add(routing.VehicleVar(pi) == routing.VehicleVar(di))
                solver.Add(time_dim.CumulVar(pi) <= time_dim.CumulVar(di))
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    params.time_limit.FromMilliseconds(int(budget * 1000))
    sol = routing.SolveWithParameters(params)
    if sol is None:
        return []
    routes = []
    for v in range(k):
        idx, stops = sol.Value(routing.NextVar(routing.Start(v))), []
        while not routing.IsEnd(idx):
            stops.append(manager.IndexToNode(idx))
            idx = sol.Value(routing.NextVar(idx))
        routes.append(stops)
    return routes


def solve_vroom(inst: Instance, seed: int, budget: float) -> list[list[int]]:
    from datetime import timedelta

    import numpy as np
    import vroom

    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=np.array(inst.time_matrix(), dtype=np.uint32))
    problem.set_costs_matrix(profile="car", matrix_input=np.array(inst.cost_matrix(), dtype=np.uint32))
    tw0 = vroom.TimeWindow(inst.ready[0], inst.due[0])
    fixed = ROUTE_COST // 1000 if inst.kind == "pdptw" else 0  # VROOM costs are 32-bit friendly
    for v in range(inst.vehicles):
        problem.add_vehicle(vroom.Vehicle(v, start=0, end=0, capacity=[inst.capacity], time_window=tw0, costs=vroom.VehicleCosts(fixed=fixed)))
    if inst.kind == "vrptw":
        for i in range(1, inst.n):
            problem.add_job(
                vroom.Job(i, location=i, default_service=inst.service[i], delivery=[inst.demand[i]], time_windows=[vroom.TimeWindow(inst.ready[i], inst.due[i])])
            )
    else:
        for p in range(1, inst.n):
            d = inst.delivery_of[p]
            if d:
                problem.add_shipment(
                    vroom.ShipmentStep(p, location=p, default_service=inst.service[p], time_windows=[vroom.TimeWindow(inst.ready[p], inst.due[p])]),
                    vroom.ShipmentStep(d, location=d, default_service=inst.service[d], time_windows=[vroom.TimeWindow(inst.ready[d], inst.due[d])]),
                    amount=vroom.Amount([inst.demand[p]]),
                )
    sol = problem.solve(exploration_level=5, nb_threads=1, timeout=timedelta(seconds=budget))
    df = sol.routes
    routes: dict[int, list[int]] = {}
    for row in df.itertuples():
        if row.type in ("job", "pickup", "delivery"):
            routes.setdefault(int(row.vehicle_id), []).append(int(row.id))
    return list(routes.values())


def solve_stadion(inst: Instance, seed: int, budget: float) -> list[list[int]]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = os.environ.get("STADION_BIN", str(target / "release" / "stadion"))
    objective = "hierarchical" if inst.kind == "pdptw" else "distance"
    out = subprocess.run(
        [exe, "plan", "solve", str(inst.path), "--time-limit", str(budget), "--seed", str(seed), "--objective", objective, "--quiet", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)["routes"]


def worker(solver: str, path: str, seed: int, budget: float) -> None:
    inst = read_instance(Path(path))
    start = time.perf_counter()
    routes = globals()[f"solve_{solver}"](inst, seed, budget)
    print(json.dumps({"routes": routes, "wall_s": time.perf_counter() - start}))


# ---------------------------------------------------------------- orchestration


def run_one(solver: str, inst: Instance, seed: int, budget: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "_worker", solver, str(inst.path), str(seed), str(budget)]
    rec = {"solver": solver, "instance": inst.name, "seed": seed, "budget_s": budget}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3 * budget + 60, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        stderr = getattr(e, "stderr", "") or ""
        rec.update(ok=False, error=f"{type(e).__name__}: {str(stderr).strip()[-400:]}")
        return rec
    if not any(got["routes"]):
        rec.update(ok=False, error="no solution within the budget", wall_s=round(got["wall_s"], 2))
        return rec
    distance, errors = check(inst, got["routes"])
    rec.update(ok=not errors, errors=errors[:5], distance=distance, routes=len([r for r in got["routes"] if r]), wall_s=round(got["wall_s"], 2))
    return rec


def table(results: list[dict], instances: list[Instance], solvers: list[str], bks: dict) -> str:
    """Per-instance gaps, then means per class and over the set (each solver over its feasible cells).

    Hierarchical instances (BKS with a route count) also get the vehicle gap: routes over the
    BKS routes, in %."""

    def cell(recs: list[dict], inst: Instance) -> tuple[str, dict | None]:
        good = [r for r in recs if r.get("ok")]
        if not recs:
            return "–", None
        if len(good) < len(recs):
            bad = [r for r in recs if not r.get("ok")]
            what = "no solution" if all(r.get("error") == "no solution within the budget" for r in bad) else "failed"
            return f"{len(bad)}/{len(recs)} {what}", None
        b_routes, b_dist = bks[inst.name.lower()]
        stats = {
            "gap": statistics.mean(100 * (r["distance"] - b_dist) / b_dist for r in good),
            "wall": statistics.mean(r["wall_s"] for r in good),
        }
        txt = f"{stats['gap']:.2f}"
        if b_routes is not None:
            veh = statistics.mean(r["routes"] for r in good)
            stats["vgap"] = 100 * (veh - b_routes) / b_routes
            stats["veh"], stats["bks_veh"] = veh, b_routes
            if veh == b_routes:
                # A distance gap compares like with like only at the BKS's route count.
                stats["gap_at_bks_v"] = stats["gap"]
            txt += f" ({veh:.1f} v)"
        return txt, stats

    head = "| instance | BKS | " + " | ".join(solvers) + " |\n|---|---:|" + "---:|" * len(solvers) + "\n"
    body = ""
    # solver -> list of (class, stats) over the instances it solved feasibly
    solved: dict[str, list[tuple[str, dict]]] = {s: [] for s in solvers}
    for inst in instances:
        b_routes, b_dist = bks[inst.name.lower()]
        row = f"| {inst.name} | {b_dist:g}" + (f" ({b_routes} v)" if b_routes is not None else "") + " |"
        for s in solvers:
            txt, stats = cell([r for r in results if r["solver"] == s and r["instance"] == inst.name], inst)
            row += f" {txt} |"
            if stats is not None:
                solved[s].append((instance_class(inst.name), stats))
        body += row + "\n"

    def summary(label: str, key: str, classes: set[str] | None, total: int, fmt: str = ".2f") -> str:
        row = f"| {label} | |"
        for s in solvers:
            vals = [st[key] for c, st in solved[s] if key in st and (classes is None or c in classes)]
            row += f" {statistics.mean(vals):{fmt}} ({len(vals)}/{total}) |" if vals else " – |"
        return row + "\n"

    classes = sorted({instance_class(i.name) for i in instances})
    if len(classes) > 1:
        for c in classes:
            body += summary(f"mean gap % {c}", "gap", {c}, sum(instance_class(i.name) == c for i in instances))
    body += summary("**mean gap %**", "gap", None, len(instances))
    if any(bks[i.name.lower()][0] is not None for i in instances):
        body += summary("mean gap % where routes = BKS routes", "gap_at_bks_v", None, len(instances))
        body += summary("**mean vehicle gap %**", "vgap", None, len(instances))
        row = "| total routes (BKS total: excess) | |"
        for s in solvers:
            got = [st for _, st in solved[s] if "veh" in st]
            if got:
                veh, ref = sum(st["veh"] for st in got), sum(st["bks_veh"] for st in got)
                row += f" {veh:g} ({ref}: {100 * (veh - ref) / ref:+.2f} %) |"
            else:
                row += " – |"
        body += row + "\n"
    body += summary("mean solver wall s", "wall", None, len(instances), ".1f")
    return head + body


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help=f"CI-size run: {', '.join(SMOKE)} at 1 s, one seed")
    ap.add_argument("--set", choices=["solomon", "homberger200", "lilim100"], help="instance family")
    ap.add_argument("--instances", help="comma-separated instance names (overrides --set)")
    ap.add_argument("--sample", type=int, help="take this many instances of the set (seeded, spread over classes)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per run (default 10)")
    ap.add_argument("--seeds", default="1,2,3", help="seeds for the seeded solvers (default 1,2,3)")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help=f"subset of {','.join(SOLVERS)}")
    ap.add_argument("--json", type=Path, default=HERE / "results.json", help="every run, with its check")
    ap.add_argument("--markdown", type=Path, default=HERE / "results.md", help="the table of gaps")
    ap.add_argument("--from-json", help="comma-separated --json files of earlier runs: only rebuild the table from them")
    args = ap.parse_args()
    bks = load_bks()

    if args.from_json:
        results = [r for f in args.from_json.split(",") for r in json.loads(Path(f).read_text())]
        names = sorted(dict.fromkeys(r["instance"] for r in results), key=lambda n: (instance_class(n), n))
        solvers = [s for s in SOLVERS if any(r["solver"] == s for r in results)]
        budgets = sorted({r["budget_s"] for r in results})
        seeds = sorted({r["seed"] for r in results})
        loads = [r["load1"] for r in results if "load1" in r]
        instances = [read_instance(find_instance(n)) for n in names]
        report(results, instances, solvers, bks, budgets[0] if len(budgets) == 1 else budgets, seeds, loads, args.markdown)
        return

    if args.smoke:
        names, budget, seeds = SMOKE, 1.0, [1]
    else:
        budget, seeds = args.time_limit, [int(s) for s in args.seeds.split(",")]
        if args.instances:
            names = args.instances.split(",")
        elif args.set:
            folder, pick = {
                "solomon": ("solomon", lambda p: True),
                "homberger200": ("homberger", lambda p: p.stem.split("_")[1] == "2"),
                "lilim100": ("lilim", lambda p: "_" not in p.stem),
            }[args.set]
            names = sorted(p.stem for p in (DATA / folder).glob("*.txt") if pick(p))
            if args.sample and args.sample < len(names):
                names = stratified_sample(names, args.sample)
        else:
            ap.error("give --smoke, --set, --instances or --from-json")
    solvers = args.solvers.split(",")
    instances = [read_instance(find_instance(n)) for n in names]
    results, loads = [], [os.getloadavg()[0]]
    for inst in instances:
        for s in solvers:
            for seed in seeds[:1] if s in DETERMINISTIC else seeds:
                rec = run_one(s, inst, seed, budget)
                rec["load1"] = os.getloadavg()[0]
                results.append(rec)
                loads.append(rec["load1"])
                status = f"{rec['distance']:.1f} ({rec['routes']} routes)" if rec.get("ok") else f"FAILED {rec.get('errors') or rec.get('error')}"
                print(f"{inst.name:10} {s:8} seed {seed}: {status}", file=sys.stderr, flush=True)
    args.json.write_text(json.dumps(results, indent=1))
    report(results, instances, solvers, bks, budget, seeds, loads, args.markdown)
    if any(not r.get("ok") for r in results):
        sys.exit(1)


def report(results: list[dict], instances: list[Instance], solvers: list[str], bks: dict, budget, seeds: list[int], loads: list[float], out: Path) -> None:
    """Writes the table of gaps (with the run conditions above it) to `out` and prints it."""
    secs = f"{budget:g} s" if isinstance(budget, float) else "/".join(f"{b:g}" for b in budget) + " s"
    md = (
        f"Gap to BKS in % (mean over seeds; v = routes), {secs} per run, one thread, "
        f"seeds {','.join(map(str, seeds))} (OR-Tools and VROOM: one run, they take no seed)."
        + (f" Load average (1 min) after each run: mean {statistics.mean(loads):.1f}, range {min(loads):.1f}-{max(loads):.1f}." if loads else "")
        + "\n\n"
        + table(results, instances, solvers, bks)
    )
    out.write_text(md)
    print(md)

if __name__ == "__main__":
    main()
