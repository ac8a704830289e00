"""What one full audit costs: ``check_gradient`` of the 512×512 case (‖BBᵀ − Q‖_F², general
gradient), cold (first call: tracing and compilation) and warm, float32 and float64; and the cold
time to a verdict in a fresh process (import included) beside ``jax.test_util.check_grads`` on
the same hand gradient of ``‖AX − M‖²`` (wrapped as a ``custom_vjp``, which ``check_grads``
compares with finite differences), with each process's peak memory. Usage:
    matgrad bench audit [--n 512] [--versus 64,256,512,1024] [--fresh 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
    p.add_argument("--versus", default="64,256,512,1024",
                   help="sizes n of the fresh-process comparison with check_grads ('' for none)")
    p.add_argument("--fresh", type=positive_int, default=5,
                   help="fresh processes per tool, size and dtype, alternating between the two "
                        "tools; the table shows their medians (a process's import time varies "
                        "by ±0.5 s on the 2-core machine)")
    add_run_options(p, repeats=3)
    a = p.parse_args(argv)
    try:
        versus = [int(v) for v in a.versus.split(",") if v.strip()]
        if any(v < 1 for v in versus):
            raise ValueError
    except ValueError:
        p.error(f"--versus: expected comma-separated positive integers, got {a.versus!r}")
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
    cold = []
    fresh = 1 if a.quick else a.fresh
    for n_v in ([16] if a.quick else versus):
        for dtype in (("float64",) if a.quick else ("float64", "float32")):
            row = {"n": n_v, "dtype": dtype}
            runs = {tool: [] for tool in ("check_gradient", "check_grads")}
            for _ in range(fresh):  # alternating processes: drift hits both
                for tool in runs:
                    runs[tool].append(_fresh_process(tool, n_v, dtype))
            for tool, rs in runs.items():
                row[tool] = {"cold_s": _median(rs, "cold_s"), "warm_s": _median(rs, "warm_s"),
                             "reaudit_s": _median(rs, "reaudit_s"),
                             "peak_mib": max(r["peak_mib"] for r in rs),
                             "passed": rs[0]["passed"]}
            ours, theirs = row["check_gradient"], row["check_grads"]
            row["ratio"] = ours["cold_s"] / theirs["cold_s"]
            row["warm_ratio"] = ours["warm_s"] / theirs["warm_s"]
            row["reaudit_ratio"] = ours["reaudit_s"] / theirs["warm_s"]
            row["reaudit_over_warm"] = ours["reaudit_s"] / ours["warm_s"]
            row["memory_ratio"] = ours["peak_mib"] / theirs["peak_mib"]
            cold.append(row)
    if cold:
        print_table("check_gradient vs jax.test_util.check_grads on ‖AX − M‖² with its hand "
                    f"gradient, in fresh processes (median of {fresh}): cold (import included), "
                    "warm (the same function again), re-audit (a redefined function: a "
                    "notebook cell run again), peak memory",
                    ["n", "dtype", "cold s", "ratio", "warm ms", "ratio", "re-audit ms",
                     "ratio", "re/warm", "MiB", "ratio", "verdicts"],
                    [[r["n"], r["dtype"], f"{r['check_gradient']['cold_s']:.2f} / "
                      f"{r['check_grads']['cold_s']:.2f}", f"{r['ratio']:.2f}x",
                      f"{1e3 * r['check_gradient']['warm_s']:.0f} / "
                      f"{1e3 * r['check_grads']['warm_s']:.0f}", f"{r['warm_ratio']:.1f}x",
                      f"{1e3 * r['check_gradient']['reaudit_s']:.0f}",
                      f"{r['reaudit_ratio']:.1f}x", f"{r['reaudit_over_warm']:.2f}",
                      f"{r['check_gradient']['peak_mib']:.0f} / "
                      f"{r['check_grads']['peak_mib']:.0f}", f"{r['memory_ratio']:.2f}x",
                      f"{_verdict(r['check_gradient'])} / {_verdict(r['check_grads'])}"]
                     for r in cold])
    doc = {"benchmark": "audit", "machine": machine(), "results": results, "cold": cold,
           "fresh_processes": fresh}
    if not a.quick or a.out:
        write_result(doc, "audit", a.out)
    return doc


def _median(runs, key):
    return sorted(r[key] for r in runs)[len(runs) // 2]


def _verdict(r) -> str:
    return "pass" if r["passed"] else "FAIL"


_WORKER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
tool, n, dtype, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = np.random.default_rng(0)
A, M, X = (jnp.asarray(rng.standard_normal((n, n)), dtype) for _ in range(3))
def cell():  # what a notebook cell defines, anew each time it runs
    f = lambda X: jnp.sum((A @ X - M) ** 2)
    grad = lambda X: 2 * A.T @ (A @ X - M)
    return f, grad
if tool == "check_gradient":
    from matgrad_jax import check_gradient
    def audit(f, grad):
        return bool(check_gradient(f, grad, (X,)).passed)
else:
    from jax.test_util import check_grads
    def audit(f, grad):
        @jax.custom_vjp
        def fh(X):
            return f(X)
        fh.defvjp(lambda X: (f(X), X), lambda X, ct: (ct * grad(X),))
        try:
            check_grads(fh, (X,), order=1, modes=("rev",))
            return True
        except AssertionError:
            return False
f, grad = cell()
passed = audit(f, grad)
cold = time.perf_counter() - t0
warm = []
for _ in range(3):
    t = time.perf_counter(); audit(f, grad); warm.append(time.perf_counter() - t)
again = []
for _ in range(3):
    f2, grad2 = cell()
    t = time.perf_counter(); audit(f2, grad2); again.append(time.perf_counter() - t)
try:  # this process's own high-water mark (ru_maxrss keeps the parent's across exec)
    with open("/proc/self/status") as st:
        peak = next(int(ln.split()[1]) for ln in st if ln.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with open(out, "w") as fh_:
    json.dump({"cold_s": cold, "warm_s": sorted(warm)[1], "reaudit_s": sorted(again)[1],
               "peak_mib": peak, "passed": passed}, fh_)
"""


def _fresh_process(tool: str, n: int, dtype: str) -> dict:
    """Import, build and audit in a new Python process; its result comes back in a file."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        # cold means nothing compiled before: no persistent compilation cache, default flags
        env = {k: v for k, v in os.environ.items()
               if k not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")}
        proc = subprocess.run([sys.executable, "-c", _WORKER, tool, str(n), dtype, out],
                              env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} at n={n} failed: {proc.stderr[-2000:]}")
        with open(out) as fh:
            return json.load(fh)


if __name__ == "__main__":
    main()
