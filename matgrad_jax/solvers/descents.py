r"""Block-coordinate descent as a direction × a step search (optimistix's descent × search).

One block step is: a **descent** gives a direction :math:`d` for block :math:`i` from its
gradient :math:`g_i`; a **search** gives the first trial step :math:`\alpha_0` along it
(:mod:`~matgrad_jax.solvers.linesearch`); Armijo backtracking from :math:`\alpha_0` then keeps
``f`` from rising. :func:`block_step` composes them; any pair works.

Descents:

* :class:`PreconditionedGradient`: :math:`d = -M_i^{-1} g_i` (``M_i = I`` without a
  preconditioner): the seed's gradient step. ``block_step="gradient"``.
* :class:`BlockNewton`: the block's Newton direction :math:`-H_{ii}^{-1} g_i` by conjugate
  gradients on Hessian-vector products (:func:`~.block_steps.newton_direction`); with a first
  step of 1 a block in which ``f`` is quadratic is solved exactly (alternating least squares).
  ``block_step="newton"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from .block_steps import newton_direction
from .linesearch import SEARCHES, UnitStep, armijo_backtracking
from .result import tree_vdot


class PreconditionedGradient(NamedTuple):
    """:math:`d = -M^{-1} g` (``prec`` applies :math:`M^{-1}`, symmetric positive definite)."""

    def direction(self, grad_i: Callable, x: Any, g: Any, prec: Callable | None,
                  dtype: Any) -> Any:
        """``−M⁻¹g`` (``−g`` without a preconditioner)."""
        return jax.tree_util.tree_map(jnp.negative, prec(g) if prec is not None else g)

    def default_search(self, line_search: str) -> Any:
        """The search ``line_search`` names: the curvature step or backtracking."""
        return SEARCHES[line_search]


class BlockNewton(NamedTuple):
    """The block's Newton direction by (``prec``-preconditioned) conjugate gradients: at most
    ``max_iters`` Hessian-vector products, to a residual of ``rtol ‖g‖`` (default
    ``sqrt(eps)`` of the value's dtype)."""

    max_iters: int = 50
    rtol: float | None = None

    def direction(self, grad_i: Callable, x: Any, g: Any, prec: Callable | None,
                  dtype: Any) -> Any:
        """``≈ −H⁻¹g`` by conjugate gradients on ``jax.linearize(grad_i, x)``."""
        rtol = self.rtol if self.rtol is not None else float(jnp.finfo(dtype).eps) ** 0.5
        return newton_direction(grad_i, x, g, max_iters=self.max_iters, rtol=rtol, prec=prec)

    def default_search(self, line_search: str) -> Any:
        """A step of 1, whatever ``line_search`` names (the Newton step is its own length)."""
        return UnitStep()


DESCENTS = ("gradient", "newton")
"""``block_step=`` names."""


def replace_block(blocks: tuple, i: int, value: Any) -> tuple:
    return tuple(value if j == i else b for j, b in enumerate(blocks))


def block_step(fun: Callable, grad: Callable, blocks: tuple, i: int, g: Any, alpha_prev: Array,
               f0: Array, *, descent: Any, search: Any,
               prec: Callable | None = None) -> tuple[tuple, Array, Array]:
    """One step on block ``i`` (gradient ``g``, value ``f0``): along ``descent``'s direction,
    from ``search``'s first step, Armijo-safeguarded. Returns ``(blocks, value, alpha)``, with
    ``alpha`` the step taken (the previous one where the block did not move), which the next
    search starts from."""
    grad_i = lambda x: grad(*replace_block(blocks, i, x))[i]  # noqa: E731
    d = descent.direction(grad_i, blocks[i], g, prec, jnp.result_type(f0))
    slope = tree_vdot(g, d)
    alpha0 = search.first_step(grad_i, blocks[i], d, slope, alpha_prev)

    def along(alpha):
        return jax.tree_util.tree_map(lambda b, di: b + alpha * di, blocks[i], d)

    alpha, value = armijo_backtracking(lambda a: fun(*replace_block(blocks, i, along(a))), f0,
                                       slope, alpha0.astype(alpha_prev.dtype))
    moved = slope < 0
    alpha = jnp.where(moved, alpha, 0.0).astype(alpha_prev.dtype)
    value = jnp.where(moved, value, f0)
    return (replace_block(blocks, i, along(alpha)), value,
            jnp.where(alpha > 0, alpha, alpha_prev))


__all__ = ["DESCENTS", "BlockNewton", "PreconditionedGradient", "block_step", "replace_block"]
