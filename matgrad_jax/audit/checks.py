"""The numerical checks behind the audit: batched comparison with autodiff, forward-mode
directional derivatives, the Taylor-remainder slope, and one-sided derivatives at kinks.

Convention for complex arguments: the gradient is :math:`\\partial f/\\partial x + i\\,\\partial f/
\\partial y` (the real inner product :math:`\\mathrm{Re}\\langle g, v\\rangle` gives the directional
derivative); ``jax.grad`` returns its conjugate, which :func:`reference_gradient` undoes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .points import random_directions


def as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def reference_gradient(fun: Callable, argnums: tuple[int, ...]):
    """``jax.grad`` w.r.t. ``argnums`` as a tuple, conjugated to the real-inner-product
    convention."""
    g = jax.grad(lambda *a: jnp.real(fun(*a)), argnums=argnums)
    return lambda *args: tuple(jnp.conj(x) for x in g(*args))


def hand_gradient(grad_fun: Callable):
    return lambda *args: as_tuple(grad_fun(*args))


def real_inner(gs, vs):
    """Σ Re⟨g, v⟩ over blocks."""
    return sum(jnp.sum(jnp.real(jnp.conj(g) * v)) for g, v in zip(gs, vs))


@jax.jit
def directional(grads, dirs):
    """Σ_blocks Re⟨g, v_c⟩ for every stacked direction c: the hand directional derivatives."""
    return jax.vmap(lambda *vs: real_inner(grads, vs))(*dirs)


def map_points(fn, points):
    """``vmap`` when the function allows it (a host callback may not), else a Python loop."""
    try:
        return jax.jit(jax.vmap(fn))(*points)
    except Exception:  # noqa: BLE001 - any failure to batch falls back to one call per point
        count = jax.tree_util.tree_leaves(points)[0].shape[0]
        outs = [fn(*jax.tree_util.tree_map(lambda a, i=i: a[i], points)) for i in range(count)]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)


@partial(jax.jit, static_argnums=(0, 1, 2))
def batched_gradients(fun, grad_fun, argnums, points):
    """Values, reference gradients and hand gradients at every stacked point (one vmap)."""
    ref = reference_gradient(fun, argnums)

    def one(*args):
        return jnp.real(fun(*args)), ref(*args), hand_gradient(grad_fun)(*args)

    return jax.vmap(one)(*points)


def batched_values_and_hand(fun, grad_fun, points):
    """Values and hand gradients only (no autodiff reference)."""
    return map_points(lambda *a: (jnp.real(fun(*a)), hand_gradient(grad_fun)(*a)), points)


def _shift(args, argnums, dirs, h):
    out = list(args)
    for i, v in zip(argnums, dirs):
        out[i] = args[i] + (v * jnp.asarray(h).astype(v.dtype)).astype(args[i].dtype)
    return tuple(out)


@partial(jax.jit, static_argnums=(0, 1))
def forward_directional(fun, argnums, args, dirs):
    """jvp of ``fun`` at ``args`` along each stacked direction in ``dirs``."""

    def one(*vs):
        tangents = [jnp.zeros_like(a) for a in args]
        for i, v in zip(argnums, vs):
            tangents[i] = v
        return jnp.real(jax.jvp(fun, args, tuple(tangents))[1])

    return jax.vmap(one)(*dirs)


def high_precision(args):
    """Float arguments cast to float64/complex128 when x64 is on (for finite differences)."""
    if not jax.config.jax_enable_x64:
        return tuple(args)
    up = lambda a: (a.astype(jnp.complex128) if jnp.iscomplexobj(a) else
                    a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a)
    return tuple(up(a) for a in args)


@partial(jax.jit, static_argnums=(0, 1))
def _eval_along_jit(fun, argnums, args, dirs, hs):
    def line(*vs):
        return jax.vmap(lambda h: jnp.real(fun(*_shift(args, argnums, vs, h))))(hs)

    return jax.vmap(line)(*dirs)


def eval_along(fun, args, argnums, dirs, hs):
    """``fun(args + h v)`` for every h in ``hs`` and every direction (shape ``(ndir, nh)``).

    One jitted double vmap; a function JAX cannot trace (plain NumPy) is called point by point.
    """
    try:
        return _eval_along_jit(fun, argnums, tuple(args), dirs, hs)
    except Exception:  # noqa: BLE001 - untraceable user code: evaluate on concrete arrays
        ndir = jax.tree_util.tree_leaves(dirs)[0].shape[0]
        return jnp.asarray([[float(jnp.real(fun(*_shift(args, argnums, tuple(d[c] for d in dirs),
                                                         h)))) for h in hs]
                            for c in range(ndir)])


def fitted_slope(hs, remainders, floor, tail=6):
    """Least-squares slope of log r against log h over the smallest-h points above the noise."""
    hs, r = np.asarray(hs), np.asarray(remainders)
    ok = np.isfinite(r) & (r > floor)
    if ok.sum() < 3:
        return float("nan")
    h_ok, r_ok = hs[ok][-tail:], r[ok][-tail:]
    return float(np.polyfit(np.log(h_ok), np.log(r_ok), 1)[0])


def taylor_test(fun, grads, args, argnums, rng, *, n_directions=3, n_h=25):
    """First-order Taylor remainder :math:`|f(x+hv) - f(x) - h\\langle g, v\\rangle|` over a sweep.

    A right gradient leaves an :math:`O(h^2)` remainder (slope 2 on log-log axes), a wrong one
    :math:`O(h)` (slope 1). ``fun`` is evaluated in float64 where x64 is on, so the test also
    judges float32 gradients; it needs no autodiff, so it audits host-callback functions too.

    Returns:
      dict with ``hs``, ``remainders`` (per direction), ``slopes`` and ``floor``.
    """
    args_hi = high_precision(args)
    dirs = random_directions(rng, args_hi, argnums, n_directions)
    hs = jnp.asarray(2.0 ** -np.arange(n_h), dtype=jnp.real(args_hi[argnums[0]]).dtype)
    f0 = float(jnp.real(fun(*args_hi)))
    fh = np.asarray(eval_along(fun, args_hi, argnums, dirs, hs))
    grads_hi = tuple(g.astype(d.dtype) for g, d in zip(grads, dirs))
    dd = np.asarray(directional(grads_hi, dirs))
    rem = np.abs(fh - f0 - np.asarray(hs)[None, :] * dd[:, None])
    eps = float(jnp.finfo(hs.dtype).eps)
    floors = 64 * eps * np.maximum(abs(f0), np.abs(fh).max(axis=1))
    slopes = [fitted_slope(hs, rem[c], floors[c]) for c in range(n_directions)]
    return {"hs": np.asarray(hs), "remainders": rem, "slopes": slopes,
            "floor": floors, "directional": dd, "dirs": dirs, "f0": f0, "fh": fh}


def finite_difference_directional(fun, args, argnums, dirs):
    """Central differences along each direction with h ~ eps^(1/3) (float64 where x64 is on)."""
    args_hi = high_precision(args)
    dirs_hi = jax.tree_util.tree_map(lambda d: d.astype(args_hi[argnums[0]].dtype)
                                     if not jnp.iscomplexobj(d) else d, dirs)
    eps = float(jnp.finfo(jnp.real(args_hi[argnums[0]]).dtype).eps)
    h = eps ** (1 / 3)
    hs = jnp.asarray([h, -h], dtype=jnp.real(args_hi[argnums[0]]).dtype)
    f = np.asarray(eval_along(fun, args_hi, argnums, dirs_hi, hs))
    return (f[:, 0] - f[:, 1]) / (2 * h)


def kink_test(fun, args, argnums, dirs, *, rel_threshold=1e-3):
    """One-sided directional derivatives at ``args`` along each direction, at h and h/4.

    At a smooth point the gap :math:`D_+ - D_-` is :math:`O(h)` and shrinks fourfold with h; at a
    kink (e.g. a repeated top singular value) it stays put. Returns the largest persistent gap
    relative to the derivative's size, and whether it marks a kink.
    """
    args_hi = high_precision(args)
    dtype = jnp.real(args_hi[argnums[0]]).dtype
    eps = float(jnp.finfo(dtype).eps)
    h = 10 * eps ** (1 / 3)
    hs = jnp.asarray([h, -h, h / 4, -h / 4], dtype=dtype)
    f0 = float(jnp.real(fun(*args_hi)))
    f = np.asarray(eval_along(fun, args_hi, argnums, dirs, hs))
    d_plus_1, d_minus_1 = (f[:, 0] - f0) / h, (f0 - f[:, 1]) / h
    d_plus_4, d_minus_4 = (f[:, 2] - f0) / (h / 4), (f0 - f[:, 3]) / (h / 4)
    gap1, gap4 = d_plus_1 - d_minus_1, d_plus_4 - d_minus_4
    size = np.abs(d_plus_4) + np.abs(d_minus_4) + 1e3 * eps * abs(f0) / h
    rel = np.abs(gap4) / size
    persistent = np.abs(gap4) > 0.6 * np.abs(gap1)
    is_kink = (rel > rel_threshold) & persistent
    return {"kink": bool(np.any(is_kink)), "max_relative_gap": float(np.max(rel * persistent)),
            "one_sided": [(float(a), float(b)) for a, b in zip(d_plus_4, d_minus_4)]}
