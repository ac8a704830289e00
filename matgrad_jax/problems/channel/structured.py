"""The structured value and gradient from the statistics (one complex product ``HG`` per
gradient, whatever ``k`` and ``q``), their layout variants for the benchmark, and the structured
forms from raw data; :data:`GRADIENTS` names every hand gradient of the literal objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from ..._typing import ArrayLike
from ...xla_cpu import materialize, sum_rows
from .literal import check_args, grad_blocks, grad_corrected, grad_kron_identity, grad_published
from .statistics import ChannelStats, channel_statistics, times_g


def _residuals(stats: ChannelStats, R, Q):
    """``r = diag(RᵀA + QᵀB) - diag Z`` and ``(Re, Im)`` of ``HG - Y``."""
    m = R.shape[-1]
    # row sums and stored values through xla_cpu (see docs/performance/xla-cpu.md)
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
