"""The numerical checks behind the audit, each a small function on the audit's flat leaves:
batched evaluation at every point, the autodiff reference, forward-mode directional
derivatives, the Taylor remainder and one-sided derivatives at kinks.

The reference (``jax.grad``, ``jax.jvp``, the Taylor values) is computed in float64 whenever JAX
can, whatever the caller's x64 setting (:func:`float64`), so a float32 hand gradient is judged
against a true value. Every call traces the function afresh, so the audit judges it as it is
now, never a trace of an earlier version (a notebook that changes a global between two audits of
the same function object gets two verdicts); the compiled programs are shared between functions
that trace to the same program (:mod:`~matgrad_jax.audit.programs`), so a re-audit does not
recompile.

Convention for complex arguments: the gradient is :math:`\\partial f/\\partial x + i\\,\\partial f/
\\partial y` (the real inner product :math:`\\mathrm{Re}\\langle g, v\\rangle` gives the directional
derivative); ``jax.grad`` returns its conjugate, which :func:`reference` undoes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import programs
from .spec import Spec


def _enable_x64():
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older jax

    return enable_x64()


@contextlib.contextmanager
def float64():
    """x64 on and standard dtype promotion, for the audit's own reference computation; the
    caller's settings are restored on exit (float32 constants a function closes over promote)."""
    with _enable_x64(), jax.numpy_dtype_promotion("standard"):
        yield


def up(x):
    """A float leaf as float64 (complex128), anything else unchanged (numpy; no copy when it
    already is)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return x.astype(np.complex128, copy=False)
    if np.issubdtype(x.dtype, np.floating) or x.dtype.name == "bfloat16":
        return x.astype(np.float64, copy=False)
    return x


def _insert(leaves, idx, values):
    out = list(leaves)
    for i, v in zip(idx, values):
        out[i] = v
    return tuple(out)


def reference(spec: Spec, fun: Callable) -> Callable:
    """``leaves -> (value, gradients of the differentiated leaves)`` by ``jax.grad``,
    conjugated to the real-inner-product convention; other leaves are closed over, so integer
    arguments need no tangent."""
    f = spec.fun_flat(fun)

    def value_and_grad(*leaves):
        def of_diff(*d):
            return jnp.real(f(*_insert(leaves, spec.diff, d)))
        v, g = jax.value_and_grad(of_diff, argnums=tuple(range(len(spec.diff))))(
            *(leaves[i] for i in spec.diff))
        return v, tuple(jnp.conj(x) for x in g)

    return value_and_grad


def batched(fn: Callable, spec: Spec, points, *, hi: bool, extra: tuple = ()):
    """``fn(*leaves, *extra)`` at every point: one fresh ``jit(vmap)`` (varied leaves batched,
    fixed ones and ``extra`` not; all passed as arguments, never baked in as constants, which XLA
    would fold at compile time), a Python loop for code JAX cannot trace. ``hi``: in float64
    (``extra`` cast too). Returns numpy."""
    n = points.count
    leaves = [points.stacked.get(i, np.asarray(x)) for i, x in enumerate(spec.leaves)]
    extra = [np.asarray(e) for e in extra]
    if hi:
        leaves, extra = [up(x) for x in leaves], [up(e) for e in extra]
    axes = tuple(0 if i in points.stacked else None for i in range(len(leaves)))
    axes += (None,) * len(extra)
    leaves = leaves + extra
    ctx = float64() if hi else contextlib.nullcontext()
    with ctx:
        try:
            out = programs.mapped(fn, leaves, axes)
        except Exception:  # noqa: BLE001 - untraceable code: one call per point
            outs = []
            for p in range(n):
                at = [x[p] if a == 0 else x for x, a in zip(leaves, axes)]
                outs.append(fn(*at))
            out = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                         *outs)
        return jax.tree_util.tree_map(np.asarray, out)


def traceable(fn: Callable, spec: Spec) -> bool:
    try:
        jax.eval_shape(fn, *spec.leaves)
        return True
    except Exception:  # noqa: BLE001 - anything JAX cannot trace or differentiate
        return False


def real_inner(gs, vs):
    """Σ Re⟨g, v⟩ over blocks (numpy, leading direction axis on ``vs``)."""
    total = 0.0
    for g, v in zip(gs, vs):
        g = np.asarray(g)
        total = total + np.real(np.sum(np.conj(g)[None] * v, axis=tuple(range(1, v.ndim))))
    return total


def forward(spec: Spec, fun: Callable, ats: list, dirs: list) -> np.ndarray:
    """``jax.jvp`` of ``fun`` at each point of ``ats`` along each of its directions
    (``dirs[p]``), in float64: one program for all (shape ``(points, directions)``)."""
    f = spec.fun_flat(fun)
    with float64():
        pts = tuple(np.stack([up(a[i]) for a in ats]) for i in range(len(ats[0])))
        d64 = tuple(np.stack([up(d[k]) for d in dirs]) for k in range(len(dirs[0])))

        def one(point, vs):
            g = lambda *d: jnp.real(f(*_insert(point, spec.diff, d)))
            return jax.jvp(g, tuple(point[i] for i in spec.diff), vs)[1]

        per_point = jax.vmap(one, in_axes=(None, 0))
        return np.asarray(programs.mapped(per_point, (pts, d64), (0, 0)))


def along(spec: Spec, fun: Callable, at: tuple, dirs: tuple, hs: np.ndarray) -> tuple:
    """``fun(at + h v)`` for every h and direction (shape ``(ndir, nh)``) and ``fun(at)``, in
    float64 where JAX can (else in the arguments' dtype); untraceable code point by point."""
    f = spec.fun_flat(fun)

    def run(cast):
        at_c = tuple(cast(x) for x in at)
        d_c = tuple(cast(d) for d in dirs)

        def point(base, vs, h):
            moved = [base[i] + (v * h.astype(jnp.real(v).dtype)).astype(base[i].dtype)
                     for i, v in zip(spec.diff, vs)]
            return jnp.real(f(*_insert(base, spec.diff, moved)))

        def line(base, vs, hs_):
            return jax.vmap(lambda h: point(base, vs, h))(hs_)

        try:  # h = 0 first: f(at) comes from the same program
            both = programs.mapped(
                line, (at_c, d_c, np.concatenate([[0.0], np.asarray(hs, np.float64)])),
                (None, 0, None))
            fh, f0 = both[:, 1:], both[0, 0]
        except Exception:  # noqa: BLE001 - untraceable user code: evaluate on concrete arrays
            fh = [[float(np.real(f(*_insert(at_c, spec.diff,
                                            [at_c[i] + h * d[c] for i, d in zip(spec.diff, d_c)]
                                            )))) for h in hs] for c in range(len(d_c[0]))]
            f0 = float(np.real(f(*at_c)))
        return np.asarray(fh, np.float64), float(f0), _output_eps(f, at_c, spec)

    try:
        with float64():
            fh, f0, eps = run(up)
            if np.all(np.isfinite(fh)) or not np.isfinite(f0):
                return fh, f0, eps
    except Exception:  # noqa: BLE001 - fun does not run in float64: use its own dtype
        pass
    return run(np.asarray)


def _output_eps(f, at, spec) -> float:
    """The rounding unit of ``f``'s values: the coarser of its output's and its differentiated
    inputs' dtypes (a function that casts its value to float32 is float32, whatever its input)."""
    dts = [np.asarray(at[i]).real.dtype for i in spec.diff]
    try:
        dts.append(np.dtype(jax.eval_shape(f, *at).dtype))
    except Exception:  # noqa: BLE001 - untraceable: the inputs' dtypes
        pass
    return max(float(np.finfo(np.finfo(d).dtype if np.issubdtype(d, np.complexfloating) else d).eps)
               for d in dts)


def taylor(spec: Spec, fun: Callable, at: tuple, grads: tuple, dirs: tuple, *, n_h: int = 13,
           ratio: float = 4.0):
    """First-order Taylor remainder ``s(h) = f(x+hv) − f(x) − h⟨g, v⟩`` over ``h = ratio⁻ᵏ``
    (``k < n_h``: from 1 down to 6e-8 by default, 13 values of ``f`` per direction).

    A right gradient leaves ``s = O(h²)``; an error ``δ`` in it leaves a linear term ``−h⟨δ, v⟩``.
    The linear coefficient ``a`` is estimated by Richardson extrapolation of ``s(h)/h`` at the
    step where the estimate's truncation change plus the rounding of ``f`` (``σ/h``) is
    smallest, and returned relative to ``‖g‖‖v‖/√N`` (the size of a directional derivative along
    a random ``v``): it is then comparable with the gradient's relative error, and judged against
    the hand gradient's own rounding. A linear function (no ``h²`` term) is judged by ``a`` alone.
    The log-log slope (2 right, 1 wrong) is reported too. No autodiff is used, so host-callback
    functions are tested as well.
    """
    hs = ratio ** -np.arange(n_h)
    fh, f0, eps = along(spec, fun, at, dirs, hs)
    dd = real_inner([up(g) for g in grads], [up(d) for d in dirs])
    s = fh - f0 - hs[None, :] * dd[:, None]
    sigma = 8 * eps * np.maximum(abs(f0), np.abs(fh))
    q = s / hs[None, :]
    rich = (ratio * q[:, 1:] - q[:, :-1]) / (ratio - 1)  # a + O(h²), at h_k
    change = np.abs(np.diff(rich, axis=1))  # truncation estimate at h_k, k < n_h - 2
    noise = (ratio**2 + 1) / (ratio - 1) * sigma[:, :-2] / hs[None, :-2]  # rounding of rich
    unc = change + noise
    unc = np.where(np.isfinite(unc), unc, np.inf)
    k = np.argmin(unc, axis=1)
    rows = np.arange(len(k))
    a, u = rich[rows, k], unc[rows, k]
    n_entries = sum(int(np.asarray(g).size) for g in grads)
    gnorm = np.sqrt(sum(float(np.sum(np.abs(up(g)) ** 2)) for g in grads))
    vnorm = np.sqrt(sum(np.sum(np.abs(up(d)) ** 2, axis=tuple(range(1, np.ndim(d))))
                        for d in dirs))
    size = np.maximum(gnorm * vnorm / np.sqrt(max(n_entries, 1)), 1e-300)
    rem = np.abs(s)
    slopes = [fitted_slope(hs, rem[c], 4 * sigma[c]) for c in range(len(rem))]
    return {"hs": hs, "remainders": rem, "slopes": slopes, "linear_term": np.abs(a) / size,
            "uncertainty": u / size, "floor": sigma}


def fitted_slope(hs, remainders, floor, tail=6):
    """Least-squares slope of log r against log h over the smallest-h points above the noise."""
    hs, r = np.asarray(hs), np.asarray(remainders)
    ok = np.isfinite(r) & (r > floor)
    if ok.sum() < 3:
        return float("nan")
    h_ok, r_ok = hs[ok][-tail:], r[ok][-tail:]
    return float(np.polyfit(np.log(h_ok), np.log(r_ok), 1)[0])


def finite_difference(spec: Spec, fun: Callable, at: tuple, dirs: tuple) -> tuple:
    """Central differences along each direction (h ~ eps^(1/3)), float64 where JAX can; with
    the rounding bound of each."""
    probe_eps = np.finfo(np.float64).eps
    h = probe_eps ** (1 / 3)
    fh, f0, eps = along(spec, fun, at, dirs, np.asarray([h, -h]))
    if eps != probe_eps:  # ran in a lower precision: a step for that one
        h = eps ** (1 / 3)
        fh, f0, eps = along(spec, fun, at, dirs, np.asarray([h, -h]))
    fd = (fh[:, 0] - fh[:, 1]) / (2 * h)
    return fd, (8 * eps * max(abs(f0), np.max(np.abs(fh)))) / h + h ** 2


def kink(spec: Spec, fun: Callable, at: tuple, dirs: tuple, *, rel_threshold=1e-3) -> dict:
    """One-sided directional derivatives at ``at`` along each direction, at h and h/4.

    At a smooth point the gap :math:`D_+ - D_-` is :math:`O(h)` and shrinks fourfold with h; at a
    kink (e.g. a repeated top singular value) it stays put. Returns the largest persistent gap
    relative to the derivative's size, and whether it marks a kink.
    """
    eps64 = float(np.finfo(np.float64).eps)
    h = 10 * eps64 ** (1 / 3)
    hs = np.asarray([h, -h, h / 4, -h / 4])
    f, f0, eps = along(spec, fun, at, dirs, hs)
    if eps != eps64:
        h = 10 * eps ** (1 / 3)
        f, f0, eps = along(spec, fun, at, dirs, hs * (h / hs[0]))
    d_plus_1, d_minus_1 = (f[:, 0] - f0) / h, (f0 - f[:, 1]) / h
    d_plus_4, d_minus_4 = (f[:, 2] - f0) / (h / 4), (f0 - f[:, 3]) / (h / 4)
    gap1, gap4 = d_plus_1 - d_minus_1, d_plus_4 - d_minus_4
    size = np.abs(d_plus_4) + np.abs(d_minus_4) + 1e3 * eps * abs(f0) / h
    with np.errstate(invalid="ignore"):
        rel = np.abs(gap4) / size
        persistent = np.abs(gap4) > 0.6 * np.abs(gap1)
    is_kink = (rel > rel_threshold) & persistent
    return {"kink": bool(np.any(is_kink)),
            "max_relative_gap": float(np.nanmax(np.where(persistent, rel, 0.0))),
            "one_sided": [(float(a), float(b)) for a, b in zip(d_plus_4, d_minus_4)]}
