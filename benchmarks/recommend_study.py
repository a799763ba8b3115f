"""Evidence that the recommenders work, on the built-in simulators with known theta*.

Run (about 10-15 minutes on 2 cores):

    python benchmarks/recommend_study.py            # 10 seeds, every figure
    python benchmarks/recommend_study.py --seeds 3  # a quicker look
    python benchmarks/recommend_study.py --only shapes --no-offline  # one simulator's closed loop
    python benchmarks/recommend_study.py --classifier  # also method="classifier"
    python benchmarks/recommend_study.py --profiles    # the objective along each parameter through theta*

Figures (medians and spreads over seeds, never one lucky seed):

1. Closed loop (``SimOptimizer``) against random search: simulator calls until
   the best value so far is within 10 % of the best reachable gap, i.e. the
   expected MMD^2 of renders at theta* (the real set has a nuisance no
   configuration renders, so that gap is positive).  Gaussian-mixture simulator
   (5 parameters, one categorical) and the 16x16 shapes simulator embedded by a
   seeded CNN.  Strategies: "gp", "tpe" (and "cmaes" on the mixture), batches
   of 8, and random search with a budget 10-17x larger so that its median is
   measured where it can be.  A run stops once the target is reached.  Runs
   that do not get there within the budget count as "more than the budget"
   (the median is then a lower bound, marked ">", and so is the ratio).  Also
   printed: the standard deviation of one call's MMD^2 at theta* relative to the
   best reachable gap (the noise against which the 10 % target is measured).
2. Offline recommender (``recommend``): per-parameter distance of the
   recommended value from theta*, as a fraction of the explored range (log
   scale for log parameters), against the same distance for the centre of the
   range (what one knows before looking at the data; for a categorical parameter
   the distance is 0 when the recommended choice is theta*'s, 1 otherwise, and
   the "centre" is the first choice).  The weighted mean of each numeric
   parameter (``Recommendation.parameters[k].mean``) is printed beside the
   recommended weighted median.
3. One offline round: the MMD^2 of a fresh round rendered from
   ``Recommendation.sample`` against that of the first round (same size).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import optuna

import simgap
from simgap.simulators import GaussianMixtureSimulator, ShapesSimulator


def _q(values):
    v = np.asarray(values, dtype=float)
    return float(np.median(v)), float(np.quantile(v, 0.25)), float(np.quantile(v, 0.75))


def _fmt(values, budget=None, digits=3):
    med, lo, hi = _q(values)
    mark = ">" if budget is not None and med >= budget else ""
    return f"{mark}{med:.{digits}g} [IQR {lo:.{digits}g}-{hi:.{digits}g}]"


def best_reachable(sim, real, opt, m, reps=8, seed=12345):
    sets = [sim.latent(sim.simulate(sim.true_params, m, seed=seed + r)) for r in range(reps)]
    vals = simgap.mmd2_batch(opt.real, sets, bandwidth=opt.bandwidth, estimator="unbiased")
    return float(vals.mean()), float(vals.std(ddof=1))


def closed_loop(sim, n_real, m, budgets, batch, seeds):
    """``budgets``: strategy -> simulator calls allowed (random search gets a
    larger one, so that its median is measured rather than bounded)."""
    strategies = list(budgets)
    out = {s: [] for s in strategies}
    final = {s: [] for s in strategies}
    secs = {s: [] for s in strategies}
    gstar, gstd = [], []
    for seed in seeds:
        real = sim.real(n_real, seed=1000 + seed)
        for strategy in strategies:
            budget = budgets[strategy]
            t = time.perf_counter()
            opt = simgap.SimOptimizer(sim.space, real, embed=sim.embed, strategy=strategy, batch_size=batch,
                                      seed=seed)
            if strategy == strategies[0]:
                g, sd = best_reachable(sim, real, opt, m)
                gstar.append(g)
                gstd.append(sd)
            counter = iter(range(10**9))
            target = 1.1 * gstar[-1]

            def stop(o, r):  # stop once the target is reached: the calls after it do not change the figure
                if o.best_value <= target:
                    raise StopIteration

            try:
                opt.optimize(lambda c: sim.simulate(c, m, seed=seed * 100_000 + next(counter)),
                             n_rounds=budget // batch, callback=stop)
            except StopIteration:
                pass
            best = opt.convergence()["best"]
            hit = np.flatnonzero(best <= target)
            out[strategy].append(int(hit[0]) + 1 if hit.size else budget + 1)
            final[strategy].append(float(best[-1] / gstar[-1]))
            secs[strategy].append((time.perf_counter() - t) / len(best))
    return out, final, secs, np.array(gstar), np.array(gstd)


def profiles(sim, n_real, m, reps=4, seed=0):
    """The objective along each parameter through theta* (the others at theta*):
    mean MMD^2 of ``reps`` calls / best reachable gap, on 13 points across the
    range; and the fraction of single calls at theta* that meet the 10 % target."""
    real = sim.real(n_real, seed=1000 + seed)
    opt = simgap.SimOptimizer(sim.space, real, embed=sim.embed, seed=seed)

    def calls(cfg, r, s=777):
        sets = [sim.latent(sim.simulate(cfg, m, seed=s + i)) for i in range(r)]
        return simgap.mmd2_batch(opt.real, sets, bandwidth=opt.bandwidth, estimator="unbiased")

    at = calls(sim.true_params, 16)
    g = float(at.mean())
    print(f"  16 calls at theta*: std / mean {at.std(ddof=1) / g:.2f}; meeting the 10 % target "
          f"{np.mean(at <= 1.1 * g):.0%}")
    for k, p in sim.space.items():
        grid = list(p.choices) if isinstance(p, simgap.Categorical) else np.linspace(p.low, p.high, 13)
        vals = [float(calls({**sim.true_params, k: v if isinstance(p, simgap.Categorical) else float(v)},
                            reps).mean()) / g for v in grid]
        print(f"  {k} (theta* {sim.true_params[k]}): " + ", ".join(
            f"{v if isinstance(p, simgap.Categorical) else f'{v:.3g}'}: {r:.2f}" for v, r in zip(grid, vals)))


def _dist(p, value, true):
    if isinstance(p, simgap.Categorical):
        return float(value != true)
    if p.log:
        return abs(math.log(value) - math.log(true)) / (math.log(p.high) - math.log(p.low))
    return abs(value - true) / (p.high - p.low)


def _centre(p):
    if isinstance(p, simgap.Categorical):
        return p.choices[0]
    return math.sqrt(p.low * p.high) if p.log else 0.5 * (p.low + p.high)


def offline(sim, n_real, n_configs, per_config, seeds, method="kmm"):
    dist = {k: [] for k in sim.space}
    dist_mean = {k: [] for k in sim.space}
    prior = {k: [] for k in sim.space}
    gap0, gap1, pred, ess, secs = [], [], [], [], []
    for seed in seeds:
        real = sim.latent(sim.real(n_real, seed=2000 + seed))
        params, syn = sim.design(n_configs, per_config, seed=3000 + seed)
        t = time.perf_counter()
        rec = simgap.recommend(real, syn, params, space=sim.space, method=method, seed=seed)
        secs.append(time.perf_counter() - t)
        for k, p in sim.space.items():
            dist[k].append(_dist(p, rec.config[k], sim.true_params[k]))
            if not isinstance(p, simgap.Categorical):  # the weighted mean (of log(value) for log parameters)
                mean = rec.parameters[k].mean
                dist_mean[k].append(_dist(p, math.exp(mean) if p.log else mean, sim.true_params[k]))
            prior[k].append(_dist(p, _centre(p), sim.true_params[k]))
        nxt = rec.sample(n_configs, seed=seed)
        rows = nxt.loc[nxt.index.repeat(per_config)].reset_index(drop=True)
        syn1 = sim.latent(sim.simulate_table(rows, seed=4000 + seed))
        gap0.append(rec.current_gap)
        gap1.append(simgap.mmd2(real, syn1, estimator="biased", bandwidth=rec.bandwidth))
        pred.append(rec.predicted_gap)
        ess.append(rec.ess_configs)
    return dist, dist_mean, prior, np.array(gap0), np.array(gap1), np.array(pred), ess, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--only", choices=("gmm", "shapes"), help="one simulator only")
    ap.add_argument("--no-offline", action="store_true", help="the closed loop only")
    ap.add_argument("--strategies", help="comma-separated subset of the closed-loop strategies (random always runs)")
    ap.add_argument("--random-calls", type=int, help="random search's budget (default 4000 / 2000)")
    ap.add_argument("--profiles", action="store_true",
                    help="only the objective along each parameter through theta* (seed 0), then stop")
    ap.add_argument("--classifier", action="store_true", help="also the classifier density-ratio method")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    print(f"simgap {simgap.__version__}, optuna {optuna.__version__}, {simgap.build_info()['threads']} threads, "
          f"seeds {seeds[0]}..{seeds[-1]}")

    if args.profiles:
        for key, sim, n_real, m in [("gmm", GaussianMixtureSimulator(), 1000, 250),
                                    ("shapes", ShapesSimulator(), 600, 200)]:
            if args.only in (None, key):
                print(f"\n[profile] {key}: MMD^2 / best reachable gap, mean of 4 calls, others at theta*")
                profiles(sim, n_real, m)
        return

    # 1. closed loop: model-based strategies 240 / 200 calls; random search 4000 / 2000
    for key, name, sim, n_real, m, budgets, batch in [
        ("gmm", "gaussian mixture (5 params)", GaussianMixtureSimulator(), 1000, 250,
         {"gp": 240, "tpe": 240, "cmaes": 240, "random": 4000}, 8),
        ("shapes", "shapes 16x16 + CNN (5 params)", ShapesSimulator(), 600, 200,
         {"gp": 200, "tpe": 200, "random": 2000}, 8),
    ]:
        if args.only not in (None, key):
            continue
        if args.strategies:
            keep = set(args.strategies.split(",")) | {"random"}
            budgets = {s: b for s, b in budgets.items() if s in keep}
        if args.random_calls:
            budgets["random"] = args.random_calls
        t = time.perf_counter()
        calls, final, secs, gstar, gstd = closed_loop(sim, n_real, m, budgets, batch, seeds)
        print(f"\n[closed loop] {name}: real {n_real}, {m} samples per call, batch {batch}; "
              f"best reachable gap (MMD^2 at theta*) {_fmt(gstar)}; one call's std at theta* / that gap "
              f"{_fmt(gstd / gstar, digits=2)}")
        for s, budget in budgets.items():
            print(f"  {s:7s} calls to within 10% of it: {_fmt(calls[s], budget, digits=4)} (budget {budget}); "
                  f"reached in {sum(c <= budget for c in calls[s])}/{len(seeds)} seeds; "
                  f"best / reachable at the stop {_fmt(final[s])}; {_fmt(secs[s], digits=2)} s per call")
            print(f"          per seed: {calls[s]}")
        base = np.asarray(calls["random"], float)
        bound = "" if (base <= budgets["random"]).all() else " (lower bounds: random did not get there in every seed)"
        for s in budgets:
            if s != "random":
                ratio = base / np.asarray(calls[s], float)
                print(f"  random / {s} calls, per seed: median {np.median(ratio):.2f} "
                      f"[IQR {np.quantile(ratio, .25):.2f}-{np.quantile(ratio, .75):.2f}]; "
                      f"ratio of medians {np.median(base) / np.median(calls[s]):.2f}{bound}")
        print(f"  ({time.perf_counter() - t:.0f} s)")

    # 2 + 3. offline
    if not args.no_offline:
        for key, name, sim, n_real, n_configs, per, method in [
            ("gmm", "gaussian mixture", GaussianMixtureSimulator(), 1000, 120, 8, "kmm"),
            ("shapes", "shapes 16x16 + CNN", ShapesSimulator(), 600, 120, 6, "kmm"),
        ] + ([("gmm", "gaussian mixture", GaussianMixtureSimulator(), 1000, 120, 8, "classifier")]
             if args.classifier else []):
            if args.only not in (None, key):
                continue
            t = time.perf_counter()
            dist, dist_mean, prior, g0, g1, pred, ess, secs = offline(sim, n_real, n_configs, per, seeds, method)
            print(f"\n[offline, {method}] {name}: {n_configs} configurations x {per} samples, real {n_real}; "
                  f"recommend() {_fmt(secs)} s; ESS (configurations) {_fmt(ess)}")
            print("  distance from theta* / explored range: recommended (weighted median) vs weighted mean "
                  "vs centre of range")
            for k in sim.space:
                mean = _fmt(dist_mean[k], digits=2) if dist_mean[k] else "-"
                print(f"    {k:9s} {_fmt(dist[k], digits=2):26s} vs {mean:26s} vs {_fmt(prior[k], digits=2)}")
            print(f"  gap MMD^2 first round {_fmt(g0)}; predicted {_fmt(pred)}; after one round {_fmt(g1)}")
            print(f"  gap after / before, per seed: {_fmt(g1 / g0)}  ({time.perf_counter() - t:.0f} s)")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
