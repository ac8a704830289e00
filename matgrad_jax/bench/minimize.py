"""A user's factorisation ``‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)`` (λ = 0.1) at (n, m, r), with the
relative gap to its closed-form optimum. Two tables:

* **time to the gap**: :func:`matgrad_jax.minimize` called as a user calls it (the default
  method and ``verify="start"``, no ``jit`` around it; ``method="lbfgs"``, optax's L-BFGS
  with its zoom search; and ``method="alternating"``, capped at ``--alternating-sweeps``)
  beside the plain optax L-BFGS loop of optax's documentation
  (``value_and_grad_from_state``, one jitted ``while_loop`` that stops the moment the gap is
  below ``--gap``: the fastest it can be) and scipy's L-BFGS-B (``OPENBLAS_NUM_THREADS=1``, in a
  process of its own: scipy slowed 40-80x in a process that had run JAX). Warm times (each
  called once before), medians of interleaved rounds; ratios to the optax loop.
* **what verification costs**: ``minimize`` jitted with the hand gradient, ``verify="off"``
  against ``verify="always"`` (a directional check against ``jax.jvp`` every ``verify_every``
  iterations inside the loop), beside optax L-BFGS driven by ``jax.grad``.

Usage:
    matgrad bench minimize [--sizes 60,40,5 2000,1000,20] [--verify-every 25] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..examples import mf_example, mf_gradient, mf_objective, mf_optimum
from ..minimize import minimize
from ..solvers import balance_factors, lbfgs
from .common import (
    add_run_options,
    interleaved_medians,
    machine,
    positive_int,
    print_table,
    shape_of,
    write_result,
)


def _solvers(verify_every: int):
    def hand(verify, method="auto"):
        def solve(U, V, X):
            res = minimize(lambda u, v: mf_objective(u, v, X), (U, V),
                           grad=lambda u, v: mf_gradient(u, v, X), verify=verify,
                           verify_every=verify_every, method=method)
            return res.value, res.iterations, res.reason_code
        return jax.jit(solve)

    def autodiff(U, V, X):
        res = lbfgs(lambda u, v: mf_objective(u, v, X), (U, V), max_iters=20000)
        return res.value, res.iterations, res.reason_code

    return {"minimize, verify='off'": hand("off"), "minimize, verify='always'": hand("always"),
            "minimize, method='lbfgs' (optax's zoom search)": hand("off", "lbfgs"),
            "optax L-BFGS, jax.grad": jax.jit(autodiff)}


def _optax_loop(f, fstar, gap):
    """optax's documented L-BFGS loop, stopping as soon as the gap is reached."""
    opt = optax.lbfgs()
    value_fn = lambda p: f(*p)  # noqa: E731
    vg = optax.value_and_grad_from_state(value_fn)

    @jax.jit
    def solve(U, V):
        def body(c):
            p, s, k, _ = c
            v, g = vg(p, state=s)
            u, s = opt.update(g, s, p, value=v, grad=g, value_fn=value_fn)
            return optax.apply_updates(p, u), s, k + 1, v

        def cond(c):
            return ((c[3] - fstar) > gap * abs(fstar)) & (c[2] < 20000)

        p0 = (U, V)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and int64 counters
            p, _, k, _ = jax.lax.while_loop(cond, body, (p0, opt.init(p0), 0, jnp.inf))
        return f(*p), k
    return solve


_SCIPY = r"""
import json, sys, time
import numpy as np
from scipy.optimize import minimize
n, m, r = (int(v) for v in sys.argv[1:4])
path, out, repeats = sys.argv[4], sys.argv[5], int(sys.argv[6])
d = np.load(path)
X, U0, V0, lam = d["X"], d["U0"], d["V0"], float(d["lam"])
def fg(z):
    U, V = z[:n * r].reshape(n, r), z[n * r:].reshape(m, r)
    E = X - U @ V.T
    f = np.sum(E * E) + lam * (np.sum(U * U) + np.sum(V * V))
    gU, gV = -2 * E @ V + 2 * lam * U, -2 * E.T @ U + 2 * lam * V
    return f, np.concatenate([gU.ravel(), gV.ravel()])
z0 = np.concatenate([U0.ravel(), V0.ravel()])
opts = {"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 10}
res = minimize(fg, z0, jac=True, method="L-BFGS-B", options=opts)
times = []
for _ in range(repeats):
    t = time.perf_counter(); res = minimize(fg, z0, jac=True, method="L-BFGS-B", options=opts)
    times.append(time.perf_counter() - t)
with open(out, "w") as fh:
    json.dump({"median_s": float(np.median(times)), "value": float(res.fun),
               "iterations": int(res.nit)}, fh)
"""


def _scipy(args, n, m, r, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "data.npz"), os.path.join(tmp, "out.json")
        U0, V0, X = (np.asarray(x, np.float64) for x in args)
        from ..examples import LAMBDA

        np.savez(path, X=X, U0=U0, V0=V0, lam=LAMBDA)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", _SCIPY, str(n), str(m), str(r), path, out,
                               str(repeats)], env=env, capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0:
            return None
        with open(out) as fh:
            return json.load(fh)


def time_to_gap(args, n, m, r, *, gap, sweeps, repeats, scipy=True) -> dict:
    U0, V0, X = args
    fstar = mf_optimum(X, r)
    f = lambda u, v: mf_objective(u, v, X)  # noqa: E731
    g = lambda u, v: mf_gradient(u, v, X)  # noqa: E731

    def user(method, **kw):
        def call(U, V):
            res = minimize(f, (U, V), grad=g, method=method, **kw)
            return res.value, res.iterations
        return call

    fns = {"optax L-BFGS loop (stops at the gap)": _optax_loop(f, fstar, gap),
           "minimize (default)": user("auto"),
           "minimize(method='lbfgs')": user("lbfgs"),
           "minimize(method='alternating')": user("alternating", max_iters=sweeps),
           "alternating, ALS + balance_factors": user("alternating", max_iters=sweeps,
                                                      block_step="newton",
                                                      balance=balance_factors),
           "alternating, balance_factors + nesterov": user("alternating", max_iters=sweeps,
                                                           balance=balance_factors,
                                                           extrapolation="nesterov")}
    runs = {name: fn(U0, V0) for name, fn in fns.items()}
    times = interleaved_medians({name: (fn, (U0, V0)) for name, fn in fns.items()},
                                repeats=repeats)
    base = times["optax L-BFGS loop (stops at the gap)"]
    rows = {}
    for name, (value, iters) in runs.items():
        rel = float((float(value) - fstar) / abs(fstar))
        rows[name] = {"median_s": times[name], "iterations": int(iters), "rel_gap": rel,
                      "reached": bool(rel <= gap), "ratio": times[name] / base}
    sp = _scipy(args, n, m, r, repeats) if scipy else None
    if sp is not None:
        rel = (sp["value"] - fstar) / abs(fstar)
        rows["scipy L-BFGS-B (OPENBLAS_NUM_THREADS=1)"] = {
            "median_s": sp["median_s"], "iterations": sp["iterations"], "rel_gap": rel,
            "reached": bool(rel <= gap), "ratio": sp["median_s"] / base}
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench minimize", description=__doc__)
    p.add_argument("--sizes", nargs="+", type=shape_of("n,m,r"),
                   default=[(60, 40, 5), (2000, 1000, 20)])
    p.add_argument("--verify-every", type=positive_int, default=25)
    p.add_argument("--gap", type=float, default=1e-8, help="the relative gap to reach")
    p.add_argument("--alternating-sweeps", type=positive_int, default=300,
                   help="the cap on the alternating method's sweeps")
    add_run_options(p, repeats=5)
    a = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    sizes = [(12, 8, 3)] if a.quick else a.sizes
    solvers = _solvers(a.verify_every)
    results = []
    for n, m, r in sizes:
        args = mf_example(0, n, m, r)
        fstar = mf_optimum(args[2], r)
        gap_rows = time_to_gap(args, n, m, r, gap=a.gap, sweeps=a.alternating_sweeps,
                               repeats=1 if a.quick else min(a.repeats, 3), scipy=not a.quick)
        print_table(f"time to a {a.gap:.0e} gap, (n, m, r) = ({n}, {m}, {r}), float64, warm",
                    ["method", "median ms", "iterations", "rel. gap", "reached", "x optax"],
                    [[k, f"{1e3 * v['median_s']:.1f}", v["iterations"], f"{v['rel_gap']:.1e}",
                      v["reached"], f"{v['ratio']:.2f}"] for k, v in gap_rows.items()])
        runs = {name: fn(*args) for name, fn in solvers.items()}
        times = interleaved_medians({name: (fn, args) for name, fn in solvers.items()},
                                    repeats=1 if a.quick else a.repeats)
        rows = {}
        for name, (value, iters, _) in runs.items():
            rows[name] = {"median_s": times[name], "iterations": int(iters),
                          "rel_gap": float((float(value) - fstar) / abs(fstar))}
        off, always = rows["minimize, verify='off'"], rows["minimize, verify='always'"]
        results.append({"size": [n, m, r], "variants": rows, "time_to_gap": gap_rows,
                        "gap": a.gap,
                        "verify_overhead": always["median_s"] / off["median_s"] - 1.0,
                        "target_overhead": 0.10})
        print_table(f"factorisation (n, m, r) = ({n}, {m}, {r}), float64, verify_every = "
                    f"{a.verify_every}", ["variant", "median ms", "iterations", "rel. gap"],
                    [[k, f"{1e3 * v['median_s']:.1f}", v["iterations"], f"{v['rel_gap']:.1e}"]
                     for k, v in rows.items()])
        print(f"verify='always' costs {100 * results[-1]['verify_overhead']:+.1f}% over 'off' "
              "(target <= +10%)")
    doc = {"benchmark": "minimize", "dtype": "float64", "verify_every": a.verify_every,
           "machine": machine(), "results": results}
    if not a.quick or a.out:
        write_result(doc, "minimize", a.out)
    return doc


if __name__ == "__main__":
    main()


__all__ = ["main", "np"]
