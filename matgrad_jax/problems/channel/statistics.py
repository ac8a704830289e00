"""The structured form's per-data-set statistics: :math:`G = K_cK_c^H`, :math:`Y = W_cK_c^H`,
the data's Gram products and the value's reference point, and the complex product by ``G``
(:func:`times_g`) that every structured evaluation is made of."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from ..._typing import ArrayLike
from ...precision import fit_precision
from ...xla_cpu import diagonal, kernel_products, materialize, matmul, vmapped_matmul, writes_out


class ChannelStats(NamedTuple):
    r"""Per-data-set statistics of the structured form (real layout).

    :math:`G = K_cK_c^H` (+ ridge I) is kept as ``Gr = Re G``, ``Gi = Im G`` and ``Gs = Gr + Gi``
    (``m x m`` each), the operands of the three-multiplication complex product (see
    :func:`times_g`); ``G`` (a property) is its ``(2m, 2m)`` real form
    ``[[Gr, Gi], [-Gi, Gr]]``. ``Y`` is ``[Re Y, Im Y]`` (``n x 2m``) of :math:`Y = W_cK_c^H`;
    ``z`` is ``diag Z``. ``AtA``, ``BtB``, ``AtB`` (``m x m``) are the data's Gram products:
    :math:`C^HC = A^TA + B^TB + i(A^TB - B^TA)` for ``C = A + iB``, which the exact solve's and the
    block preconditioners' Woodbury capacitances need (computed once per data set, like ``G``).

    ``X0`` (``n x 2m``) is a reference point near the block term's minimiser ``Y G⁻¹`` (see
    :func:`with_reference` and :func:`rereference`), ``dY = Y - X0 G`` and
    ``const = ‖W‖² + ‖Z - I∘Z‖²``, ``offset = const - <X0, Y>``, so that
    :math:`\operatorname{tr}(XGX^T) - 2\operatorname{tr}(XY^T) + \|W\|^2
    = \langle X - X_0, XG - Y\rangle - \langle X, dY\rangle + \|W\|^2
    - \langle X_0, Y\rangle` holds exactly for any ``X0``. ``offset`` is summed once, on its own:
    its cancellation then rounds the same way at every point, and differences of values stay
    accurate.
    Written that way the value has no cancellation against ``‖W‖²`` (which, in float32 near the
    optimum, cost the plain form three digits and stalled value-based line searches).
    """

    A: Array
    B: Array
    z: Array
    Gr: Array
    Gi: Array
    Gs: Array
    Y: Array
    const: Array  # ||W||^2 + ||Z - I.Z||^2 (see above)
    X0: Array
    dY: Array
    offset: Array  # const - <X0, Y>
    AtA: Array
    BtB: Array
    AtB: Array

    @property
    def G(self) -> Array:
        """The ``(2m, 2m)`` real form ``[[Gr, Gi], [-Gi, Gr]]`` (built on each access)."""
        return jnp.block([[self.Gr, self.Gi], [-self.Gi, self.Gr]])


def times_g(Xr: ArrayLike, Xi: ArrayLike, Mr: ArrayLike, Mi: ArrayLike,
            Ms: ArrayLike) -> tuple[Array, Array]:
    r"""``[Xr Xi] @ [[Mr, Mi], [-Mi, Mr]]`` as ``(left, right)`` halves, by the
    three-multiplication complex product (Gauss): with :math:`T_1 = X_rM_r`, :math:`T_2 = X_iM_i`,
    :math:`T_3 = (X_r+X_i)M_s` (``Ms = Mr + Mi``) it is :math:`(T_1 - T_2,\ T_3 - T_1 - T_2)`.

    That is :math:`(X_r + iX_i)(M_r + iM_i)`: three ``n x m x m`` products (``6nm²`` flops)
    instead of the real form's one ``n x 2m x 2m`` product (``8nm²``) or XLA's complex GEMM, and
    no concatenation of ``Xr`` and ``Xi``. Its rounding error is bounded like the plain
    product's, in norm (Higham, *Accuracy and Stability of Numerical Algorithms*, §23.2.4).
    """
    if writes_out(Xr, Mr):
        # Tiny (vmapped small problems): xla_cpu.matmul writes the products out, and then the
        # four-multiplication form is cheaper. The three-multiplication one reuses T1 and T2,
        # which XLA recomputes in each consumer; batched GEMMs of tiny matrices are slower still.
        return matmul(Xr, Mr) - matmul(Xi, Mi), matmul(Xr, Mi) + matmul(Xi, Mr)
    T1 = Xr @ Mr
    T2 = Xi @ Mi
    T3 = (Xr + Xi) @ Ms
    return T1 - T2, T3 - T1 - T2


@fit_precision
def channel_statistics(A: ArrayLike, B: ArrayLike, Z: ArrayLike, P: ArrayLike, S: ArrayLike,
                       W: ArrayLike, ridge: float = 0.0, reference: bool = True) -> ChannelStats:
    r"""Precompute :math:`G = K_cK_c^H + \text{ridge}\,I` and :math:`Y = W_cK_c^H` without forming K
    when ``q > k``: :math:`KK^T = P(S^TS)P^T` and :math:`WK^T = (WS)P^T`.

    ``reference``: compute the reference point ``X0`` (see :func:`with_reference`); without it
    ``X0 = 0``, which is exact too, but float32 value differences near the optimum lose digits
    (what value-based line searches need). The exact solve and CG do not use it.

    Its products are traced at ``"highest"`` precision whatever the caller's setting (see
    :mod:`matgrad_jax.precision`): with TF32 products in ``G`` the float32 exact solve of an
    ill-conditioned H100 benchmark case landed at a relative gap of 24."""
    n = A.shape[0]
    # one product for both halves (under vmap, two products of the halves fused badly)
    KKt, (WKt,) = kernel_products(P, S, (W,))
    return _statistics(A, B, Z, KKt, WKt[:n], WKt[n:], jnp.sum(W * W), ridge, reference)


@fit_precision
def statistics_from_halves(A, B, Z, P, S, W1, W2, ridge=0.0, reference: bool = True
                           ) -> ChannelStats:
    """:func:`channel_statistics` with ``W`` given as its halves ``W1 = W[:n]``, ``W2 = W[n:]``
    (so their rows can be sharded together, see :func:`matgrad_jax.solve_rows`)."""
    KKt, (W1K, W2K) = kernel_products(P, S, (W1, W2))
    return _statistics(A, B, Z, KKt, W1K, W2K, jnp.sum(W1 * W1) + jnp.sum(W2 * W2), ridge,
                       reference)


def _statistics(A, B, Z, KKt, W1K, W2K, wsq, ridge, reference=True) -> ChannelStats:
    """The statistics from ``K Kᵀ``, the halves of ``W Kᵀ`` and ``wsq = ‖W‖²``."""
    m = A.shape[1]
    K11, K12, K21, K22 = KKt[:m, :m], KKt[:m, m:], KKt[m:, :m], KKt[m:, m:]
    Gr = K11 + K22 + ridge * jnp.eye(m, dtype=A.dtype)
    Gi = K21 - K12
    Y = jnp.concatenate([W1K[:, :m] + W2K[:, m:], W2K[:, :m] - W1K[:, m:]], axis=1)
    z = diagonal(Z)
    const = wsq + jnp.sum(Z * Z) - jnp.sum(z * z)
    return with_reference(A, B, z, Gr, Gi, Y, const, steps=16 if reference else 0)


def with_reference(A, B, z, Gr, Gi, Y, const, steps: int = 16) -> ChannelStats:
    """:class:`ChannelStats` with a reference point ``X0 ≈ Y G⁻¹`` and ``dY = Y - X0 G``;
    ``const``: ``‖W‖² + ‖Z - I∘Z‖²``.

    ``X0`` comes from ``steps`` iterations of Jacobi-preconditioned conjugate gradients on
    ``X G = Y`` (one product by G each, no factorisation). The value identity is exact for any
    ``X0``; a closer one only removes more of the cancellation. A few Krylov steps keep ``X0``
    bounded, where an explicit ``Y G⁻¹`` of an ill-conditioned G can be huge and cancel badly.
    ``steps = 0``: ``X0 = 0`` and ``dY = Y``, at no cost.
    """
    m = Gr.shape[-1]
    Gs = Gr + Gi
    # Written out under vmap (xla_cpu.vmapped_matmul) and stored (xla_cpu.materialize): each entry
    # of the exact solve's capacitance reads four of them, which XLA would otherwise recompute.
    AtA, BtB, AtB = materialize(vmapped_matmul(A.T, A), vmapped_matmul(B.T, B),
                                vmapped_matmul(A.T, B))
    stats = ChannelStats(A, B, z, Gr, Gi, Gs, Y, const, jnp.zeros_like(Y), Y, const,
                         AtA, BtB, AtB)
    if steps == 0:
        return stats
    d = jnp.concatenate([jnp.diagonal(Gr)] * 2)
    dinv = jnp.where(d > 0, 1 / jnp.where(d > 0, d, 1), 0)[None, :]
    tiny = jnp.finfo(Gr.dtype).tiny

    def gmul(X):
        return jnp.concatenate(times_g(X[:, :m], X[:, m:], Gr, Gi, Gs), axis=1)

    def body(_, carry):
        X, Rz, P, rz = carry
        Rr, Z = Rz
        AP = gmul(P)
        alpha = rz / jnp.maximum(jnp.sum(P * AP), tiny)
        X = X + alpha * P
        Rr = Rr - alpha * AP
        Z = Rr * dinv
        rz_new = jnp.sum(Rr * Z)
        P = Z + (rz_new / jnp.maximum(rz, tiny)) * P
        return X, (Rr, Z), P, rz_new

    Z0 = Y * dinv
    init = (jnp.zeros_like(Y), (Y, Z0), Z0, jnp.sum(Y * Z0))
    return rereference(stats, jax.lax.fori_loop(0, steps, body, init)[0])


def rereference(stats: ChannelStats, X0) -> ChannelStats:
    """``stats`` with the reference point ``X0`` (``n x 2m``; zero if not all finite), its
    ``dY = Y - X0 G`` and ``offset``. The value and gradient are the same for any ``X0``; only
    their rounding depends on it (see :class:`ChannelStats`)."""
    m = stats.Gr.shape[-1]
    X0 = jnp.where(jnp.all(jnp.isfinite(X0)), X0, jnp.zeros_like(X0))
    dY = stats.Y - jnp.concatenate(times_g(X0[:, :m], X0[:, m:], stats.Gr, stats.Gi, stats.Gs),
                                   axis=1)
    return stats._replace(X0=X0, dY=dY, offset=stats.const - jnp.sum(X0 * stats.Y))


_statistics_jit = jax.jit(channel_statistics, static_argnames="reference")
