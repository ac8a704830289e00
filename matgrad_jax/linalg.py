"""Linear-algebra helpers: the top singular pair of a matrix given only its products, and an
inverse of Hermitian positive definite matrices that is safe under ``vmap`` on XLA:CPU.

On XLA:CPU a transposed matrix-vector product inside a loop ran ~45x slower than the same
product written as a row vector times the matrix (``shared/PERF-NOTES.md``), so every product here
is ``X @ v`` or ``w @ X``; callers pass ``matvec(v) = X v`` and ``rmatvec(w) = w X = Xᵀ w``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from .xla_cpu import SMALL_MATMUL, _store, batched, matmul


class SingularPair(NamedTuple):
    sigma: Array  # the largest singular value
    u: Array  # left singular vector,  X v = sigma u
    v: Array  # right singular vector, Xᵀ u = sigma v


def lanczos_top_singular(matvec: Callable[[Array], Array], rmatvec: Callable[[Array], Array],
                         v0: Array, steps: int = 32) -> SingularPair:
    r"""Top singular triple of ``X`` by Lanczos on :math:`X^TX` with full reorthogonalisation.

    Args:
      matvec: ``v -> X v``.
      rmatvec: ``w -> Xᵀ w`` (write it as ``w @ X``).
      v0: start vector (warm-start with the previous ``v`` inside an optimiser loop).
      steps: Krylov dimension; the error in ``sigma`` falls like the Chebyshev bound in the gap
        ``sigma_1² - sigma_2²``.

    Returns:
      :class:`SingularPair`. Jit- and vmap-able; the loop is a ``lax.fori_loop``.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    eps = jnp.finfo(dtype).eps
    V = jnp.zeros((steps + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros(steps, dtype)
    beta = jnp.zeros(steps, dtype)

    def body(j, carry):
        V, alpha, beta, scale, alive = carry
        v = V[j]
        w = rmatvec(matvec(v))
        a = jnp.dot(w, v)
        scale = jnp.maximum(scale, jnp.abs(a))
        # Two passes of classical Gram-Schmidt against the whole basis (rows past j are zero).
        w = w - (V @ w) @ V
        w = w - (V @ w) @ V
        b = jnp.linalg.norm(w)
        # An invariant subspace was found: stop growing the basis (the rest of T stays zero).
        alive = alive & (b > 64 * eps * jnp.sqrt(n) * scale)
        V = V.at[j + 1].set(jnp.where(alive, w / jnp.where(alive, b, 1), 0))
        return V, alpha.at[j].set(a), beta.at[j].set(jnp.where(alive, b, 0)), scale, alive

    init = (V, alpha, beta, jnp.zeros((), dtype), jnp.array(True))
    V, alpha, beta, _, _ = jax.lax.fori_loop(0, steps, body, init)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, Y = jnp.linalg.eigh(T)
    v = Y[:, -1] @ V[:steps]
    v = v / jnp.linalg.norm(v)
    xv = matvec(v)
    sigma = jnp.linalg.norm(xv)
    u = xv / jnp.where(sigma > 0, sigma, 1)
    return SingularPair(sigma, u, v)


def top_singular_svd(X: Array) -> SingularPair:
    """Top singular triple from a full SVD (the reference)."""
    u, s, vt = jnp.linalg.svd(X, full_matrices=False)
    return SingularPair(s[0], u[:, 0], vt[0])


# --------------------------------------------------------------------------------------------
# Inverse of Hermitian positive definite matrices, vmap-safe on XLA:CPU
# --------------------------------------------------------------------------------------------


def sweep_inverse(M: Array) -> Array:
    r"""Inverse of Hermitian positive definite matrices ``M`` (``(..., d, d)``) by the sweep
    operator (Gauss-Jordan without pivoting, stable on HPD input like Cholesky).

    For each pivot ``k`` in turn: :math:`m_{kk} \to -1/m_{kk}`, row and column ``k`` divided by
    :math:`m_{kk}`, the rest :math:`m_{ij} - m_{ik}m_{kj}/m_{kk}`; after all ``d`` pivots the
    matrix holds :math:`-M^{-1}`. No LAPACK call. A singular ``M`` gives non-finite entries.

    Up to ``SMALL_MATMUL[0]`` pivots (the matrices of vmapped small problems) the steps are
    unrolled (the masks are constants), complex ``M`` is swept in real arithmetic (the pivots
    of an HPD matrix are real; the imaginary part of the diagonal is taken as zero), and each
    step is stored before the next (:func:`_store`). Against a ``fori_loop`` of complex updates
    (kept for larger ``d``), in which XLA:CPU copied the loop state every step and ran complex
    arithmetic slowly, that is faster for the small matrices of a batch
    (``docs/performance/xla-cpu.md``).
    """
    d = M.shape[-1]
    if d > SMALL_MATMUL[0]:
        return _sweep_loop(M)
    if jnp.iscomplexobj(M):
        Vr, Vi = _sweep_unrolled(M.real, M.imag)
        return jax.lax.complex(Vr, Vi)
    return _sweep_unrolled(M, None)[0]


def _sweep_unrolled(Mr, Mi):
    """The unrolled sweep of ``Mr + i Mi`` (``Mi`` None: real); returns the inverse's real and
    imaginary parts (None for real input)."""
    d = Mr.shape[-1]
    lead = (1,) * (Mr.ndim - 2)  # explicit ranks: callers may run with rank promotion "raise"
    # the input is stored too: every entry of the first step reads row and column k, so a fused
    # producer (the exact solve's capacitance: products of the data) would be recomputed d-fold
    parts = _store(Mr) if Mi is None else _store(Mr, Mi)
    for k in range(d):
        is_row = (np.arange(d) == k).reshape(*lead, d, 1)
        Mr = parts[0]
        inv = 1 / Mr[..., k, k][..., None, None]
        cr, rr = Mr[..., :, k:k + 1], Mr[..., k:k + 1, :]
        if Mi is None:
            new = (_swept(Mr, k, is_row, inv, cr * rr, -inv),)
        else:
            Mi = parts[1]
            ci, ri = Mi[..., :, k:k + 1], Mi[..., k:k + 1, :]
            new = (_swept(Mr, k, is_row, inv, cr * rr - ci * ri, -inv),
                   _swept(Mi, k, is_row, inv, cr * ri + ci * rr, 0 * inv))
        # the last step stores the inverse itself (a negation after it was stored separately)
        parts = _store(*new) if k < d - 1 else _store(*(-x for x in new))
    return parts[0], (None if Mi is None else parts[1])


def _swept(M, k, is_row, inv, outer, diag):
    """One sweep step on one (real) part: the rest ``M - outer * inv``, row and column ``k``
    times ``inv = 1/m_kk``, ``diag`` at ``(k, k)``. Each entry is computed as the sweep defines
    it (no cancellation; ``is_row`` is the constant mask of row ``k``)."""
    is_col = jnp.swapaxes(is_row, -1, -2)
    row, col = M[..., k:k + 1, :], M[..., :, k:k + 1]
    return jnp.where(is_row & is_col, diag, jnp.where(
        is_row, row * inv, jnp.where(is_col, col * inv, M - outer * inv)))


def _sweep_loop(M: Array) -> Array:
    """The sweep as a ``fori_loop`` of ``d`` masked updates (one fused update per pivot)."""
    d = M.shape[-1]
    idx = jnp.arange(d)

    def sweep(k, M):
        row = jax.lax.dynamic_index_in_dim(M, k, axis=M.ndim - 2, keepdims=False)  # (..., d)
        col = jax.lax.dynamic_index_in_dim(M, k, axis=M.ndim - 1, keepdims=False)  # (..., d)
        inv = 1 / jax.lax.dynamic_index_in_dim(row, k, axis=row.ndim - 1, keepdims=True)
        r, c = row * inv, col * inv
        is_row = (idx == k)[:, None]
        is_col = (idx == k)[None, :]
        rest = M - col[..., :, None] * r[..., None, :]
        return jnp.where(is_row & is_col, -inv[..., None], jnp.where(
            is_row, r[..., None, :], jnp.where(is_col, c[..., :, None], rest)))

    return -jax.lax.fori_loop(0, d, sweep, M)


@jax.custom_batching.custom_vmap
def _hpd_inverse(M: Array) -> Array:
    chol = jnp.linalg.cholesky(M)
    return jax.scipy.linalg.cho_solve((chol, True), jnp.eye(M.shape[-1], dtype=M.dtype))


@_hpd_inverse.def_vmap
def _hpd_inverse_vmap(axis_size, in_batched, M):
    (batched,) = in_batched
    if not batched:
        return _hpd_inverse(M), False
    return sweep_inverse(M), True


@jax.custom_jvp
def hpd_inverse(M: Array) -> Array:
    r"""Inverse of one Hermitian (real: symmetric) positive definite matrix ``M`` (``d x d``).

    Alone it is LAPACK's Cholesky and two triangular solves. Under ``vmap`` it switches to
    :func:`sweep_inverse`, which uses no LAPACK: jaxlib 0.10's batched LAPACK kernels split the
    batch over XLA:CPU's intra-op thread pool and block a pool thread waiting for the pieces,
    so as many concurrent batched calls as the pool has threads (two forced host devices on two
    cores, or independent calls run side by side) wait on each other forever. (jax 0.11.2
    builds without that parallel path.) For the small matrices of a batch the sweep is also no
    slower. Differentiable: :math:`d(M^{-1}) = -M^{-1}\,dM\,M^{-1}`.
    """
    return _hpd_inverse(M)


@hpd_inverse.defjvp
def _hpd_inverse_jvp(primals, tangents):
    (M,), (dM,) = primals, tangents
    Minv = hpd_inverse(M)
    return Minv, -Minv @ dM @ Minv


@jax.custom_batching.custom_vmap
def hpd_solve(M: Array, b: Array) -> Array:
    """``M⁻¹ b`` for one Hermitian positive definite ``M`` (``d x d``) and ``b`` (``d``): a
    Cholesky solve alone, ``sweep_inverse(M) @ b`` under ``vmap`` (see :func:`hpd_inverse`).
    Not differentiable (use ``hpd_inverse(M) @ b`` for that)."""
    chol = jnp.linalg.cholesky(M)
    return jax.scipy.linalg.cho_solve((chol, True), b)


@hpd_solve.def_vmap
def _hpd_solve_vmap(axis_size, in_batched, M, b):
    M_batched, b_batched = in_batched
    b = batched(axis_size, b_batched, b)
    if not M_batched:
        chol = jnp.linalg.cholesky(M)
        return jax.scipy.linalg.cho_solve((chol, True), b.T).T, True
    # by matmul: written out for tiny d (a batched matrix-vector dot of tiny matrices runs one
    # problem at a time on XLA:CPU and pulls the producers of b into its kernel), a dot above
    return jax.vmap(lambda Mi, bi: matmul(Mi, bi[:, None])[:, 0])(sweep_inverse(M), b), True
