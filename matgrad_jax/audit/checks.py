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


_DIFFERENTIATES = {"hand": False, "value": False, "ref": True, "both": True, "screen": True}
_NAMES = {"hand": ("h",), "value": ("f",), "ref": ("f",), "both": ("h", "f"),
          "screen": ("h", "f")}


def _point(fns, *leaves, static):
    kind, diff = static[:2]
    if kind == "hand":
        return fns[0](*leaves)
    if kind == "value":
        return jnp.real(fns[0](*leaves))
    if kind == "ref":
        return _value_and_grad(fns[0], diff, *leaves)
    if kind == "screen":
        return _screened(fns, leaves, diff, static[2])
    return fns[0](*leaves), _value_and_grad(fns[1], diff, *leaves)  # "both"


def _projected(kind: str, g):
    """:func:`~.domains.project` in the program."""
    if kind in ("symmetric", "spd"):
        return (g + jnp.swapaxes(g, -1, -2)) / 2
    if kind == "skew":
        return (g - jnp.swapaxes(g, -1, -2)) / 2
    if kind == "diagonal":
        return g * jnp.eye(g.shape[-1], dtype=bool)
    return g


def _sum_sq(x):
    """``‖x‖²`` summed in the widest float the program has (float64 with x64 on)."""
    acc = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    parts = (jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else (x,)
    return sum(jnp.sum(jnp.square(p.astype(acc))) for p in parts)


def _screened(fns, leaves, diff, kinds):
    """What a comparison of the hand gradient with ``jax.grad`` at a point needs, reduced in
    the program: the value, whether ``jax.grad`` (and the value) and each hand block are
    finite, ``‖P(r)‖²`` and each block's ``‖P(h_b − r_b)‖²`` (``P`` the domain's projection;
    ``P(h) − P(r) = P(h − r)``), then the hand gradient and ``jax.grad`` themselves (which the
    caller keeps at the example point only)."""
    hand = fns[0](*leaves)
    value, ref = _value_and_grad(fns[1], diff, *leaves)
    ref_finite = jnp.isfinite(value)
    ref_sq, err_sq, hand_finite = 0.0, [], []
    for h, r, kind in zip(hand, ref, kinds):
        ref_finite = ref_finite & jnp.all(jnp.isfinite(r))
        hand_finite.append(jnp.all(jnp.isfinite(h)))
        ref_sq = ref_sq + _sum_sq(_projected(kind, r))
        dt = jnp.promote_types(jnp.result_type(h), r.dtype)  # the finer of the two
        err_sq.append(_sum_sq(_projected(kind, jnp.asarray(h).astype(dt) - r.astype(dt))))
    return (jnp.real(value), ref_finite, jnp.stack(hand_finite), ref_sq, jnp.stack(err_sq),
            tuple(hand), tuple(ref))


SCREENED_WHOLE = (5, 6)
"""The outputs of ``evaluate("screen", ...)`` that come back at the example point only."""


def evaluate(kind: str, F: Functions, points, *, hi: bool):
    """At every point: ``"hand"`` (the hand gradient), ``"value"`` (the objective), ``"ref"``
    (value and ``jax.grad``), ``"both"`` (hand gradient, then value and ``jax.grad``), in one
    program built from the traced functions (:meth:`Functions.traced`); :func:`batched` for
    code that does not trace. ``"screen"``: the comparison of the two reduced in the program
    (:func:`_screened`: values, finite flags, squared norms at every point; the hand gradient
    and ``jax.grad`` at the example point only, so no copy of them at the other points is
    made), for traced code only. ``hi``: in float64. Returns numpy."""
    S = F.spec
    fns = [F.traced(w, hi) for w in _NAMES[kind]]
    if any(t is None for t in fns):
        if kind == "screen":
            raise TypeError("the screened comparison needs traced functions")
        fn = {"hand": F.hand, "value": lambda *L: jnp.real(F.fun(*L)),
              "ref": partial(_value_and_grad, F.fun, S.diff),
              "both": lambda *L: (F.hand(*L), _value_and_grad(F.fun, S.diff, *L))}[kind]
        return batched(fn, S, points, hi=hi)
    leaves = [points.stacked.get(i, np.asarray(x)) for i, x in enumerate(S.leaves)]
    if hi:
        leaves = [up(x) for x in leaves]
    axes = tuple(0 if i in points.stacked else None for i in range(len(leaves)))
    static = (kind, S.diff) if kind != "screen" else (
        kind, S.diff, tuple(S.domains[i] for i in S.diff))
    with float64() if hi else contextlib.nullcontext():
        out = programs.apply_mapped(_point, fns, leaves, axes, static=static,
                                    differentiates=_DIFFERENTIATES[kind],
                                    only_first=SCREENED_WHOLE if kind == "screen" else ())
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
    """Σ Re⟨g, v⟩ over blocks (numpy, leading direction axis on ``vs``), summed in float64
    whatever the blocks' precision (no float64 copies of them)."""
    total = 0.0
    for g, v in zip(gs, vs):
        g, v = np.asarray(g), np.asarray(v)
        g, v = g.reshape(-1), v.reshape(v.shape[0], -1)
        if np.iscomplexobj(g) or np.iscomplexobj(v):
            parts = [(np.real(g), np.real(v)), (np.imag(g), np.imag(v))]
        else:
            parts = [(g, v)]
        for a, b in parts:
            if a.dtype.itemsize < 4 or b.dtype.itemsize < 4:  # float16/bfloat16: widen first
                a, b = up(a), up(b)
            total = total + np.einsum("j,ij->i", a, b, dtype=np.float64)
    return total


def sq_norm(blocks, axis0: bool = False):
    """Σ ‖b‖² over blocks, summed in float64 (``axis0``: one value per leading index)."""
    total = 0.0
    for b in blocks:
        b = np.asarray(b)
        flat = b.reshape(b.shape[0], -1) if axis0 else b.reshape(1, -1)
        for x in ([flat.real, flat.imag] if np.iscomplexobj(flat) else [flat]):
            if x.dtype.itemsize < 4:
                x = up(x)
            total = total + np.einsum("ij,ij->i", x, x, dtype=np.float64)
    return total if axis0 else float(np.asarray(total).reshape(-1)[0])


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
