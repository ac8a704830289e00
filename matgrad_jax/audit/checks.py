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
from functools import partial

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
    return partial(_value_and_grad, spec.fun_flat(fun), spec.diff)


def _value_and_grad(f, diff, *leaves):
    def of_diff(*d):
        return jnp.real(f(*_insert(leaves, diff, d)))
    v, g = jax.value_and_grad(of_diff, argnums=tuple(range(len(diff))))(
        *(leaves[i] for i in diff))
    return v, tuple(jnp.conj(x) for x in g)


class Functions:
    """The user's objective (and hand gradient) on the audit's flat leaves, each traced once
    per audit and precision (:func:`matgrad_jax.programs.trace`): the audit's programs are
    built from these traces, so a warm audit, or a re-audit of a redefined function of the
    same structure, neither re-traces nor recompiles them. ``traced`` is None for code JAX
    cannot trace; the checks then call the functions as they are."""

    def __init__(self, spec: Spec, fun: Callable, grad_fun: Callable | None = None):
        self.spec = spec
        self.fun = spec.fun_flat(fun)
        self.hand = None
        self.hand_out = None  # the hand gradient's own output structure, from its trace
        self._seen = None
        self._traced: dict = {}
        if grad_fun is not None:
            def hand(*leaves):  # spec.hand_flat, remembering the output's own structure
                out = grad_fun(*spec.unflatten(leaves))
                self._seen = jax.tree_util.tree_map(
                    lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), out)
                return spec.flat_gradient(out)

            self.hand = hand

    def traced(self, which: str, hi: bool):
        """The traced objective (``"f"``) or hand gradient (``"h"``), in float64 (``hi``) or
        in the arguments' own dtypes; None where it does not trace."""
        key = (which, hi)
        if key not in self._traced:
            fn = self.fun if which == "f" else self.hand
            structs = [jax.ShapeDtypeStruct(np.shape(x), up(np.zeros((), x.dtype)).dtype
                                            if hi else x.dtype) for x in self.spec.leaves]
            try:
                with float64() if hi else contextlib.nullcontext():
                    self._traced[key] = None if fn is None else programs.trace(fn, *structs)[0]
                if which == "h" and not hi:
                    self.hand_out = self._seen
            except Exception:  # noqa: BLE001 - untraceable user code: called as it is
                self._traced[key] = None
        return self._traced[key]

    def out_dtype(self, hi: bool):
        t = self.traced("f", hi)
        return None if t is None else np.dtype(jax.tree_util.tree_leaves(t.out_shapes())[0].dtype)


_DIFFERENTIATES = {"hand": False, "value": False, "ref": True, "both": True}


def _point(fns, *leaves, static):
    kind, diff = static
    if kind == "hand":
        return fns[0](*leaves)
    if kind == "value":
        return jnp.real(fns[0](*leaves))
    if kind == "ref":
        return _value_and_grad(fns[0], diff, *leaves)
    return fns[0](*leaves), _value_and_grad(fns[1], diff, *leaves)  # "both"


def evaluate(kind: str, F: Functions, points, *, hi: bool):
    """At every point: ``"hand"`` (the hand gradient), ``"value"`` (the objective), ``"ref"``
    (value and ``jax.grad``), ``"both"`` (hand gradient, then value and ``jax.grad``), in one
    program built from the traced functions (:meth:`Functions.traced`); :func:`batched` for
    code that does not trace. ``hi``: in float64. Returns numpy."""
    S = F.spec
    names = {"hand": ("h",), "value": ("f",), "ref": ("f",), "both": ("h", "f")}[kind]
    fns = [F.traced(w, hi) for w in names]
    if any(t is None for t in fns):
        fn = {"hand": F.hand, "value": lambda *L: jnp.real(F.fun(*L)),
              "ref": partial(_value_and_grad, F.fun, S.diff),
              "both": lambda *L: (F.hand(*L), _value_and_grad(F.fun, S.diff, *L))}[kind]
        return batched(fn, S, points, hi=hi)
    leaves = [points.stacked.get(i, np.asarray(x)) for i, x in enumerate(S.leaves)]
    if hi:
        leaves = [up(x) for x in leaves]
    axes = tuple(0 if i in points.stacked else None for i in range(len(leaves)))
    with float64() if hi else contextlib.nullcontext():
        out = programs.apply_mapped(_point, fns, leaves, axes, static=(kind, S.diff),
                                    differentiates=_DIFFERENTIATES[kind])
        return jax.tree_util.tree_map(np.asarray, out)


def _functions(spec: Spec, fun) -> Functions:
    return fun if isinstance(fun, Functions) else Functions(spec, fun)


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


_DIFFERENTIABLE: dict = {}


def differentiable(F: Functions) -> bool:
    """Whether ``jax.grad`` of the objective traces (remembered per traced program where the
    program pins that down: shareable and free of custom rules)."""
    t = F.traced("f", False)
    if t is None:
        return False
    memo = t.shareable and not t.rules
    key = (t.structure, F.spec.diff)
    if memo and key in _DIFFERENTIABLE:
        return _DIFFERENTIABLE[key]
    try:
        jax.eval_shape(partial(_value_and_grad, t, F.spec.diff), *F.spec.leaves)
        ok = True
    except Exception:  # noqa: BLE001 - anything JAX cannot differentiate
        ok = False
    if memo:
        if len(_DIFFERENTIABLE) > 256:
            _DIFFERENTIABLE.clear()
        _DIFFERENTIABLE[key] = ok
    return ok


def real_inner(gs, vs):
    """Σ Re⟨g, v⟩ over blocks (numpy, leading direction axis on ``vs``)."""
    total = 0.0
    for g, v in zip(gs, vs):
        g = np.asarray(g)
        total = total + np.real(np.sum(np.conj(g)[None] * v, axis=tuple(range(1, v.ndim))))
    return total


def _jvps(fns, point, vs, *, static):
    diff = static

    def one(v):
        g = lambda *d: jnp.real(fns[0](*_insert(point, diff, d)))  # noqa: E731
        return jax.jvp(g, tuple(point[i] for i in diff), v)[1]

    return jax.vmap(one)(vs)


def forward(spec: Spec, fun, ats: list, dirs: list) -> np.ndarray:
    """``jax.jvp`` of ``fun`` at each point of ``ats`` along each of its directions
    (``dirs[p]``), in float64: one program for all (shape ``(points, directions)``)."""
    F = _functions(spec, fun)
    with float64():
        pts = tuple(np.stack([up(a[i]) for a in ats]) for i in range(len(ats[0])))
        d64 = tuple(np.stack([up(d[k]) for d in dirs]) for k in range(len(dirs[0])))
        t = F.traced("f", True)
        if t is not None:
            return np.asarray(programs.apply_mapped(_jvps, (t,), (pts, d64), (0, 0),
                                                    static=spec.diff, differentiates=True))
        f = F.fun

        def per_point(point, vs):
            return _jvps((f,), point, vs, static=spec.diff)

        return np.asarray(programs.mapped(per_point, (pts, d64), (0, 0)))


def _on_line(fns, at, dirs, idx, h, *, static):
    """``f(at + h·dirs[idx])`` (one point of a line search's grid)."""
    diff = static
    moved = [at[i] + (v[idx] * h.astype(jnp.real(v).dtype)).astype(at[i].dtype)
             for i, v in zip(diff, dirs)]
    return jnp.real(fns[0](*_insert(at, diff, moved)))


def along(spec: Spec, fun, at: tuple, dirs: tuple, hs: np.ndarray) -> tuple:
    """``fun(at + h v)`` for every h and direction (shape ``(ndir, nh)``) and ``fun(at)``, in
    float64 where JAX can (else in the arguments' dtype); untraceable code point by point.
    The (direction, h) pairs are one mapped axis, chunked so memory stays bounded."""
    F = _functions(spec, fun)
    ndir = int(np.shape(dirs[0])[0])
    hs_all = np.concatenate([[0.0], np.asarray(hs, np.float64)])  # h = 0: f(at), same program
    idx = np.repeat(np.arange(ndir, dtype=np.int32), len(hs_all))
    hh = np.tile(hs_all, ndir)
    point_bytes = sum(int(np.asarray(at[i]).size) * 8 for i in spec.diff)

    def run(cast, hi):
        at_c = tuple(cast(x) for x in at)
        d_c = tuple(cast(d) for d in dirs)
        t = F.traced("f", hi)
        try:
            if t is None:
                raise TypeError("untraceable")
            flat = programs.apply_mapped(_on_line, (t,), (at_c, d_c, idx, hh),
                                         (None, None, 0, 0), static=spec.diff,
                                         point_bytes=point_bytes)
            both = np.asarray(flat, np.float64).reshape(ndir, len(hs_all))
            fh, f0 = both[:, 1:], both[0, 0]
        except Exception:  # noqa: BLE001 - untraceable user code: evaluate on concrete arrays
            f = F.fun
            fh = [[float(np.real(f(*_insert(at_c, spec.diff,
                                            [at_c[i] + h * d[c] for i, d in zip(spec.diff, d_c)]
                                            )))) for h in hs] for c in range(ndir)]
            f0 = float(np.real(f(*at_c)))
        return np.asarray(fh, np.float64), float(f0), _output_eps(F, at_c, spec, hi)

    try:
        with float64():
            fh, f0, eps = run(up, True)
            if np.all(np.isfinite(fh)) or not np.isfinite(f0):
                return fh, f0, eps
    except Exception:  # noqa: BLE001 - fun does not run in float64: use its own dtype
        pass
    return run(np.asarray, False)


def _output_eps(F: Functions, at, spec, hi) -> float:
    """The rounding unit of ``f``'s values: the coarser of its output's and its differentiated
    inputs' dtypes (a function that casts its value to float32 is float32, whatever its input)."""
    dts = [np.asarray(at[i]).real.dtype for i in spec.diff]
    out = F.out_dtype(hi)
    if out is not None:
        dts.append(out)
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
