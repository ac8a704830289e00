"""The numerical checks behind the audit, each a small function on the audit's flat leaves:
batched evaluation at every point, the autodiff reference, forward-mode directional
derivatives; the checks along lines (Taylor, finite differences, kinks) are in :mod:`.lines`.

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
