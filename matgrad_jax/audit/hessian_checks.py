"""The checks ``check_hessian`` assembles, each a small function: directions that live in one
block, the two products compared (``jax.jvp`` of ``jax.grad`` and the hand product, over a stack
of directions), the comparison block pair by block pair, the symmetry of the hand product, and
the checks along lines through the example point (a kink of the gradient, the Taylor remainder
of the hand product) on ``⟨u, ∇f⟩``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import checks, lines, points
from . import compare as cmp_rule


def compare(R, judged, Hw, vals, flat, src_block, nb, work, rtol, formula64, ref_work):
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
        if rtol is None and cmp_rule.is_low(work):
            e_ref = np.zeros(n)
            if ref_work is not None:
                e_ref = np.max(pair_errors(ref_work), axis=(1, 2))
                e_ref = np.where(np.isfinite(e_ref), e_ref, 0.0)
        tol = cmp_rule.point_tolerance(n, rtol=rtol, work=work, formula64=formula64, e_ref=e_ref)
    judged_err = np.where(np.isfinite(err), err, np.inf)
    ok = np.all(judged_err <= tol[:, None, None], axis=(1, 2))
    return dict(err=err, judged_err=judged_err, tol=tol, scale=scale, finite=finite,
                hand_ok=hand_ok, status=cmp_rule.point_status(finite, hand_ok, ok))


def asymmetry(S, dirs, judged, flat, scale, src_block):
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


def along_lines(S, fun, P, rng, dirs, judged, R, src_block, n_dir, cmp, taylor, kinks):
    """The checks along lines through the example point, on ``⟨u, ∇f⟩`` (``jax.grad``, ``u``
    random), along the first direction of each block: a kink (the gradient's one-sided
    derivatives differ) and the Taylor remainder of the hand product ``⟨u, Hv⟩``. Returns
    ``(kink, taylor)``, each empty where it did not run."""
    if not (taylor or kinks) or cmp["status"][0] not in ("ok", "fail"):
        return {}, {}
    nb = len(S.diff)
    at = P.leaves(S, 0)
    first = np.arange(nb) * n_dir
    v = tuple(np.asarray(d)[first] for d in dirs)
    u = tuple(np.asarray(x)[0] for x in points.directions(rng, S, at, 1))
    if not lines.runs_in_float64(S, fun):
        # a gradient computed in a lower precision rounds as a sum of terms, beyond what these
        # tests model from its value: no finding either way
        return {}, {}
    F = lines.inner_gradient(S, fun, u)
    kink_info = {}
    if kinks:
        try:
            kink_info = lines.kink(S, F, at, v)
        except Exception:  # noqa: BLE001 - a kink test that cannot run is not a finding
            kink_info = {}
    if not taylor or kink_info.get("kink"):
        return kink_info, {}
    hv = [checks.up(judged[k][0])[first] for k in range(nb)]
    rv = [checks.up(R[k][0])[first] for k in range(nb)]
    dd = checks.real_inner([checks.up(x) for x in u], hv)
    n_entries = sum(int(x.size) for x in u)
    unorm = np.sqrt(sum(float(np.sum(np.abs(checks.up(x)) ** 2)) for x in u))
    rnorm = np.sqrt(sum(np.sum(np.abs(r.reshape(nb, -1)) ** 2, axis=1) for r in rv))
    size = unorm * np.where(rnorm > 0, rnorm, cmp["scale"][0]) / np.sqrt(n_entries)
    hs = 4.0 ** -np.arange(13)
    try:
        fh, f0, eps = lines.along(S, F, at, v, hs)
    except Exception:  # noqa: BLE001 - the gradient cannot be evaluated along the line
        return kink_info, {}
    t = lines.remainder(hs, fh, f0, eps, dd, size)
    thr = cmp_rule.TOL_DIRECTIONAL * float(cmp["tol"][0])
    lin, unc = t["linear_term"], t["uncertainty"]
    bad = ~(lin <= thr + unc)
    return kink_info, {
        "function": "<u, grad f>", "directions": list(S.block_names), "slopes": t["slopes"],
        "hs": hs.tolist(), "remainders": t["remainders"].tolist(), "linear_term": lin.tolist(),
        "uncertainty": unc.tolist(), "threshold": thr, "passed": not bool(bad.any()),
        "failing_blocks": [S.block_names[j] for j in np.flatnonzero(bad)]}


def block_directions(rng, S, ex, n_dir):
    """``n_dir`` directions in each block alone (the others zero), in block order, stacked;
    and the block each direction lies in."""
    nb = len(S.diff)
    per_block = points.directions(rng, S, ex, n_dir)
    dirs = []
    for j, d in enumerate(per_block):
        dirs.append(tuple(d if k == j else np.zeros_like(per_block[k]) for k in range(nb)))
    dirs = tuple(np.concatenate([dd[k] for dd in dirs], axis=0) for k in range(nb))
    return dirs, np.repeat(np.arange(nb), n_dir)


def products(S, fun, hvp_fun):
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
