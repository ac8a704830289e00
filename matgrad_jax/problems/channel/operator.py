r"""The seed-1 normal operator as a named thing.

Half the Hessian of the objective in :math:`H = R + iQ`:

.. math::

    L(H) = HG + C\,\mathrm{Diag}(\mathrm{Re}\langle c_j, h_j\rangle),\qquad C = A + iB,

a Kronecker-structured product by ``G = K_cK_c^H`` (+ ridge I) plus ``m`` rank-one column terms.
:class:`NormalOperator` holds its product (:meth:`~NormalOperator.mv`), its inverse by Woodbury
(:meth:`~NormalOperator.woodbury`, :meth:`~NormalOperator.solve`), the exact inverse of each
block's Hessian (:meth:`~NormalOperator.block_inverses`) and of the block term's
(:meth:`~NormalOperator.g_inverse`); :func:`solve_exact_stats` is the exact minimiser it gives.
Everything works on the real and imaginary parts (XLA's complex GEMM on CPU runs at about half
the real rate), by :func:`~matgrad_jax.problems.channel.times_g`.

Where a quantity is read by many entries of a result it is stored under ``vmap``
(:func:`~matgrad_jax.xla_cpu.materialize`); why, and what it saved, is in
``docs/performance/xla-cpu.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from ...linalg import hpd_inverse, hpd_solve
from ...precision import fit_precision
from ...xla_cpu import materialize, sum_rows
from .statistics import ChannelStats, times_g


class Woodbury(NamedTuple):
    r"""The factors of :meth:`NormalOperator.solve`: :math:`G^{-1}` as ``(Re, Im, Re + Im)``
    (the operands of :func:`times_g`) and the capacitance
    :math:`I + \mathrm{Re}((C^HC)\odot G^{-T})` (``m x m``, symmetric positive definite)."""

    ginv: tuple[Array, Array, Array]
    capacitance: Array


class NormalOperator(NamedTuple):
    r""":math:`L(H) = HG + C\,\mathrm{Diag}(\mathrm{Re}\langle c_j, h_j\rangle)` from the
    statistics (a pytree: it passes through ``jit`` and ``vmap``). The gradient of the seed-1
    objective is :math:`2(L(H) - \text{rhs})`, its Hessian :math:`2L`."""

    stats: ChannelStats

    def g_product(self, Xr: Array, Xi: Array) -> tuple[Array, Array]:
        """``(Re, Im)`` of :math:`(X_r + iX_i)G` (three real products, :func:`times_g`)."""
        s = self.stats
        return times_g(Xr, Xi, s.Gr, s.Gi, s.Gs)

    def mv(self, Hr: Array, Hi: Array) -> tuple[Array, Array]:
        """``(Re, Im)`` of :math:`L(H_r + iH_i)`."""
        A, B = self.stats.A, self.stats.B
        (s,) = materialize(sum_rows(A * Hr + B * Hi)[None, :])
        Lr, Li = self.g_product(Hr, Hi)
        return Lr + A * s, Li + B * s

    def rhs(self) -> tuple[Array, Array]:
        r"""``(Re, Im)`` of the normal equations' right-hand side
        :math:`Y + C\,\mathrm{Diag}(\mathrm{diag}\,Z)`: the minimiser solves :math:`L(H) = `
        this."""
        s = self.stats
        m = s.A.shape[-1]
        z = s.z[None, :]
        return s.Y[:, :m] + s.A * z, s.Y[:, m:] + s.B * z

    def woodbury(self) -> Woodbury:
        r"""``G⁻¹`` by :func:`~matgrad_jax.linalg.hpd_inverse` and the capacitance
        :math:`I + \mathrm{Re}((C^HC)\odot G^{-T})`.

        The capacitance is symmetric positive definite with eigenvalues >= 1: the Hadamard
        product of the Hermitian PSD :math:`C^HC` and :math:`G^{-T} = \overline{G^{-1}}` is
        Hermitian PSD (Schur), and so is its real part. :math:`C^HC` is formed in real
        arithmetic, :math:`A^TA + B^TB + i(A^TB - B^TA)`, from the statistics' Gram products.
        """
        s = self.stats
        m = s.A.shape[-1]
        Ginv = hpd_inverse(jax.lax.complex(s.Gr, s.Gi))
        Vr, Vi = Ginv.real, Ginv.imag
        CCr, CCi = s.AtA + s.BtB, s.AtB - s.AtB.T
        cap = jnp.eye(m, dtype=s.A.dtype) + CCr * Vr.T - CCi * Vi.T
        return Woodbury((Vr, Vi, Vr + Vi), 0.5 * (cap + cap.T))

    def solve(self, rr: Array, ri: Array, factors: Woodbury | None = None
              ) -> tuple[Array, Array]:
        r"""``(Re H, Im H)`` with :math:`L(H) = r_r + ir_i`.

        :math:`X_0 = \text{rhs}\,G^{-1}`, :math:`t_j = \mathrm{Re}\langle c_j, x_{0,j}\rangle`,
        :math:`s = \mathrm{Cap}^{-1}t`, :math:`H = (\text{rhs} - C\,\mathrm{Diag}(s))G^{-1}`: two
        products by :math:`G^{-1}` and one ``m x m`` solve
        (:func:`~matgrad_jax.linalg.hpd_solve`). ``factors``: :meth:`woodbury`, if already
        computed.
        """
        V, cap = self.woodbury() if factors is None else factors
        A, B = self.stats.A, self.stats.B
        X0r, X0i = times_g(rr, ri, *V)
        t = sum_rows(A * X0r + B * X0i)
        (s,) = materialize(hpd_solve(cap, t)[None, :])
        return materialize(*times_g(*materialize(rr - A * s, ri - B * s), *V))

    def g_inverse(self) -> Callable[[tuple[Array, Array]], tuple[Array, Array]]:
        """``(Xr, Xi) -> (Re, Im)`` of :math:`(X_r + iX_i)G^{-1}`: the exact inverse of the block
        term's Hessian (halved), one complex product."""
        s = self.stats
        Ginv = hpd_inverse(jax.lax.complex(s.Gr, s.Gi))
        V = (Ginv.real, Ginv.imag, Ginv.real + Ginv.imag)
        return lambda blocks: times_g(*blocks, *V)

    def block_inverses(self) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
        r"""``g -> g L_R⁻¹`` and ``g -> g L_Q⁻¹``: the exact inverses of each block's Hessian
        (halved).

        With Q fixed the objective is a quadratic in R with Hessian :math:`2L_R`,
        :math:`L_R(X) = X\,\mathrm{Re}\,G + A\,\mathrm{Diag}(a_j^Tx_j)`: the block term plus the
        Hadamard term's ``m`` column-wise rank-one pieces (B for Q). Woodbury inverts it with
        :math:`(\mathrm{Re}\,G)^{-1}` and the ``m x m`` capacitance
        :math:`I + (A^TA)\odot(\mathrm{Re}\,G)^{-1}`; one application costs two ``n x m x m``
        products.
        """
        s = self.stats
        Ginv = hpd_inverse(s.Gr)  # Re G is symmetric positive definite
        m = Ginv.shape[-1]

        def make(C, CtC):
            cap = jnp.eye(m, dtype=C.dtype) + CtC * Ginv
            capinv = hpd_inverse(0.5 * (cap + cap.T))

            def apply(g):
                t = jnp.sum(C * (g @ Ginv), axis=0)
                return (g - C * (t @ capinv)[None, :]) @ Ginv

            return apply

        return make(s.A, s.AtA), make(s.B, s.BtB)


def normal_operator(stats: ChannelStats, H: Array) -> Array:
    r""":math:`L(H)` for complex ``H`` (see :class:`NormalOperator`)."""
    return jax.lax.complex(*NormalOperator(stats).mv(H.real, H.imag))


def solve_exact_stats(stats: ChannelStats, refine: int = 0) -> tuple[Array, Array]:
    """The exact minimiser from precomputed statistics (jit/vmap-able): :math:`L(H) = ` the
    right-hand side, solved by Woodbury, then ``refine`` steps of iterative refinement (see
    :func:`~matgrad_jax.problems.channel.solve_exact`)."""
    op = NormalOperator(stats)
    rr, ri = op.rhs()
    factors = op.woodbury()
    Hr, Hi = op.solve(rr, ri, factors)
    for _ in range(refine):
        Lr, Li = op.mv(Hr, Hi)
        dr, di = op.solve(Lr - rr, Li - ri, factors)
        Hr, Hi = Hr - dr, Hi - di
    return Hr, Hi


_solve_exact_jit = jax.jit(fit_precision(solve_exact_stats), static_argnames="refine")
