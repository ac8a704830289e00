"""``matgrad fit DATA --model TARGET:NAME --out DIR``: fit a user's registered derivation.

TARGET is a Python file or module that registers the derivation NAME (as ``matgrad audit``
reads it). DATA (``.npz``/``.npy``/``.mat``) holds the arguments that are not differentiated, by
name, and the starting values ``<arg>0`` (``U0``, ``V0``). DIR gets ``solution.npz`` (the
differentiated arrays by name), ``history.json`` and ``convergence.png``, written as one set;
``--checkpoint-every``/``--resume`` as for seed 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .._checks import InputError


def parse_model(spec: str) -> tuple[str, str]:
    """``TARGET:NAME`` split at its first colon."""
    target, sep, name = spec.partition(":")
    if not sep or not target or not name:
        raise InputError(f"--model: expected TARGET:NAME (a file or module that registers the "
                         f"derivation NAME, e.g. mf.py:mf/right), got {spec!r}")
    return target, name


def load_model(spec: str):
    """Import TARGET and build the model of its derivation NAME."""
    from ..model import Model
    from ..registry import load_targets

    target, name = parse_model(spec)
    registered = load_targets([target])
    if name not in registered:
        from ..registry import derivations

        others = [d.name for d in derivations(builtin=None)]
        if name not in others:
            raise InputError(f"--model {spec}: {target} registers no derivation {name!r} "
                             f"(it registers: {', '.join(registered) or 'none'})")
    return Model.from_derivation(name)


def load_model_data(args, model) -> tuple[dict, tuple, str]:
    """DATA's arrays for ``model`` (``--names`` applied), the start, and their fingerprint."""
    import numpy as np

    from ..data_files import array_names, fingerprint
    from .fit import read_named

    starts = tuple(f"{p}0" for p in model.param_names)
    known = model.data_names + starts
    data = read_named(args, known)
    missing = [k for k in model.data_names if k not in data and k not in model.defaults]
    if missing:
        raise InputError(f"DATA: missing array(s) {', '.join(missing)}, the data of model "
                         f"{model.name!r} (found: {', '.join(array_names(args.data)) or 'none'};"
                         " rename with --names NAME=FILE_NAME)")
    missing = [k for k in starts if k not in data]
    if missing:
        raise InputError(f"DATA: missing starting value(s) {', '.join(missing)} (model "
                         f"{model.name!r} has no closed-form solve: DATA must hold "
                         f"{', '.join(starts)})")
    arrays, blocks, _ = model.prepare({k: data[k] for k in model.data_names if k in data},
                                      init=tuple(data[k] for k in starts))
    dtype = np.dtype(args.dtype)
    arrays = {k: a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
              for k, a in arrays.items()}
    blocks = tuple(b.astype(dtype) for b in blocks)
    used = {**arrays, **dict(zip(starts, blocks))}
    return arrays, blocks, fingerprint(used)


def fit_model_cli(args, out: Path, fail) -> int:
    """``matgrad fit --model``; ``fail(message)`` prints one line and returns exit code 2."""
    from ..io import OutputLock

    if args.ridge:
        return fail("--ridge: a seed-1 option; a model's objective is its own")
    method = args.method or "auto"
    if method == "exact":
        return fail("--method exact: a registered derivation has no closed-form solve; use "
                    "auto, alternating, lbfgs, lbfgs_backtracking, adam or cg")
    try:
        model = load_model(args.model)
        data, init, digest = load_model_data(args, model)
    except InputError as exc:
        return fail(str(exc))
    import jax.numpy as jnp

    data = {k: jnp.asarray(a) for k, a in data.items()}  # on the device once, for both uses
    init = tuple(jnp.asarray(b) for b in init)
    if model.grad is not None and not args.resume:
        report = model.audit(data, init)
        if not report.passed:
            return fail(f"the hand gradient of {model.name!r} fails its audit at the start, so "
                        f"it is not fitted: {report.headline()}")
    from ..io import CHECKPOINT_FORMAT

    meta = dict(format=CHECKPOINT_FORMAT, model=model.name, method=method,
                dtype=args.dtype, max_iters=args.max_iters, tol=args.tol, data_sha256=digest)
    try:
        with OutputLock(out):
            return _locked(args, out, model, data, init, method, meta, fail)
    except InputError as exc:
        return fail(str(exc))


def _locked(args, out: Path, model, data, init, method: str, meta: dict[str, Any], fail) -> int:
    import numpy as np

    from ..fit_model import fit_model_chunked, model_start
    from ..io import load_tree, npz_bytes
    from .fit import out_refusal, run_with_progress, write_fit

    ckpt = out / "checkpoint.npz"
    refused = out_refusal(args, out, ckpt)
    if refused:
        return fail(refused)
    options = dict(max_iters=args.max_iters, tol=args.tol)
    opts = tuple(sorted(options.items()))
    state, elapsed, times = None, 0.0, []
    if args.resume:
        template = model_start(model, data, init, method, opts)
        state, saved = load_tree(ckpt, template, expect=meta)
        elapsed, times = float(saved["seconds"]), list(saved["times"])
    res, seconds = run_with_progress(
        args, ckpt, meta, elapsed, times, f"matgrad fit {model.name} ({method})",
        lambda on_chunk: fit_model_chunked(model, data, init, method=method, state=state,
                                           checkpoint_every=args.checkpoint_every,
                                           on_chunk=on_chunk, **options))
    params = {n: np.asarray(p) for n, p in zip(model.param_names, res.params)}
    if not (np.isfinite(float(res.value)) and all(np.isfinite(p).all() for p in params.values())):
        print(f"error: the fit ended non-finite after {int(res.iterations)} iteration(s) "
              f"({res.reason}); nothing was written", file=sys.stderr)
        return 3
    png = write_fit(args, out, res, method, seconds, times, meta, npz_bytes(**params),
                    model=model.name)
    print(f"matgrad fit: model {model.name}, method {method} ({args.dtype})\n"
          f"  objective   {float(res.value):.10g}\n"
          f"  iterations  {int(res.iterations)}, converged={bool(res.converged)} ({res.reason})\n"
          f"  ‖∇φ‖        {float(res.grad_norm):.3e}\n"
          f"  time        {seconds:.2f} s\n"
          f"  wrote       {out}/solution.npz ({', '.join(params)}), history.json"
          + (", convergence.png" if png is not None else ""))
    return 0
