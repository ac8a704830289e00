r"""Seed 1: a complex channel fit with a Hadamard-diagonal term and a real-form Kronecker block
term.

Source: ``shared/seeds/000_59df1aa91f78fd77.txt``. With :math:`R = H_R`, :math:`Q = H_I`,
:math:`P = P_d`:

.. math::

    \phi(R, Q) = \|Z - I\odot(R^TA + Q^TB)\|_F^2
               + \Big\|W - \begin{pmatrix}R & -Q\\ Q & R\end{pmatrix} P S^T\Big\|_F^2

Shapes: ``R, Q, A, B`` are ``(n, m)``, ``Z`` is ``(m, m)``, ``P`` is ``(2m, k)``, ``S`` is
``(q, k)``, ``W`` is ``(2n, q)``.

The seed's notation: :math:`M = I\odot(R^TA+Q^TB) - Z`, :math:`N = (I_2\otimes R + J_2\otimes Q)PS^T
- W`, :math:`D = I\odot M`, :math:`C = NSP^T` (``2n x 2m``). The true gradient is

.. math::

    \partial\phi/\partial R = 2(AD + C_{11} + C_{22}),\qquad
    \partial\phi/\partial Q = 2(BD + C_{21} - C_{12}).

The structured form uses :math:`H = R + iQ`, :math:`K = PS^T`, :math:`K_c = K_{[:m]} + iK_{[m:]}`:
the block term is :math:`\|HK_c - W_c\|_F^2`, so with :math:`G = K_cK_c^H` and :math:`Y = W_cK_c^H`
precomputed once per data set, one gradient costs one complex product :math:`HG` — three real
``n x m x m`` GEMMs by the three-multiplication trick (:func:`times_g`) — whatever ``k`` and ``q``
are, and the Hadamard term costs ``O(nm)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from .._checks import (
    InputError,
    check_finite,
    check_shapes,
    check_sizes,
    check_solver_options,
    float_dtype,
    is_concrete,
    real_input,
    real_scalar,
)
from .._typing import ArrayLike, DTypeLike
from ..identities import J2, kron_identity_adjoint, kron_j2_adjoint
from ..linalg import (
    BATCHED_WRITE_OUT,
    SMALL_MATMUL,
    batched,
    diagonal,
    hpd_inverse,
    hpd_solve,
    materialize,
    matmul,
    sum_rows,
    vmapped_matmul,
    writes_out,
)
from ..precision import fit_precision

SEED_FILE = "000_59df1aa91f78fd77.txt"
ARG_NAMES = ("R", "Q", "A", "B", "Z", "P", "S", "W")
DATA_NAMES = ("A", "B", "Z", "P", "S", "W")
DATA_SHAPES = {
    "A": ("n", "m"),
    "B": ("n", "m"),
    "Z": ("m", "m"),
    "P": ("2m", "k"),
    "S": ("q", "k"),
    "W": ("2n", "q"),
}
ARG_SHAPES = {"R": ("n", "m"), "Q": ("n", "m"), **DATA_SHAPES}
I2 = np.eye(2)  # NumPy: importing must not start a backend


def check_args(R, Q, A, B, Z, P, S, W) -> None:
    """The literal functions' arguments against :data:`ARG_SHAPES` (n, m from ``A``, k from
    ``P``, q from ``S``): :class:`InputError` naming the first that does not fit, from the
    static shapes (so also under ``jit``/``vmap``), instead of a shape error deep in a product.
    """
    args = dict(zip(ARG_NAMES, (R, Q, A, B, Z, P, S, W)))
    for name in ("A", "P", "S"):
        if np.ndim(args[name]) != 2:
            raise InputError(f"{name}: expected a 2-d array, got shape {np.shape(args[name])}")
    (n, m), k, q = np.shape(A), np.shape(P)[1], np.shape(S)[0]
    check_shapes(ARG_SHAPES, args, {"n": n, "m": m, "k": k, "q": q})


# --------------------------------------------------------------------------------------------
# Literal objective and the seed's intermediate quantities
# --------------------------------------------------------------------------------------------


def objective(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike, P: ArrayLike,
              S: ArrayLike, W: ArrayLike) -> Array:
    r"""The seed-1 objective exactly as written (seed line 3): block matrix, identity mask, P Sᵀ."""
    check_args(R, Q, A, B, Z, P, S, W)
    mask = jnp.eye(Z.shape[0], dtype=Z.dtype)
    hadamard_term = Z - mask * (R.T @ A + Q.T @ B)
    block = jnp.block([[R, -Q], [Q, R]])
    kron_term = W - block @ P @ S.T
    return jnp.sum(hadamard_term**2) + jnp.sum(kron_term**2)


def seed_matrices(R, Q, A, B, Z, P, S, W):
    r"""The seed's M, N, D, C (its "define the matrices" block), written as the seed writes them."""
    check_args(R, Q, A, B, Z, P, S, W)
    mask = jnp.eye(Z.shape[0], dtype=Z.dtype)
    M = mask * (R.T @ A + Q.T @ B) - Z
    N = (jnp.kron(I2.astype(R.dtype), R) + jnp.kron(J2.astype(R.dtype), Q)) @ P @ S.T - W
    D = mask * M
    C = N @ S @ P.T
    return M, N, D, C


def _split_blocks(C, n, m):
    return C[:n, :m], C[:n, m:], C[n:, :m], C[n:, m:]


# --------------------------------------------------------------------------------------------
# Hand-derived gradients: each fn(R, Q, A, B, Z, P, S, W) -> (dR, dQ)
# --------------------------------------------------------------------------------------------


def _svd_route(R, Q, A, B, Z, P, S, W):
    r"""The answer's D, E, F: :math:`E = \sum_k\sigma_kU_kV_k^T`,
    :math:`F = \sum_k\sigma_kU_kJ_2V_k^T` from the SVD of C, with ``Reshape`` column-major (vec
    stacks columns)."""
    n, m = R.shape
    _, _, D, C = seed_matrices(R, Q, A, B, Z, P, S, W)
    u, sigma, vt = jnp.linalg.svd(C, full_matrices=False)
    U = jax.vmap(lambda col: jnp.reshape(col, (n, 2), order="F"))(u.T)
    V = jax.vmap(lambda col: jnp.reshape(col, (m, 2), order="F"))(vt)
    E = jnp.einsum("k,kna,kma->nm", sigma, U, V)
    F = jnp.einsum("k,kna,ab,kmb->nm", sigma, U, J2.astype(R.dtype), V)
    return D, E, F


def grad_published(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike,
                   P: ArrayLike, S: ArrayLike, W: ArrayLike) -> tuple[Array, Array]:
    r"""The answer's SVD route, transcribed as published (seed lines 9-10).

    :math:`C = \sum_k\sigma_k u_k v_k^T`, :math:`U_k = \mathrm{Reshape}(u_k, n, 2)`,
    :math:`V_k = \mathrm{Reshape}(v_k, \cdot, 2)`, :math:`E = \sum_k\sigma_kU_kV_k^T`,
    :math:`F = \sum_k\sigma_kU_kJ_2V_k^T`, :math:`\partial/\partial H_R = 2(AD+E)`,
    :math:`\partial/\partial H_I = 2(BD-F)`.

    Erratum kept out of the code: the seed writes :math:`V_k = \mathrm{Reshape}(v_k, n, 2)`, but
    :math:`v_k` has ``2m`` entries, so only ``(m, 2)`` type-checks; we read it as ``(m, 2)``
    (identical when ``n == m``). Everything else is as published, including the sign of ``F`` in
    :math:`\partial/\partial H_I`, which the audit finds wrong: the true gradient is
    :math:`2(BD+F)`.
    """
    D, E, F = _svd_route(R, Q, A, B, Z, P, S, W)
    return 2 * (A @ D + E), 2 * (B @ D - F)


def grad_corrected(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike,
                   P: ArrayLike, S: ArrayLike, W: ArrayLike) -> tuple[Array, Array]:
    r"""The published SVD route with its one sign fixed: :math:`\partial/\partial H_I = 2(BD+F)`.

    Why: :math:`C:(J_2\otimes dQ) = -(J_2\otimes I)C:(I_2\otimes dQ)` (seed line 8, right), and the
    diagonal blocks of :math:`-(J_2\otimes I)C` sum to :math:`C_{21}-C_{12} = +F`.
    """
    D, E, F = _svd_route(R, Q, A, B, Z, P, S, W)
    return 2 * (A @ D + E), 2 * (B @ D + F)


def grad_blocks(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike, P: ArrayLike,
                S: ArrayLike, W: ArrayLike) -> tuple[Array, Array]:
    r"""C = N S Pᵀ split into its four ``n x m`` blocks: :math:`2(AD + C_{11}+C_{22})`,
    :math:`2(BD + C_{21}-C_{12})` (seed line 8 with :math:`C:(I_2\otimes dR)` and
    :math:`C:(J_2\otimes dQ)` read off block by block)."""
    n, m = R.shape
    _, _, D, C = seed_matrices(R, Q, A, B, Z, P, S, W)
    C11, C12, C21, C22 = _split_blocks(C, n, m)
    return 2 * (A @ D + C11 + C22), 2 * (B @ D + C21 - C12)


def grad_kron_identity(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike,
                       P: ArrayLike, S: ArrayLike, W: ArrayLike) -> tuple[Array, Array]:
    r"""The answer's SVD-free identity :math:`\partial/\partial X[Y:(I_p\otimes X)]=\sum_kE_k^TYF_k`
    (seed, last answer block) with its :math:`J_2\otimes X` companion from
    :mod:`matgrad_jax.identities`."""
    _, _, D, C = seed_matrices(R, Q, A, B, Z, P, S, W)
    return 2 * (A @ D + kron_identity_adjoint(C, 2)), 2 * (B @ D + kron_j2_adjoint(C))


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
        # Tiny (vmapped small problems): linalg.matmul writes the products out, and then the
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


@jax.custom_jvp
def kernel_products(P, S, Ws):
    """``(K Kᵀ, tuple(Wh Kᵀ for Wh in Ws))`` for ``K = P Sᵀ`` (``2m x q``), without forming K
    when ``q > k`` and K is not small: :math:`KK^T = P(S^TS)P^T`, :math:`WK^T = (WS)P^T`.

    Under ``vmap`` on XLA:CPU small problems always go through K, with every product written
    out (:func:`_through_k`): batched GEMMs of small matrices run at a fraction of that speed
    there, which outweighs the flops the ``SᵀS`` route saves (4096 problems of
    ``(32, 16, 24, 40)``: these products 125 -> 94 ms in interleaved runs). Differentiable (plain
    products in the tangents)."""
    return _kernel_products(P, S, tuple(Ws))


@kernel_products.defjvp
def _kernel_products_jvp(primals, tangents):
    (P, S, Ws), (dP, dS, dWs) = primals, tangents
    K = P @ S.T
    dK = dP @ S.T + P @ dS.T
    return kernel_products(P, S, Ws), (dK @ K.T + K @ dK.T,
                                       tuple(dW @ K.T + W @ dK.T for W, dW in zip(Ws, dWs)))


@jax.custom_batching.custom_vmap
def _kernel_products(P, S, Ws):
    return _by_shape(P, S, Ws)


@_kernel_products.def_vmap
def _kernel_products_vmap(axis_size, in_batched, P, S, Ws):
    P, S, Ws = batched(axis_size, tuple(in_batched), (P, S, Ws))
    (two_m, k), q = P.shape[1:], S.shape[1]
    small = max(k, q) <= BATCHED_WRITE_OUT[0] and max(
        two_m * q, two_m * two_m, *(W.shape[1] * two_m for W in Ws)) <= BATCHED_WRITE_OUT[1]
    by_shape = jax.vmap(_by_shape)
    if small:
        out = jax.lax.platform_dependent(P, S, Ws, cpu=jax.vmap(_through_k), default=by_shape)
    else:
        out = by_shape(P, S, Ws)
    return out, (True, (True,) * len(Ws))


def _by_shape(P, S, Ws):
    """Through ``SᵀS`` (GEMMs) when ``q > k`` and K is not small, else :func:`_through_k`."""
    k, q = P.shape[1], S.shape[0]
    if q > k and P.shape[0] * q > SMALL_MATMUL[1]:
        return P @ (S.T @ S) @ P.T, tuple((W @ S) @ P.T for W in Ws)
    return _through_k(P, S, Ws)


def _through_k(P, S, Ws):
    """K stored as its transpose ``Kᵀ = S Pᵀ`` (linalg.materialize; XLA would recompute its sums
    per output column), so that both products read rows of it, each written out under vmap
    (linalg.vmapped_matmul) and stored for its consumers. Against a stored K, products reading
    its columns and batched GEMMs above 16 terms, 4096 problems of (16, 8, 12, 20): these
    products 5.7 -> 3.8 ms; of (8, 4, 6, 10): 0.68 -> 0.65 ms."""
    (Kt,) = materialize(vmapped_matmul(S, P.T))
    (KKt,) = materialize(vmapped_matmul(Kt.T, Kt))
    return KKt, materialize(*(vmapped_matmul(W, Kt) for W in Ws))


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
    # Written out under vmap (linalg.vmapped_matmul) and stored (linalg.materialize): each entry
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


def _residuals(stats: ChannelStats, R, Q):
    """``r = diag(RᵀA + QᵀB) - diag Z`` and ``(Re, Im)`` of ``HG - Y``."""
    m = R.shape[-1]
    # written-out row sums, stored under vmap: as a reduction XLA:CPU handed it, with the
    # gradient that reads it, to a slow YNNPACK fusion (see linalg.sum_rows). With the stored
    # HG - Y below, the stored exact answer and Problem.hvp, 4096 (8, 4, 6, 10) problems in
    # one interleaved run: exact solve + value 3.0 -> 1.8 ms (float64), 4.1 -> 1.7 ms
    # (float32); CG 9.0 -> 6.2 ms, 8.0 -> 5.1 ms
    (r,) = materialize(sum_rows(R * stats.A + Q * stats.B) - stats.z)
    HGr, HGi = times_g(R, Q, stats.Gr, stats.Gi, stats.Gs)
    return r, HGr - stats.Y[:, :m], HGi - stats.Y[:, m:]


def _gradient(stats: ChannelStats, r, Er, Ei):
    return 2 * (stats.A * r[None, :] + Er), 2 * (stats.B * r[None, :] + Ei)


def structured_value_and_grad(stats: ChannelStats, R, Q):
    r"""Value and gradient from the statistics: :math:`HG` by :func:`times_g`.

    :math:`r = \operatorname{diag}(R^TA+Q^TB) - \operatorname{diag}Z` costs ``O(nm)``;
    :math:`\partial\phi/\partial R = 2A\,\mathrm{Diag}(r) + 2\,\mathrm{Re}(HG - Y)`,
    :math:`\partial\phi/\partial Q = 2B\,\mathrm{Diag}(r) + 2\,\mathrm{Im}(HG - Y)`.
    """
    m = R.shape[-1]
    r, Er, Ei = _residuals(stats, R, Q)
    X0, dY = stats.X0, stats.dY
    # = ||r||² + tr(XGXᵀ) - 2tr(XYᵀ) + ||W||² + ..., without cancellation (see ChannelStats)
    value = (jnp.sum(r * r) + jnp.sum((R - X0[:, :m]) * Er) + jnp.sum((Q - X0[:, m:]) * Ei)
             - jnp.sum(R * dY[:, :m]) - jnp.sum(Q * dY[:, m:]) + stats.offset)
    return value, _gradient(stats, r, Er, Ei)


def value_and_grad_self_referenced(stats: ChannelStats, R, Q):
    r""":func:`structured_value_and_grad` with the point itself as the reference: the value is
    :math:`\|r\|^2 + (c - \langle X, Y\rangle) + \langle X, XG - Y\rangle`, which needs no product
    beyond the gradient's ``HG`` and neither ``X0`` nor ``dY``.

    For one evaluation this is as accurate as the stored reference (either way one subtraction
    of two numbers near ``‖W‖²`` rounds once); the stored one is there to make *differences* of
    values accurate along an iteration. The exact solve's result uses this, so that where the
    statistics are computed in the same program (``solve_batch``, ``solve_rows``) XLA drops their
    Krylov reference and its ``steps + 1`` products by ``G``.
    """
    m = R.shape[-1]
    r, Er, Ei = _residuals(stats, R, Q)
    Er, Ei = materialize(Er, Ei)  # read by the value's sums and the gradient (see _residuals)
    offset = stats.const - (jnp.sum(R * stats.Y[:, :m]) + jnp.sum(Q * stats.Y[:, m:]))
    value = jnp.sum(r * r) + offset + (jnp.sum(R * Er) + jnp.sum(Q * Ei))
    return value, _gradient(stats, r, Er, Ei)


def structured_value_and_grad_4m(stats: ChannelStats, R, Q, G=None):
    """:func:`structured_value_and_grad` with ``HG`` as one real-layout ``n x 2m x 2m`` product
    (``8nm²`` flops, the formula as derived), for the benchmark and as a cross-check. ``G``: the
    real form, if already built (default ``stats.G``, built per call)."""
    m = R.shape[-1]
    G = stats.G if G is None else G
    r = jnp.sum(R * stats.A + Q * stats.B, axis=0) - stats.z
    X = jnp.concatenate([R, Q], axis=1)
    E = X @ G - stats.Y
    value = (jnp.sum(r * r) + jnp.sum((X - stats.X0) * E) - jnp.sum(X * stats.dY)
             + stats.offset)
    return value, _gradient(stats, r, E[:, :m], E[:, m:])


def structured_grad_complex(stats: ChannelStats, R, Q):
    """The same gradient in complex layout (``H @ G`` in complex arithmetic), for the benchmark."""
    m = R.shape[1]
    Gc = jax.lax.complex(stats.Gr, stats.Gi)
    Yc = jax.lax.complex(stats.Y[:, :m], stats.Y[:, m:])
    r = jnp.sum(R * stats.A + Q * stats.B, axis=0) - stats.z
    E = jax.lax.complex(R, Q) @ Gc - Yc
    return 2 * (stats.A * r[None, :] + E.real), 2 * (stats.B * r[None, :] + E.imag)


def grad_structured(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike,
                    P: ArrayLike, S: ArrayLike, W: ArrayLike) -> tuple[Array, Array]:
    """The structured fast form from raw data (statistics recomputed per call; use
    :class:`Problem` to compute them once)."""
    check_args(R, Q, A, B, Z, P, S, W)
    return structured_value_and_grad(channel_statistics(A, B, Z, P, S, W), R, Q)[1]


def objective_structured(R: ArrayLike, Q: ArrayLike, A: ArrayLike, B: ArrayLike, Z: ArrayLike,
                         P: ArrayLike, S: ArrayLike, W: ArrayLike) -> Array:
    """The objective through the complex product :math:`\\|HK_c - W_c\\|^2` and diag(RᵀA+QᵀB)."""
    check_args(R, Q, A, B, Z, P, S, W)
    m, n = A.shape[1], A.shape[0]
    K = P @ S.T
    Kc = jax.lax.complex(K[:m], K[m:])
    Wc = jax.lax.complex(W[:n], W[n:])
    Nc = jax.lax.complex(R, Q) @ Kc - Wc
    r = jnp.sum(R * A + Q * B, axis=0) - jnp.diagonal(Z)
    off = jnp.sum(Z * Z) - jnp.sum(jnp.diagonal(Z) ** 2)
    return jnp.sum(r * r) + off + jnp.sum(Nc.real**2 + Nc.imag**2)


GRADIENTS = {
    "published": grad_published,
    "corrected": grad_corrected,
    "blocks": grad_blocks,
    "kron_identity": grad_kron_identity,
    "structured": grad_structured,
}
"""Hand-derived gradients of :func:`objective`, each ``fn(R, Q, A, B, Z, P, S, W) -> (dR, dQ)``."""


# --------------------------------------------------------------------------------------------
# Problem: validated data + precomputed statistics, a pytree
# --------------------------------------------------------------------------------------------


def validate_data(A, B, Z, P, S, W, *, dtype=None) -> dict[str, Array | np.ndarray]:
    """Check names, ranks, shapes (in terms of n, m, k, q), dtypes and finiteness; cast to one
    dtype.

    Raises :class:`~matgrad_jax._checks.InputError` with one line naming the array. Returns the
    arrays as jitted code takes them: host input (lists, NumPy) as NumPy arrays, cast and checked
    on the host, which the jitted call then moves itself (for a small problem ``device_put``
    cost more than the solve); JAX arrays where they are, checked in one jitted reduction.
    """
    raw = dict(A=A, B=B, Z=Z, P=P, S=S, W=W)
    checked = {name: real_input(name, raw[name]) for name in DATA_NAMES}
    arrays = {name: a for name, (a, _) in checked.items()}
    n, m = arrays["A"].shape
    k = arrays["P"].shape[1]
    q = arrays["S"].shape[0]
    check_shapes(DATA_SHAPES, arrays, {"n": n, "m": m, "k": k, "q": q})
    dtype = jax.dtypes.canonicalize_dtype(
        float_dtype("dtype", dtype) if dtype is not None
        else np.result_type(*(d for _, d in checked.values()), np.float32))
    arrays = {name: a.astype(dtype) if isinstance(a, jax.Array) else np.asarray(a, dtype)
              for name, a in arrays.items()}
    check_finite(arrays)
    return arrays


def rank_problem(arrays, ridge, *, batch: str = "") -> str | None:
    """Why ``G = K_cK_cᴴ`` is singular by its shapes (rank at most ``min(k, q)`` below ``m``,
    and no ridge), or None. A minimiser then is not unique and every exact solve ends in NaN."""
    m = arrays["A"].shape[-1]
    k, q = arrays["P"].shape[-1], arrays["S"].shape[-2]
    if ridge == 0 and min(k, q) < m:
        return (f"G = K_c K_cᴴ is singular{batch}: its rank is at most min(k, q) = {min(k, q)} "
                f"< m = {m} (k={k}, q={q}), so the minimiser is not unique; pass ridge > 0 "
                "(matgrad fit --ridge; e.g. 1e-6 times the data's scale), or more columns in P "
                "/ rows in S")
    return None


def check_rank(arrays, ridge, *, batch: str = "") -> None:
    """:func:`rank_problem` as an :class:`InputError`."""
    why = rank_problem(arrays, ridge, batch=batch)
    if why:
        raise InputError(why)


def numerical_problem(Gr, Gi) -> str | None:
    """Why ``G`` is numerically singular, or None, tested by a Cholesky on the host: a failed
    one, or a pivot below ``m·eps`` of the largest diagonal entry (the smallest eigenvalue is at
    most the smallest squared pivot), as for P = 0."""
    G = np.asarray(Gr, np.float64) + 1j * np.asarray(Gi, np.float64)
    m = G.shape[-1]
    eps = float(np.finfo(np.asarray(Gr).dtype).eps)
    top = float(np.max(np.real(np.diagonal(G))))
    try:
        piv = np.real(np.diagonal(np.linalg.cholesky(G))) ** 2
        small = not top > 0 or float(piv.min()) <= m * eps * top
    except np.linalg.LinAlgError:
        small = True
    if small:
        return ("G = K_c K_cᴴ (+ ridge I) is numerically singular (P or S carries too little "
                f"energy: largest diagonal entry {top:.3g}), so the minimiser is not unique; "
                "pass ridge > 0 (matgrad fit --ridge)")
    return None


@jax.tree_util.register_pytree_node_class
class Problem:
    """A seed-1 data set, validated once, with the structured statistics precomputed.

    ``Problem(A, B, Z, P, S, W, ridge=0.0)`` checks shapes, dtypes and finiteness (one clear
    error naming the array), then computes :class:`ChannelStats`. ``singular`` says why ``G``
    is singular (its shapes, or a failed Cholesky), or is None: the value, gradient and Hessian
    product are defined either way, but :func:`~matgrad_jax.fit` refuses to solve. It is a
    pytree: it passes through ``jit``/``vmap`` and can be stacked for batches. ``ridge`` adds
    ``ridge * (||R||² + ||Q||²)`` to the objective. ``reference=False`` skips the value's
    reference point (16 products by G, often more than an exact solve costs): right for
    ``exact`` and ``cg``, which do not use it; value-based methods in float32
    (``alternating``, ``lbfgs``) want it (see :func:`channel_statistics`).
    """

    def __init__(self, A, B, Z, P, S, W, *, ridge: float = 0.0, dtype=None,
                 reference: bool = True):
        arrays = validate_data(A, B, Z, P, S, W, dtype=dtype)
        if is_concrete(ridge):
            ridge = real_scalar("ridge", ridge)
        self.stats = _statistics_jit(*(arrays[k] for k in DATA_NAMES), ridge,
                                     reference=reference)
        self.ridge = ridge
        self.singular = None
        if is_concrete(ridge) and is_concrete(self.stats.Gr):
            self.singular = (rank_problem(arrays, ridge)
                             or numerical_problem(self.stats.Gr, self.stats.Gi))

    # pytree protocol -------------------------------------------------------------------------
    def tree_flatten(self) -> tuple[tuple, None]:
        return (self.stats, self.ridge), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.stats, obj.ridge = children
        obj.singular = None  # not known for a Problem rebuilt from its statistics
        return obj

    @classmethod
    def from_stats(cls, stats: ChannelStats, ridge=0.0) -> Problem:
        return cls.tree_unflatten(None, (stats, ridge))

    # shapes ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``: the shape of R and of Q."""
        return tuple(self.stats.A.shape[-2:])

    @property
    def dtype(self):
        return self.stats.A.dtype

    def _check_point(self, R, Q):
        for name, x in (("R", R), ("Q", Q)):
            if tuple(jnp.shape(x)[-2:]) != self.shape:
                raise InputError(f"{name}: expected shape (n, m) = {self.shape}, "
                                 f"got {tuple(jnp.shape(x))}")

    # the objective ---------------------------------------------------------------------------
    def value(self, R: ArrayLike, Q: ArrayLike) -> Array:
        """φ(R, Q) from the statistics (jitted)."""
        self._check_point(R, Q)
        return _value_and_grad_jit(self, R, Q)[0]

    def grad(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        """(∂φ/∂R, ∂φ/∂Q), the structured hand gradient (jitted)."""
        self._check_point(R, Q)
        return _grad_jit(self, R, Q)

    def value_and_grad(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, tuple[Array, Array]]:
        self._check_point(R, Q)
        return _value_and_grad_jit(self, R, Q)

    # used inside solvers (no checks, traceable) ---------------------------------------------------
    def fun(self, R: ArrayLike, Q: ArrayLike) -> Array:
        return structured_value_and_grad(self.stats, R, Q)[0]

    def grad_fn(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        return structured_value_and_grad(self.stats, R, Q)[1]

    def hvp(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        """The Hessian times the direction ``(R, Q)``, in closed form: twice the gradient's
        linear part (:func:`normal_operator`). The objective is quadratic, so this equals the
        ``jvp`` of :meth:`grad_fn` at any point. CG uses it: under ``vmap`` on XLA:CPU its
        row sums are stored (:func:`~matgrad_jax.linalg.materialize`), while the ``jvp``'s
        tangent sums would be recomputed for every entry (materialize passes tangents
        through unstored)."""
        Lr, Li = _normal_real(self.stats, R, Q)
        return 2 * Lr, 2 * Li

    def block_preconditioners(self) -> tuple[Callable, Callable]:
        r"""Right preconditioners for the block steps, ``g -> g L_R⁻¹`` for R and ``g L_Q⁻¹``
        for Q: the exact inverses of each block's Hessian (halved).

        With Q fixed the objective is a quadratic in R with Hessian :math:`2L_R`,
        :math:`L_R(X) = X\,\mathrm{Re}\,G + A\,\mathrm{Diag}(a_j^Tx_j)`: the block term plus
        the Hadamard term's ``m`` column-wise rank-one pieces (B for Q). Woodbury inverts it with
        :math:`(\mathrm{Re}\,G)^{-1}` and the ``m x m`` capacitance
        :math:`I + (A^TA)\odot(\mathrm{Re}\,G)^{-1}`; one application costs two ``n x m x m``
        products. The step along ``-g L_R⁻¹`` with the exact line search then lands on the block's
        minimiser (the seed's method with each block solved exactly). Preconditioning by
        :math:`\mathrm{Re}\,G` alone, without the rank-one pieces, left the alternating method at
        a relative gap of 0.25 after 3000 sweeps when ``Re G`` is ill-conditioned.
        """
        Ginv = hpd_inverse(self.stats.Gr)  # Re G is symmetric positive definite
        m = Ginv.shape[-1]

        def make(C, CtC):
            cap = jnp.eye(m, dtype=C.dtype) + CtC * Ginv
            capinv = hpd_inverse(0.5 * (cap + cap.T))

            def apply(g):
                t = jnp.sum(C * (g @ Ginv), axis=0)
                return (g - C * (t @ capinv)[None, :]) @ Ginv

            return apply

        return make(self.stats.A, self.stats.AtA), make(self.stats.B, self.stats.BtB)

    def solve_exact(self) -> tuple[Array, Array]:
        """The exact minimiser (see :func:`solve_exact`)."""
        return _solve_exact_jit(self.stats)

    def __repr__(self):
        n, m = self.shape
        return f"Problem(n={n}, m={m}, dtype={self.dtype}, ridge={self.ridge})"


_statistics_jit = jax.jit(channel_statistics, static_argnames="reference")


@jax.jit
@fit_precision
def _value_and_grad_jit(problem: Problem, R, Q):
    return structured_value_and_grad(problem.stats, R, Q)


@jax.jit
@fit_precision
def _grad_jit(problem: Problem, R, Q):
    return structured_value_and_grad(problem.stats, R, Q)[1]


# --------------------------------------------------------------------------------------------
# Exact minimiser: Cholesky of G + an m x m Woodbury capacitance
# --------------------------------------------------------------------------------------------


def _normal_real(stats: ChannelStats, Hr, Hi):
    r"""Half the gradient's linear part, :math:`H \mapsto HG + C\,\mathrm{Diag}(\mathrm{Re}\langle
    c_j, h_j\rangle)` with :math:`C = A + iB`, on the real and imaginary parts of ``H``."""
    # stored under vmap (linalg.materialize): every entry of the result reads all of s, whose
    # sums XLA would otherwise recompute per entry (with the stored answer it refines, 4096
    # float32 exact solves of (8, 4, 6, 10) with refine=1: 2.7 -> 2.0 ms in one interleaved
    # run, 2.0 -> 1.2 ms in another that returned the answer alone)
    (s,) = materialize(sum_rows(stats.A * Hr + stats.B * Hi)[None, :])
    Lr, Li = times_g(Hr, Hi, stats.Gr, stats.Gi, stats.Gs)
    return Lr + stats.A * s, Li + stats.B * s


def normal_operator(stats: ChannelStats, H):
    r"""Half the gradient's linear part: :math:`H \mapsto HG + C\,\mathrm{Diag}(\mathrm{Re}\langle
    c_j, h_j\rangle)` (complex ``H``)."""
    return jax.lax.complex(*_normal_real(stats, H.real, H.imag))


def _woodbury_factors(stats: ChannelStats):
    r""":math:`G^{-1}` (as real part, imaginary part and their sum, for :func:`times_g`) and the
    capacitance :math:`I + \mathrm{Re}((C^HC)\odot G^{-T})`; ``G⁻¹`` by
    :func:`~matgrad_jax.linalg.hpd_inverse` and solves with the capacitance by
    :func:`~matgrad_jax.linalg.hpd_solve` (LAPACK alone, LAPACK-free under ``vmap``).

    The capacitance is symmetric positive definite with eigenvalues >= 1: the Hadamard product
    of the Hermitian PSD :math:`C^HC` and :math:`G^{-T} = \overline{G^{-1}}` is Hermitian PSD
    (Schur), and so is its real part. :math:`C^HC` is formed in real arithmetic:
    :math:`A^TA + B^TB + i(A^TB - B^TA)`, from the statistics.
    """
    A = stats.A
    m = A.shape[-1]
    Ginv = hpd_inverse(jax.lax.complex(stats.Gr, stats.Gi))
    Vr, Vi = Ginv.real, Ginv.imag
    CCr, CCi = stats.AtA + stats.BtB, stats.AtB - stats.AtB.T
    cap = jnp.eye(m, dtype=A.dtype) + CCr * Vr.T - CCi * Vi.T
    return (Vr, Vi, Vr + Vi), 0.5 * (cap + cap.T)


def _woodbury_solve(stats: ChannelStats, factors, rr, ri):
    r"""Solve :math:`HG + C\,\mathrm{Diag}(\mathrm{Re}\langle c_j,h_j\rangle) = \text{rhs}`
    (``rhs = rr + i ri``) for ``(Re H, Im H)``.

    :math:`X_0 = \text{rhs}\,G^{-1}`, :math:`t_j = \mathrm{Re}\langle c_j, x_{0,j}\rangle`,
    :math:`s = \mathrm{Cap}^{-1}t` with :math:`\mathrm{Cap} = I + \mathrm{Re}((C^HC)\odot G^{-T})`,
    :math:`H = (\text{rhs} - C\,\mathrm{Diag}(s))G^{-1}`. Two products by :math:`G^{-1}`, each by
    :func:`times_g`.
    """
    V, cap = factors
    X0r, X0i = times_g(rr, ri, *V)
    t = sum_rows(stats.A * X0r + stats.B * X0i)
    # stored under vmap: every entry of the rhs reads all of s, every entry of the product a
    # row of the rhs; recomputed, their sums cost more than the rest of the solve
    (s,) = materialize(hpd_solve(cap, t)[None, :])
    # the answer is stored too: its consumers (refinement, value and gradient) read its rows,
    # and XLA would recompute the written-out product in each of them
    return materialize(*times_g(*materialize(rr - stats.A * s, ri - stats.B * s), *V))


def solve_exact_stats(stats: ChannelStats, refine: int = 0):
    """Exact minimiser from precomputed statistics (jit/vmap-able); see :func:`solve_exact`.

    Real arithmetic throughout (XLA's complex GEMM on CPU runs at about half the real rate).
    """
    m = stats.A.shape[-1]
    z = stats.z[None, :]
    rr = stats.Y[:, :m] + stats.A * z
    ri = stats.Y[:, m:] + stats.B * z
    factors = _woodbury_factors(stats)
    Hr, Hi = _woodbury_solve(stats, factors, rr, ri)
    for _ in range(refine):
        Lr, Li = _normal_real(stats, Hr, Hi)
        dr, di = _woodbury_solve(stats, factors, Lr - rr, Li - ri)
        Hr, Hi = Hr - dr, Hi - di
    return Hr, Hi


_solve_exact_jit = jax.jit(fit_precision(solve_exact_stats), static_argnames="refine")


@partial(jax.jit, static_argnames="refine")
@fit_precision
def _solve_exact_data_jit(A, B, Z, P, S, W, ridge, refine: int = 0):
    """Statistics, exact solve and its finiteness flag in one program: a single dispatch and
    one scalar back to the host per call of :func:`solve_exact`."""
    R, Q = solve_exact_stats(channel_statistics(A, B, Z, P, S, W, ridge, reference=False),
                             refine=refine)
    return R, Q, jnp.all(jnp.isfinite(R)) & jnp.all(jnp.isfinite(Q))


def solve_exact(A: ArrayLike, B: ArrayLike, Z: ArrayLike, P: ArrayLike, S: ArrayLike, W: ArrayLike,
                *, ridge: float = 0.0, refine: int = 0) -> tuple[Array, Array]:
    r"""The minimiser of the seed-1 objective (+ ``ridge * (||R||² + ||Q||²)``), in closed form.

    The objective is a convex quadratic in :math:`H = R + iQ`; its normal equations read
    :math:`HG + C\,\mathrm{Diag}(\mathrm{Re}\langle c_j,h_j\rangle)
    = Y + C\,\mathrm{Diag}(\mathrm{diag}Z)`
    with :math:`C = A + iB`, :math:`G = K_cK_c^H + \text{ridge}\,I`, :math:`Y = W_cK_c^H`: a
    Kronecker-structured operator plus ``m`` rank-one column terms. A Cholesky of ``G`` and an
    ``m x m`` Woodbury capacitance solve them in :math:`O(m^3 + nm^2)` after the statistics.

    ``G`` is singular whenever ``min(k, q) < m``; with ``ridge == 0`` that is an
    :class:`InputError` (pass ``ridge > 0``). ``refine`` steps of iterative refinement recover
    accuracy lost to ``cond(G) * eps`` in float32.

    Returns:
      ``(R, Q)``.
    """
    arrays = validate_data(A, B, Z, P, S, W)
    check_solver_options(refine=refine)
    n, m = arrays["A"].shape
    k, q = arrays["P"].shape[1], arrays["S"].shape[0]
    if is_concrete(ridge) and ridge == 0 and min(k, q) < m:
        raise InputError(
            f"G = K_c K_c^H is singular: rank <= min(k, q) = {min(k, q)} < m = {m}; "
            "the minimiser is not unique; pass ridge > 0"
        )
    if is_concrete(ridge) and not (np.isfinite(ridge) and ridge >= 0):
        raise InputError(f"ridge: expected a finite value >= 0, got {ridge}")
    R, Q, finite = _solve_exact_data_jit(*(arrays[k_] for k_ in DATA_NAMES), ridge,
                                         refine=refine)
    if is_concrete(finite) and not bool(finite):
        raise InputError(
            "G = K_c K_c^H (+ ridge I) is numerically singular (its Cholesky failed); "
            "pass a larger ridge"
        )
    return R, Q


# --------------------------------------------------------------------------------------------
# Synthetic data with a planted H
# --------------------------------------------------------------------------------------------


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
