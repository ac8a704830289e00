"""Two users' derivations, registered through the public API (:func:`matgrad_jax.register`):
what a researcher brings, not the seeds. Importing this module registers them; ``matgrad run``
audits them and fits them with :func:`matgrad_jax.minimize`.

* ``examples/mf/*``: a regularised matrix factorisation
  :math:`f(U, V) = \\|X - UV^T\\|_F^2 + \\lambda(\\|U\\|_F^2 + \\|V\\|_F^2)` with
  :math:`\\partial_U f = -2(X - UV^T)V + 2\\lambda U`, :math:`\\partial_V f = -2(X - UV^T)^TU +
  2\\lambda V` (``right``), and the regulariser's factor 2 dropped (``missing_two``).
* ``examples/gaussian_nll/*``: the Gaussian negative log-likelihood in a covariance
  :math:`\\Sigma` (SPD) with scatter matrix ``S``,
  :math:`f(\\Sigma) = \\log\\det\\Sigma + \\mathrm{tr}(\\Sigma^{-1}S)`, gradient
  :math:`\\Sigma^{-1} - \\Sigma^{-1}S\\Sigma^{-1}` on ``domains={"Sigma": "spd"}`` (``right``), and
  the "symmetric gradient" :math:`2G - G\\circ I` of statistics notes (``convention``), which the
  audit names ``symmetric-convention``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._typing import Array, ArrayLike, DTypeLike
from .registry import register
from .solvers.block_steps import balance_factors

LAMBDA = 0.1


def mf_objective(U: ArrayLike, V: ArrayLike, X: ArrayLike) -> Array:
    """‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)."""
    return jnp.sum((X - U @ V.T) ** 2) + LAMBDA * (jnp.sum(U ** 2) + jnp.sum(V ** 2))


def mf_gradient(U: ArrayLike, V: ArrayLike, X: ArrayLike) -> tuple[Array, Array]:
    """The hand gradient ``(−2EV + 2λU, −2EᵀU + 2λV)`` with ``E = X − UVᵀ`` (right)."""
    E = X - U @ V.T
    return -2 * E @ V + 2 * LAMBDA * U, -2 * E.T @ U + 2 * LAMBDA * V


def mf_gradient_missing_two(U: ArrayLike, V: ArrayLike, X: ArrayLike) -> tuple[Array, Array]:
    """The same with the regulariser's factor 2 dropped (a planted error)."""
    E = X - U @ V.T
    return -2 * E @ V + LAMBDA * U, -2 * E.T @ U + LAMBDA * V


def mf_example(seed: int = 0, n: int = 60, m: int = 40, r: int = 5,
               dtype: DTypeLike | None = None) -> tuple[Array, Array, Array]:
    """``(U0, V0, X)``: X of rank r plus noise (n ≠ m ≠ r), a small random start; in ``dtype``
    (default: JAX's default float, float64 with x64 on)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) + 0.1 * rng.standard_normal(
        (n, m))
    U0, V0 = 0.1 * rng.standard_normal((n, r)), 0.1 * rng.standard_normal((m, r))
    return tuple(jnp.asarray(a, dtype) for a in (U0, V0, X))


def mf_optimum(X: ArrayLike, r: int, lam: float = LAMBDA) -> float:
    """The minimum in closed form (soft-thresholded singular values):
    ``Σ_{i≤r} (2λσ_i − λ²)`` over ``σ_i > λ``, plus ``Σ`` of the rest ``σ_i²``."""
    s = np.linalg.svd(np.asarray(X, np.float64), compute_uv=False)
    top, rest = s[:r], s[r:]
    return float(np.sum(np.where(top > lam, 2 * lam * top - lam ** 2, top ** 2))
                 + np.sum(rest ** 2))


def nll_objective(Sigma: ArrayLike, S: ArrayLike) -> Array:
    """log det Σ + tr(Σ⁻¹ S)."""
    return jnp.linalg.slogdet(Sigma)[1] + jnp.trace(jnp.linalg.solve(Sigma, S))


def nll_gradient(Sigma: ArrayLike, S: ArrayLike) -> Array:
    """The Frobenius gradient ``Σ⁻¹ − Σ⁻¹SΣ⁻¹`` (right on the SPD domain)."""
    Si = jnp.linalg.inv(Sigma)
    return Si - Si @ S @ Si


def nll_gradient_convention(Sigma: ArrayLike, S: ArrayLike) -> Array:
    """The statistics notes' "symmetric gradient" ``2G − G∘I``: not the Frobenius gradient (the
    audit says ``symmetric-convention``)."""
    G = nll_gradient(Sigma, S)
    return 2 * G - G * jnp.eye(G.shape[0], dtype=G.dtype)


def nll_example(seed: int = 0, p: int = 6, samples: int = 40,
                dtype: DTypeLike | None = None) -> tuple[Array, Array]:
    """``(Sigma0, S)``: an SPD start and the scatter matrix of samples; in ``dtype`` (default:
    JAX's default float)."""
    rng = np.random.default_rng(seed)
    L = np.tril(rng.standard_normal((p, p))) + 2 * np.eye(p)
    Y = rng.standard_normal((samples, p)) @ L.T
    S = Y.T @ Y / samples
    M = rng.standard_normal((p, p))
    return jnp.asarray(M @ M.T / p + np.eye(p), dtype), jnp.asarray(S, dtype)


_MF = "examples: a regularised matrix factorisation (user derivation)"
_NLL = "examples: Gaussian negative log-likelihood in an SPD covariance (user derivation)"

# each block is quadratic with the other fixed (ALS), and U -> UA, V -> VA^-T leaves the data
# term unchanged (balancing between sweeps): what the alternating method needs to compete
_MF_SOLVER = {"alternating": {"block_step": "newton", "balance": balance_factors}}

# the rows of X and of U are independent given V: solve_rows spreads them over the devices
_MF_ROWS = {"X": 0, "U": 0}

register("examples/mf/right", mf_objective, mf_gradient, argnums=(0, 1),
         example_args=mf_example, source=_MF, replace=True, solver_options=_MF_SOLVER,
         rows=_MF_ROWS)
register("examples/mf/missing_two", mf_objective, mf_gradient_missing_two, argnums=(0, 1),
         example_args=mf_example, source=_MF + ", regulariser's factor 2 dropped",
         notes="planted error", replace=True)
register("examples/gaussian_nll/right", nll_objective, nll_gradient, argnums="Sigma",
         example_args=nll_example, domains={"Sigma": "spd"}, source=_NLL, replace=True)
register("examples/gaussian_nll/convention", nll_objective, nll_gradient_convention,
         argnums="Sigma", example_args=nll_example, domains={"Sigma": "spd"},
         source=_NLL + ", the 'symmetric gradient' 2G - G∘I", notes="planted error",
         replace=True)
