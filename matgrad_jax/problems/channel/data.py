"""Synthetic seed-1 data with a planted ``H = R + iQ``, and example arguments at rectangular
shapes."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ..._checks import InputError, check_sizes, float_dtype
from ..._typing import DTypeLike


def make_data(n: int = 24, m: int = 16, k: int = 20, q: int = 28, *, noise: float = 0.01,
              seed: int = 0, dtype: DTypeLike = jnp.float64,
              p_condition: float = 1.0) -> dict[str, Array]:
    """A seeded synthetic data set with a planted ``H = R + iQ`` (see :func:`_make_data`)."""
    check_sizes(n=n, m=m, k=k, q=q)
    if not (np.isfinite(noise) and noise >= 0):
        raise InputError(f"noise: expected a finite value >= 0, got {noise}")
    if not (np.isfinite(p_condition) and p_condition >= 1):
        raise InputError(f"p_condition: expected a finite value >= 1, got {p_condition}")
    dtype = float_dtype("dtype", dtype)
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        dtype = jnp.float32
    return _make_data(n, m, k, q, noise, seed, jnp.dtype(dtype), float(p_condition))


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 6, 7))
def _make_data(n, m, k, q, noise, seed, dtype, p_condition):
    """A seeded synthetic data set with a planted ``H = R + iQ``.

    ``A, B, P, S`` are Gaussian, scaled so every term is O(1); ``Z`` and ``W`` are exact for the
    planted ``(R, Q)`` plus Gaussian noise of standard deviation ``noise``; P's columns are scaled
    geometrically from 1 to ``1/p_condition`` (ill-conditioned G for large values).

    Returns:
      dict with ``A, B, Z, P, S, W`` and the planted ``R_true, Q_true``.
    """
    keys = jax.random.split(jax.random.PRNGKey(seed), 8)
    nrm = lambda key, shape, scale=1.0: (jnp.asarray(scale, dtype)
                                         * jax.random.normal(key, shape, dtype=dtype))
    R = nrm(keys[0], (n, m))
    Q = nrm(keys[1], (n, m))
    A = nrm(keys[2], (n, m), 1 / np.sqrt(n))
    B = nrm(keys[3], (n, m), 1 / np.sqrt(n))
    col_scale = jnp.logspace(0, -np.log10(p_condition), k, dtype=dtype)
    P = nrm(keys[4], (2 * m, k), 1 / np.sqrt(2 * m)) * col_scale[None, :]
    S = nrm(keys[5], (q, k), 1 / np.sqrt(k))
    Zc = jnp.diag(jnp.sum(R * A + Q * B, axis=0))
    Z = Zc + nrm(keys[6], (m, m), noise)
    block = jnp.block([[R, -Q], [Q, R]])
    W = block @ P @ S.T + nrm(keys[7], (2 * n, q), noise)
    return dict(A=A, B=B, Z=Z, P=P, S=S, W=W, R_true=R, Q_true=Q)


def example_args(seed: int = 0, *, n: int = 7, m: int = 5, k: int = 6, q: int = 9,
                 dtype: DTypeLike = jnp.float64) -> tuple[Array, ...]:
    """Example arguments ``(R, Q, A, B, Z, P, S, W)`` at rectangular shapes (n ≠ m ≠ k ≠ q)."""
    d = make_data(n, m, k, q, noise=0.3, seed=seed, dtype=dtype)
    key = jax.random.PRNGKey(seed + 1000)
    R0, Q0 = jax.random.normal(key, (2, n, m), dtype=d["A"].dtype)  # one draw, two blocks
    return (R0, Q0, d["A"], d["B"], d["Z"], d["P"], d["S"], d["W"])
