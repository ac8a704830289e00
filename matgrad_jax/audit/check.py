"""``check_gradient``: audit a hand-derived gradient and say exactly what is wrong.

The audit assembles small checks (:mod:`~matgrad_jax.audit.checks`): the hand gradient against
``jax.grad`` at many points on the arguments' domains, forward mode, the Taylor remainder and a
kink test; then :mod:`~matgrad_jax.audit.verdict` turns what they found into one report whose
verdict, diagnosis, domain of validity and message agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import programs
from .._checks import InputError
from ..precision import products
from . import checks, domains, lines, points, spec, verdict
from .report import GradientReport

DEFAULT_FAMILIES = ("symmetric", "skew", "psd", "diagonal")
BUDGETS = ("auto", "full")
SCREEN_FLOPS = 1.5e7
"""Above this estimated work for one evaluation of ``fun`` (:func:`matgrad_jax.programs.flops`;
about a 200×200 matrix product), ``budget="auto"`` screens first: the full audit costs about
120 evaluations, which at this size is ~0.1 s of arithmetic on a 2-core CPU
(``docs/guide/audit.md``, "What it costs")."""
SCREEN = dict(n_perturbed=1, n_random=1, n_family=1, forward_points=1, taylor_directions=1,
              kink_directions=1)
"""The screen: the example point, one perturbed and one random point, one point per structured
family; the Taylor remainder and the kink test along one random direction (a kink shows along
almost every direction; the full audit takes four), from one program
(:func:`~matgrad_jax.audit.lines.screen`); forward mode at the example point where ``fun`` has
custom derivative rules. Below float64 the comparison runs in the working dtype
(:data:`~matgrad_jax.audit.compare.TOL_IMPLIED`) and the example point against float64 too."""


def default_tolerance(dtype) -> float:
    """8·sqrt(eps): 1.2e-7 in float64 (a 1e-4 error fails). Below float64 the audit sets the
    tolerance from what the float64 reference resolves instead (see :func:`check_gradient`)."""
    return float(8 * np.sqrt(np.finfo(np.dtype(dtype)).eps))


def check_gradient(
    fun: Callable,
    grad_fun: Callable,
    args: Sequence,
    *,
    argnums: int | str | tuple = 0,
    arg_names: Sequence[str] | None = None,
    domains: Mapping | None = None,
    vary_data: bool = False,
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
    budget: str = "auto",
) -> GradientReport:
    """Audit ``grad_fun`` against ``jax.grad``, forward mode and a Taylor-remainder test.

    Args:
      fun: ``fun(*args)`` -> real scalar.
      grad_fun: ``grad_fun(*args)`` -> the gradient w.r.t. ``args[argnums]``, shaped like that
        argument (the same pytree for a dict/tuple/NamedTuple argument; a tuple of them when
        ``argnums`` is a tuple). Complex arguments use the real-inner-product convention
        ``df/dx + i df/dy``.
      args: example arguments (arrays or pytrees of arrays): the base point, and the shapes and
        dtypes of further draws. Integer and bool arguments pass through untouched.
      argnums: which arguments the gradient is w.r.t.: indices or names from ``fun``'s
        signature (``argnums="Sigma"``).
      arg_names: names used in the report (default: ``fun``'s parameter names, else ``x0, ...``).
      domains: ``{argument index or name: kind}`` with kinds ``"general"`` (default for
        differentiated arguments), ``"symmetric"``, ``"spd"``, ``"skew"``, ``"diagonal"`` and
        ``"fixed"`` (never perturbed or redrawn; the default for the other arguments). Points
        and tangents are drawn on the domain and gradients compared after projection onto it
        (``sym(G)`` on symmetric and spd, ``skew(G)``, ``diag(G)``).
      vary_data: perturb and redraw the arguments that are not differentiated too (as general
        arrays, unless ``domains`` says otherwise), and sweep their structured families.
      seed: PRNG seed of the points and directions.
      n_perturbed: perturbations of the example point.
      n_random: fresh draws on the domains.
      n_family: draws per (square argument, structured family) in ``families``.
      n_directions: directions of the forward-mode, Taylor and kink tests.
      taylor: run the Taylor-remainder test.
      kinks: run the one-sided-derivative (kink) test.
      rtol: relative tolerance. Default: in float64, 8·sqrt(eps) = 1.2e-7; below float64 the
        reference is computed in float64, and the hand gradient's formula is evaluated in
        float64 where it runs there and judged within ``max(1.2e-7, 16 e_ref eps64/eps)``
        (``e_ref``: ``jax.grad``'s own relative error in the working dtype at the point); one
        that does not run in float64 is judged as given, within what the dtype resolves there
        (``max(32 eps, 16 e_ref)``). (The screen's shortcut below float64: see ``budget``.)
      reference: ``"auto"`` (``jax.grad`` when ``fun`` is JAX-differentiable, else finite
        differences only), ``"jax"`` or ``"taylor"``.
      matmul_precision: the matrix-product precision every evaluation runs under (``"highest"``:
        true float32 products on GPUs too; ``None`` keeps the caller's).
      budget: ``"auto"`` (default): where one evaluation of ``fun`` is costly (estimated work
        over :data:`SCREEN_FLOPS`), a screen runs first (:data:`SCREEN`: at most one
        perturbed, one random and one point per family, the Taylor and kink tests along one
        direction, forward mode where ``fun`` has custom derivative rules; below float64 the
        comparison in the working dtype, within 14 eps, which implies the criterion of
        ``rtol``, and the example point against float64 as well); if it finds anything (a
        failure, a non-finite value, a kink, a skipped point) the full audit follows and is
        what is reported. Every family is still tested. ``"full"``: always the counts
        given. ``report.budget`` says which ran.

    Returns:
      A :class:`GradientReport`. A wrong (or raising, or non-finite) hand gradient is a finding,
      in the report; a caller's mistake raises :class:`~matgrad_jax.InputError` naming it.
    """
    spec.check_options(rtol=rtol, seed=seed, reference=reference, families=families,
                       counts={"n_perturbed": n_perturbed, "n_random": n_random,
                               "n_family": n_family, "n_directions": n_directions})
    if budget not in BUDGETS:
        raise InputError(f"budget: expected one of {BUDGETS}, got {budget!r}")
    t0 = time.perf_counter()
    with products(matmul_precision):
        S = spec.build(fun, args, argnums, arg_names, domains, vary_data)
        F = checks.Functions(S, fun, grad_fun)  # each traced once, when first needed
        call = (S, F, fun, grad_fun, seed, n_perturbed, n_random, n_family, tuple(families),
                n_directions, taylor, kinks, rtol, reference, name, source)
        t = F.traced("f", False)
        cost = programs.flops(t) if t is not None else 0.0
        if budget == "auto" and cost > SCREEN_FLOPS:
            report = _check(*call, screen=True)
            if (report is not None and report.passed and set(report.statuses) <= {"ok"}
                    and not report.failed_checks):
                report.budget = {"mode": "screen", "flops": cost, "screened": False}
                report.message += (f" Screened (one evaluation of fun ~{cost:.1e} flops): "
                                   "budget='full' runs every point and direction asked for.")
                report.seconds = time.perf_counter() - t0
                return report
        report = _check(*call, screen=False)
        report.budget = {"mode": "full", "flops": cost,
                         "screened": bool(budget == "auto" and cost > SCREEN_FLOPS)}
        report.seconds = time.perf_counter() - t0
        return report


def _check(S, F, fun, grad_fun, seed, n_perturbed, n_random, n_family, families, n_directions,
           taylor, kinks, rtol, reference, name, source, *, screen) -> GradientReport:
    t0 = time.perf_counter()
    args = S.unflatten(S.leaves)
    if screen:
        n_perturbed, n_random, n_family = (min(n, SCREEN[k]) for n, k in (
            (n_perturbed, "n_perturbed"), (n_random, "n_random"), (n_family, "n_family")))
    out = _output_problem(fun, args, F)
    if out:
        raise InputError(f"fun: expected a real scalar output, got {out}")
    base = dict(arguments=S.block_names, name=name, source=source)

    # 1. The hand gradient's structure at the example point. ------------------------------------
    try:
        g0 = _traced_output(grad_fun, args, F)
    except Exception as exc:  # noqa: BLE001 - the user's gradient raised: that is the finding
        return verdict.finish(GradientReport(
            False, "error", float("inf"), "error", 0.0, dtype=_dtype_name(S.leaves[S.diff[0]]),
            message=f"FAIL: grad_fun raised {type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - t0, **base))
    problem = S.structure_problem(grad_fun, g0)
    work = _working_dtype(jax.tree_util.tree_leaves(g0), S)
    if problem:
        return verdict.finish(GradientReport(
            False, "error", float("inf"), "shape", 0.0, dtype=str(work),
            message=f"FAIL: {problem}", seconds=time.perf_counter() - t0, **base))

    rng = np.random.default_rng(seed)
    use_jax = reference == "jax" or (reference == "auto" and checks.differentiable(F))
    P = points.build(S, rng, n_perturbed=n_perturbed, n_random=n_random, n_family=n_family,
                     families=families)

    # 2. The autodiff comparison: values, reference and hand gradients at every point.
    try:
        ev = _screen_comparison(S, F, P, use_jax, work, rtol) if screen else None
        if ev is _INCONCLUSIVE:
            return None
        if ev is None:
            ev = _autodiff_comparison(S, F, P, use_jax, work, rtol)
    except _HandRaised as exc:
        return verdict.finish(GradientReport(
            False, "error", float("inf"), "error", 0.0, dtype=str(work),
            message=f"FAIL: grad_fun raised {exc}", seconds=time.perf_counter() - t0, **base))

    # 3. Kinks, forward mode, finite differences and the Taylor remainder at the example.
    forward, taylor_info, kink_info = _example_checks(ev, S, F, P, rng, use_jax, n_directions,
                                                      taylor, kinks, screen)
    report = verdict.assemble(ev, forward, taylor_info, kink_info, base)
    report.seconds = time.perf_counter() - t0
    return verdict.finish(report)


_INCONCLUSIVE = object()  # the screen found something: the full audit decides


def _screen_comparison(S, F, P, use_jax, work, rtol):
    """The screen's comparison, reduced in the program (:func:`~.checks.evaluate` ``"screen"``:
    per point the value, finite flags and the norms of ``jax.grad`` and of the hand gradient's
    difference from it; the two gradients whole at the example point only). In float64 each
    point is judged as the full audit judges it. Below float64 the hand gradient and
    ``jax.grad`` are compared in the working dtype only, each point passing where they agree
    within :data:`~.compare.TOL_IMPLIED` eps (which implies the float64 criterion as given),
    and the example point is judged in full against the float64 reference (the hand formula in
    float64, where it runs there). Returns the :class:`~.verdict.Evaluation`,
    :data:`_INCONCLUSIVE` where any point is not ``ok`` (the full audit then runs and decides),
    or None where this shortcut does not apply (no JAX reference, untraceable code; below
    float64: a given ``rtol`` or custom derivative rules)."""
    t = F.traced("f", False)
    low = np.finfo(work).eps > np.finfo(np.float64).eps
    if not (use_jax and t is not None and F.traced("h", False) is not None):
        return None
    if low and (rtol is not None or t.rules):
        return None
    if not low and not jax.config.jax_enable_x64:
        return None
    lo = _try(lambda: checks.evaluate("screen", F, P, hi=False))
    if lo is None:
        return None
    vals, ref_finite, hand_finite, ref_sq, err_sq, hand, ref = lo
    total, (err,) = verdict.relative_errors(ref_sq, err_sq)
    ev = verdict.Evaluation(spec=S, points=P, values=np.asarray(vals, np.float64), ref=ref,
                            hand=hand, hand64=None, ref_work=None, work=work,
                            ref_dtype=str(work) if low else "float64",
                            rtol=None if low else rtol, use_jax=True, implied=low)
    ev.judge(np.isfinite(ev.values) & ref_finite, list(np.asarray(hand_finite).T), total, err)
    if not np.all(ev.status == "ok"):
        return _INCONCLUSIVE
    if not low:
        return ev
    P0 = points.Points({i: x[:1] for i, x in P.stacked.items()}, P.labels[:1], [])
    hi = _try(lambda: checks.evaluate("both", F, P0, hi=True))
    if hi is not None:
        h64 = hi[0] if _all_float64(hi[0]) else None
        e0 = verdict.Evaluation(spec=S, points=P0, values=np.asarray(hi[1][0], np.float64),
                                ref=hi[1][1], hand=hand, hand64=h64, ref_work=ref, work=work,
                                ref_dtype="float64", rtol=None, use_jax=True)
        e0.compare()
        if e0.status[0] != "ok":
            return _INCONCLUSIVE
        ev.example64 = {"rel_error": float(np.max(e0.err[0])), "tolerance": float(e0.tol[0]),
                        "reference_rel_error": float(e0.reference_error[0]),
                        "formula_in_float64": h64 is not None}
    return ev


class _HandRaised(Exception):
    """The hand gradient raised at the audit's points: a finding, reported as such."""


def _autodiff_comparison(S, F, P, use_jax, work, rtol) -> verdict.Evaluation:
    """The hand gradient against ``jax.grad`` at every point (or, without a JAX reference, the
    values for finite differences), compared per point and block (:mod:`.verdict`)."""
    low = np.finfo(work).eps > np.finfo(np.float64).eps
    ref_dtype = "float64"
    fused = lo = hi = None
    h64 = ref_work = None
    # where the work is float64 already, hand gradient and reference run in one program (XLA
    # shares what the two compute alike); below float64, the same pair once in the work's
    # dtype and once in float64 (the formula free of rounding beside the true gradient)
    if use_jax and not low and jax.config.jax_enable_x64:
        fused = _try(lambda: checks.evaluate("both", F, P, hi=False))
    elif use_jax and low:
        lo = _try(lambda: checks.evaluate("both", F, P, hi=False))
        hi = _try(lambda: checks.evaluate("both", F, P, hi=True))
        if lo is not None:
            fused, ref_work = (lo[0], None), lo[1][1]
    try:
        h_work = fused[0] if fused else checks.evaluate("hand", F, P, hi=False)
    except Exception as exc:  # noqa: BLE001
        raise _HandRaised(f"{type(exc).__name__} at the audit's points: {exc}") from None
    if fused and not low:
        vals, ref = fused[1]
    elif hi is not None:
        vals, ref = hi[1]
        h64 = hi[0] if _all_float64(hi[0]) else None
    elif use_jax:
        try:
            vals, ref = checks.evaluate("ref", F, P, hi=True)
        except Exception:  # noqa: BLE001 - fun does not run in float64: its own dtype
            vals, ref = checks.evaluate("ref", F, P, hi=False)
            ref_dtype = str(work)
        if low and ref_dtype == "float64":
            h64 = _try_float64_hand(F, P)
    else:
        try:
            vals = checks.evaluate("value", F, P, hi=True)
        except Exception:  # noqa: BLE001
            vals = checks.evaluate("value", F, P, hi=False)
        ref = None
    if low and use_jax and ref_dtype == "float64" and ref_work is None:
        ref_work = _try(lambda: checks.evaluate("ref", F, P, hi=False)[1])

    ev = verdict.Evaluation(spec=S, points=P, values=np.asarray(vals, np.float64), ref=ref,
                            hand=h_work, hand64=h64, ref_work=ref_work, work=work,
                            ref_dtype=ref_dtype, rtol=rtol, use_jax=use_jax)
    ev.compare()
    return ev


def _example_checks(ev, S, F, P, rng, use_jax, n_directions, taylor, kinks, screen):
    """The checks at the example point: the kink test (one-sided derivatives), forward mode,
    finite differences (without a JAX reference) and the Taylor remainder. Returns
    ``(forward, taylor, kink)``, each the check's findings (empty where it did not run)."""
    if screen and use_jax and (taylor or kinks) and n_directions:
        return _screen_example_checks(ev, S, F, P, rng, n_directions, taylor, kinks)
    example = P.leaves(S, 0)
    kink_info = {}
    if kinks and ev.example_tested:
        try:
            n_kink = SCREEN["kink_directions"] if screen else max(n_directions, 4)
            kink_info = lines.kink(S, F, example, points.directions(rng, S, example, n_kink))
        except Exception:  # noqa: BLE001 - a kink test that cannot run is not a finding
            kink_info = {}
        if kink_info.get("kink"):
            ev.mark_kink()
    forward = (ev.forward(F, rng, n_directions, SCREEN["forward_points"] if screen else 3)
               if (use_jax and n_directions) else {})
    if not use_jax:
        ev.finite_differences(F, rng)
    n_taylor = min(n_directions, SCREEN["taylor_directions"]) if screen else n_directions
    taylor_info = ev.taylor(F, rng, n_taylor) if (taylor and n_taylor) else {}
    return forward, taylor_info, kink_info


def _screen_example_checks(ev, S, F, P, rng, n_directions, taylor, kinks):
    """The screen's checks at the example: the Taylor remainder along one direction and the
    kink test along :data:`SCREEN` ``["kink_directions"]`` (the first the Taylor direction's),
    from one program on the line (:func:`~.lines.screen`); in the working dtype where the
    comparison was (``ev.implied``, float32), else in float64. Forward mode runs where ``fun``
    has custom derivative rules (what it finds is a ``custom_jvp``/``custom_vjp`` rule that
    disagrees with the other derivative); a program without them has one derivative, which
    the comparison and the Taylor test already judge."""
    forward = {}
    t = F.traced("f", False)
    if t is None or t.rules:
        forward = ev.forward(F, rng, n_directions, SCREEN["forward_points"])
    if not ev.example_tested:
        return forward, {}, {}
    example = P.leaves(S, 0)
    dirs = points.directions(rng, S, example, SCREEN["kink_directions"])
    hi = not (ev.implied and np.dtype(ev.work) == np.float32)
    try:
        t_info, kink_info = lines.screen(S, F, example, ev._grad_at(0), dirs, hi=hi)
    except Exception:  # noqa: BLE001 - fun cannot be evaluated along the line
        return forward, {}, {}
    if kinks and kink_info.get("kink"):
        ev.mark_kink()
        return forward, {}, kink_info
    return (forward, ev.taylor_judged(t_info) if taylor else {}, kink_info if kinks else {})


def _dtype_name(x) -> str:
    return str(jnp.asarray(x).dtype)


def _working_dtype(grads, S) -> np.dtype:
    """The least precise real float dtype among the hand gradient's outputs (the precision in
    which the user's gradient is computed)."""
    dts = []
    for g in grads:
        dt = np.asarray(g).dtype if not hasattr(g, "dtype") else np.dtype(g.dtype)
        if np.issubdtype(dt, np.complexfloating):
            dt = np.finfo(dt).dtype
        if np.issubdtype(dt, np.floating) or dt.name == "bfloat16":
            dts.append(dt)
    if not dts:
        dts = [np.dtype(jnp.real(S.leaves[S.diff[0]]).dtype)]
    return max(dts, key=lambda d: float(np.finfo(d).eps))


def _try(thunk):
    """``thunk()``, or None where it raises (a fused program's parts then run one by one, and
    each says what fails)."""
    try:
        return thunk()
    except Exception:  # noqa: BLE001 - dtype-specific or untraceable user code
        return None


def _all_float64(out) -> bool:
    return all(np.asarray(g).dtype in (np.float64, np.complex128) for g in out)


def _try_float64_hand(F, P):
    """The hand gradient evaluated in float64 (its formula, free of float32 rounding), or None
    where it does not run there or does not return float64."""
    out = _try(lambda: checks.evaluate("hand", F, P, hi=True))
    return out if out is not None and _all_float64(out) else None


def _traced_output(fn, args, F):
    """The structure, shapes and dtypes of ``fn(*args)``, by tracing alone (nothing compiles);
    a plain call for code JAX cannot trace."""
    if F.traced("h", False) is not None and F.hand_out is not None:
        return F.hand_out
    try:
        return jax.eval_shape(fn, *args)
    except (TypeError, jax.errors.JAXTypeError, jax.errors.ConcretizationTypeError):
        return fn(*args)


def _output_problem(fun, args, F) -> str | None:
    """What is wrong with ``fun(*args)`` as an objective (not a real scalar), or None. Found
    by tracing; a function JAX cannot trace (a host callback, NumPy code) is called once."""
    t = F.traced("f", False)
    try:
        out = t.out_shapes() if t is not None else jax.eval_shape(fun, *args)
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


__all__ = ["DEFAULT_FAMILIES", "check_gradient", "default_tolerance", "domains"]
