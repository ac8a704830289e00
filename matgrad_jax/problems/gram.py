r"""Seed 2: :math:`\|BB^T - Q\|` in the Frobenius and the spectral norm.

Source: ``shared/seeds/003_ab211ea8d8ce13a7.txt``. ``B`` is ``(n, r)`` (the seed has ``r = n``;
every formula here holds for rectangular ``B``), ``Q`` is ``(n, n)``; :math:`X = BB^T - Q`.

The published Frobenius gradient :math:`2\phi^{-1}XB` assumes :math:`X` symmetric (the step
:math:`2X:(dB\,B^T + B\,dB^T) = 4XB:dB` uses :math:`X = X^T`); in general
:math:`\partial\phi/\partial B = \phi^{-1}(X + X^T)B`. So the published formula holds exactly when
``Q`` is symmetric. The published spectral gradient :math:`(u_1v_1^T + v_1u_1^T)B` is right for
any ``Q`` wherever the top singular value of ``X`` is simple and positive; where it is repeated,
:math:`\|X\|_2` has a kink and no gradient exists.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from .._checks import InputError, as_real_array, check_finite, check_sizes, float_dtype
from .._typing import ArrayLike, DTypeLike
from ..linalg import SingularPair, lanczos_top_singular, top_singular_svd

SEED_FILE = "003_ab211ea8d8ce13a7.txt"


def check_pair(B, Q) -> None:
    """B ``(n, r)`` and Q ``(n, n)``, or :class:`InputError` naming the one that is not (from
    the static shapes, so also under ``jit`` and ``vmap``)."""
    if jnp.ndim(B) != 2:
        raise InputError(f"B: expected a 2-d (n, r) array, got shape {jnp.shape(B)}")
    n = jnp.shape(B)[0]
    if jnp.shape(Q) != (n, n):
        raise InputError(f"Q: expected shape (n, n) = {(n, n)} with n = B.shape[0], got "
                         f"{jnp.shape(Q)}")


def residual(B: ArrayLike, Q: ArrayLike) -> Array:
    """X = B Bᵀ − Q."""
    check_pair(B, Q)
    return B @ B.T - Q


# ---- objectives ----------------------------------------------------------------------------


def frobenius(B: ArrayLike, Q: ArrayLike) -> Array:
    """φ = ‖B Bᵀ − Q‖_F."""
    return jnp.sqrt(jnp.sum(residual(B, Q) ** 2))


def frobenius_squared(B: ArrayLike, Q: ArrayLike) -> Array:
    """φ² = ‖B Bᵀ − Q‖_F²."""
    return jnp.sum(residual(B, Q) ** 2)


def spectral(B: ArrayLike, Q: ArrayLike) -> Array:
    """φ = ‖B Bᵀ − Q‖_2, the largest singular value (full SVD)."""
    return jnp.linalg.norm(residual(B, Q), ord=2)


# ---- hand gradients ------------------------------------------------------------------------


def frobenius_grad_published(B: ArrayLike, Q: ArrayLike) -> Array:
    r"""As published (seed, Frobenius block, last line): :math:`2\phi^{-1}(BB^T - Q)B`."""
    X = residual(B, Q)
    return 2 * X @ B / jnp.sqrt(jnp.sum(X * X))


def frobenius_grad_general(B: ArrayLike, Q: ArrayLike) -> Array:
    r"""Corrected for any Q: :math:`\phi^{-1}(X + X^T)B`."""
    X = residual(B, Q)
    return (X + X.T) @ B / jnp.sqrt(jnp.sum(X * X))


def frobenius_squared_grad_published(B: ArrayLike, Q: ArrayLike) -> Array:
    r"""As published (seed: :math:`2\phi\,d\phi = 4(BB^T-Q)B:dB`): :math:`4(BB^T - Q)B`."""
    return 4 * residual(B, Q) @ B


def frobenius_squared_grad_general(B: ArrayLike, Q: ArrayLike) -> Array:
    r"""Corrected for any Q: :math:`2(X + X^T)B`."""
    X = residual(B, Q)
    return 2 * (X + X.T) @ B


def spectral_grad_published(B: ArrayLike, Q: ArrayLike) -> Array:
    r"""As published (seed, spectral block): :math:`(u_1v_1^T + v_1u_1^T)B` from a full SVD."""
    pair = top_singular_svd(residual(B, Q))
    return _spectral_grad_from_pair(pair, B)


def _spectral_grad_from_pair(pair: SingularPair, B):
    return jnp.outer(pair.u, pair.v @ B) + jnp.outer(pair.v, pair.u @ B)


def spectral_top_pair_lanczos(B: ArrayLike, Q: ArrayLike, v0: ArrayLike | None = None,
                              steps: int = 32) -> SingularPair:
    r"""Top singular pair of :math:`X = BB^T - Q` by Lanczos, never forming X.

    ``X v = B(Bᵀv) − Qv`` costs ``O(nr + n²)`` instead of the ``O(n²r)`` of forming X.
    """
    check_pair(B, Q)
    if v0 is None:
        v0 = jax.random.normal(jax.random.PRNGKey(0), (B.shape[0],), B.dtype)
    elif jnp.shape(v0) != (B.shape[0],):
        raise InputError(f"v0: expected shape (n,) = ({B.shape[0]},), got {jnp.shape(v0)}")
    matvec = lambda v: B @ (v @ B) - Q @ v
    rmatvec = lambda w: B @ (w @ B) - w @ Q
    return lanczos_top_singular(matvec, rmatvec, v0, steps)


def spectral_value_and_grad_lanczos(B: ArrayLike, Q: ArrayLike, v0: ArrayLike | None = None,
                                    steps: int = 32) -> tuple[Array, Array, Array]:
    """(‖X‖₂, gradient, v) with the top pair by warm-startable Lanczos; pass ``v`` back as
    ``v0``."""
    pair = spectral_top_pair_lanczos(B, Q, v0, steps)
    return pair.sigma, _spectral_grad_from_pair(pair, B), pair.v


def spectral_grad_lanczos(B: ArrayLike, Q: ArrayLike) -> Array:
    r""":math:`(u_1v_1^T + v_1u_1^T)B` with the top pair from Lanczos (32 steps, fixed start)."""
    return spectral_value_and_grad_lanczos(B, Q)[1]


FROBENIUS_GRADIENTS = {"published": frobenius_grad_published, "general": frobenius_grad_general}
FROBENIUS_SQUARED_GRADIENTS = {
    "published": frobenius_squared_grad_published,
    "general": frobenius_squared_grad_general,
}
SPECTRAL_GRADIENTS = {"published": spectral_grad_published, "lanczos": spectral_grad_lanczos}


# ---- exact minimiser -----------------------------------------------------------------------


def solve_exact(Q: ArrayLike, rank: int) -> Array:
    r"""The ``(n, rank)`` matrix B minimising :math:`\|BB^T - Q\|_F`.

    With :math:`Q_s = (Q+Q^T)/2 = V\Lambda V^T` (eigenvalues descending) and :math:`Q_a` the skew
    part, :math:`B = V_r\,\mathrm{diag}(\max(\lambda_i, 0))^{1/2}` over the top ``rank``
    eigenvalues. Because :math:`BB^T` is symmetric it is orthogonal to :math:`Q_a`, and the
    PSD Eckart–Young theorem gives the optimal values

    * Frobenius: :math:`\|BB^T - Q\|_F^2 = \sum_{i \le r} \min(\lambda_i, 0)^2
      + \sum_{i > r}\lambda_i^2 + \|Q_a\|_F^2`;
    * spectral, for symmetric Q: :math:`\max(\lambda_{r+1}^+, (-\lambda_{\min})^+)`, which is also
      the smallest spectral norm any ``(n, rank)`` B can reach (Weyl: :math:`\lambda_{r+1}(Q) \le
      \|Q - BB^T\|_2` and :math:`-\lambda_{\min}(Q) \le \|Q - BB^T\|_2`), so the same B is
      optimal in both norms.
    """
    Qa = as_real_array("Q", Q)
    if Qa.shape[0] != Qa.shape[1]:
        raise InputError(f"Q: expected a square (n, n) matrix, got shape {tuple(Qa.shape)}")
    check_finite({"Q": Qa})
    n = Qa.shape[0]
    if not (isinstance(rank, (int, np.integer)) and 1 <= rank <= n):
        raise InputError(f"rank: expected an integer in [1, n={n}], got {rank!r}")
    return _solve_exact(Qa, rank)


@partial(jax.jit, static_argnames="rank")
def _solve_exact(Q, rank):
    lam, V = jnp.linalg.eigh((Q + Q.T) / 2)
    lam, V = lam[::-1][:rank], V[:, ::-1][:, :rank]
    return V * jnp.sqrt(jnp.maximum(lam, 0))[None, :]


def optimal_values(Q: ArrayLike, rank: int) -> dict[str, float]:
    """The optimal Frobenius (and, for symmetric Q, spectral) values of :func:`solve_exact`."""
    Q = np.asarray(Q, dtype=np.float64)
    Qs, Qa = (Q + Q.T) / 2, (Q - Q.T) / 2
    lam = np.sort(np.linalg.eigvalsh(Qs))[::-1]
    kept, dropped = lam[:rank], lam[rank:]
    fro2 = np.sum(np.minimum(kept, 0) ** 2) + np.sum(dropped**2) + np.sum(Qa**2)
    out = {"frobenius": float(np.sqrt(fro2))}
    if np.allclose(Qa, 0):
        nxt = dropped[0] if dropped.size else 0.0
        out["spectral"] = float(max(max(nxt, 0.0), max(-lam[-1], 0.0)))
    return out


# ---- data ----------------------------------------------------------------------------------


FAMILIES = ("generic", "symmetric", "skew", "psd", "diagonal")


def make_data(n: int = 9, r: int = 4, *, family: str = "generic", seed: int = 0,
              dtype: DTypeLike = jnp.float64) -> tuple[Array, Array]:
    """``(B, Q)``: B Gaussian ``(n, r)``; Q from a family: generic, symmetric, skew, psd,
    diagonal."""
    check_sizes(n=n, r=r)
    if family not in FAMILIES:
        raise InputError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    dtype = float_dtype("dtype", dtype)
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        dtype = jnp.float32
    kb, kq = jax.random.split(jax.random.PRNGKey(seed))
    B = jax.random.normal(kb, (n, r), dtype) / float(np.sqrt(r))
    G = jax.random.normal(kq, (n, n), dtype)
    Q = {
        "generic": G,
        "symmetric": (G + G.T) / 2,
        "skew": (G - G.T) / 2,
        "psd": G @ G.T / n,
        "diagonal": jnp.diag(jnp.diagonal(G)),
    }[family]
    return B, Q


def example_args(seed: int = 0, *, n: int = 9, r: int = 4,
                 dtype: DTypeLike = jnp.float64) -> tuple[Array, Array]:
    """Example ``(B, Q)``: rectangular B (n ≠ r), generic (non-symmetric) Q."""
    return make_data(n, r, family="generic", seed=seed, dtype=dtype)


def kink_args(n: int = 6, r: int = 3, dtype: DTypeLike = jnp.float64) -> tuple[Array, Array]:
    """``(B, Q)`` with a repeated top singular value of BBᵀ − Q (= diag(3, 3, 1, ...)): a kink."""
    B, _ = make_data(n, r, seed=3, dtype=dtype)
    D = jnp.diag(jnp.asarray([3.0, 3.0] + [1.0 / (i + 1) for i in range(n - 2)], dtype))
    return B, B @ B.T - D
