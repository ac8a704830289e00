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

Laid out by concern:

- :mod:`~matgrad_jax.problems.channel.literal`: the objective and the gradients as published;
- :mod:`~matgrad_jax.problems.channel.statistics`: ``G``, ``Y`` and the product :func:`times_g`;
- :mod:`~matgrad_jax.problems.channel.structured`: the fast value and gradient;
- :mod:`~matgrad_jax.problems.channel.operator`: the normal operator and its Woodbury solve;
- :mod:`~matgrad_jax.problems.channel.problem`: :class:`Problem` and :func:`solve_exact`;
- :mod:`~matgrad_jax.problems.channel.data`: synthetic data.

Every name is importable from here too (``channel.grad_published``, ``channel.Problem``).
"""

from __future__ import annotations

from .data import example_args, make_data
from .literal import (
    ARG_NAMES,
    ARG_SHAPES,
    DATA_NAMES,
    DATA_SHAPES,
    I2,
    SEED_FILE,
    check_args,
    grad_blocks,
    grad_corrected,
    grad_kron_identity,
    grad_published,
    objective,
    seed_matrices,
)
from .operator import (
    NormalOperator,
    Woodbury,
    normal_operator,
    solve_exact_stats,
)
from .problem import (
    Problem,
    check_rank,
    numerical_problem,
    rank_problem,
    solve_exact,
    validate_data,
)
from .statistics import (
    ChannelStats,
    channel_statistics,
    kernel_products,
    rereference,
    statistics_from_halves,
    times_g,
    with_reference,
)
from .structured import (
    GRADIENTS,
    grad_structured,
    objective_structured,
    structured_grad_complex,
    structured_value_and_grad,
    structured_value_and_grad_4m,
    value_and_grad_self_referenced,
)

__all__ = [
    "ARG_NAMES",
    "ARG_SHAPES",
    "DATA_NAMES",
    "DATA_SHAPES",
    "GRADIENTS",
    "I2",
    "SEED_FILE",
    "channel_statistics",
    "ChannelStats",
    "check_args",
    "check_rank",
    "example_args",
    "grad_blocks",
    "grad_corrected",
    "grad_kron_identity",
    "grad_published",
    "grad_structured",
    "kernel_products",
    "make_data",
    "normal_operator",
    "NormalOperator",
    "numerical_problem",
    "objective",
    "objective_structured",
    "Problem",
    "rank_problem",
    "rereference",
    "seed_matrices",
    "solve_exact",
    "solve_exact_stats",
    "statistics_from_halves",
    "structured_grad_complex",
    "structured_value_and_grad",
    "structured_value_and_grad_4m",
    "times_g",
    "validate_data",
    "value_and_grad_self_referenced",
    "with_reference",
    "Woodbury",
]
