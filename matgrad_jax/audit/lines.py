"""Checks along lines through a point, with no autodiff: ``fun(x + h v)`` on a grid of steps
(:func:`along`), the Taylor remainder of a claimed directional derivative (:func:`taylor`,
:func:`remainder`), central differences (:func:`finite_difference`) and one-sided derivatives
at kinks (:func:`kink`). The values are computed in float64 whenever JAX can; untraceable code is
called point by point. ``fun`` is the user's objective or any smooth scalar function of the same
arguments (the Hessian audit passes ``⟨u, ∇f⟩``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from .. import programs
from .checks import (
    Functions,
    _functions,
    _insert,
    _value_and_grad,
    float64,
    real_inner,
    sq_norm,
    up,
)
from .spec import Spec


def inner_gradient(spec: Spec, fun: Callable, u: tuple) -> Functions:
    """``x -> Re⟨u, ∇f(x)⟩`` (``jax.grad`` of ``fun``, in the audit's convention) as the
    function the checks along lines evaluate: its derivative along ``v`` is ``⟨u, H v⟩``, so
    :func:`remainder` judges a claimed Hessian product and :func:`kink` finds where the gradient
    itself has a kink."""
    F = Functions(spec, fun)
    f = F.fun

    def gu(*leaves):
        g = _value_and_grad(f, spec.diff, *leaves)[1]
        return sum(jnp.sum(jnp.real(jnp.conj(jnp.asarray(uk).astype(gk.dtype)) * gk))
                   for uk, gk in zip(u, g))

    F.fun = gu
    return F


def runs_in_float64(spec: Spec, fun) -> bool:
    """Whether ``fun`` computes its value in float64 when given float64 arguments (not one that
    casts to a lower precision inside, whose derivatives then carry that precision's rounding
    even where they come back as float64)."""
    F = _functions(spec, fun)
    try:
        out = F.out_dtype(True)
    except Exception:  # noqa: BLE001 - untraceable: judged by its arguments' dtypes
        out = None
    if out is None:
        return False
    return float(np.finfo(out).eps) <= float(np.finfo(np.float64).eps)


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
    ndir = int(np.shape(dirs[0])[0])
    hs = np.asarray(hs, np.float64)
    idx = np.repeat(np.arange(ndir, dtype=np.int32), len(hs))
    flat, f0, eps = along_pairs(spec, fun, at, dirs, idx, np.tile(hs, ndir))
    return flat.reshape(ndir, len(hs)), f0, eps


def along_pairs(spec: Spec, fun, at: tuple, dirs: tuple, idx, hh, *, hi: bool = True) -> tuple:
    """``fun(at + hh[j] dirs[idx[j]])`` for each pair ``j`` (any mix of directions and steps,
    one program) and ``fun(at)``: ``(values, f0, eps)``, ``eps`` the rounding unit of the values.
    ``hi``: in float64 where JAX can (else in the arguments' dtype); ``hi=False``: in the
    arguments' own dtype."""
    F = _functions(spec, fun)
    idx = np.concatenate([[0], np.asarray(idx, np.int32)]).astype(np.int32)
    hh = np.concatenate([[0.0], np.asarray(hh, np.float64)])  # h = 0: f(at), same program
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
            vals = np.asarray(flat, np.float64)
            fh, f0 = vals[1:], float(vals[0])
        except Exception:  # noqa: BLE001 - untraceable user code: evaluate on concrete arrays
            f = F.fun
            fh = [float(np.real(f(*_insert(at_c, spec.diff,
                                           [at_c[i] + h * d[c] for i, d in zip(spec.diff, d_c)]
                                           )))) for c, h in zip(idx[1:], hh[1:])]
            f0 = float(np.real(f(*at_c)))
        return np.asarray(fh, np.float64), float(f0), _output_eps(F, at_c, spec, hi)

    if hi:
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
    dd, size = _claimed(grads, dirs)
    return remainder(hs, fh, f0, eps, dd, size, ratio)


def _claimed(grads, dirs):
    """The claimed directional derivatives ``⟨g, v⟩`` along each direction and the scale
    ``‖g‖‖v‖/√N`` their errors are measured against."""
    dd = real_inner(grads, dirs)
    n_entries = sum(int(np.asarray(g).size) for g in grads)
    gnorm = np.sqrt(sq_norm(grads))
    vnorm = np.sqrt(sq_norm(dirs, axis0=True))
    return dd, np.maximum(gnorm * vnorm / np.sqrt(max(n_entries, 1)), 1e-300)


def remainder(hs, fh, f0, eps, dd, size, ratio: float = 4.0) -> dict:
    """The Taylor-remainder judgement of :func:`taylor` on values already computed:
    ``fh[c, k] = f(x + hs[k] v_c)``, ``f0 = f(x)``, ``eps`` the rounding unit of ``f``,
    ``dd[c]`` the claimed directional derivative along ``v_c`` and ``size[c]`` the scale its
    error is measured against. ``f`` may be any smooth scalar function of the point (the
    Hessian audit passes ``⟨u, ∇f⟩``, whose claimed derivative is ``⟨u, Hv⟩``)."""
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
    size = np.maximum(np.asarray(size, np.float64), 1e-300)
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
    return one_sided(f, f0, eps, h, rel_threshold)


def one_sided(f, f0, eps, h, rel_threshold=1e-3) -> dict:
    """The kink judgement of :func:`kink` on values already computed: ``f[c]`` holds
    ``f(x + s v_c)`` for ``s = h, −h, h/4, −h/4``, ``f0 = f(x)``, ``eps`` the rounding unit."""
    f = np.asarray(f, np.float64)
    d_plus_1, d_minus_1 = (f[:, 0] - f0) / h, (f0 - f[:, 1]) / h
    d_plus_4, d_minus_4 = (f[:, 2] - f0) / (h / 4), (f0 - f[:, 3]) / (h / 4)
    gap1, gap4 = d_plus_1 - d_minus_1, d_plus_4 - d_minus_4
    size = np.abs(d_plus_4) + np.abs(d_minus_4) + 1e3 * eps * abs(f0) / h
    with np.errstate(invalid="ignore"):
        rel = np.abs(gap4) / size
        persistent = np.abs(gap4) > 0.6 * np.abs(gap1)
    is_kink = (rel > rel_threshold) & persistent
    return {"kink": bool(np.any(is_kink)), "eps": eps,
            "max_relative_gap": float(np.nanmax(np.where(persistent, rel, 0.0))),
            "one_sided": [(float(a), float(b)) for a, b in zip(d_plus_4, d_minus_4)]}


SCREEN_STEPS = 3
"""Steps ``h > 0`` of the screen's Taylor test (:func:`screen`): ``4⁻ᵏ`` for three consecutive
``k`` around the kink test's step; with ``−h`` and ``−h/4`` and ``f(x)`` the line takes six
values of ``f`` (the full audit's :func:`taylor` takes 14 a direction)."""


def screen_steps(eps: float) -> tuple[np.ndarray, int]:
    """The screen's steps for values rounded at ``eps``, and the index ``j`` of the kink test's
    step ``h`` among them (``h/4`` is the next). ``h`` is ``4⁻ᵏ`` nearest ``10·eps^(1/3)`` (what
    :func:`kink` uses), where the rounding of a central difference (``σ/h``) and its Richardson
    truncation (``h⁴``) are both far below what the dtype resolves; the steps are ``4h, h, h/4``
    (``h, h/4, h/16`` where ``h`` is 1) and never exceed 1 (a tangent on an SPD domain stays
    inside for ``|h| <= 1``)."""
    k_kink = max(0, int(round(np.log(1 / (10 * eps ** (1 / 3))) / np.log(4))))
    k0 = max(0, k_kink - 1)
    return 4.0 ** -np.arange(k0, k0 + SCREEN_STEPS), k_kink - k0


def central(hs, j, fh, fm, f0, eps, dd, size) -> dict:
    """The screen's Taylor judgement from central differences: ``fh[k] = f(x + hs[k] v)``,
    ``fm = (f(x − h v), f(x − h/4 v))`` with ``h = hs[j]``, ``f0 = f(x)``, ``dd`` the claimed
    directional derivative (one direction) and ``size`` its scale (:func:`taylor`). The linear
    coefficient is the Richardson extrapolation ``a = (16 D(h/4) − D(h)) / 15`` of the central
    differences ``D(s) = (f(x+sv) − f(x−sv)) / 2s`` (error ``O(h⁴)``: a quadratic ``f`` is
    differentiated exactly); its uncertainty is the change ``|D(h/4) − D(h)| / 15`` plus the
    rounding of ``f`` (``σ = 8 eps max|f|``; at most ``65σ / 15h`` in ``a``). The one-sided
    remainders ``|f(x+sv) − f(x) − s·dd|`` at the three steps give the log-log slope (2 right,
    1 wrong), reported as :func:`remainder` does."""
    hs, fh = np.asarray(hs, np.float64), np.asarray(fh, np.float64)
    h = hs[j]
    sigma = 8 * eps * max(abs(f0), float(np.max(np.abs(fh))), float(np.max(np.abs(fm))))
    d1 = (fh[j] - fm[0]) / (2 * h)
    d4 = (fh[j + 1] - fm[1]) / (h / 2)
    a = (16 * d4 - d1) / 15
    unc = abs(d4 - d1) / 15 + 65 * sigma / (15 * h)
    unc = unc if np.isfinite(unc) else np.inf
    size = max(float(np.asarray(size, np.float64).reshape(-1)[0]), 1e-300)
    dd = float(np.asarray(dd, np.float64).reshape(-1)[0])
    rem = np.abs(fh - f0 - hs * dd)
    return {"hs": hs, "remainders": rem[None], "slopes": [fitted_slope(hs, rem, 4 * sigma)],
            "linear_term": np.asarray([abs(a - dd) / size]),
            "uncertainty": np.asarray([unc / size]), "floor": np.asarray([sigma])}


def screen(spec: Spec, fun: Callable, at: tuple, grads: tuple, dirs: tuple, *, hi: bool = True,
           rel_threshold=1e-3) -> tuple[dict, dict]:
    """The Taylor test along ``dirs[0]`` and the kink test along every direction, from one
    program of ``fun`` on the line: :data:`SCREEN_STEPS` values along the first direction (two
    of them the kink test's ``h`` and ``h/4``), ``−h`` and ``−h/4`` along it, ``±h`` and
    ``±h/4`` along each other direction, and ``fun(at)``: ``2 + 4·ndir`` values where
    :func:`taylor` and :func:`kink` take 14 and ``4·ndir + 1``. ``hi``: in float64 where JAX
    can, else in the arguments' own dtype (:func:`along_pairs`). Returns ``(taylor, kink)``
    as :func:`central` and :func:`one_sided` do."""
    ndir = int(np.shape(dirs[0])[0])
    eps = _output_eps(_functions(spec, fun), at, spec, False)
    if hi:
        eps = min(eps, float(np.finfo(np.float64).eps))

    def pairs(eps):
        hs, j = screen_steps(eps)
        h = hs[j]
        idx = [0] * (len(hs) + 2) + [c for c in range(1, ndir) for _ in range(4)]
        hh = list(hs) + [-h, -h / 4] + [h, -h, h / 4, -h / 4] * (ndir - 1)
        return hs, j, h, np.asarray(idx, np.int32), np.asarray(hh)

    hs, j, h, idx, hh = pairs(eps)
    vals, f0, got = along_pairs(spec, fun, at, dirs, idx, hh, hi=hi)
    if got != eps:  # ran in another precision than planned: its own steps
        hs, j, h, idx, hh = pairs(got)
        vals, f0, got = along_pairs(spec, fun, at, dirs, idx, hh, hi=hi)
    n = len(hs)
    first = [vals[j], vals[n], vals[j + 1], vals[n + 1]]
    rest = vals[n + 2:].reshape(ndir - 1, 4) if ndir > 1 else np.zeros((0, 4))
    dd, size = _claimed(grads, tuple(d[:1] for d in dirs))
    t = central(hs, j, vals[:n], vals[n:n + 2], f0, got, dd, size)
    k = one_sided(np.vstack([np.asarray(first)[None], rest]), f0, got, h, rel_threshold)
    return t, k
