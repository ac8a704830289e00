"""Seed 1 as published: the literal objective, the seed's intermediate matrices and the
hand-derived gradients transcribed from ``shared/seeds/000_59df1aa91f78fd77.txt`` (the
published one with its sign error kept; the audit reports it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ..._checks import InputError, check_shapes
from ..._typing import ArrayLike
from ...identities import J2, kron_identity_adjoint, kron_j2_adjoint

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
