"""The points a derivation is judged at (the example, perturbations, draws and families,
with the lines' conditions), its tangents, and each line as a function of point and tangent,
evaluated in compiled programs (see :mod:`~matgrad_jax.audit.derivation`)."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from . import checks, points
from . import domains as dom
from . import steps as st


def _satisfies_example(kind: str, x: np.ndarray) -> bool:
    if kind == "psd":
        if x.ndim != 2 or x.shape[0] != x.shape[1]:
            return False
        x64 = np.asarray(x, np.float64)
        return (dom.example_problem("symmetric", x64) is None
                and float(np.linalg.eigvalsh(dom.sym(x64))[0]) >= -1e-12 * np.abs(x64).max())
    return dom.example_problem(kind, x) is None


def _points(S, rng, conds, n_perturbed, n_random, n_family, n_assumed, families):
    P = points.build(S, rng, n_perturbed=n_perturbed, n_random=n_random, n_family=n_family,
                     families=families)
    wanted = list(dict.fromkeys((c.leaf, c.family) for c in conds if c.kind == "family"))
    host = [np.asarray(x) for x in S.leaves]
    for leaf, fam in wanted:
        if not points.square(host[leaf]):
            raise InputError(f"assumes: {fam} {S.leaf_names[leaf]} needs a square matrix, but "
                             f"{S.leaf_names[leaf]} has shape {host[leaf].shape}")
    n0 = P.count
    stacked, labels, keys = dict(P.stacked), list(P.labels), list(P.family_keys)
    for leaf, _ in wanted:  # a condition on data varies it on the assumed points
        if leaf not in stacked:
            stacked[leaf] = np.repeat(host[leaf][None], n0, axis=0)
    for leaf, fam in wanted:
        label = f"{fam}:{S.leaf_names[leaf]}"
        if (S.leaf_names[leaf], fam) not in keys:
            keys.append((S.leaf_names[leaf], fam))
        for j in stacked:
            kind = S.domains[j] if S.domains[j] != "fixed" else "general"
            if j == leaf:
                kind = dom.family_kind(S.domains[j], fam)
            if j == leaf or S.domains[j] != "fixed":
                new = dom.draw(rng, host[j], kind, n_assumed)
            else:
                new = np.repeat(host[j][None], n_assumed, axis=0)
            stacked[j] = np.concatenate([stacked[j], new.astype(host[j].dtype)], axis=0)
        labels += [label] * n_assumed
    return points.Points(stacked, np.asarray(labels), keys)


def _tangents(S, P, rng, n_dir):
    out = []
    for leaf in S.diff:
        per = [dom.tangents(rng, np.asarray(P.leaves(S, p)[leaf]), S.domains[leaf], n_dir)
               for p in range(P.count)]
        out.append(np.stack(per))
    return tuple(out)  # (points, directions, *shape) per differentiated block


def _variant(T, zeros=frozenset(), transpose=False):
    out = []
    for k, t in enumerate(T):
        t = np.zeros_like(t) if k in zeros else t
        if transpose and t.ndim == 4 and t.shape[-1] == t.shape[-2]:
            t = np.swapaxes(t, -1, -2)
        out.append(t)
    return tuple(out)


# -- evaluation ----------------------------------------------------------------------------------

def _as_terms(out, where):
    if isinstance(out, dict):
        names, vals = tuple(str(k) for k in out), tuple(out.values())
    elif isinstance(out, (tuple, list)):
        names, vals = tuple(f"term {i + 1}" for i in range(len(out))), tuple(out)
    else:
        names, vals = (), (out,)
    if not vals:
        raise ValueError(f"{where} returned no terms")
    res = []
    for v in vals:
        v = jnp.asarray(v)
        if v.shape != ():
            raise ValueError(f"{where} returned an array of shape {v.shape}; expected a real "
                             "scalar (or a dict/sequence of scalar terms)")
        res.append(jnp.real(v))
    return names, tuple(res)


def _line_fn(line: st.Step, S, covered):
    nl, nd = len(S.leaves), len(S.diff)
    names: list = []

    def f(*all_args):
        leaves, dl = all_args[:nl], all_args[nl:]
        a = S.unflatten(leaves)
        if line.states == "value":
            out = line.fn(*a)
        elif isinstance(line.fn, st.GradientLine):
            g = line.fn.grad_fun(*a)
            named = (g if isinstance(g, dict) and not _is_gradient(g, S, covered)
                     else {None: g})
            out = {}
            for key, gi in named.items():
                if S.multi and isinstance(gi, list):
                    gi = tuple(gi)
                gl = jax.tree_util.tree_leaves(gi)
                if len(gl) != len(covered):
                    want = ", ".join(S.block_names[k] for k in covered)
                    raise ValueError(f"the stated gradient has {len(gl)} block(s); expected "
                                     f"{len(covered)} ({want})")
                total = 0.0
                for g_b, k in zip(gl, covered):
                    want = tuple(S.leaves[S.diff[k]].shape)
                    if tuple(jnp.shape(g_b)) != want:
                        raise ValueError(f"the stated gradient for {S.block_names[k]} has shape "
                                         f"{tuple(jnp.shape(g_b))}; expected {want}")
                    total = total + jnp.real(jnp.sum(jnp.conj(g_b) * dl[k]))
                out[key] = total
            if list(out) == [None]:
                out = out[None]
        else:
            out = line.fn(*a, jax.tree_util.tree_unflatten(S.grad_treedef, list(dl[:nd])))
        n, vals = _as_terms(out, "the line")
        names[:] = list(n)
        return vals
    return f, names


def _expected_tree(S, covered):
    """The tree structure of a stated gradient covering the blocks ``covered``."""
    if len(covered) == len(S.diff):
        return S.grad_treedef
    arg_idx = sorted({S.leaf_arg[S.diff[k]] for k in covered})
    if len(arg_idx) == 1:
        return S.treedefs[arg_idx[0]]
    return jax.tree_util.tree_structure(tuple(
        jax.tree_util.tree_unflatten(S.treedefs[a], [0] * S.treedefs[a].num_leaves)
        for a in arg_idx))


def _is_gradient(g, S, covered) -> bool:
    """A dict that has the structure of the gradient (a dict argument's) is the gradient, not
    a dict of named terms."""
    return jax.tree_util.tree_structure(g) == _expected_tree(S, covered)


def _stated_gradient(line, S, covered):
    """``leaves -> the stated gradient's blocks (terms summed)``, for the diagnosis."""
    def f(*leaves):
        g = line.fn.grad_fun(*S.unflatten(leaves))
        named = (g if isinstance(g, dict) and not _is_gradient(g, S, covered) else {None: g})
        blocks = None
        for gi in named.values():
            gl = jax.tree_util.tree_leaves(tuple(gi) if isinstance(gi, list) else gi)
            blocks = gl if blocks is None else [b + x for b, x in zip(blocks, gl)]
        return tuple(blocks)
    return f


def _reference_jvp(S, fun):
    fl = S.fun_flat(fun)
    nl = len(S.leaves)

    def f(*all_args):
        leaves, dl = all_args[:nl], all_args[nl:]
        g = lambda *d: jnp.real(fl(*checks._insert(leaves, S.diff, d)))
        prim = tuple(leaves[i] for i in S.diff)
        return (jax.jvp(g, prim, tuple(v.astype(p.dtype) for v, p in zip(dl, prim)))[1],)
    return f


def _run(f, S, P, T, *, hi: bool, value: bool, programs: dict | None = None):
    """``f`` at every point (and tangent): terms stacked as ``(terms, points[, directions])``.
    ``programs`` keeps the jitted program per ``f`` within one check, so the tangent variants
    of a line (a block zero, transposed) reuse its compilation."""
    leaves = [P.stacked.get(i, np.asarray(x)) for i, x in enumerate(S.leaves)]
    tans = list(T)
    if hi:
        leaves, tans = [checks.up(x) for x in leaves], [checks.up(t) for t in tans]
    else:
        tans = [t.astype(np.asarray(S.leaves[i]).dtype) for t, i in zip(tans, S.diff)]
    axes = tuple(0 if i in P.stacked else None for i in range(len(leaves)))
    nl = len(leaves)
    ctx = checks.float64() if hi else contextlib.nullcontext()
    with ctx:
        if value:
            prog = jax.vmap(lambda *lv: f(*lv, *(jnp.zeros_like(lv[i]) for i in S.diff)),
                            in_axes=axes)
            ins = leaves
        else:
            def per_point(*all_args):
                lv, tv = all_args[:nl], all_args[nl:]
                return jax.vmap(lambda *d: f(*lv, *d))(*tv)
            prog = jax.vmap(per_point, in_axes=axes + (0,) * len(tans))
            ins = leaves + tans
        key = (id(f), hi, value)
        try:
            if programs is None:
                out = jax.jit(prog)(*ins)
            else:
                if key not in programs:
                    programs[key] = (f, jax.jit(prog))  # f kept alive: its id stays unique
                out = programs[key][1](*ins)
        except (InputError, KeyboardInterrupt):
            raise
        except Exception:  # noqa: BLE001 - code JAX cannot trace: point by point
            out = _loop(f, S, P, leaves, tans, axes, value)
        return np.stack([np.asarray(o) for o in out])


def _loop(f, S, P, leaves, tans, axes, value):
    rows = []
    for p in range(P.count):
        lv = [x[p] if a == 0 else x for x, a in zip(leaves, axes)]
        if value:
            rows.append([np.asarray(v) for v in f(*lv, *(np.zeros_like(lv[i]) for i in S.diff))])
        else:
            per = [[np.asarray(v) for v in f(*lv, *(t[p, d] for t in tans))]
                   for d in range(tans[0].shape[1])]
            rows.append([np.stack([r[j] for r in per]) for j in range(len(per[0]))])
    return [np.stack([r[j] for r in rows]) for j in range(len(rows[0]))]


# -- the check -----------------------------------------------------------------------------------
