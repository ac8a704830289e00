"""Step lengths along a block direction: small, swappable functions (as optax's ``linesearch``),
and the step searches that block-coordinate descent composes with a direction
(:mod:`~matgrad_jax.solvers.descents`): :class:`CurvatureStep`, :class:`BacktrackingStep`,
:class:`UnitStep`.

The functions take ``phi(alpha) = f(x + alpha d)`` (a scalar function of the step), the slope
``phi'(0) = <g, d>`` and the curvature ``phi''(0) = <d, H d>`` and returns a step that never
increases ``f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from .result import tree_vdot


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


# The step searches of block-coordinate descent: each picks the first trial step along a block
# direction ``d``; :func:`armijo_backtracking` then safeguards it (so ``f`` never increases).
# They are small hashable values, so a solver built from them traces once per choice.


class CurvatureStep(NamedTuple):
    """The step that minimises ``f`` along ``d`` for a quadratic (the seed's "step length that
    minimises the cost"): ``-<g, d> / <d, H d>`` with ``H d`` one Hessian-vector product (a
    ``jvp`` of the block gradient); the previous step where the curvature is not positive.
    ``line_search="exact"``."""

    def first_step(self, grad_i: Callable, x: Any, d: Any, slope: Array,
                   alpha_prev: Array) -> Array:
        _, hd = jax.jvp(grad_i, (x,), (d,))
        return exact_step_length(slope, tree_vdot(d, hd), alpha_prev)


class BacktrackingStep(NamedTuple):
    """Armijo backtracking from ``growth`` times the previous step (no curvature product).
    ``line_search="armijo"``."""

    growth: float = 2.0

    def first_step(self, grad_i: Callable, x: Any, d: Any, slope: Array,
                   alpha_prev: Array) -> Array:
        return self.growth * alpha_prev


class UnitStep(NamedTuple):
    """A first step of 1: the natural one for a Newton direction (exact for a quadratic
    block)."""

    def first_step(self, grad_i: Callable, x: Any, d: Any, slope: Array,
                   alpha_prev: Array) -> Array:
        return jnp.ones_like(alpha_prev)


SEARCHES = {"exact": CurvatureStep(), "armijo": BacktrackingStep()}
"""``line_search=`` names."""
