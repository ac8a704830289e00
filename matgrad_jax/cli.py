"""The ``matgrad`` command line: ``run``, ``audit``, ``example``, ``fit``."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _x64(dtype: str = "float64"):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")


def _with_chains(reports, pattern=None, names=None):
    """The chains to show beside ``reports``: those matching ``pattern`` (and in ``names``) and
    every chain a shown derivation names; and the derivations' table rows with the column
    "first wrong line"."""
    from .audit import audit_chains
    from .audit.registry_audit import first_wrong_line
    from .registry import chains, derivations

    by_name = {d.name: d for d in derivations()}
    wanted = {by_name[r.name].chain for r in reports
              if r.name in by_name and by_name[r.name].chain}
    selected = {c.name for c in chains(pattern) if names is None or c.name in names}
    chain_reports = audit_chains(names=selected | wanted)
    done = {c.name: c for c in chain_reports}
    rows, cells = [], {}
    for r in reports:
        row = r.summary_row()
        d = by_name.get(r.name)
        cell = first_wrong_line(done.get(d.chain)) if d is not None and d.chain else "—"
        cells[r.name] = cell
        rows.append({**{k: v for k, v in row.items() if k != "source"},
                     "first wrong line": cell, "source": row["source"]})
    return rows, chain_reports, cells, selected


def _print_chains(chain_reports) -> None:
    from .audit import chain_row, text_table

    if not chain_reports:
        return
    print("\n== Derivations line by line: the first wrong line of each ==\n")
    print(text_table([chain_row(r) for r in chain_reports],
                     {"first wrong line": 44, "what is wrong there": 52, "source": 40}))


def cmd_audit(args) -> int:
    _x64()
    from ._checks import InputError
    from .audit import audit_all, chain_row, markdown_table, text_table
    from .io import atomic_write_json, atomic_write_text
    from .registry import chains, derivations, load_targets

    before = {c.name: id(c) for c in chains()}
    try:
        names = load_targets(args.targets)
    except InputError as exc:
        return _fail(str(exc))
    new_chains = {c.name for c in chains() if before.get(c.name) != id(c)}
    if args.targets:
        keep = set(names) | ({d.name for d in derivations(builtin=True)} if args.builtin else set())
        keep_chains = new_chains | ({c.name for c in chains(builtin=True)} if args.builtin
                                    else set())
        if not names and not new_chains:
            return _fail(f"{', '.join(args.targets)}: registers no derivation (call "
                         "matgrad_jax.register(...) or register_chain(...), or use "
                         "@matgrad_jax.derivation at import)")
    else:
        keep = {d.name for d in derivations()}
        keep_chains = {c.name for c in chains()}
    reports = audit_all(args.filter, names=keep)
    rows, chain_reports, cells, selected = _with_chains(reports, args.filter, keep_chains)
    if not reports and not chain_reports:
        return _fail(f"--filter {args.filter!r}: matches no derivation (names: "
                     f"{', '.join(d.name for d in derivations() if d.name in keep)})")
    if rows:
        print(text_table(rows, {"source": 48, "where it holds": 44, "first wrong line": 36}))
    _print_chains(chain_reports)
    failed = [r for r in reports if not r.passed]
    failed_chains = [r for r in chain_reports if not r.passed]
    print(f"\n{len(reports) - len(failed)} passed, {len(failed)} failed"
          + (f"; chains: {len(chain_reports) - len(failed_chains)} hold, "
             f"{len(failed_chains)} have a wrong line" if chain_reports else ""))
    for r in failed + failed_chains:
        print(f"- {r.name}: {r.message}")
    if args.json:
        # the derivations' reports (each with its chain's first wrong line), then the chains
        # selected by name (a target's own, or those --filter matches)
        atomic_write_json(args.json, [{**r.to_dict(), "first_wrong_line": cells[r.name]}
                                      for r in reports]
                          + [r.to_dict() for r in chain_reports if r.name in selected])
    if args.markdown:
        body = (markdown_table(rows) + "\n\n"
                + (markdown_table([chain_row(r) for r in chain_reports]) + "\n\n"
                   if chain_reports else "")
                + "\n".join(r.to_markdown() for r in reports)
                + "\n".join(r.to_markdown() for r in chain_reports))
        atomic_write_text(args.markdown, body)
    return 1 if (failed or failed_chains) and not args.no_fail else 0


def cmd_example(args) -> int:
    _x64()
    import numpy as np

    from .io import atomic_write_npz
    from .problems import channel

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


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def read_named(args, known: tuple[str, ...]) -> dict:
    """The arrays ``known`` that DATA holds (``--names NAME=FILE_NAME`` applied), bounded by
    ``--max-array-mib``; absent ones are missing from the result. Raises InputError."""
    from ._checks import InputError
    from .io import array_names, load_arrays

    renames = {}
    for pair in args.names or []:
        ours, _, theirs = pair.partition("=")
        if ours not in known or not theirs:
            raise InputError(f"--names: expected NAME=FILE_NAME with NAME in "
                             f"{', '.join(known)}; got {pair!r}")
        renames[ours] = theirs
    data = load_arrays(args.data, [renames.get(k, k) for k in known],
                       max_bytes=int(args.max_array_mib * 2**20))
    for ours, theirs in renames.items():
        if theirs not in data:
            raise InputError(f"--names {ours}={theirs}: DATA has no array named {theirs!r} "
                             f"(it holds: {', '.join(array_names(args.data)) or 'none'})")
        data[ours] = data.pop(theirs)
    return data


def _load_problem(args):
    """Read DATA, apply --names, build the Problem and the start. Raises InputError."""
    import numpy as np

    from ._checks import InputError, start_pair
    from .fit import WITHOUT_REFERENCE
    from .io import array_names, fingerprint
    from .problems import channel

    data = read_named(args, channel.DATA_NAMES + ("R0", "Q0"))
    missing = [k for k in channel.DATA_NAMES if k not in data]
    if missing:
        raise InputError(f"DATA: missing array(s) {', '.join(missing)} "
                         f"(found: {', '.join(array_names(args.data)) or 'none'}; rename with "
                         "--names NAME=FILE_NAME)")
    problem = channel.Problem(*(data[k] for k in channel.DATA_NAMES), dtype=args.dtype,
                              ridge=args.ridge, reference=args.method not in WITHOUT_REFERENCE)
    if problem.singular:
        raise InputError(problem.singular)
    init = None
    if "R0" in data or "Q0" in data:
        zeros = np.zeros(problem.shape)  # a missing one of the two starts at zero
        init = start_pair((data.get("R0", zeros), data.get("Q0", zeros)), problem.shape,
                          args.dtype, dims="(n, m)")
    used = {k: data[k] for k in channel.DATA_NAMES + ("R0", "Q0") if k in data}
    return problem, init, fingerprint(used)


def cmd_fit(args) -> int:
    _x64(args.dtype)
    if args.device:
        import jax

        try:
            jax.config.update("jax_platforms", args.device)
            jax.devices()
        except RuntimeError:
            # JAX's own message names whichever backend it tried last (e.g. 'rocm' for gpu)
            jax.config.update("jax_platforms", None)
            try:
                have = ", ".join(sorted({d.platform for d in jax.devices()}))
            except RuntimeError:
                have = "none"
            hint = ("; NVIDIA GPUs need jax's cuda12 or cuda13 extra"
                    if args.device in ("gpu", "cuda") else "")
            return _fail(f"--device {args.device}: no such backend in this JAX installation "
                         f"(jax {jax.__version__}; it has: {have}){hint}")

    from ._checks import InputError
    from .fit import METHODS
    from .io import OutputLock, check_out_dir

    out = Path(args.out)
    ckpt = out / "checkpoint.npz"
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        return _fail(f"--checkpoint-every: expected a positive integer, got "
                     f"{args.checkpoint_every}")
    if args.max_iters < 1:
        return _fail(f"--max-iters: expected a positive integer, got {args.max_iters}")
    if args.tol is not None and not (math.isfinite(args.tol) and args.tol >= 0):
        return _fail(f"--tol: expected a finite number >= 0, got {args.tol}")
    if not (math.isfinite(args.ridge) and args.ridge >= 0):
        return _fail(f"--ridge: expected a finite number >= 0, got {args.ridge}")
    if not (math.isfinite(args.max_array_mib) and args.max_array_mib > 0):
        return _fail(f"--max-array-mib: expected a positive number, got {args.max_array_mib}")
    try:
        check_out_dir(out)  # before any work: a result that cannot be written is not computed
    except InputError as exc:
        return _fail(str(exc))
    if args.model is not None:
        from .cli_model import fit_model_cli

        return fit_model_cli(args, out, _fail)
    if args.method == "auto":
        return _fail("--method auto: for --model fits; seed 1 takes exact, alternating, lbfgs, "
                     "adam or cg")
    args.method = args.method or "exact"
    assert args.method in METHODS
    options = dict(method=args.method, max_iters=args.max_iters, tol=args.tol)
    meta = dict(format="matgrad-checkpoint/1", method=args.method, dtype=args.dtype,
                max_iters=args.max_iters, tol=args.tol)
    # Only a precision other than the default goes into the checkpoint's meta, so checkpoints
    # written before the option existed still resume.
    if args.matmul_precision != "highest":
        options["matmul_precision"] = (None if args.matmul_precision == "default"
                                       else args.matmul_precision)
        meta["matmul_precision"] = args.matmul_precision
    if args.ridge:
        meta["ridge"] = args.ridge
    try:
        problem, init, digest = _load_problem(args)
    except InputError as exc:
        return _fail(str(exc))
    try:
        with OutputLock(out):
            return _fit_locked(args, out, ckpt, problem, init, digest, options, meta)
    except InputError as exc:
        return _fail(str(exc))


def _fit_locked(args, out, ckpt, problem, init, digest, options, meta) -> int:
    """The part of ``matgrad fit`` that runs while it holds the lock on ``--out``."""
    import numpy as np

    from .fit import fit_chunked, fit_start
    from .io import load_tree, npz_bytes

    refused = out_refusal(args, out, ckpt)
    if refused:
        return _fail(refused)
    meta["data_sha256"] = digest
    state, elapsed, times = None, 0.0, []
    if args.resume:
        z = np.zeros(problem.shape, problem.dtype)
        template = fit_start(problem, init or (z, z), **options)
        state, saved = load_tree(ckpt, template, expect=meta)
        elapsed, times = float(saved["seconds"]), list(saved["times"])

    res, seconds = run_with_progress(
        args, ckpt, meta, elapsed, times, f"matgrad fit ({args.method})",
        lambda on_chunk: fit_chunked(problem, init, state=state,
                                     checkpoint_every=args.checkpoint_every,
                                     on_chunk=on_chunk, **options))
    R, Q = (np.asarray(x) for x in res.params)
    if not (np.isfinite(float(res.value)) and np.all(np.isfinite(R)) and np.all(np.isfinite(Q))):
        print(f"error: the fit ended non-finite after {int(res.iterations)} iteration(s) "
              f"({res.reason}); nothing was written. G = K_c K_cᴴ may be numerically singular "
              "or the method diverged: try --method exact, or scale the data", file=sys.stderr)
        return 3
    png = write_fit(args, out, res, args.method, seconds, times, meta,
                    npz_bytes(R=R, Q=Q, H=R + 1j * Q))
    n, m = problem.shape
    print(f"matgrad fit: n={n}, m={m}, method {args.method} ({args.dtype})\n"
          f"  objective   {float(res.value):.10g}\n"
          f"  iterations  {int(res.iterations)}, converged={bool(res.converged)} ({res.reason})\n"
          f"  ‖∇φ‖        {float(res.grad_norm):.3e}\n"
          f"  time        {seconds:.2f} s\n"
          f"  wrote       {out}/solution.npz (R, Q, H), history.json"
          + (", convergence.png" if png is not None else ""))
    return 0


def out_refusal(args, out: Path, ckpt: Path) -> str | None:
    """Why ``--out`` may not be written now (a result without ``--force``, ``--resume``
    without a checkpoint, an unfinished checkpoint without either), or None."""
    if (out / "solution.npz").exists() and not args.force:
        return f"{out}/solution.npz exists; pass --force to overwrite"
    if args.resume and not ckpt.is_file():
        return f"--resume: no checkpoint in {out} (expected {ckpt})"
    if ckpt.exists() and not (args.resume or args.force):
        return (f"{ckpt} holds an unfinished run; pass --resume to continue it or --force to "
                "start over")
    return None


def run_with_progress(args, ckpt, meta: dict, elapsed: float, times: list, title: str,
                      fit: Callable) -> tuple:
    """``fit(on_chunk)`` under a progress bar, saving a checkpoint every
    ``--checkpoint-every`` iterations; ``(result, seconds)``, the seconds of earlier runs of a
    resumed fit included. ``times`` gets ``[iteration, seconds]`` per chunk."""
    from .io import save_tree
    from .progress import FitProgress

    t0 = time.perf_counter()
    every = args.checkpoint_every
    with FitProgress(args.max_iters, title) as bar:
        def on_chunk(s, final):
            k = int(s["k"])
            seconds = elapsed + time.perf_counter() - t0
            times.append([k, seconds])
            bar.update(k, float(s["f"]), float(s["history"].grad_norms[k]))
            if every and not final:
                save_tree(ckpt, s, {**meta, "iteration": k, "seconds": seconds,
                                    "times": times})

        res = fit(on_chunk)
    return res, elapsed + time.perf_counter() - t0


def write_fit(args, out: Path, res, method: str, seconds: float, times: list, meta: dict,
              solution: bytes, **extra) -> bytes | None:
    """solution.npz, history.json and convergence.png written as one set (the checkpoint has
    served: it goes too); the plot's bytes, or None without matplotlib."""
    from .io import write_result_set

    hist = {**res.to_dict(), **extra, "method": method, "seconds": seconds, "dtype": args.dtype,
            "times": [{"iteration": k, "seconds": t} for k, t in times],
            "resumed": bool(args.resume), "data_sha256": meta["data_sha256"]}
    files = {"solution.npz": solution,
             "history.json": (json.dumps(hist, indent=2, default=float) + "\n").encode()}
    png = _convergence_png(res, method)
    if png is not None:
        files["convergence.png"] = png
    write_result_set(out, files, remove=("checkpoint.npz",) if png is not None else
                     ("checkpoint.npz", "convergence.png"))
    return png


def _convergence_png(res, method: str) -> bytes | None:
    """convergence.png's bytes when matplotlib is installed (else None)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io

    values, gnorms = res.trace()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(gnorms, label="‖∇φ‖")
    ax.semilogy(values - values.min() + 1e-300 if len(values) > 1 else values, label="φ − min φ")
    ax.set_xlabel("iteration")
    ax.set_title(f"matgrad fit: {method}")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def cmd_run(args) -> int:
    """The main job on built-in example data: audit every derivation, then a demo fit."""
    _x64()
    import jax.numpy as jnp
    import numpy as np

    from . import examples  # noqa: F401  (two users' derivations, registered on import)
    from .audit import audit_all, chain_row, text_table
    from .fit import METHODS, fit
    from .problems import channel

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
        fit(problem, method=method, **kw).value.block_until_ready()  # compile
        # the median of up to 7 calls (as many as fit in about half a second): one call of a
        # millisecond straight after the audit can take 20 times as long
        times = []
        while len(times) < 7 and (not times or sum(times) < 0.5):
            t0 = time.perf_counter()
            res = fit(problem, method=method, **kw)
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
        from .io import atomic_write_json

        atomic_write_json(Path(args.out) / "run.json",
                          {"audit": rows_audit,
                           "chains": [chain_row(r) for r in chain_reports], "fit": rows,
                           "minimize": verified})
    return 0


def _verified_demo() -> list[dict]:
    """``minimize`` on the two user examples: right gradients fit, a wrong one is refused."""
    import numpy as np

    from .examples import (
        mf_example,
        mf_gradient,
        mf_gradient_missing_two,
        mf_objective,
        mf_optimum,
        nll_example,
        nll_gradient,
        nll_objective,
    )
    from .minimize import GradientMismatch, minimize

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
    from .audit import text_table

    print(text_table(rows))
    return rows


def cmd_bench(args) -> int:
    """Run one benchmark (its own options follow), all of them, the plots or the docs' tables."""
    from .bench import BENCHMARKS, load

    name, rest = args.name, args.rest
    if name in BENCHMARKS:
        load(name).main(rest)
        return 0
    if name == "plots":
        from .bench.plots import plot_all

        for path in plot_all(rest[0] if rest else None):
            print(f"wrote {path}")
        return 0
    if name == "report":
        from .bench.report import PERFORMANCE_PAGE, update_readme

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matgrad", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="audit every derivation and run a demo fit (built-in data)")
    r.add_argument("--out", default=None, help="folder for run.json")
    r.set_defaults(func=cmd_run)
    a = sub.add_parser("audit", help="audit registered derivations and derivation chains line "
                       "by line (the seeds', or those a file or module registers); exit 1 if "
                       "any fails")
    a.add_argument("targets", nargs="*", metavar="TARGET",
                   help="a Python file (derivs.py) or importable module (pkg.derivs) that "
                        "registers derivations or chains when imported; only theirs are "
                        "audited")
    a.add_argument("--builtin", action="store_true",
                   help="with TARGETs: audit the seeds' derivations too")
    a.add_argument("--filter", default=None, help="only derivations whose name contains this")
    a.add_argument("--json", default=None, help="write the full reports as JSON")
    a.add_argument("--markdown", default=None, help="write the table and reports as Markdown")
    a.add_argument("--no-fail", action="store_true", help="exit 0 even when some fail")
    a.set_defaults(func=cmd_audit)
    e = sub.add_parser("example", help="write a built-in example problem (A, B, Z, P, S, W)")
    e.add_argument("--out", required=True)
    e.add_argument("--n", type=int, default=96)
    e.add_argument("--m", type=int, default=64)
    e.add_argument("--k", type=int, default=128)
    e.add_argument("--q", type=int, default=256)
    e.add_argument("--noise", type=float, default=0.01)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--p-condition", type=float, default=1.0,
                   help="spread of P's column scales (1: well conditioned)")
    e.add_argument("--force", action="store_true")
    e.set_defaults(func=cmd_example)
    f = sub.add_parser("fit", help="fit H_R, H_I to a data file, or a registered model "
                       "(--model)")
    f.add_argument("data")
    f.add_argument("--out", required=True)
    f.add_argument("--method", default=None,
                   choices=["exact", "auto", "alternating", "lbfgs", "adam", "cg"],
                   help="seed 1: exact (default), alternating, lbfgs, adam, cg; with --model: "
                        "auto (default: L-BFGS), alternating, lbfgs, adam, cg")
    f.add_argument("--model", default=None, metavar="TARGET:NAME",
                   help="fit the derivation NAME that the file or module TARGET registers "
                        "(DATA: its other arguments by name, starting values <arg>0)")
    f.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    f.add_argument("--max-iters", type=int, default=5000)
    f.add_argument("--ridge", type=float, default=0.0,
                   help="add ridge·(‖R‖² + ‖Q‖²): needed where G = K_c K_cᴴ is singular "
                        "(k or q below m)")
    f.add_argument("--tol", type=float, default=None)
    f.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "default"],
                   help="precision of the fit's float32 matrix products (default: highest; "
                        "'default' is XLA's, TF32 on NVIDIA GPUs: faster, but float32 fits "
                        "then stall near a relative gap of 1e-2)")
    f.add_argument("--device", default=None, choices=["cpu", "gpu", "cuda", "tpu"],
                   help="XLA platform (default: JAX's choice)")
    f.add_argument("--names", nargs="*", metavar="NAME=FILE_NAME",
                   help="read array NAME (A, B, Z, P, S, W, R0, Q0) from FILE_NAME in DATA")
    f.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="save the solver state to DIR/checkpoint.npz every N iterations")
    f.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.npz (same data and options)")
    f.add_argument("--force", action="store_true",
                   help="overwrite an existing result or discard an existing checkpoint")
    f.add_argument("--max-array-mib", type=float, default=4096, metavar="MIB",
                   help="refuse any array of DATA that takes more than MIB mebibytes once read "
                        "(default 4096; a small compressed file can inflate to gigabytes)")
    f.set_defaults(func=cmd_fit)
    b = sub.add_parser("bench", help="benchmarks: gradient, solvers, spectral, batch, audit, "
                       "devices, all, plots, report",
                       description="matgrad bench NAME [options of that benchmark]; "
                       "e.g. matgrad bench spectral --sizes 256 512 or matgrad bench gradient "
                       "--help. 'all' runs every benchmark at its default sizes, 'plots' draws "
                       "PNGs and 'report' rewrites docs/performance/index.md's tables from "
                       "benchmarks/results/*.json.")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
