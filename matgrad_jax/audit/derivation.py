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

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from ..precision import products
from . import checks, diagnosis, points, spec, verdict
from . import domains as dom
from . import steps as st
from .derivation_report import DerivationReport, LineResult

TOL64 = 8 * float(np.sqrt(np.finfo(np.float64).eps))


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
    eps_w = float(np.finfo(work).eps)
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
        res = _judge_line(i, line, conds, lines, S, P, evaluate, ref, vals, vsize, rtol, low,
                          eps_w, labels, generic)
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


def _tolerance(rtol, low, hi, e_ref, eps_w, n):
    if rtol is not None:
        return np.full(n, float(rtol))
    if not low:
        return np.full(n, TOL64)
    eps64 = float(np.finfo(np.float64).eps)
    if hi:
        return np.maximum(TOL64, verdict.TOL_REF * e_ref * eps64 / eps_w)
    return np.maximum(verdict.TOL_EPS * eps_w, verdict.TOL_REF * e_ref)


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


def _judge_line(i, line, conds, lines, S, P, evaluate, ref, vals, vsize, rtol, low, eps_w,
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
    tol = _tolerance(rtol, low, hi, e_ref, eps_w, n)
    judged = np.where(np.isfinite(err), err, np.inf)
    status = np.where(~ref_ok, "skipped", np.where(~line_ok, "nonfinite",
                                                    np.where(judged <= tol, "ok", "fail")))
    assumed = any(c.kind == "family" for c in my)
    gen = generic if not assumed else np.ones(n, bool)
    tested = sel & (np.isin(status, ("ok", "fail")) | (gen & (status == "nonfinite")))
    bad = sel & ((status == "fail") | (gen & (status == "nonfinite")))
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


def _gradient_diagnosis(result, line, S, P, gproj) -> None:
    """For a wrong gradient line the audit's block diagnosis (``transpose``, ``scale:<c>``,
    ``symmetric-convention``, …) of the stated gradient against ``jax.grad``, block by block."""
    covered = st.wrt_blocks(line.wrt, S, "") if line.wrt else tuple(range(len(S.diff)))
    try:
        got = checks.batched(_stated_gradient(line, S, covered), S, P, hi=True)
    except Exception:  # noqa: BLE001 - it ran in the line's own check; nothing more to say
        return
    sel = P.generic if P.generic.any() else np.ones(P.count, bool)
    found = []
    for g, k in zip(got, covered):
        leaf = S.diff[k]
        H = dom.project(S.domains[leaf], checks.up(g))[sel]
        R = gproj[k][sel]
        scale = float(np.sqrt(np.mean(np.abs(R) ** 2))) or 1.0
        if np.max(np.abs(H - R)) <= 1e-7 * scale:
            continue
        found.append((S.block_names[k], diagnosis.classify(H, R, 1e-7, S.domains[leaf])))
    labels = {lab for _, lab in found}
    if len(labels) == 1 and "mismatch" not in labels:
        label = labels.pop()
        names = ", ".join(n for n, _ in found)
        what = (diagnosis.SYMMETRIC_CONVENTION if label == "symmetric-convention" else
                f"the stated gradient is {label} of jax.grad's")
        result.diagnosis = label
        result.explanation = f"block {names}: {what}" + (
            f"; {result.where_it_holds}" if result.where_it_holds.startswith("holds only")
            else "")


def _diagnose(result, d, r, size, prefer, bad, i, zeros, evaluate, tol, value):
    sel = prefer if prefer.any() else bad
    t_ = float(np.max(tol[sel]))
    fit_tol = max(10 * t_, 1e-9)
    norm = size[sel]
    terms = d[:, sel] / norm
    y = r[sel] / norm
    terms, y = terms.reshape(len(d), -1), y.ravel()
    total = terms.sum(axis=0)
    names = result.terms or ("the line",)

    def fit(target, basis):
        den = float(basis @ basis)
        if den == 0:
            return float("nan"), float("inf")
        c = float(basis @ target / den)
        res = float(np.linalg.norm(target - c * basis)
                    / max(np.linalg.norm(target), np.linalg.norm(basis), 1e-300))
        return c, res

    found = None
    c, res = fit(y, total)
    if res < fit_tol:
        found = (("sign", None, "the whole line has the wrong sign") if abs(c + 1) < fit_tol else
                 (f"scale:{diagnosis.nice_number(c)}", None,
                  f"the true differential is {diagnosis.nice_number(c)} × this line"))
    if found is None and len(d) > 1:
        for j in range(len(d)):
            rest = y - (total - terms[j])
            cj, rj = fit(rest, terms[j])
            if rj < fit_tol or np.linalg.norm(rest) <= fit_tol * np.linalg.norm(y):
                nm = names[j]
                if np.linalg.norm(rest) <= fit_tol * np.linalg.norm(y):
                    found = ("term-absent", nm, f"the term {nm} does not belong: without it "
                                                "the line holds")
                elif abs(cj + 1) < fit_tol:
                    found = ("term-sign", nm, f"the sign of the term {nm} is wrong: with "
                                              f"{nm} negated the line holds")
                else:
                    found = (f"term-scale:{diagnosis.nice_number(cj)}", nm,
                             f"the term {nm} is off by a factor: {diagnosis.nice_number(cj)} × "
                             f"{nm} makes the line hold")
                break
    if found is None and not value:
        try:
            dT = evaluate(i, zeros, True)[0]
        except Exception:  # noqa: BLE001
            dT = None
        if dT is not None and not np.array_equal(dT, d):
            tT = (dT[:, sel] / size[sel]).reshape(len(d), -1)
            cands = [(None, tT.sum(axis=0))] + (
                [(j, total - terms[j] + tT[j]) for j in range(len(d))] if len(d) > 1 else [])
            for j, alt in cands:
                if np.linalg.norm(y - alt) <= fit_tol * max(np.linalg.norm(y), 1e-300):
                    found = (("transpose", None, "the line holds with its matrix transposed")
                             if j is None else
                             ("term-transpose", names[j], f"the term {names[j]} is transposed: "
                                                          "it holds with that term's matrix "
                                                          "transposed"))
                    break
    if found is None and result.where_it_holds.startswith("holds only for"):
        found = ("family", None, result.where_it_holds)
    if found is None:
        found = ("mismatch", None, "differs from the true differential by more than a sign, a "
                                   "factor or a transposition of one term ("
                                   f"{result.where_it_holds})")
    result.diagnosis, result.term, result.explanation = found
    if found[0] != "family" and result.where_it_holds.startswith("holds only for"):
        result.explanation += f"; {result.where_it_holds}"


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
