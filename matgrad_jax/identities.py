r"""Reusable matrix-calculus identities, each the adjoint of a structured linear map.

All use the Frobenius inner product :math:`A:B = \operatorname{Tr}(A^T B)`.

* :func:`kron_identity_adjoint` — seed 1 (``000_59df1aa91f78fd77.txt``, the SVD-free answer):
  :math:`\partial/\partial X\,[Y:(I_p\otimes X)] = \sum_k E_k^T Y F_k` with
  :math:`E_k = e_k\otimes I_m`, :math:`F_k = e_k\otimes I_n`, written literally with the
  selection matrices.
* :func:`kron_j2_adjoint` — its :math:`J_2\otimes X` companion (not in the seed; derived the same
  way): :math:`\partial/\partial X\,[Y:(J_2\otimes X)] = \sum_{jk} (J_2)_{jk} E_j^T Y F_k
  = Y_{21} - Y_{12}`.
* :func:`kron_block_adjoint` — the general rule for any small left factor :math:`L`:
  :math:`\partial/\partial X\,[Y:(L\otimes X)] = \sum_{jk} L_{jk} Y_{jk}` (block sums, no SVD).
* :func:`hadamard_identity_adjoint` — :math:`\partial/\partial X\,[Y:(I\odot X)] = I\odot Y`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array

from ._typing import DTypeLike

J2 = np.array([[0.0, -1.0], [1.0, 0.0]])  # NumPy: importing must not start a backend


def selection_blocks(p: int, m: int, dtype: DTypeLike = jnp.float32) -> Array:
    r"""The :math:`p` matrices :math:`E_k = e_k \otimes I_m \in \mathbb R^{pm\times m}`, stacked."""
    eye_p = jnp.eye(p, dtype=dtype)
    eye_m = jnp.eye(m, dtype=dtype)
    return jnp.stack([jnp.kron(eye_p[:, k : k + 1], eye_m) for k in range(p)])


def kron_identity_adjoint(Y: Array, p: int) -> Array:
    r"""Gradient of :math:`Y:(I_p\otimes X)` w.r.t. :math:`X`, as :math:`\sum_k E_k^T Y F_k`.

    Args:
      Y: ``(p*m, p*n)`` matrix.
      p: the size of the identity factor.

    Returns:
      The ``(m, n)`` gradient. Written literally with the selection matrices of the seed; it costs
      :math:`O(p^2 m n (m+n))`, which is fine for the audit; :func:`kron_block_adjoint` is the fast
      form.
    """
    pm, pn = Y.shape
    E = selection_blocks(p, pm // p, Y.dtype)
    F = selection_blocks(p, pn // p, Y.dtype)
    return jnp.einsum("kam,ab,kbn->mn", E, Y, F)


def kron_j2_adjoint(Y: Array) -> Array:
    r"""Gradient of :math:`Y:(J_2\otimes X)` w.r.t. :math:`X`: :math:`\sum_{jk}(J_2)_{jk}E_j^TYF_k`.

    With the selection matrices of :func:`kron_identity_adjoint`; equals :math:`Y_{21}-Y_{12}`.
    """
    pm, pn = Y.shape
    E = selection_blocks(2, pm // 2, Y.dtype)
    F = selection_blocks(2, pn // 2, Y.dtype)
    return jnp.einsum("jk,jam,ab,kbn->mn", J2.astype(Y.dtype), E, Y, F)


def kron_block_adjoint(Y: Array, L: Array) -> Array:
    r"""Gradient of :math:`Y:(L\otimes X)` w.r.t. :math:`X` for a small ``(p, p')`` matrix ``L``.

    :math:`\sum_{jk} L_{jk}\,Y_{jk}` where :math:`Y_{jk}` is block ``(j, k)`` of ``Y``; one pass
    over ``Y``, no SVD and no selection matrices.
    """
    p, pp = L.shape
    pm, pn = Y.shape
    blocks = Y.reshape(p, pm // p, pp, pn // pp)
    return jnp.einsum("jk,jakb->ab", L.astype(Y.dtype), blocks)


def hadamard_identity_adjoint(Y: Array) -> Array:
    r"""Gradient of :math:`Y:(I\odot X)` w.r.t. :math:`X`: :math:`I\odot Y` (the diagonal of Y)."""
    return jnp.diag(jnp.diagonal(Y))
