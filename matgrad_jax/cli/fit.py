"""``matgrad fit DATA --out DIR`` for seed 1 (``--model`` goes to :mod:`matgrad_jax.cli.model`):
reading DATA, the fit under a progress bar with checkpoints, the result written as one set."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ._common import _fail, _x64


def read_named(args, known: tuple[str, ...]) -> dict:
    """The arrays ``known`` that DATA holds (``--names NAME=FILE_NAME`` applied), bounded by
    ``--max-array-mib``; absent ones are missing from the result. Raises InputError."""
    from .._checks import InputError
    from ..data_files import array_names, load_arrays

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

    from .._checks import InputError, start_pair
    from ..data_files import array_names, fingerprint
    from ..fit import WITHOUT_REFERENCE
    from ..problems import channel

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

    from .._checks import InputError
    from ..fit import METHODS
    from ..io import OutputLock, check_out_dir

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
        from .model import fit_model_cli

        return fit_model_cli(args, out, _fail)
    if args.method in ("auto", "lbfgs_backtracking"):
        return _fail(f"--method {args.method}: for --model fits; seed 1 takes exact, "
                     "alternating, lbfgs, adam or cg")
    args.method = args.method or "exact"
    assert args.method in METHODS
    options = dict(method=args.method, max_iters=args.max_iters, tol=args.tol)
    from ..io import CHECKPOINT_FORMAT

    meta = dict(format=CHECKPOINT_FORMAT, method=args.method, dtype=args.dtype,
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

    from ..fit import fit_chunked, fit_start
    from ..io import load_tree, npz_bytes

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
    from ..io import save_tree
    from ..progress import FitProgress

    t0 = time.perf_counter()
    every = args.checkpoint_every
    with FitProgress(args.max_iters, title) as bar:
        def on_chunk(s, final):
            k = int(s.k)
            seconds = elapsed + time.perf_counter() - t0
            times.append([k, seconds])
            bar.update(k, float(s.f), float(s.history.grad_norms[k]))
            if every and not final:
                save_tree(ckpt, s, {**meta, "iteration": k, "seconds": seconds,
                                    "times": times})

        res = fit(on_chunk)
    return res, elapsed + time.perf_counter() - t0


def write_fit(args, out: Path, res, method: str, seconds: float, times: list, meta: dict,
              solution: bytes, **extra) -> bytes | None:
    """solution.npz, history.json and convergence.png written as one set (the checkpoint has
    served: it goes too); the plot's bytes, or None without matplotlib."""
    from ..io import write_result_set

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
