"""``matgrad run`` (the main job on built-in data), ``matgrad example`` and ``matgrad bench``."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

from ._common import _fail, _x64
from .audit import _print_chains, _with_chains


def cmd_example(args) -> int:
    _x64()
    import numpy as np

    from ..io import atomic_write_npz
    from ..problems import channel

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite", file=sys.stderr)
        return 2
    for flag, value in (("--n", args.n), ("--m", args.m), ("--k", args.k), ("--q", args.q)):
        if value < 1:
            return _fail(f"{flag}: expected a positive integer, got {value}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        return _fail(f"--noise: expected a finite number >= 0, got {args.noise}")
    if not (math.isfinite(args.p_condition) and args.p_condition >= 1):
        return _fail(f"--p-condition: expected a finite number >= 1, got {args.p_condition}")
    d = channel.make_data(args.n, args.m, args.k, args.q, noise=args.noise, seed=args.seed,
                          p_condition=args.p_condition)
    atomic_write_npz(out, **{k: np.asarray(v) for k, v in d.items()})
    print(f"wrote {out}: A, B, Z, P, S, W (n={args.n}, m={args.m}, k={args.k}, q={args.q}) "
          "and the planted R_true, Q_true")
    return 0


def cmd_run(args) -> int:
    """The main job on built-in example data: audit every derivation, then a demo fit."""
    _x64()
    import jax.numpy as jnp
    import numpy as np

    from .. import examples  # noqa: F401  (two users' derivations, registered on import)
    from ..audit import audit_all, chain_row, text_table
    from ..fit import METHODS, _start, fit, fit_problem
    from ..problems import channel

    print("== Audit: every registered derivation against jax.grad, forward mode, Taylor ==\n")
    reports = audit_all()
    rows_audit, chain_reports, _, _ = _with_chains(reports)
    print(text_table(rows_audit, {"source": 40, "where it holds": 44, "first wrong line": 36}))
    for r in reports:
        if not r.passed:
            print(f"- {r.name}: {r.message}")
    _print_chains(chain_reports)
    print("\n== Demo fit: seed-1 synthetic data (n, m, k, q) = (96, 64, 128, 256) ==\n")
    d = channel.make_data(96, 64, 128, 256, noise=0.01, seed=0)
    problem = channel.Problem(*(d[k] for k in channel.DATA_NAMES))
    exact = fit(problem, method="exact")
    rows = []
    for method in METHODS:
        kw = {"max_iters": 20000} if method == "adam" else {"max_iters": 5000}
        # `fit`'s own program, compiled without running it (Adam's 16k iterations run once)
        init = _start(problem, None)
        run = fit_problem.lower(problem, init, method=method, **kw).compile()
        # the median of up to 7 calls (as many as fit in about half a second): one call of a
        # millisecond straight after the audit can take 20 times as long
        times = []
        while len(times) < 7 and (not times or sum(times) < 0.5):
            t0 = time.perf_counter()
            res = run(problem, init)
            res.value.block_until_ready()
            times.append(time.perf_counter() - t0)
        dt = float(np.median(times))
        gap = (float(res.value) - float(exact.value)) / abs(float(exact.value))
        err = float(jnp.linalg.norm(res.params[0] - d["R_true"])
                    / jnp.linalg.norm(d["R_true"]))
        rows.append({"method": method, "iterations": str(int(res.iterations)),
                     "converged": str(bool(res.converged)), "rel. gap": f"{gap:.1e}",
                     "median ms": f"{1e3 * dt:.1f}", "‖R-R_true‖/‖R_true‖": f"{err:.2e}"})
    print(text_table(rows))
    verified = _verified_demo()
    if args.out:
        from ..io import atomic_write_json

        atomic_write_json(Path(args.out) / "run.json",
                          {"audit": rows_audit,
                           "chains": [chain_row(r) for r in chain_reports], "fit": rows,
                           "minimize": verified})
    return 0


def _verified_demo() -> list[dict]:
    """``minimize`` on the two user examples: right gradients fit, a wrong one is refused."""
    import numpy as np

    from ..examples import (
        mf_example,
        mf_gradient,
        mf_gradient_missing_two,
        mf_objective,
        mf_optimum,
        nll_example,
        nll_gradient,
        nll_objective,
    )
    from ..minimize import GradientMismatch, minimize

    print("\n== Verified minimisation: users' derivations (examples/*) ==\n")
    U0, V0, X = mf_example()
    f = lambda U, V: mf_objective(U, V, X)  # noqa: E731
    fstar = mf_optimum(X, U0.shape[1])
    rows = []
    res = minimize(f, (U0, V0), grad=lambda U, V: mf_gradient(U, V, X))
    rows.append({"problem": "factorisation (60, 40, 5)", "gradient": "right",
                 "method": res.method, "verified": res.verified,
                 "converged": str(bool(res.converged)), "iterations": str(int(res.iterations)),
                 "result": f"rel. gap {(float(res.value) - fstar) / fstar:.1e}"})
    try:
        minimize(f, (U0, V0), grad=lambda U, V: mf_gradient_missing_two(U, V, X))
        outcome = "NOT refused"
    except GradientMismatch as exc:
        outcome = f"refused before iterating: {exc.report.diagnosis} in " \
                  f"{', '.join(exc.report.failing_arguments)}"
    rows.append({"problem": "factorisation (60, 40, 5)", "gradient": "missing 2",
                 "method": "—", "verified": "start", "converged": "—", "iterations": "0",
                 "result": outcome})
    Sigma0, S = nll_example()
    res = minimize(lambda Sig: nll_objective(Sig, S), Sigma0,
                   grad=lambda Sig: nll_gradient(Sig, S), domains={0: "spd"})
    err = float(np.max(np.abs(np.asarray(res.params[0]) - np.asarray(S))))
    rows.append({"problem": "Gaussian NLL, Σ 6×6 SPD", "gradient": "right", "method": res.method,
                 "verified": res.verified, "converged": str(bool(res.converged)),
                 "iterations": str(int(res.iterations)), "result": f"max |Σ − S| {err:.1e}"})
    from ..audit import text_table

    print(text_table(rows))
    return rows


def cmd_bench(args) -> int:
    """Run one benchmark (its own options follow), all of them, the plots or the docs' tables."""
    from ..bench import BENCHMARKS, load

    name, rest = args.name, args.rest
    if name in BENCHMARKS:
        load(name).main(rest)
        return 0
    if name == "plots":
        from ..bench.plots import plot_all

        for path in plot_all(rest[0] if rest else None):
            print(f"wrote {path}")
        return 0
    if name == "report":
        from ..bench.report import PERFORMANCE_PAGE, update_readme

        page = rest[0] if rest else str(PERFORMANCE_PAGE)
        changed = update_readme(page)
        print(f"{page}: performance tables {'updated' if changed else 'unchanged'}")
        return 0
    if name == "all":
        quick = ["--quick"] if "--quick" in rest else []
        for bench, argv in [("gradient", ["--dtype", "float32"]),
                            ("gradient", ["--dtype", "float64"]),
                            ("solvers", ["--dtype", "float64"]),
                            ("solvers", ["--dtype", "float32"]),
                            ("spectral", []), ("batch", ["--dtype", "float64"]),
                            ("batch", ["--dtype", "float32"]), ("audit", []), ("devices", [])]:
            print(f"\n=== matgrad bench {bench} {' '.join(argv + quick)} ===", flush=True)
            # A fresh process each: state left by one benchmark (BLAS thread pools spun up by
            # large SVDs, held memory) slowed small LAPACK calls in the next by 100x.
            code = subprocess.call([sys.executable, "-m", "matgrad_jax", "bench", bench,
                                    *argv, *quick])
            if code:
                return code
        return 0
    print(f"error: bench: expected one of {', '.join([*BENCHMARKS, 'all', 'plots', 'report'])}, "
          f"got {name!r}", file=sys.stderr)
    return 2
