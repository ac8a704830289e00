"""What verification costs in :func:`matgrad_jax.minimize`: a user's factorisation
``‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)`` (λ = 0.1) at (n, m, r), solved by ``minimize`` with the hand
gradient, ``verify="off"`` against ``verify="always"`` (a directional check against ``jax.jvp``
every ``verify_every`` iterations inside the jitted loop), beside optax L-BFGS driven by
``jax.grad``; each jitted, timed interleaved, with the relative gap to the closed-form optimum.
Usage:
    matgrad bench minimize [--sizes 60,40,5 2000,1000,20] [--verify-every 25] [--quick]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from ..examples import mf_example, mf_gradient, mf_objective, mf_optimum
from ..minimize import minimize
from ..solvers import lbfgs
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
    def hand(verify):
        def solve(U, V, X):
            res = minimize(lambda u, v: mf_objective(u, v, X), (U, V),
                           grad=lambda u, v: mf_gradient(u, v, X), verify=verify,
                           verify_every=verify_every)
            return res.value, res.iterations, res.reason_code
        return jax.jit(solve)

    def autodiff(U, V, X):
        res = lbfgs(lambda u, v: mf_objective(u, v, X), (U, V), max_iters=20000)
        return res.value, res.iterations, res.reason_code

    return {"minimize, verify='off'": hand("off"), "minimize, verify='always'": hand("always"),
            "optax L-BFGS, jax.grad": jax.jit(autodiff)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench minimize", description=__doc__)
    p.add_argument("--sizes", nargs="+", type=shape_of("n,m,r"),
                   default=[(60, 40, 5), (2000, 1000, 20)])
    p.add_argument("--verify-every", type=positive_int, default=25)
    add_run_options(p, repeats=5)
    a = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    sizes = [(12, 8, 3)] if a.quick else a.sizes
    solvers = _solvers(a.verify_every)
    results = []
    for n, m, r in sizes:
        args = mf_example(0, n, m, r)
        fstar = mf_optimum(args[2], r)
        runs = {name: fn(*args) for name, fn in solvers.items()}
        times = interleaved_medians({name: (fn, args) for name, fn in solvers.items()},
                                    repeats=1 if a.quick else a.repeats)
        rows = {}
        for name, (value, iters, _) in runs.items():
            rows[name] = {"median_s": times[name], "iterations": int(iters),
                          "rel_gap": float((float(value) - fstar) / abs(fstar))}
        off, always = rows["minimize, verify='off'"], rows["minimize, verify='always'"]
        results.append({"size": [n, m, r], "variants": rows,
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
