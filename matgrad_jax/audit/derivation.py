"""``check_derivation``: audit a hand derivation line by line and name the first wrong step.

Each line states the differential dφ (or the value φ) as a function of the point and the
tangent (:mod:`~matgrad_jax.audit.steps`). At the audit's points (the example, perturbations,
fresh draws and structured families on each argument's domain) and along random tangents, every
line is compared with ``jax.jvp(fun)`` in float64 and with the line before it. A line declared
to hold under a condition (``assumes="symmetric Q"``, ``"dQ = 0"``) is tested where the
condition holds: points drawn on that family, tangents with that block zero. For the line where
an error enters, the difference is explained where one term explains it: its sign, a factor, a
transposition, or the family of inputs on which the line holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .._checks import InputError
from ..precision import products
from . import checks, compare, diagnosis, spec, verdict
from . import domains as dom
from . import steps as st
from .derivation_diagnosis import _diagnose, _gradient_diagnosis
from .derivation_lines import (
    _line_fn,
    _points,
    _reference_jvp,
    _run,
    _satisfies_example,
    _tangents,
    _variant,
)
from .derivation_report import DerivationReport, LineResult


def check_derivation(
    fun: Callable,
    steps: Sequence,
    args: Sequence,
    *,
    argnums: int | str | tuple = 0,
    domains: Mapping | None = None,
    arg_names: Sequence[str] | None = None,
    vary_data: bool = False,
    seed: int = 0,
    n_perturbed: int = 2,
    n_random: int = 3,
    n_family: int = 2,
    n_assumed: int = 3,
    families: Sequence[str] = ("symmetric", "skew", "psd", "diagonal"),
    n_directions: int = 3,
    rtol: float | None = None,
    name: str | None = None,
    source: str | None = None,
    matmul_precision: str | None = "highest",
) -> DerivationReport:
    """Check every line of a hand derivation of ``fun``'s differential.

    Args:
      fun: ``fun(*args)`` -> real scalar φ.
      steps: the lines, in order: ``(text, fn)`` pairs or :func:`~matgrad_jax.step` lines;
        ``fn(*args, dargs)`` returns the dφ the line states (``dargs`` the tangent of
        ``args[argnums]``, a tuple when ``argnums`` is one), or its terms as a dict/sequence;
        :func:`~matgrad_jax.from_gradient` turns a stated gradient into its differential.
      args: an example point (arrays or pytrees).
      argnums: as in :func:`~matgrad_jax.check_gradient`.
      domains: as in :func:`~matgrad_jax.check_gradient` (data not differentiated is
        ``fixed`` unless a domain is declared for it; declare ``general`` to sweep it).
      arg_names: as in :func:`~matgrad_jax.check_gradient`.
      vary_data: as in :func:`~matgrad_jax.check_gradient`.
      seed: as in :func:`~matgrad_jax.check_gradient`.
      n_perturbed: perturbations of the example point.
      n_random: fresh draws on the domains.
      n_family: draws per (square argument, structured family).
      n_assumed: points drawn on each family a line assumes.
      families: as in :func:`~matgrad_jax.check_gradient`.
      n_directions: tangents per point.
      rtol: a fixed relative tolerance (default: per point, from the dtype, as the audit).

    Returns:
      A :class:`~matgrad_jax.audit.derivation_report.DerivationReport`: ``.passed``,
      ``.first_wrong`` (index or None), ``.lines`` (each ``.text``, ``.passed``, ...).
    """
    spec.check_options(rtol=rtol, seed=seed, reference="jax", families=families,
                       counts={"n_perturbed": n_perturbed, "n_random": n_random,
                               "n_family": n_family, "n_assumed": n_assumed,
                               "n_directions": n_directions})
    if n_directions < 1:
        raise InputError(f"n_directions: expected an int >= 1, got {n_directions}")
    lines = st.normalize(steps)
    with products(matmul_precision):
        return _check(fun, lines, args, argnums, domains, arg_names, vary_data, seed,
                      n_perturbed, n_random, n_family, n_assumed, tuple(families),
                      n_directions, rtol, name, source)


# -- points and tangents -------------------------------------------------------------------------


def _check(fun, lines, args, argnums, doms, arg_names, vary_data, seed, n_perturbed, n_random,
           n_family, n_assumed, families, n_dir, rtol, name, source) -> DerivationReport:
    t0 = time.perf_counter()
    S = spec.build(fun, args, argnums, arg_names, doms, vary_data)
    nb = len(S.diff)
    conds, carried = [], ()
    for i, line in enumerate(lines):
        where = f"steps[{i}] ({line.text!r})"
        own = st.parse_assumes(line.assumes, S, where)
        # a condition on the point stays in force for every later line (what follows from a
        # line that assumed Q symmetric assumes it too); a zero tangent is the line's own
        c = own + tuple(x for x in carried if x not in own)
        carried = carried + tuple(
            st.Condition(x.kind, x.leaf, x.family, f"{x.text} (from line {i + 1})")
            for x in own if x.kind == "family"
            and all((y.leaf, y.family) != (x.leaf, x.family) for y in carried))
        if line.wrt:
            cover = st.wrt_blocks(line.wrt, S, where)
            c += tuple(st.Condition("zero", k, text=f"d{S.block_names[k]} = 0")
                       for k in range(nb) if k not in cover)
        if line.states == "value" and any(x.kind == "zero" for x in c):
            raise InputError(f"{where}: a value line cannot assume a zero tangent")
        conds.append(c)
    rng = np.random.default_rng(seed)
    P = _points(S, rng, [c for cs in conds for c in cs], n_perturbed, n_random, n_family,
                n_assumed, families)
    T = _tangents(S, P, rng, n_dir)
    work = np.finfo(max((np.asarray(S.leaves[i]).real.dtype for i in S.diff),
                        key=lambda d: float(np.finfo(d).eps))).dtype
    low = np.finfo(work).eps > np.finfo(np.float64).eps
    n = P.count
    labels, generic = P.labels, P.generic

    # the reference: values, gradient norms (for the size of a directional derivative), jvps
    vals, grads = checks.batched(checks.reference(S, fun), S, P, hi=True)
    vals = np.asarray(vals, np.float64)
    gproj = [dom.project(S.domains[i], checks.up(g)) for g, i in zip(grads, S.diff)]
    gsq = np.stack([np.sum(np.abs(g.reshape(n, -1)) ** 2, axis=1) / g[0].size for g in gproj],
                   axis=1)  # (points, blocks): ‖g_b‖² / N_b
    ref_f = _reference_jvp(S, fun)
    cache: dict = {}

    def ref(zeros, transpose=False):
        key = ("ref", zeros, transpose)
        if key not in cache:
            Tv = _variant(T, zeros, transpose)
            r = _run(ref_f, S, P, Tv, hi=True, value=False, programs=programs)[0]
            vsq = np.stack([np.sum(np.abs(checks.up(t).reshape(n, n_dir, -1)) ** 2, axis=2)
                            for t in Tv], axis=2)  # (points, directions, blocks)
            size = np.sqrt(np.sum(vsq * gsq[:, None, :], axis=2))
            size = np.where(size > 0, size, 1.0)
            e_ref = np.zeros(n)
            if low:
                try:
                    rw = _run(ref_f, S, P, Tv, hi=False, value=False, programs=programs)[0]
                    with np.errstate(invalid="ignore"):
                        e_ref = np.max(np.abs(rw - r) / size, axis=1)
                    e_ref = np.where(np.isfinite(e_ref), e_ref, 0.0)
                except Exception:  # noqa: BLE001
                    pass
            cache[key] = (r, size, e_ref)
        return cache[key]

    vsize = np.where(np.abs(vals) > 0, np.abs(vals), 1.0)
    results, evals, line_fns, programs = [], {}, {}, {}

    def evaluate(i, zeros, transpose=False):
        """Line i's terms at the tangent variant, and whether it ran in float64."""
        key = (i, zeros, transpose)
        if key in evals:
            return evals[key]
        line = lines[i]
        value = line.states == "value"
        cover = (st.wrt_blocks(line.wrt, S, "") if line.wrt else tuple(range(nb)))
        if i not in line_fns:
            line_fns[i] = _line_fn(line, S, cover)
        f, names = line_fns[i]
        Tv = _variant(T, zeros, transpose)
        out = None
        try:
            out, hi = _run(f, S, P, Tv, hi=True, value=value, programs=programs), True
            if out.dtype != np.float64:
                out = None
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - does not run in float64: as given
            out = None
        if out is None:
            out, hi = _run(f, S, P, Tv, hi=False, value=value, programs=programs), False
        evals[key] = (out.astype(np.float64), hi, tuple(names))
        return evals[key]

    for i, line in enumerate(lines):
        res = _judge_line(i, line, conds, lines, S, P, evaluate, ref, vals, vsize, rtol, work,
                          labels, generic)
        if (res.diagnosis in ("mismatch", "family") and isinstance(line.fn, st.GradientLine)):
            _gradient_diagnosis(res, line, S, P, gproj)
        results.append(res)
    first = next((ln.index for ln in results if ln.verdict in ("fail", "error")), None)
    passed = all(ln.passed for ln in results)
    verdict_ = "pass" if passed else ("fail" if first is not None else "untested")
    report = DerivationReport(results, passed, first, verdict_, name=name, source=source,
                              dtype=str(work), directions=n_dir)
    report.message = _message(report)
    report.seconds = time.perf_counter() - t0
    return verdict.finish(report)


def _selected(conds, S, P):
    sel = np.ones(P.count, bool)
    for c in conds:
        if c.kind != "family":
            continue
        label = f"{c.family}:{S.leaf_names[c.leaf]}"
        ok = P.labels == label
        ex_kind = dom.family_kind(S.domains[c.leaf], c.family)
        if _satisfies_example(ex_kind if ex_kind != "spd-diagonal" else "diagonal",
                              np.asarray(S.leaves[c.leaf])):
            ok |= P.labels == "example"
        sel &= ok
    return sel


def _judge_line(i, line, conds, lines, S, P, evaluate, ref, vals, vsize, rtol, work,
                labels, generic) -> LineResult:
    value = line.states == "value"
    my = conds[i]
    zeros = frozenset(c.leaf for c in my if c.kind == "zero")
    sel = _selected(my, S, P)
    result = LineResult(i, line.text, False, "error", states=line.states,
                        conditions=tuple(c.text for c in my), source=line.source)
    if not value and len(zeros) == len(S.diff):
        raise InputError(f"steps[{i}] ({line.text!r}): its conditions make every tangent zero")
    try:
        d, hi, names = evaluate(i, zeros)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's line raised: the finding
        result.message = f"the line raised {type(exc).__name__}: {exc}"
        result.explanation = result.message
        result.diagnosis = "error"
        return result
    result.terms = names
    total = d.sum(axis=0)
    n = P.count
    if value:
        r, size, e_ref = vals, vsize, np.zeros(n)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(total - r) / size
        ref_ok, line_ok = np.isfinite(r), np.isfinite(total)
    else:
        r, size, e_ref = ref(zeros)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.max(np.abs(total - r) / size, axis=1)
        ref_ok = np.all(np.isfinite(r), axis=1) & np.isfinite(vals)
        line_ok = np.all(np.isfinite(total), axis=1)
    tol = compare.point_tolerance(n, rtol=rtol, work=work, formula64=hi, e_ref=e_ref)
    judged = np.where(np.isfinite(err), err, np.inf)
    status = compare.point_status(ref_ok, line_ok, judged <= tol)
    assumed = any(c.kind == "family" for c in my)
    gen = generic if not assumed else np.ones(n, bool)
    tested = sel & compare.tested(status, gen)
    bad = sel & compare.failing(status, gen)
    result.statuses = {s: int(((status == s) & sel).sum()) for s in
                       ("ok", "fail", "nonfinite", "skipped") if ((status == s) & sel).any()}
    result.points = int(tested.sum())
    if tested.any():
        ratio = np.where(tested, judged / tol, -np.inf)
        w = int(np.argmax(ratio))
        result.error, result.tolerance = float(err[w]), float(tol[w])
    if assumed:
        where = " and ".join(c.text for c in my if c.kind == "family")
        result.where_it_holds = (f"holds where {where}" if not bad.any() else
                                 f"fails at {int(bad.sum())} of {int(tested.sum())} points where "
                                 f"{where}")
    else:
        result.where_it_holds = diagnosis.where_it_holds(
            status, labels, generic, P.family_keys, "fun or jax.jvp not finite", {})
    if not tested.any():
        result.verdict = "untested"
        result.message = "no point where fun and its reference are finite under its conditions"
    else:
        result.passed = not bad.any()
        result.verdict = "pass" if result.passed else "fail"
    # the line before
    if i > 0 and lines[i - 1].states == line.states:
        prev = conds[i - 1]
        z2 = zeros | frozenset(c.leaf for c in prev if c.kind == "zero")
        sel2 = sel & _selected(prev, S, P)
        if (value or len(z2) < len(S.diff)) and sel2.any():
            try:
                a = evaluate(i, z2)[0].sum(axis=0)
                b = evaluate(i - 1, z2)[0].sum(axis=0)
            except InputError:
                raise
            except Exception:  # noqa: BLE001 - the line before raised: nothing to compare
                a = b = None
            if a is not None:
                sz = vsize if value else ref(z2)[1]
                with np.errstate(invalid="ignore", over="ignore"):
                    e2 = np.abs(a - b) / sz
                    e2 = e2 if value else np.max(e2, axis=1)
                both = sel2 & np.isfinite(e2)
                if both.any():
                    result.error_prev = float(np.max(e2[both]))
                    result.follows = bool(np.all(e2[both] <= tol[both]))
    if result.verdict == "fail" and result.follows is not True:
        _diagnose(result, d, r, size, bad & (generic | assumed), bad, i, zeros, evaluate, tol,
                  value)
    if result.verdict == "fail" and not result.explanation:
        if result.follows:
            result.explanation = "follows from the line before, which is wrong"
        result.message = result.where_it_holds
    return result


def _message(report: DerivationReport) -> str:
    parts = [report.headline() + "."]
    ok = sum(ln.passed for ln in report.lines)
    parts.append(f"{ok} of {len(report.lines)} lines agree with jax.jvp in float64 at every "
                 f"tested point and tangent ({report.directions} tangents a point).")
    if report.first_wrong is not None:
        later = [ln for ln in report.lines[report.first_wrong + 1:] if not ln.passed]
        if later and all(ln.follows for ln in later):
            parts.append("Every later wrong line follows from the line before it: the error "
                         "enters only there.")
        elif later:
            more = [ln.index + 1 for ln in later if not ln.follows]
            if more:
                parts.append(f"Errors enter again at line(s) {', '.join(map(str, more))}.")
    return " ".join(parts)
