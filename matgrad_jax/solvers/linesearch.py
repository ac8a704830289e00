"""Step lengths along a block direction: small, swappable functions (as optax's ``linesearch``).

Each takes ``phi(alpha) = f(x + alpha d)`` (a scalar function of the step), the slope
``phi'(0) = <g, d>`` and the curvature ``phi''(0) = <d, H d>`` and returns a step that never
increases ``f``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array


def exact_step_length(slope: Array, curvature: Array, fallback: Array) -> Array:
    r"""The minimiser of the quadratic model :math:`\phi(0) + \alpha\,\text{slope} +
    \tfrac12\alpha^2\,\text{curvature}`: :math:`-\text{slope}/\text{curvature}`.

    Exact for a quadratic objective. ``fallback`` where the curvature is not positive.
    """
    ok = curvature > 0
    return jnp.where(ok, -slope / jnp.where(ok, curvature, 1), fallback)


def armijo_backtracking(phi: Callable[[Array], Array], phi0: Array, slope: Array, alpha0: Array, *,
                        c1: float = 1e-4, shrink: float = 0.5,
                        max_steps: int = 40) -> tuple[Array, Array]:
    r"""Largest :math:`\alpha = \alpha_0\,\text{shrink}^j` with :math:`\phi(\alpha) \le \phi(0) +
    c_1\alpha\,\text{slope}` (``lax.while_loop``). Returns ``(alpha, phi(alpha))``; ``alpha = 0``
    (no move) when no such step was found, so ``f`` never increases."""

    def cond(state):
        j, alpha, value = state
        bad = ~(value <= phi0 + c1 * alpha * slope)
        return (j < max_steps) & bad

    def body(state):
        j, alpha, _ = state
        alpha = alpha * shrink
        return j + 1, alpha, phi(alpha)

    j, alpha, value = jax.lax.while_loop(cond, body, (0, alpha0, phi(alpha0)))
    ok = value <= phi0 + c1 * alpha * slope
    return jnp.where(ok, alpha, 0.0).astype(alpha0.dtype), jnp.where(ok, value, phi0)
