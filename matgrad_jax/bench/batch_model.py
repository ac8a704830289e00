"""A batch of a user's problems: ``jit(vmap(minimize))`` of many small factorisations
``‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)`` against a Python loop of one jitted solve (timed over
``loop_sample`` problems and scaled), for the default method (the one-evaluation L-BFGS,
``"lbfgs_backtracking"``), optax's L-BFGS (``method="lbfgs"``) and ALS with balancing
(``method="alternating", block_step="newton", balance=balance_factors``). Under ``vmap`` the
one-evaluation L-BFGS runs as a work queue (:data:`matgrad_jax.minimize.QUEUED_METHODS`). Run by
``matgrad bench batch --model mf``; the JSON is ``batch_mf_<platform>_<dtype>.json``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..examples import mf_example, mf_gradient, mf_objective
from ..minimize import minimize
from ..solvers import balance_factors
from .common import machine, print_table, timed_burst, wall_times

METHODS = {"minimize (default)": {},
           "minimize, method='lbfgs' (optax)": dict(method="lbfgs"),
           "ALS + balance_factors": dict(method="alternating", block_step="newton",
                                         balance=balance_factors)}


def _solver(opts):
    def solve(U, V, X):
        r = minimize(lambda u, v: mf_objective(u, v, X), (U, V),
                     grad=lambda u, v: mf_gradient(u, v, X), verify="off", **opts)
        return r.value, r.iterations, r.converged
    return solve


def run(batch: int, size, dtype: str, loop_sample: int, repeats: int) -> dict:
    n, m, r = size
    data = [mf_example(i, n, m, r, dtype=jnp.dtype(dtype)) for i in range(batch)]
    U0, V0, X = (jnp.stack([d[k] for d in data]) for k in range(3))
    per = [(U0[i], V0[i], X[i]) for i in range(min(loop_sample, batch))]
    results = []
    for name, opts in METHODS.items():
        solve = _solver(opts)
        batched, single = jax.jit(jax.vmap(solve)), jax.jit(solve)
        out = jax.block_until_ready(batched(U0, V0, X))
        jax.block_until_ready(single(*per[0]))

        def loop(single=single):
            o = None
            for p in per:
                o = single(*p)
            return o

        t_b, t_l = [], []
        for _ in range(repeats):
            t_l += wall_times(loop, (), 1)
            t_b.append(timed_burst(batched, (U0, V0, X), t_b[-1] if t_b else None))
        scale = batch / len(per)
        loop_s, batch_s = float(np.median(t_l)) * scale, float(np.median(t_b))
        its = np.asarray(out[1])
        single_values = np.asarray([float(single(*p)[0]) for p in per[:32]])
        results.append({"method": name, "batch_s": batch_s, "loop_s": loop_s,
                        "ratio": loop_s / batch_s, "iterations_median": float(np.median(its)),
                        "iterations_max": int(its.max()),
                        "converged": float(np.mean(np.asarray(out[2]))),
                        "max_abs_diff": float(np.max(np.abs(
                            np.asarray(out[0])[:len(single_values)] - single_values)))})
    return {"benchmark": "batch_model", "model": "mf", "dtype": dtype, "batch": batch,
            "size": list(size), "loop_measured_on": len(per), "machine": machine(),
            "results": results}


def table(doc) -> None:
    print_table(f"{doc['batch']} factorisations of (n, m, r) = {tuple(doc['size'])}, "
                f"{doc['dtype']}: jit(vmap(minimize)) vs a loop of one jitted solve",
                ["method", "vmapped ms", "loop ms", "ratio", "iterations (median/max)",
                 "converged"],
                [[r["method"], f"{1e3 * r['batch_s']:.1f}", f"{1e3 * r['loop_s']:.1f}",
                  f"{r['ratio']:.2f}x", f"{r['iterations_median']:.0f} / {r['iterations_max']}",
                  f"{100 * r['converged']:.0f}%"] for r in doc["results"]])
