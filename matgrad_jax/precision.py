"""The precision of matrix products in the fitting code.

On NVIDIA GPUs XLA runs float32 matrix products on TF32 tensor cores by default (10-bit
mantissas, relative errors near 1e-3; TPUs use bfloat16 passes likewise). For a gradient that is
one product among many that is often fine, but the statistics, the exact solve and the solvers'
iterations are not: in the GPU solver benchmark (benchmarks/results/solvers_gpu_float32.json,
measured before this module) no float32 method got below a relative gap of 7e-3, and the exact
solve of the ill-conditioned case landed at a gap of 24. So the fitting code (statistics,
:class:`~matgrad_jax.problems.channel.Problem`'s methods, the exact solve, every solver built by
:func:`~matgrad_jax.fit.fit_stepper`) traces its products under
``jax.default_matmul_precision(FIT_PRECISION)``: true float32 products. On CPUs it changes
nothing. The low-level kernels (``channel.structured_value_and_grad`` and the like) follow the
caller's setting, and ``fit(..., matmul_precision=None)`` does too, for those who want TF32 speed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import jax

from ._checks import InputError

FIT_PRECISION = "highest"
PRECISIONS = ("default", "high", "highest")
"""The portable names; ``None`` keeps the caller's setting."""


def products(precision: str | None = FIT_PRECISION) -> Iterator[None]:
    """A context in which traced matrix products take ``precision`` (None: the caller's).

    Raises :class:`~matgrad_jax._checks.InputError` naming ``matmul_precision`` for a value
    ``jax.default_matmul_precision`` does not know."""
    if precision is None:
        return nullcontext()
    try:
        with jax.default_matmul_precision(precision):
            pass
    except ValueError:
        raise InputError(f"matmul_precision: expected None or one of {PRECISIONS} (or another "
                         f"name jax.default_matmul_precision takes), got {precision!r}") from None
    return jax.default_matmul_precision(precision)


def traced_at(precision: str | None, fn: Callable) -> Callable:
    """``fn`` traced with its matrix products at ``precision`` (None: ``fn`` itself)."""
    if precision is None:
        return fn
    products(precision)  # checked once, here, not at every trace

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)

    return wrapped


def fit_precision(fn: Callable) -> Callable:
    """Decorator: ``fn`` traced at :data:`FIT_PRECISION`."""
    return traced_at(FIT_PRECISION, fn)
