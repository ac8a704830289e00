"""What one full audit costs: ``check_gradient`` of the 512×512 case (‖BBᵀ − Q‖_F², general
gradient), cold (first call: tracing and compilation) and warm, float32 and float64. Usage:
    matgrad bench audit [--n 512] [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from ..audit import check_gradient
from ..problems import gram
from .common import add_run_options, machine, median_time, positive_int, print_table, write_result


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench audit", description=__doc__)
    p.add_argument("--n", type=positive_int, default=512)
    p.add_argument("--matmul-precision", default="highest", choices=["highest", "none"],
                   help="check_gradient's matmul_precision (none: the caller's, TF32 on GPUs)")
    add_run_options(p, repeats=3)
    a = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    n = 24 if a.quick else a.n
    precision = None if a.matmul_precision == "none" else a.matmul_precision
    results = []
    for dtype in ("float32", "float64"):
        B, Q = gram.make_data(n, n, family="generic", seed=0, dtype=jnp.dtype(dtype))

        def audit(B, Q):
            return check_gradient(gram.frobenius_squared, gram.frobenius_squared_grad_general,
                                  (B, Q), argnums=0, arg_names=("B", "Q"),
                                  matmul_precision=precision)

        t0 = time.perf_counter()
        report = audit(B, Q)
        cold = time.perf_counter() - t0
        warm = median_time(lambda B, Q: audit(B, Q).max_rel_error, B, Q,
                           repeats=1 if a.quick else a.repeats)
        results.append({"dtype": dtype, "n": n, "cold_s": cold, "warm_s": warm,
                        "passed": bool(report.passed), "points": report.points,
                        "max_rel_error": float(report.max_rel_error),
                        "matmul_precision": a.matmul_precision,
                        "message": report.message})
    print_table(f"check_gradient, ‖BBᵀ − Q‖_F², n = r = {n}, matmul_precision "
                f"{a.matmul_precision}",
                ["dtype", "cold s", "warm s", "passed", "max rel. error"],
                [[r["dtype"], f"{r['cold_s']:.2f}", f"{r['warm_s']:.2f}", r["passed"],
                  f"{r['max_rel_error']:.1e}"] for r in results])
    doc = {"benchmark": "audit", "machine": machine(), "results": results}
    if not a.quick or a.out:
        write_result(doc, "audit", a.out)
    return doc


if __name__ == "__main__":
    main()
