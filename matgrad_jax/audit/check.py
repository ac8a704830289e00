"""``check_gradient``: audit a hand-derived gradient and say exactly what is wrong."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from ..precision import products
from . import checks, diagnosis, points
from .report import GradientReport

DEFAULT_FAMILIES = ("symmetric", "skew", "psd", "diagonal")


def default_tolerance(dtype) -> float:
    """8·sqrt(eps): 1.2e-7 in float64 (a 1e-4 error fails), 2.8e-3 in float32."""
    return float(8 * np.sqrt(np.finfo(np.dtype(dtype)).eps))


def check_gradient(
    fun: Callable,
    grad_fun: Callable,
    args: Sequence,
    *,
    argnums: int | tuple[int, ...] = 0,
    arg_names: Sequence[str] | None = None,
    seed: int = 0,
    n_perturbed: int = 4,
    n_random: int = 4,
    n_family: int = 2,
    families: Sequence[str] = DEFAULT_FAMILIES,
    n_directions: int = 3,
    taylor: bool = True,
    kinks: bool = True,
    rtol: float | None = None,
    reference: str = "auto",
    name: str | None = None,
    source: str | None = None,
    matmul_precision: str | None = "highest",
) -> GradientReport:
    """Audit ``grad_fun`` against ``jax.grad``, forward mode and a Taylor-remainder test.

    Args:
      fun: ``fun(*args)`` -> real scalar.
      grad_fun: ``grad_fun(*args)`` -> the gradient w.r.t. ``args[argnums]`` (a tuple of arrays
        when ``argnums`` is a tuple), shaped like those arguments. Complex arguments use the
        real-inner-product convention ``df/dx + i df/dy``.
      args: example arguments: the base point, and the shapes/dtypes of further draws.
      argnums: which arguments the gradient is w.r.t.
      arg_names: names used in the report (default ``x0, x1, ...``).
      seed: PRNG seed of the points and directions.
      n_perturbed / n_random: generic perturbations of the example / fresh Gaussian draws.
      n_family: draws per (square argument, family) in ``families``.
      n_directions: directions of the forward-mode, Taylor and kink tests.
      taylor / kinks: run the Taylor-remainder and the one-sided-derivative tests.
      rtol: relative tolerance (default :func:`default_tolerance` of the dtype, raised to 10x the
        reference's own rounding error where float64 can measure it).
      reference: ``"auto"`` (``jax.grad`` when ``fun`` is JAX-differentiable, else Taylor-only),
        ``"jax"`` or ``"taylor"``.
      matmul_precision: the matrix-product precision every evaluation runs under
        (``jax.default_matmul_precision``). ``"highest"`` (default) makes float32 products true
        float32 products: on NVIDIA GPUs XLA's default runs them on TF32 tensor cores (10-bit
        mantissas, relative errors ~1e-3), which fails the Taylor test of a right gradient
        and is no fact about the derivation. ``None`` keeps the caller's setting.

    Returns:
      A :class:`GradientReport`. A wrong hand gradient (or one that raises) is a finding, in
      the report; a caller's mistake raises :class:`~matgrad_jax.InputError` naming it: ``args``
      not a tuple, ``fun`` not a real scalar, ``argnums`` out of range or naming an integer
      argument.
    """
    with products(matmul_precision):
        return _check_gradient(fun, grad_fun, args, argnums, arg_names, seed, n_perturbed,
                               n_random, n_family, families, n_directions, taylor, kinks, rtol,
                               reference, name, source)


def _check_gradient(fun, grad_fun, args, argnums, arg_names, seed, n_perturbed, n_random,
                    n_family, families, n_directions, taylor, kinks, rtol, reference, name,
                    source) -> GradientReport:
    t0 = time.perf_counter()
    if not isinstance(args, (tuple, list)):
        got = (f"an array of shape {tuple(np.shape(args))}" if hasattr(args, "shape")
               else type(args).__name__)
        raise InputError(f"args: expected a tuple of fun's arguments ((x,) for one), got {got}")
    args = tuple(jnp.asarray(a) for a in args)
    multi = isinstance(argnums, (tuple, list))
    argnums_t = tuple(argnums) if multi else (argnums,)
    names = tuple(arg_names) if arg_names is not None else tuple(f"x{i}" for i in range(len(args)))
    if len(names) != len(args):
        raise InputError(f"arg_names: expected {len(args)} names, got {len(names)}")
    for i in argnums_t:
        if not 0 <= i < len(args):
            raise InputError(f"argnums: {i} is out of range for {len(args)} arguments")
        if not jnp.issubdtype(args[i].dtype, jnp.inexact):
            raise InputError(f"args[{i}] ({names[i]}): expected a float or complex array to "
                             f"differentiate, got dtype {args[i].dtype}")
    out = _output_problem(fun, args)
    if out:
        raise InputError(f"fun: expected a real scalar output, got {out}")
    diff_names = tuple(names[i] for i in argnums_t)
    dtype = jnp.real(args[argnums_t[0]]).dtype
    base = dict(dtype=str(args[argnums_t[0]].dtype), arguments=diff_names, name=name,
                source=source)

    # 1. Structure and shapes of the hand gradient at the example point. -------------------------
    try:
        g0 = checks.as_tuple(_call_jitted(grad_fun, args))
    except Exception as exc:  # noqa: BLE001 - the user's gradient raised: that is the finding
        return GradientReport(False, "error", float("inf"), "error", 0.0, **base,
                              message=f"grad_fun raised {type(exc).__name__}: {exc}",
                              seconds=time.perf_counter() - t0)
    problem = _structure_problem(g0, args, argnums_t, names, multi)
    if problem:
        return GradientReport(False, "error", float("inf"), "shape", 0.0, **base,
                              message=problem, seconds=time.perf_counter() - t0)

    use_jax = reference == "jax" or (reference == "auto" and _jax_differentiable(fun, args,
                                                                                 argnums_t))
    tol = rtol if rtol is not None else default_tolerance(dtype)
    if rtol is None and use_jax:
        tol = max(tol, 10 * _reference_noise(fun, args, argnums_t))

    rng = np.random.default_rng(seed)
    host_args = tuple(np.asarray(a) for a in args)

    # 2. Points: example, perturbations, fresh draws, families. --------------------------------
    groups, labels = [points.expand(host_args)], ["example"]
    if n_perturbed:
        groups.append(points.perturbed_points(rng, host_args, n_perturbed))
        labels += ["perturbed"] * n_perturbed
    if n_random:
        groups.append(points.family_points(rng, host_args, n_random))
        labels += ["random"] * n_random
    family_keys = []
    if n_family:
        for i, arg in points.square_float_args(host_args, names):
            for fam in families:
                groups.append(points.family_points(rng, host_args, n_family, fam, i))
                labels += [f"{fam}:{arg}"] * n_family
                family_keys.append((arg, fam))
    pts = points.stack_points(groups, args)
    labels = np.asarray(labels)
    generic = np.isin(labels, ["example", "perturbed", "random"])

    if use_jax:
        vals, g_ref, g_hand = checks.batched_gradients(fun, grad_fun, argnums_t, pts)
    else:
        vals, g_hand = checks.batched_values_and_hand(fun, grad_fun, pts)
        g_ref = None
    vals = np.asarray(vals)
    finite = np.isfinite(vals)
    if g_ref is not None:
        for g in g_ref:
            finite &= np.all(np.isfinite(np.asarray(g)).reshape(len(vals), -1), axis=1)
    skipped = int((~finite).sum())

    # 3. Compare block by block, point by point. --------------------------------------------------
    if g_ref is not None:
        g_ref = [np.asarray(g) for g in g_ref]
        g_hand = [np.asarray(g) for g in g_hand]
        total = np.sqrt(sum(np.sum(np.abs(g.reshape(len(vals), -1)) ** 2, axis=1)
                            for g in g_ref))
        total = np.where(total > 0, total, 1.0)
        errs = np.stack([np.sqrt(np.sum(np.abs((h - r).reshape(len(vals), -1)) ** 2, axis=1))
                         / total for h, r in zip(g_hand, g_ref)], axis=1)  # (points, blocks)
        errs = np.where(finite[:, None], errs, 0.0)
        point_ok = np.all(errs <= tol, axis=1)
    else:
        errs, point_ok = None, np.ones(len(vals), bool)

    # 4. Forward mode along random tangents (example + first generic points). ------------------
    forward = {}
    n_fwd = min(3, int(generic.sum()))
    if use_jax and n_directions:
        fwd_err = 0.0
        for p in range(n_fwd):
            at = tuple(a[p] for a in pts)
            dirs = points.random_directions(rng, at, argnums_t, n_directions)
            fwd = np.asarray(checks.forward_directional(fun, argnums_t, at, dirs))
            hand = np.asarray(checks.directional(tuple(g[p] for g in g_hand), dirs))
            size = total[p] * np.sqrt(sum(float(np.sum(np.abs(np.asarray(d)) ** 2)) for d in
                                          dirs) / n_directions)
            fwd_err = max(fwd_err, float(np.max(np.abs(fwd - hand)) / size))
        forward = {"max_rel_error": fwd_err, "points": n_fwd, "directions": n_directions,
                   "passed": fwd_err <= tol}

    # 5. Taylor remainder at the example point. ----------------------------------------------------
    taylor_info = {}
    if taylor:
        t = checks.taylor_test(fun, g0, args, argnums_t, rng, n_directions=n_directions)
        slopes = [s for s in t["slopes"] if np.isfinite(s)]
        taylor_info = {"slopes": t["slopes"], "hs": t["hs"].tolist(),
                       "remainders": t["remainders"].tolist(),
                       "passed": all(s >= 1.7 for s in slopes)}

    # 6. Kinks: one-sided derivatives at the example point. ---------------------------------------
    kink_info = {}
    if kinks:
        dirs = points.random_directions(rng, args, argnums_t, max(n_directions, 4))
        kink_info = checks.kink_test(fun, args, argnums_t, dirs)

    # 7. Verdict and diagnosis. -------------------------------------------------------------------
    report = GradientReport(True, "pass", 0.0, None, tol, **base, points=int(finite.sum()),
                            skipped=skipped, forward=forward, taylor=taylor_info,
                            kink=kink_info, reference="jax.grad" if use_jax else "taylor-only")
    if errs is not None:
        report.max_rel_error = float(errs.max())
        report.families = {lab: float(errs[labels == lab].max()) for lab in np.unique(labels)}
        # At a kink of the example point there is no gradient to compare with: judge the
        # formula on the other points only.
        at_kink = (labels == "example") if kink_info.get("kink") else np.zeros(len(labels), bool)
        if at_kink.any():
            away = ~at_kink
            kink_info["elsewhere_max_rel_error"] = float(errs[away].max()) if away.any() else 0.0
            point_ok = point_ok | at_kink
        fam_ok = {(arg, fam): bool(point_ok[labels == f"{fam}:{arg}"].all())
                  for arg, fam in family_keys}
        report.where_it_holds = diagnosis.where_it_holds(bool(point_ok[generic].all()), fam_ok)
        if at_kink.any() and point_ok.all():
            report.where_it_holds = "all tested inputs away from the kink"
        for b, bname in enumerate(diff_names):
            bad = (errs[:, b] > tol) & finite & ~at_kink
            entry = {"max_rel_error": float(errs[:, b].max()), "diagnosis": None}
            if bad.any():
                sel = bad & generic if (bad & generic).any() else bad
                h, r = g_hand[b][sel], g_ref[b][sel]
                entry["diagnosis"] = diagnosis.classify(h, r, tol)
                where, entries, emap = diagnosis.locate(h, r, tol)
                entry.update(location=where, entries=entries)
                if emap.size <= 400:
                    entry["error_map"] = emap
            report.blocks[bname] = entry
        report.failing_arguments = tuple(n for n, e in report.blocks.items() if e["diagnosis"])
        if not point_ok.all():
            worst = int(np.argmax(errs.max(axis=1)))
            report.failing_family, report.failing_point = str(labels[worst]), worst
    else:
        report.max_rel_error, report.where_it_holds = _taylor_only(
            report, fun, g_hand, pts, args, argnums_t, rng, tol)

    failed_checks = []
    if not point_ok.all() or report.failing_arguments:
        failed_checks.append("autodiff comparison" if use_jax else "finite differences")
    if forward and not forward["passed"]:
        failed_checks.append("forward mode")
    if taylor_info and not taylor_info["passed"]:
        failed_checks.append("Taylor slope")
    if kink_info.get("kink"):
        report.passed, report.verdict, report.diagnosis = False, "nondifferentiable", \
            "nondifferentiable"
    elif failed_checks:
        labels_found = {e["diagnosis"] for e in report.blocks.values() if e.get("diagnosis")}
        report.passed, report.verdict = False, "fail"
        report.diagnosis = labels_found.pop() if len(labels_found) == 1 else (
            "mismatch" if labels_found else report.diagnosis or "mismatch")
    report.message = _message(report, failed_checks)
    report.seconds = time.perf_counter() - t0
    return report


def _call_jitted(fn, args):
    """``fn(*args)`` compiled as one program (many small eager ops each compile separately);
    plain call for code JAX cannot trace."""
    try:
        return jax.jit(fn)(*args)
    except (TypeError, jax.errors.JAXTypeError):  # tracer-to-NumPy conversions are TypeErrors
        return fn(*args)


def _structure_problem(g0, args, argnums, names, multi) -> str | None:
    if len(g0) != len(argnums):
        return (f"grad_fun returned {len(g0)} array(s); expected {len(argnums)} "
                f"(one per argnum {argnums})")
    for g, i in zip(g0, argnums):
        if jnp.shape(g) != args[i].shape:
            return (f"grad_fun's gradient for {names[i]} has shape {tuple(jnp.shape(g))}; "
                    f"expected {tuple(args[i].shape)} (the shape of {names[i]})")
    return None


def _output_problem(fun, args) -> str | None:
    """What is wrong with ``fun(*args)`` as an objective (not a real scalar), or None. Found
    by tracing; a function JAX cannot trace (a host callback, NumPy code) is called once."""
    try:
        out = jax.eval_shape(fun, *args)
    except Exception:  # noqa: BLE001 - not traceable: evaluate it as the Taylor test will
        try:
            out = np.asarray(fun(*args))
        except Exception:  # noqa: BLE001 - fun raised: the audit reports it where it calls fun
            return None
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(out).__name__}"
    if tuple(shape) != () or not jnp.issubdtype(dtype, jnp.floating):
        return f"shape {tuple(shape)} and dtype {np.dtype(dtype)}"
    return None


def _jax_differentiable(fun, args, argnums) -> bool:
    try:
        jax.eval_shape(checks.reference_gradient(fun, argnums), *args)
        return True
    except Exception:  # noqa: BLE001 - anything JAX cannot differentiate
        return False


def _reference_noise(fun, args, argnums) -> float:
    """Relative rounding error of ``jax.grad`` itself in the working dtype, measured against
    float64 (0 when already float64 or x64 is off)."""
    hi = checks.high_precision(args)
    if hi[argnums[0]].dtype == args[argnums[0]].dtype:
        return 0.0
    ref = checks.reference_gradient(fun, argnums)
    lo_g, hi_g = ref(*args), ref(*hi)
    num = np.sqrt(sum(float(jnp.sum(jnp.abs(a.astype(b.dtype) - b) ** 2)) for a, b in
                      zip(lo_g, hi_g)))
    den = np.sqrt(sum(float(jnp.sum(jnp.abs(b) ** 2)) for b in hi_g)) or 1.0
    return num / den


def _taylor_only(report, fun, g_hand, pts, args, argnums, rng, tol):
    """Without autodiff: central differences along random directions at every point."""
    worst, dd_all, fd_all = 0.0, [], []
    count = len(np.asarray(jax.tree_util.tree_leaves(pts)[0]))
    for p in range(min(count, 5)):
        at = tuple(a[p] for a in pts)
        dirs = points.random_directions(rng, at, argnums, 3)
        fd = checks.finite_difference_directional(fun, at, argnums, dirs)
        dd = np.asarray(checks.directional(tuple(g[p] for g in g_hand), dirs))
        scale = np.max(np.abs(fd)) or 1.0
        worst = max(worst, float(np.max(np.abs(dd - fd)) / scale))
        dd_all.append(dd)
        fd_all.append(fd)
    fd_tol = max(tol, 1e-6)
    if worst > fd_tol:
        dd, fd = np.concatenate(dd_all), np.concatenate(fd_all)
        label = diagnosis.classify(dd[None], fd[None], fd_tol)
        report.blocks = {n: {"max_rel_error": worst, "diagnosis": label} for n in report.arguments}
        report.failing_arguments = report.arguments
    return worst, ("all tested inputs" if worst <= fd_tol else "fails on every tested input")


def _message(r: GradientReport, failed_checks) -> str:
    if r.verdict == "nondifferentiable":
        return (f"not differentiable at the example point: one-sided directional derivatives "
                f"differ (relative gap {r.kink['max_relative_gap']:.2g}); no gradient exists "
                "there, so the hand gradient is not judged wrong at it. Elsewhere: max relative "
                f"error {r.kink.get('elsewhere_max_rel_error', r.max_rel_error):.2e} "
                f"({r.where_it_holds}).")
    if r.passed:
        return (f"pass: max relative error {r.max_rel_error:.2e} <= {r.tolerance:.1e} over "
                f"{r.points} points ({r.reference}), Taylor slopes "
                f"{[round(s, 2) for s in r.taylor.get('slopes', []) if np.isfinite(s)]}.")
    parts = [f"FAIL ({', '.join(failed_checks)}): diagnosis {r.diagnosis}"]
    for name in r.failing_arguments:
        b = r.blocks[name]
        parts.append(f"{name}: {b['diagnosis']} (max rel. error {b['max_rel_error']:.2e}"
                     + (f", {b['location']}" if b.get("location") else "") + ")")
    ok = [n for n in r.arguments if n not in r.failing_arguments]
    if ok:
        parts.append("correct: " + ", ".join(ok))
    parts.append(f"where it holds: {r.where_it_holds}")
    if r.failing_family:
        parts.append(f"worst point: #{r.failing_point} ({r.failing_family})")
    return "; ".join(parts) + "."
