"""Seed-1 solvers: time and iterations to a relative gap of 1e-10 (float64) / 1e-5 (float32).

The optimum ``f*`` is the exact solve in float64 with two refinement steps. Each iterative method
runs with its stopping rules off (``tol = gtol = 0``) up to a cap; the iterations to the target
are found by evaluating its iterates in float64, and the time to the target is the median wall
time of the capped run pro-rated to those iterations (the per-iteration cost is constant for
these methods). The methods are timed in interleaved rounds; a call shorter than 50 ms is timed
as the median of a burst of calls (warm, like the long runs).

The whole benchmark runs in ``--processes`` fresh processes (3 by default, one after another);
the JSON reports the medians of the times and of the per-process ratios, with their range
(see :func:`~matgrad_jax.bench.common.in_fresh_processes`). Usage:
    matgrad bench solvers [--dtype float64|float32] [--size 128,64,128,256] [--processes 3]
                          [--quick]
(``--quick``: a smoke run at a tiny size, one case, ``exact`` and the two alternating methods.)
"""

from __future__ import annotations

import argparse
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..fit import fit_advance, fit_problem, fit_start
from ..problems import channel
from ..solvers.result import RUNNING
from .common import (
    add_run_options,
    in_fresh_processes,
    machine,
    median_of,
    median_time,
    print_table,
    process_count,
    shape_of,
    timed_burst,
    write_result,
)

QUICK_METHODS = ("alternating_seed", "alternating")
"""The iterative methods of a ``--quick`` run (beside ``exact``): those of the ratios."""
CAPS = {"alternating_seed": 5000, "alternating": 3000, "cg": 500, "lbfgs": 1000, "adam": 20000}
LABELS = {
    "exact": "exact (G⁻¹ + Woodbury)",
    "alternating_seed": "alternating, as the seed (plain block gradient steps)",
    "alternating": "alternating + exact block preconditioner",
    "cg": "CG + I⊗G⁻¹ preconditioner",
    "lbfgs": "L-BFGS (optax)",
    "adam": "Adam (optax, cosine decay)",
}


def _problem(size, p_condition, dtype, seed=0):
    n, m, k, q = size
    d = channel.make_data(n, m, k, q, noise=0.01, seed=seed, p_condition=p_condition,
                          dtype=jnp.float64)
    data = [d[x] for x in channel.DATA_NAMES]
    exact64 = channel.Problem(*data)
    # f* by the same function that judges every gap (Problem.value), at the exact answer
    f_star = float(exact64.value(*fit_problem(exact64, None, method="exact", refine=2).params))
    return channel.Problem(*data, dtype=dtype), exact64, f_star


def _gap(problem64, f_star, params) -> float:
    x = tuple(jnp.asarray(v, jnp.float64) for v in params)
    return (float(problem64.value(*x)) - f_star) / abs(f_star)


def _iterations_to_target(problem, problem64, f_star, opts, target, cap):
    """First iteration whose iterate is within ``target`` of f*, judged in float64 (the solver's
    own float32 values are too coarse near the optimum). The solver is advanced in chunks that
    grow by 10% (the answer is exact to within a chunk) with the same step as the timed run."""
    if opts["method"] == "exact":
        g = _gap(problem64, f_star, fit_problem(problem, None, **opts).params)
        return (0 if g <= target else None), g
    z = jnp.zeros(problem.shape, problem.dtype)
    state = fit_start(problem, (z, z), **opts)
    best, stop = np.inf, 0
    while stop < cap:
        stop = min(cap, stop + 1 if stop < 10 else int(np.ceil(stop * 1.1)))
        state = fit_advance(problem, state, jnp.asarray(stop, jnp.int32), **opts)
        g = _gap(problem64, f_star, state.x)
        best = min(best, g)
        if g <= target:
            return int(state.k), best
        if int(state.code) != RUNNING:
            break
    return None, best


def _statistics_times(size, p_condition, dtype) -> tuple[float, float]:
    """Median times of the per-data-set statistics that ``channel.Problem`` computes once and
    every method's timing excludes: with the value's reference point (what the benchmark's
    Problem holds) and without it (``reference=False``, all that exact and CG need)."""
    n, m, k, q = size
    d = channel.make_data(n, m, k, q, noise=0.01, seed=0, p_condition=p_condition, dtype=dtype)
    args = tuple(d[x] for x in channel.DATA_NAMES)
    stats = channel.statistics._statistics_jit
    return tuple(median_time(partial(stats, reference=ref), *args, repeats=15)
                 for ref in (True, False))


def bench_case(size, p_condition, dtype, target, repeats, caps, budget_s=20.0, burst_s=1.0):
    problem, problem64, f_star = _problem(size, p_condition, dtype)
    z = jnp.zeros(problem.shape, problem.dtype)
    runs = {}
    for key in ("exact", *caps):
        cap = caps.get(key, 1)
        method = "alternating" if key == "alternating_seed" else key
        opts = dict(method=method, max_iters=cap)
        if key == "alternating_seed":
            opts.update(precondition=False)
        if method != "exact":
            opts.update(tol=0.0, gtol=0.0)
        frozen = tuple(opts.items())
        run = jax.jit(lambda p, x0, o=frozen: fit_problem(p, x0, **dict(o)))
        compiled = run.lower(problem, (z, z)).compile()  # compile without running
        res = jax.block_until_ready(compiled(problem, (z, z)))  # warm
        runs[key] = (compiled, opts, method, int(res.iterations))
    # Interleaved rounds, each method once per round while it still needs samples (at least
    # `repeats`, more, up to 50, for fast ones, fewer for slow ones): the machine's speed drifts,
    # and the ratios must come from the same moments.
    times = {key: [] for key in runs}

    def wants(key):
        t = times[key]
        return (len(t) < repeats and sum(t) < budget_s) or (sum(t) < burst_s and len(t) < 50)

    while any(wants(key) for key in runs):
        for key, (compiled, *_) in runs.items():
            if wants(key):
                last = times[key][-1] if times[key] else None
                times[key].append(timed_burst(compiled, (problem, (z, z)), last))
    rows = {}
    for key, (_compiled, opts, method, taken) in runs.items():
        seconds = float(np.median(times[key]))
        print(f"  {key}: {taken} iterations, {seconds:.4f} s ({len(times[key])} runs)",
              flush=True)
        k, best = _iterations_to_target(problem, problem64, f_star, opts, target,
                                        caps.get(key, 1))
        per_iter = seconds / max(taken, 1)
        rows[key] = {
            "label": LABELS[key], "repeats": len(times[key]),
            "iterations_to_target": k,
            "time_to_target_s": (seconds if method == "exact" else
                                 (None if k is None else k * per_iter)),
            "best_gap": best,
            "iterations_run": taken, "run_s": seconds,
        }
    ex = rows["exact"]["time_to_target_s"]
    ratio = {k: (None if rows[k]["time_to_target_s"] is None else rows[k]["time_to_target_s"] / ex)
             for k in ("alternating_seed", "alternating")}
    return {"size": list(size), "p_condition": p_condition, "target_gap": target,
            "f_star": f_star, "methods": rows,
            **dict(zip(("statistics_s", "statistics_no_reference_s"),
                       _statistics_times(size, p_condition, dtype))),
            "exact_speedup_vs_alternating": ratio["alternating_seed"],
            "exact_speedup_vs_preconditioned_alternating": ratio["alternating"]}


_RATIOS = ("exact_speedup_vs_alternating", "exact_speedup_vs_preconditioned_alternating")


def combine(docs: list[dict]) -> dict:
    """One document from those of several processes: per case and method the median time to
    the target (iterations and gaps are the same in every process: the computation is
    deterministic), the per-process times, and the medians and ranges of the per-process
    ratios."""
    first = docs[0]
    results = []
    for i, r0 in enumerate(first["results"]):
        rs = [d["results"][i] for d in docs]
        methods = {}
        for key, v0 in r0["methods"].items():
            vs = [r["methods"][key] for r in rs]
            methods[key] = {**v0, "repeats": sum(v["repeats"] for v in vs),
                            "time_to_target_s": median_of([v["time_to_target_s"] for v in vs]),
                            "run_s": median_of([v["run_s"] for v in vs]),
                            "time_to_target_s_per_process": [v["time_to_target_s"] for v in vs]}
        out = {**r0, "methods": methods,
               "statistics_s": median_of([r["statistics_s"] for r in rs]),
               "statistics_no_reference_s": median_of([r["statistics_no_reference_s"]
                                                       for r in rs])}
        for key in _RATIOS:
            ratios = [r[key] for r in rs]
            whole = None not in ratios
            out.update({key: median_of(ratios) if whole else None,
                        f"{key}_min": min(ratios) if whole else None,
                        f"{key}_max": max(ratios) if whole else None,
                        f"{key}_per_process": ratios})
        results.append(out)
    return {**first, "processes": len(docs), "results": results,
            "timing": first["timing"] + f"; medians over {len(docs)} fresh processes"}


def _print_case(r, size, dtype, pc, target, count):
    print_table(f"(n, m, k, q) = {size}, {dtype}, P condition {pc:g}: to gap {target:g} "
                f"(from the statistics: {1e3 * r['statistics_s']:.2f} ms once per data set, "
                f"{1e3 * r['statistics_no_reference_s']:.2f} without the reference point)"
                + (f", median of {count} processes" if count > 1 else ""),
                ["method", "iterations", "time ms", "best gap", "vs exact"],
                [[m, "—" if v["iterations_to_target"] is None else v["iterations_to_target"],
                  "not reached" if v["time_to_target_s"] is None
                  else f"{1e3 * v['time_to_target_s']:.2f}", f"{v['best_gap']:.1e}",
                  "—" if v["time_to_target_s"] is None else
                  f"{v['time_to_target_s'] / r['methods']['exact']['time_to_target_s']:.0f}x"]
                 for m, v in r["methods"].items()])
    if count > 1 and r["exact_speedup_vs_alternating"] is not None:
        print(f"exact vs the seed's alternating method: {r['exact_speedup_vs_alternating']:.0f}x "
              f"(median of the per-process ratios; range "
              f"{r['exact_speedup_vs_alternating_min']:.0f}-"
              f"{r['exact_speedup_vs_alternating_max']:.0f}x)")


def _conditions(p, text: str) -> list[float]:
    try:
        values = [float(c) for c in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(np.isfinite(v) and v >= 1 for v in values):
        p.error(f"--conditions: expected comma-separated numbers >= 1, got {text!r}")
    return values


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench solvers", description=__doc__)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--size", type=shape_of("n,m,k,q"), default="128,64,128,256")
    p.add_argument("--conditions", default="1,1000", help="P column-scale spreads")
    add_run_options(p, repeats=3, processes=3)
    a = p.parse_args(argv)
    count = process_count(p, a)
    size = (12, 8, 10, 14) if a.quick else a.size
    conditions = _conditions(p, a.conditions)
    if a.quick:  # a smoke run: one case, one round
        conditions = conditions[:1]
    target = 1e-10 if a.dtype == "float64" else 1e-5
    if count > 1:
        doc = combine(in_fresh_processes("solvers", argv, count))
        for r, pc in zip(doc["results"], conditions):
            _print_case(r, size, a.dtype, pc, target, count)
        if not a.quick or a.out:
            write_result(doc, "solvers", a.out)
        return doc
    jax.config.update("jax_enable_x64", True)
    # --quick, a smoke run: the methods of the summary's ratios, 60 iterations each
    caps = ({k: 60 for k in CAPS if k in QUICK_METHODS} if a.quick else dict(CAPS))
    results = []
    for pc in conditions:
        r = bench_case(size, pc, jnp.dtype(a.dtype), target, 1 if a.quick else a.repeats, caps,
                       burst_s=0.05 if a.quick else 1.0)
        results.append(r)
        _print_case(r, size, a.dtype, pc, target, 1)
    doc = {"benchmark": "solvers", "dtype": a.dtype, "machine": machine(), "results": results,
           "caps": caps, "processes": 1,
           "timing": "interleaved rounds; median of repeats (a call < 50 ms: median of a "
                     "~50 ms burst per repeat), pro-rated to the iterations to target"}
    if not a.quick or a.out:
        write_result(doc, "solvers", a.out)
    return doc


if __name__ == "__main__":
    main()
