"""Where an argument lives: its domain, how points and tangents are drawn on it, and the
projection under which gradients on it are compared.

=============  ==============================================================================
``general``    any array (default for differentiated arguments)
``symmetric``  real square ``X = Xᵀ``; gradients compared as ``sym(G) = (G + Gᵀ)/2``
``spd``        real symmetric positive definite; tangents symmetric, gradients ``sym(G)``
``skew``       real square ``X = −Xᵀ``; gradients compared as ``skew(G) = (G − Gᵀ)/2``
``diagonal``   square, zero off the diagonal; gradients compared as ``diag(G)``
``fixed``      data: never perturbed or redrawn (default for arguments not differentiated)
=============  ==============================================================================

For a function of a symmetric matrix under the Frobenius inner product ``⟨A, B⟩ = tr(AᵀB)``, the
gradient is ``sym(G)`` of the unconstrained gradient ``G``: any representative whose symmetric
part is ``sym(G)`` gives the same directional derivatives along symmetric tangents. The
"symmetric gradient" ``G + Gᵀ − G∘I`` of statistics and engineering notes is the gradient under
the inner product of the independent entries ``Σ_{i≤j} A_ij B_ij``, not the Frobenius one
(Srinivasan & Panda, "What is the gradient of a scalar function of a symmetric matrix?",
arXiv:1911.06491); the audit names it ``symmetric-convention``.

Every draw is made on the host with NumPy's ``Generator``, at the root-mean-square size of the
example argument, and stacked along a leading axis.
"""

from __future__ import annotations

import numpy as np

KINDS = ("general", "symmetric", "spd", "skew", "diagonal", "fixed")
SQUARE_KINDS = ("symmetric", "spd", "skew", "diagonal")

FAMILIES_IN = {
    "general": ("symmetric", "skew", "psd", "diagonal"),
    "symmetric": ("psd", "diagonal"),
    "spd": ("diagonal",),
}
"""The structured sub-families swept inside each domain (for square arguments)."""


def scale_of(x: np.ndarray) -> float:
    """Root-mean-square size of an example argument (1 where it is all zeros)."""
    rms = float(np.sqrt(np.mean(np.abs(x) ** 2))) if x.size else 0.0
    return rms if rms > 0 else 1.0


def _t(x):
    return np.swapaxes(x, -1, -2)


def sym(x):
    return (x + _t(x)) / 2


def skew(x):
    return (x - _t(x)) / 2


def diag_part(x):
    return x * np.eye(x.shape[-1], dtype=bool)


def project(kind: str, g):
    """The part of ``g`` (numpy, any leading batch axes) that lies in the domain's tangent space."""
    if kind in ("symmetric", "spd"):
        return sym(g)
    if kind == "skew":
        return skew(g)
    if kind == "diagonal":
        return diag_part(g)
    return g


def normal_like(rng: np.random.Generator, like: np.ndarray, size=()) -> np.ndarray:
    shape = tuple(size) + like.shape
    real = np.float32 if like.dtype in (np.float32, np.complex64) else np.float64
    if np.iscomplexobj(like):
        z = (rng.standard_normal(shape, real) + 1j * rng.standard_normal(shape, real)) / np.sqrt(2)
    else:
        z = rng.standard_normal(shape, real)
    return z


def _spd_from(g: np.ndarray) -> np.ndarray:
    n = g.shape[-1]
    m = g @ _t(g) / n + np.eye(n)
    return m


def _direct(like: np.ndarray, into) -> bool:
    """Whether draws can be made straight into ``into`` (a real float32/float64 buffer of
    ``like``'s dtype): no temporary, no copy."""
    return into is not None and like.dtype in (np.float32, np.float64) and into.dtype == like.dtype


def _put(out: np.ndarray, into):
    if into is None:
        return out
    into[...] = out
    return into


def draw(rng, like: np.ndarray, kind: str, count: int, into=None, scale=None) -> np.ndarray:
    """``count`` fresh draws on the domain (or sub-family) ``kind``, at the size of ``like``
    (``scale``: its :func:`scale_of`, where the caller has it); written into ``into`` (shape
    ``(count, *like.shape)``) where given, with the same values. Real matrices are drawn with
    as few normals and temporaries as the family needs (a diagonal one draws its diagonal)."""
    s = scale_of(like) if scale is None else scale
    square = like.ndim == 2 and like.shape[0] == like.shape[1]
    if kind in ("general", "generic") or not square:
        if _direct(like, into):
            rng.standard_normal(dtype=like.dtype, out=into)
            into *= s
            return into
        return _put((normal_like(rng, like, (count,)) * s).astype(like.dtype, copy=False), into)
    if like.dtype in (np.float32, np.float64) and kind in _REAL_FAMILIES:
        out = into if _direct(like, into) else np.empty((count,) + like.shape, like.dtype)
        _REAL_FAMILIES[kind](rng, out, s)
        return _put(out, into) if out is not into else into
    g = normal_like(rng, like, (count,))
    if kind == "symmetric":
        out = sym(g) * s
    elif kind == "skew":
        out = skew(g) * s
    elif kind == "diagonal":
        out = diag_part(g) * s
    elif kind == "psd":  # positive semidefinite, generically invertible
        out = np.stack([m @ np.conj(m.T) for m in g]) / like.shape[0] * s
    elif kind == "spd":
        m = _spd_from(g)
        out = m * (s / np.sqrt(np.mean(m ** 2, axis=(-2, -1), keepdims=True)))
    elif kind == "spd-diagonal":
        out = diag_part(np.abs(g) + 0.5) * s
    else:
        raise ValueError(f"unknown domain or family {kind!r}")
    return _put(out.astype(like.dtype, copy=False), into)


def _halves(op):
    def fill(rng, out, s):  # (G ± Gᵀ)/2 of a normal G, straight into ``out``
        g = rng.standard_normal(out.shape, out.dtype)
        op(g, _t(g), out=out)
        out *= s / 2
    return fill


def _diagonal(positive):
    def fill(rng, out, s):  # a normal diagonal (|·| + 1/2 where it must be positive)
        out[...] = 0
        n = out.shape[-1]
        d = rng.standard_normal(out.shape[:-1], out.dtype)
        if positive:
            d = np.abs(d) + out.dtype.type(0.5)
        out[..., np.arange(n), np.arange(n)] = d * out.dtype.type(s)
    return fill


def _psd(rng, out, s):  # G Gᵀ / n of a normal G (one product per matrix: a symmetric rank-n update)
    n = out.shape[-1]
    for k in range(out.shape[0]):
        g = rng.standard_normal(out.shape[1:], out.dtype)
        np.matmul(g, g.T, out=out[k])
    out *= s / n


_REAL_FAMILIES = {"symmetric": _halves(np.add), "skew": _halves(np.subtract),
                  "diagonal": _diagonal(False), "spd-diagonal": _diagonal(True), "psd": _psd}
"""The real sub-families :func:`draw` fills in place, each with the normals it needs."""


def family_kind(domain: str, family: str) -> str:
    """The draw kind of ``family`` inside ``domain`` (a diagonal SPD matrix has a positive
    diagonal)."""
    return "spd-diagonal" if (domain, family) == ("spd", "diagonal") else family


def perturb(rng, x: np.ndarray, kind: str, count: int, relative: float = 0.1,
            into=None, scale=None) -> np.ndarray:
    """``count`` small perturbations of ``x`` that stay on the domain; written into ``into``
    where given, with the same values (``scale``: :func:`scale_of` of ``x``, where known)."""
    s = scale_of(x) if scale is None else scale
    if kind == "general" and _direct(x, into):
        rng.standard_normal(dtype=x.dtype, out=into)
        into *= relative * s
        into += x[None]
        return into
    if kind == "spd":  # a congruence M X Mᵀ with M = I + small keeps X positive definite
        n = x.shape[-1]
        e = normal_like(rng, x, (count,)) * (relative / (2 * np.sqrt(n)))
        m = np.eye(n) + e
        out = m @ x @ _t(m)
        return _put(sym(out).astype(x.dtype, copy=False), into)
    noise = normal_like(rng, x, (count,)) * (relative * s)
    return _put((x[None] + project(kind, noise)).astype(x.dtype, copy=False), into)


def tangents(rng, x: np.ndarray, kind: str, count: int) -> np.ndarray:
    """``count`` random tangent directions at ``x`` on the domain, at the size of ``x``. On
    ``spd`` they are shrunk so that ``x + h v`` stays positive definite for ``|h| <= 1``."""
    v = project(kind, normal_like(rng, x, (count,)) * scale_of(x))
    if kind == "spd":
        lam = float(np.linalg.eigvalsh(np.asarray(x, np.float64))[0])
        norms = np.linalg.norm(v, ord=2, axis=(-2, -1))
        v = v * np.minimum(1.0, 0.5 * lam / np.maximum(norms, 1e-300))[:, None, None]
    return v.astype(x.dtype, copy=False)


def example_problem(kind: str, x: np.ndarray) -> str | None:
    """Why the example ``x`` does not lie on the domain ``kind`` (None when it does)."""
    if kind in ("general", "fixed"):
        return None
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        return f"expected a square matrix, got shape {x.shape}"
    if kind in ("symmetric", "spd", "skew") and np.iscomplexobj(x):
        return "expected a real matrix (complex Hermitian domains are not supported)"
    x64 = np.asarray(x, np.complex128 if np.iscomplexobj(x) else np.float64)
    size = np.max(np.abs(x64)) or 1.0
    eps = float(np.finfo(np.asarray(x).real.dtype).eps) if np.issubdtype(
        np.asarray(x).dtype, np.inexact) else 0.0
    tol = 100 * eps * size
    if kind in ("symmetric", "spd") and np.max(np.abs(x64 - x64.T)) > tol:
        return f"not symmetric (max |X - Xᵀ| = {np.max(np.abs(x64 - x64.T)):.2e})"
    if kind == "skew" and np.max(np.abs(x64 + x64.T)) > tol:
        return f"not skew-symmetric (max |X + Xᵀ| = {np.max(np.abs(x64 + x64.T)):.2e})"
    if kind == "diagonal" and np.max(np.abs(x64 - np.diag(np.diag(x64)))) > tol:
        return "not diagonal"
    if kind == "spd":
        lam = float(np.linalg.eigvalsh(sym(x64))[0])
        if not lam > 0:
            return f"not positive definite (smallest eigenvalue {lam:.3g})"
    return None
