"""``check_hessian``: audit a hand-derived Hessian-vector product.

``hvp_fun(*args, v)`` returns the Hessian of ``fun`` with respect to ``args[argnums]`` applied to
``v`` (shaped like the gradient). It is compared with forward-over-reverse autodiff (``jax.jvp``
of ``jax.grad``, in float64 whenever JAX can) at the audit's points, along directions that live in
one block at a time, so a wrong Hessian block is named as a pair ``H[out, in]``; and the hand
product is checked for symmetry, ``⟨u, Hv⟩ = ⟨v, Hu⟩``. Points, domains, tolerances and
diagnoses are the gradient audit's (:func:`~matgrad_jax.check_gradient`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..precision import products
from . import checks, compare, diagnosis, points, spec, verdict
from . import domains as dom
from .report import GradientReport


def check_hessian(
    fun: Callable,
    hvp_fun: Callable,
    args: Sequence,
    *,
    argnums: int | str | tuple = 0,
    arg_names: Sequence[str] | None = None,
    domains: Mapping | None = None,
    vary_data: bool = False,
    seed: int = 0,
    n_perturbed: int = 2,
    n_random: int = 2,
    n_family: int = 1,
    families: Sequence[str] = ("symmetric", "skew", "psd", "diagonal"),
    n_directions: int = 2,
    rtol: float | None = None,
    name: str | None = None,
    source: str | None = None,
    matmul_precision: str | None = "highest",
) -> GradientReport:
    """Audit ``hvp_fun(*args, v)`` against forward-over-reverse autodiff, block pair by block
    pair, and for symmetry.

    Args:
      fun: ``fun(*args)`` -> real scalar.
      hvp_fun: ``hvp_fun(*args, v)`` -> the Hessian w.r.t. ``args[argnums]`` applied to ``v``;
        ``v`` and the result are shaped like the gradient (a tuple of blocks when ``argnums`` is
        a tuple).
      args: example arguments, as in :func:`~matgrad_jax.check_gradient`.
      argnums: as in :func:`~matgrad_jax.check_gradient`.
      arg_names: as in :func:`~matgrad_jax.check_gradient`.
      domains: as in :func:`~matgrad_jax.check_gradient`.
      vary_data: as in :func:`~matgrad_jax.check_gradient`.
      seed: as in :func:`~matgrad_jax.check_gradient`.
      n_perturbed: perturbations of the example (fewer by default than the gradient audit:
        each point costs one Hessian product per direction).
      n_random: fresh draws on the domains.
      n_family: draws per (square argument, structured family).
      families: as in :func:`~matgrad_jax.check_gradient`.
      n_directions: directions per block.
      rtol: as in :func:`~matgrad_jax.check_gradient`.
      name: a name for the report.
      source: where the Hessian product comes from (shown in the report).
      matmul_precision: as in :func:`~matgrad_jax.check_gradient`.

    Returns:
      A :class:`GradientReport` with ``kind="hessian"``; its blocks are the pairs
      ``H[out,in]`` (the output block ``out`` of the product with a direction in block ``in``),
      plus ``symmetry``.
    """
    spec.check_options(rtol=rtol, seed=seed, reference="jax", families=families,
                       counts={"n_perturbed": n_perturbed, "n_random": n_random,
                               "n_family": n_family, "n_directions": n_directions})
    if n_directions < 1:
        from .._checks import InputError

        raise InputError(f"n_directions: expected an int >= 1, got {n_directions}")
    with products(matmul_precision):
        return _check(fun, hvp_fun, args, argnums, arg_names, domains, vary_data, seed,
                      n_perturbed, n_random, n_family, tuple(families), n_directions, rtol,
                      name, source)


def _check(fun, hvp_fun, args, argnums, arg_names, doms, vary_data, seed, n_perturbed,
           n_random, n_family, families, n_dir, rtol, name, source) -> GradientReport:
    t0 = time.perf_counter()
    S = spec.build(fun, args, argnums, arg_names, doms, vary_data)
    rng = np.random.default_rng(seed)
    P = points.build(S, rng, n_perturbed=n_perturbed, n_random=n_random, n_family=n_family,
                     families=families)
    nb = len(S.diff)
    dirs, src_block = _block_directions(rng, S, P.leaves(S, 0), n_dir)
    names = S.block_names
    pairs = [f"H[{names[i]},{names[j]}]" for i in range(nb) for j in range(nb)]
    base = dict(arguments=tuple(pairs), name=name, source=source, kind="hessian")

    ref_product, hand_product = _products(S, fun, hvp_fun)

    # the hand product's structure at the example
    try:
        probe = jax.eval_shape(hand_product(), *S.leaves, *dirs)
    except Exception as exc:  # noqa: BLE001 - the user's product raised: the finding
        return verdict.finish(GradientReport(
            False, "error", float("inf"), "error", 0.0, dtype=str(S.leaves[S.diff[0]].dtype),
            message=f"FAIL: hvp_fun raised {type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - t0, **base))
    want = [(len(src_block), *S.leaves[i].shape) for i in S.diff]
    got = [tuple(p.shape) for p in probe]
    if got != [tuple(w) for w in want]:
        return verdict.finish(GradientReport(
            False, "error", float("inf"), "shape", 0.0, dtype=str(S.leaves[S.diff[0]].dtype),
            message=f"FAIL: hvp_fun returned blocks of shapes {[g[1:] for g in got]}; expected "
                    f"{[tuple(w[1:]) for w in want]} (shaped like the gradient)",
            seconds=time.perf_counter() - t0, **base))
    work = max((np.dtype(p.dtype) for p in probe), key=lambda d: float(np.finfo(d).eps))
    work = np.finfo(work).dtype
    low = np.finfo(work).eps > np.finfo(np.float64).eps

    vals, ref = checks.batched(ref_product(), S, P, hi=True, extra=dirs)
    h_work = checks.batched(hand_product(), S, P, hi=False, extra=dirs)
    h64 = ref_work = None
    if low:
        try:
            h64 = checks.batched(hand_product(), S, P, hi=True, extra=dirs)
            if any(np.asarray(g).dtype not in (np.float64, np.complex128) for g in h64):
                h64 = None
        except Exception:  # noqa: BLE001
            h64 = None
        try:
            ref_work = checks.batched(ref_product(), S, P, hi=False, extra=dirs)[1]
        except Exception:  # noqa: BLE001
            ref_work = None

    n = P.count
    proj = lambda blocks: [dom.project(S.domains[i], checks.up(b)) for b, i in
                           zip(blocks, S.diff)]
    R, Hw = proj(ref), proj(h_work)
    judged = proj(h64) if h64 is not None else Hw
    flat = lambda X: X.reshape(n, len(src_block), -1)
    # 1. the autodiff comparison, block pair by block pair
    cmp = _compare(R, judged, Hw, vals, flat, src_block, nb, work, rtol, h64 is not None,
                   None if ref_work is None else proj(ref_work))
    # 2. symmetry of the hand product over pairs of directions
    asym = _asymmetry(S, dirs, judged, flat, cmp["scale"], src_block)
    generic = P.generic
    status = cmp["status"]
    sym_bad = cmp["finite"] & cmp["hand_ok"] & (asym > compare.TOL_DIRECTIONAL * cmp["tol"])
    tested = compare.tested(status, generic)
    counted_bad = compare.failing(status, generic)
    report = GradientReport(True, "pass", float("nan"), None, float(cmp["tol"][0]),
                            dtype=str(work), points=int(tested.sum()),
                            skipped=int((status == "skipped").sum()),
                            reference="jax.jvp of jax.grad", **base)
    report.statuses = {s: int((status == s).sum()) for s in ("ok", "fail", "nonfinite",
                                                             "skipped") if (status == s).any()}
    report.where_it_holds = diagnosis.where_it_holds(status, P.labels, generic, P.family_keys,
                                                     "fun or the reference not finite", {})
    _blocks(report, S, P, cmp, judged, R, flat, src_block, tested, counted_bad)
    report.blocks["symmetry"] = {
        "max_rel_error": float(np.max(asym[tested])) if tested.any() else float("nan"),
        "diagnosis": "mismatch" if (sym_bad & tested).any() else None,
        "location": "⟨u, Hv⟩ ≠ ⟨v, Hu⟩" if (sym_bad & tested).any() else None}
    report.failing_arguments = tuple(k for k, e in report.blocks.items() if e["diagnosis"])
    failed = (["autodiff comparison"] if counted_bad.any() else []) + (
        ["symmetry"] if (sym_bad & tested).any() else [])
    _message(report, failed, tested, counted_bad, asym, n, len(src_block))
    report.failed_checks = tuple(failed)
    report.seconds = time.perf_counter() - t0
    return verdict.finish(report)


def _compare(R, judged, Hw, vals, flat, src_block, nb, work, rtol, formula64, ref_work):
    """The hand product against the reference at every point: the error of each block pair
    ``H[i, j]`` (block ``i`` of the product along directions in block ``j``) relative to the
    reference's size, each point's tolerance and status (:mod:`.compare`)."""
    n = len(vals)
    scale = np.sqrt(np.mean(sum(np.sum(np.abs(flat(r)) ** 2, axis=2) for r in R), axis=1))
    scale = np.where(scale > 0, scale, 1.0)
    finite = np.isfinite(vals) & np.all([np.all(np.isfinite(flat(r)), axis=(1, 2)) for r in R],
                                        axis=0)
    hand_ok = np.all([np.all(np.isfinite(flat(h)), axis=(1, 2)) for h in judged + Hw], axis=0)

    def pair_errors(H):
        e = np.zeros((n, nb, nb))
        for i in range(nb):
            d = np.sqrt(np.sum(np.abs(flat(H[i]) - flat(R[i])) ** 2, axis=2)) / scale[:, None]
            for j in range(nb):
                e[:, i, j] = np.max(d[:, src_block == j], axis=1)
        return e

    with np.errstate(invalid="ignore", over="ignore"):
        err = pair_errors(judged)
        e_ref = None
        if rtol is None and compare.is_low(work):
            e_ref = np.zeros(n)
            if ref_work is not None:
                e_ref = np.max(pair_errors(ref_work), axis=(1, 2))
                e_ref = np.where(np.isfinite(e_ref), e_ref, 0.0)
        tol = compare.point_tolerance(n, rtol=rtol, work=work, formula64=formula64, e_ref=e_ref)
    judged_err = np.where(np.isfinite(err), err, np.inf)
    ok = np.all(judged_err <= tol[:, None, None], axis=(1, 2))
    return dict(err=err, judged_err=judged_err, tol=tol, scale=scale, finite=finite,
                hand_ok=hand_ok, status=compare.point_status(finite, hand_ok, ok))


def _asymmetry(S, dirs, judged, flat, scale, src_block):
    """Per point, the largest ``|<d_a, H d_b> - <d_b, H d_a>|`` over pairs of directions,
    relative to the product's size: a Hessian is symmetric."""
    nb = len(S.diff)
    with np.errstate(invalid="ignore", over="ignore"):
        dflat = [checks.up(d).reshape(len(src_block), -1) for d in dirs]
        m = sum(np.einsum("ak,pbk->pab", np.conj(dflat[k]), flat(judged[k])).real
                for k in range(nb))
        dn = np.sqrt(sum(np.sum(np.abs(d) ** 2, axis=1) for d in dflat))
        n_entries = sum(int(S.leaves[i].size) for i in S.diff)
        size = scale[:, None, None] * dn[None, :, None] * dn[None, None, :] / np.sqrt(n_entries)
        return np.max(np.abs(m - np.swapaxes(m, 1, 2)) / size, axis=(1, 2))


def _blocks(report, S, P, cmp, judged, R, flat, src_block, tested, counted_bad):
    """The worst point, and each block pair's error and diagnosis (which entries, what
    kind of mistake) into ``report``."""
    names, nb = S.block_names, len(S.diff)
    err, judged_err, tol = cmp["err"], cmp["judged_err"], cmp["tol"]
    generic = P.generic
    if tested.any():
        ratio = np.where(tested, np.max(judged_err, axis=(1, 2)) / tol, -np.inf)
        worst = int(np.argmax(ratio))
        report.max_rel_error = float(np.max(judged_err[worst]))
        report.tolerance = float(tol[worst])
        if counted_bad.any():
            report.failing_family, report.failing_point = str(P.labels[worst]), worst
    for i in range(nb):
        for j in range(nb):
            key = f"H[{names[i]},{names[j]}]"
            bad = counted_bad & (judged_err[:, i, j] > tol)
            entry = {"max_rel_error": float(np.max(err[tested, i, j])) if tested.any() else
                     float("nan"), "diagnosis": None}
            if bad.any():
                sel = bad & generic if (bad & generic).any() else bad
                cols = src_block == j
                h = flat(judged[i])[sel][:, cols].reshape(-1, *S.leaves[S.diff[i]].shape)
                r = flat(R[i])[sel][:, cols].reshape(-1, *S.leaves[S.diff[i]].shape)
                t = float(np.max(tol[sel]))
                entry["diagnosis"] = diagnosis.classify(h, r, t, S.domains[S.diff[i]])
                entry["location"] = diagnosis.locate(h, r, t)[0]
            report.blocks[key] = entry


def _message(report, failed, tested, counted_bad, asym, n, n_dirs):
    """The verdict, diagnosis and message, agreeing with the blocks."""
    if not tested.any():
        report.passed, report.verdict, report.diagnosis = False, "untested", "untested"
        report.message = ("UNTESTED: no point where fun and its reference Hessian product are "
                          f"finite ({n} points, all skipped); nothing was compared.")
    elif failed:
        report.passed, report.verdict = False, "fail"
        found = {e["diagnosis"] for k, e in report.blocks.items()
                 if e["diagnosis"] and k != "symmetry"}
        report.diagnosis = found.pop() if len(found) == 1 else "mismatch"
        if not counted_bad.any():
            report.where_it_holds = ("agrees with autodiff along the tested directions, but is "
                                     "not symmetric")
        parts = [f"FAIL ({', '.join(failed)}): diagnosis {report.diagnosis}"]
        for k in report.failing_arguments:
            b = report.blocks[k]
            parts.append(f"{k}: {b['diagnosis']} (max rel. error {b['max_rel_error']:.2e}"
                         + (f", {b['location']}" if b.get("location") else "") + ")")
        good = [k for k in report.blocks if k not in report.failing_arguments]
        if good:
            parts.append("correct: " + ", ".join(good))
        parts.append(f"where it holds: {report.where_it_holds}")
        report.message = "; ".join(parts) + "."
    else:
        report.message = (f"pass: max relative error {report.max_rel_error:.2e} <= "
                          f"{report.tolerance:.1e} over {report.points} points x "
                          f"{n_dirs} directions (jax.jvp of jax.grad, in float64), "
                          f"symmetric to {float(np.max(asym[tested])):.1e}"
                          + (f"; {report.where_it_holds}"
                             if report.where_it_holds != "all tested inputs" else "") + ".")

def _block_directions(rng, S, ex, n_dir):
    """``n_dir`` directions in each block alone (the others zero), in block order, stacked;
    and the block each direction lies in."""
    nb = len(S.diff)
    per_block = points.directions(rng, S, ex, n_dir)
    dirs = []
    for j, d in enumerate(per_block):
        dirs.append(tuple(d if k == j else np.zeros_like(per_block[k]) for k in range(nb)))
    dirs = tuple(np.concatenate([dd[k] for dd in dirs], axis=0) for k in range(nb))
    return dirs, np.repeat(np.arange(nb), n_dir)


def _products(S, fun, hvp_fun):
    """The two programs compared: the reference (``jax.jvp`` of ``jax.grad``, with the value)
    and the hand product, each over a stack of directions (``vmap``)."""
    grad_fn = checks.reference(S, fun)

    nl = len(S.leaves)

    def ref_product():
        def fn(*all_args):
            leaves, dv = all_args[:nl], all_args[nl:]

            def g(*d):
                return grad_fn(*checks._insert(leaves, S.diff, d))[1]
            prim = tuple(leaves[i] for i in S.diff)
            val = jnp.real(S.fun_flat(fun)(*leaves))
            hv = jax.vmap(lambda *vs: jax.jvp(g, prim, tuple(v.astype(p.dtype)
                                                            for v, p in zip(vs, prim)))[1])(*dv)
            return val, hv
        return fn

    def hand_product():
        def fn(*all_args):
            leaves, dv = all_args[:nl], all_args[nl:]
            a = S.unflatten(leaves)

            def one(*vs):
                vt = jax.tree_util.tree_unflatten(S.grad_treedef, list(vs))
                out = hvp_fun(*a, vt)
                if S.multi and isinstance(out, list):
                    out = tuple(out)
                return tuple(jax.tree_util.tree_leaves(out))
            return jax.vmap(one)(*(v.astype(leaves[i].dtype) for v, i in zip(dv, S.diff)))
        return fn

    return ref_product, hand_product

