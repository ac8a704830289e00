"""Krylov helpers: the top singular pair of a matrix given only its products.

On XLA:CPU a transposed matrix-vector product inside a loop ran ~45x slower than the same
product written as a row vector times the matrix (``shared/PERF-NOTES.md``), so every product here
is ``X @ v`` or ``w @ X``; callers pass ``matvec(v) = X v`` and ``rmatvec(w) = w X = Xᵀ w``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


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
