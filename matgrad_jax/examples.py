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

from .registry import register

LAMBDA = 0.1


def mf_objective(U, V, X):
    """‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)."""
    return jnp.sum((X - U @ V.T) ** 2) + LAMBDA * (jnp.sum(U ** 2) + jnp.sum(V ** 2))


def mf_gradient(U, V, X):
    E = X - U @ V.T
    return -2 * E @ V + 2 * LAMBDA * U, -2 * E.T @ U + 2 * LAMBDA * V


def mf_gradient_missing_two(U, V, X):
    E = X - U @ V.T
    return -2 * E @ V + LAMBDA * U, -2 * E.T @ U + LAMBDA * V


def mf_example(seed=0, n=60, m=40, r=5, dtype=np.float64):
    """``(U0, V0, X)``: X of rank r plus noise (n ≠ m ≠ r), a small random start."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, r)) @ rng.standard_normal((r, m)) + 0.1 * rng.standard_normal(
        (n, m))
    U0, V0 = 0.1 * rng.standard_normal((n, r)), 0.1 * rng.standard_normal((m, r))
    return tuple(jnp.asarray(a, dtype) for a in (U0, V0, X))


def mf_optimum(X, r, lam=LAMBDA) -> float:
    """The minimum in closed form (soft-thresholded singular values):
    ``Σ_{i≤r} (2λσ_i − λ²)`` over ``σ_i > λ``, plus ``Σ`` of the rest ``σ_i²``."""
    s = np.linalg.svd(np.asarray(X, np.float64), compute_uv=False)
    top, rest = s[:r], s[r:]
    return float(np.sum(np.where(top > lam, 2 * lam * top - lam ** 2, top ** 2))
                 + np.sum(rest ** 2))


def nll_objective(Sigma, S):
    """log det Σ + tr(Σ⁻¹ S)."""
    return jnp.linalg.slogdet(Sigma)[1] + jnp.trace(jnp.linalg.solve(Sigma, S))


def nll_gradient(Sigma, S):
    Si = jnp.linalg.inv(Sigma)
    return Si - Si @ S @ Si


def nll_gradient_convention(Sigma, S):
    G = nll_gradient(Sigma, S)
    return 2 * G - G * jnp.eye(G.shape[0], dtype=G.dtype)


def nll_example(seed=0, p=6, samples=40, dtype=np.float64):
    """``(Sigma0, S)``: an SPD start and the scatter matrix of samples."""
    rng = np.random.default_rng(seed)
    L = np.tril(rng.standard_normal((p, p))) + 2 * np.eye(p)
    Y = rng.standard_normal((samples, p)) @ L.T
    S = Y.T @ Y / samples
    M = rng.standard_normal((p, p))
    return jnp.asarray(M @ M.T / p + np.eye(p), dtype), jnp.asarray(S, dtype)


_MF = "examples: a regularised matrix factorisation (user derivation)"
_NLL = "examples: Gaussian negative log-likelihood in an SPD covariance (user derivation)"

register("examples/mf/right", mf_objective, mf_gradient, argnums=(0, 1),
         example_args=mf_example, source=_MF, replace=True)
register("examples/mf/missing_two", mf_objective, mf_gradient_missing_two, argnums=(0, 1),
         example_args=mf_example, source=_MF + ", regulariser's factor 2 dropped",
         notes="planted error", replace=True)
register("examples/gaussian_nll/right", nll_objective, nll_gradient, argnums="Sigma",
         example_args=nll_example, domains={"Sigma": "spd"}, source=_NLL, replace=True)
register("examples/gaussian_nll/convention", nll_objective, nll_gradient_convention,
         argnums="Sigma", example_args=nll_example, domains={"Sigma": "spd"},
         source=_NLL + ", the 'symmetric gradient' 2G - G∘I", notes="planted error",
         replace=True)
