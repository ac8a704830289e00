r"""What makes block-coordinate descent competitive on factorisations: a Newton step per block
(exact for a block in which the objective is quadratic, so a sweep is alternating least squares),
the balancing of factors whose product is all the data term sees, and extrapolation of sweeps.

* :func:`newton_direction`: the block's Newton direction :math:`-H_{ii}^{-1} g_i` by conjugate
  gradients on Hessian-vector products (``jax.linearize`` of the block gradient: one
  linearisation, then one product per CG iteration). For :math:`\|X - UV^T\|^2 + \lambda(\ldots)`
  the ``U`` block's Hessian is :math:`I \otimes (2V^TV + 2\lambda I)`, with at most ``r`` distinct
  eigenvalues: CG solves it in ``r`` iterations and the step of length 1 is the block's
  minimiser.
* :func:`balance_factors`: ``(U A, V A⁻ᵀ)`` with :math:`A^TU^TUA = A^{-1}V^TVA^{-T}`. The product
  ``U Vᵀ`` is unchanged and :math:`\|UA\|^2 + \|VA^{-T}\|^2` is at its minimum over invertible
  ``A``: the direction along which ridge-regularised factorisations are nearly flat (curvature
  ∝ λ) is removed in closed form.
* Nesterov-style extrapolation of whole sweeps, :math:`y = x_{k+1} + \beta_k(x_{k+1} - x_k)`,
  kept only where it lowers ``f`` (otherwise the momentum restarts: O'Donoghue & Candès'
  function-value restart).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

from .result import tree_vdot


def _axpy(a, x, y):
    return jax.tree_util.tree_map(lambda xi, yi: a * xi + yi, x, y)


def newton_direction(grad_i: Callable, x, g, *, max_iters: int, rtol: float,
                     prec: Callable | None = None):
    """``d ≈ −H⁻¹ g`` for the block gradient ``grad_i`` at ``x`` (its value ``g``), by
    (preconditioned) conjugate gradients, stopping at ``‖r‖ <= rtol ‖g‖``, after ``max_iters``
    products, or at a direction of non-positive curvature (then the iterate so far, or ``−g``
    if there is none: a descent direction either way)."""
    _, hvp = jax.linearize(grad_i, x)
    prec = prec or (lambda r: r)
    neg_g = jax.tree_util.tree_map(jnp.negative, g)
    zero = jax.tree_util.tree_map(jnp.zeros_like, g)
    z0 = prec(neg_g)
    rz0 = tree_vdot(neg_g, z0)
    gg = tree_vdot(g, g)
    limit = (rtol ** 2) * gg

    def cond(s):
        k, _, r, _, _, _, done = s
        return (k < max_iters) & ~done & (tree_vdot(r, r) > limit)

    def body(s):
        k, d, r, z, p, rz, _ = s
        hp = hvp(p)
        php = tree_vdot(p, hp)
        bad = ~(php > 0)
        alpha = jnp.where(bad, 0.0, rz / jnp.where(bad, 1.0, php))
        d = _axpy(alpha, p, d)
        r = _axpy(-alpha, hp, r)
        z = prec(r)
        rz_new = tree_vdot(r, z)
        p = _axpy(rz_new / jnp.where(rz > 0, rz, 1.0), p, z)
        return k + 1, d, r, z, p, rz_new, bad

    state = (jnp.zeros((), jnp.int32), zero, neg_g, z0, z0, rz0, jnp.zeros((), bool))
    _, d, _, _, _, _, _ = jax.lax.while_loop(cond, body, state)
    moved = tree_vdot(d, g) < 0
    return jax.tree_util.tree_map(lambda di, ng: jnp.where(moved, di, ng), d, neg_g)


def balance_factors(U: Array, V: Array) -> tuple[Array, Array]:
    r"""``(U A, V A⁻ᵀ)``, balanced so that :math:`(UA)^T(UA) = (VA^{-T})^T(VA^{-T})`.

    With :math:`P = U^TU`, :math:`Q = V^TV` and :math:`M = P^{1/2}QP^{1/2}`,
    :math:`A = P^{-1/2}M^{1/4}` (``r × r`` eigendecompositions only). ``U Vᵀ`` is unchanged (up
    to rounding), and :math:`\|UA\|_F^2 + \|VA^{-T}\|_F^2 = 2\,\mathrm{tr}\,M^{1/2}` is the
    least over invertible ``A``. Meant as ``balance=`` of :func:`alternating_minimize` for a
    model that depends on ``U`` and ``V`` through ``U Vᵀ`` and a Frobenius ridge; the solver
    keeps the balanced pair only where it lowers ``f``.
    """
    P, Q = U.T @ U, V.T @ V
    lp, Ep = jnp.linalg.eigh((P + P.T) / 2)
    floor = jnp.finfo(lp.dtype).eps * jnp.maximum(jnp.max(jnp.abs(lp)), jnp.finfo(lp.dtype).tiny)
    lp = jnp.maximum(lp, floor)
    P_half = (Ep * jnp.sqrt(lp)[None, :]) @ Ep.T
    P_mhalf = (Ep / jnp.sqrt(lp)[None, :]) @ Ep.T
    M = P_half @ Q @ P_half
    lm, Em = jnp.linalg.eigh((M + M.T) / 2)
    lm = jnp.maximum(lm, floor * floor)
    A = P_mhalf @ ((Em * (lm ** 0.25)[None, :]) @ Em.T)
    # A⁻¹ = M^{-1/4} P^{1/2}, so A⁻ᵀ = P^{1/2} M^{-1/4}
    A_inv_t = P_half @ ((Em * (lm ** -0.25)[None, :]) @ Em.T)
    return U @ A, V @ A_inv_t


def nesterov_weight(t: Array) -> tuple[Array, Array]:
    """The momentum weight ``(t − 1)/t'`` and the next ``t' = (1 + sqrt(1 + 4t²))/2``."""
    t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
    return (t - 1) / t_next, t_next


__all__ = ["balance_factors", "nesterov_weight", "newton_direction"]
