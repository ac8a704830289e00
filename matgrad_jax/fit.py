"""Fit the seed-1 model with any method, every one returning a :class:`SolveResult`.

``method``: ``exact`` (G⁻¹ + Woodbury), ``alternating`` (the seed's block-coordinate
descent with exact line search, preconditioned by each block's exact Hessian inverse unless
``precondition=False``),
``cg`` (conjugate gradient on the normal equations, preconditioned by ``I ⊗ G⁻¹`` unless
``precondition=False``), ``lbfgs`` and ``adam`` (optax).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ._checks import InputError, check_solver_options, start_pair, unknown_options
from .precision import FIT_PRECISION, products, traced_at
from .problems.channel import (
    Problem,
    solve_exact_stats,
    value_and_grad_self_referenced,
)
from .solvers.alternating import alternating_stepper
from .solvers.baselines import adam_stepper, cg_stepper, lbfgs_stepper
from .solvers.result import EXACT, SolveResult, build_result, empty_history, record, tree_norm
from .solvers.state import ExactState
from .solvers.stepper import Stepper, advance, drive, run

METHODS = ("exact", "alternating", "cg", "lbfgs", "adam")
WITHOUT_REFERENCE = ("exact", "cg")
"""Methods that take no decision on values and so need no reference point in the statistics
(``channel.Problem(..., reference=False)`` is enough for them)."""


def full_preconditioner(problem: Problem):
    """``(R, Q) -> [R Q] G_big⁻¹``: the exact inverse of the block term's Hessian (``I ⊗ G⁻¹``),
    applied as the complex product ``H G⁻¹``
    (:meth:`~matgrad_jax.problems.channel.operator.NormalOperator.g_inverse`)."""
    return problem.operator.g_inverse()


def _exact_stepper(problem: Problem, refine: int, max_iters: int) -> Stepper:
    """The exact solve as a stepper whose first state has already stopped. Its value and
    gradient use the answer as the reference point
    (:func:`~matgrad_jax.problems.channel.value_and_grad_self_referenced`), which halved a
    full-result batch's time (``docs/performance/xla-cpu.md``)."""
    R, Q = solve_exact_stats(problem.stats, refine=refine)
    value, g = value_and_grad_self_referenced(problem.stats, R, Q)
    gnorm = tree_norm(g)
    hist = record(empty_history(max_iters, value.dtype), 0, value, gnorm)
    state = ExactState(x=(R, Q), f=value, gnorm0=gnorm, k=jnp.zeros((), jnp.int32),
                       code=jnp.array(EXACT, jnp.int32), history=hist)

    def finish(s):
        return build_result(s, converged=jnp.array(True), grad_norm=s.history.grad_norms[0])

    return Stepper(state, lambda s: s, finish)


def fit_stepper(problem: Problem, init, *, method: str = "alternating", max_iters: int = 1000,
                tol=None, gtol=None, precondition: bool = True, refine: int | None = None,
                learning_rate: float = 1e-2, matmul_precision: str | None = FIT_PRECISION
                ) -> Stepper:
    """The solver for ``method`` as a :class:`~matgrad_jax.solvers.stepper.Stepper`.

    ``refine``: iterative-refinement steps of the exact solve; default 1 below float64 (it
    recovers the accuracy ``cond(G)·eps`` costs in float32), 0 in float64.
    ``matmul_precision``: the precision its matrix products are traced at (its first state,
    ``step`` and ``finish`` alike); ``"highest"`` by default, so float32 stays float32 on GPUs
    and TPUs (see :mod:`matgrad_jax.precision`); None: the caller's setting (TF32 on NVIDIA
    GPUs: faster, but float32 fits then stall near a relative gap of 1e-2).
    """
    with products(matmul_precision):
        st = _stepper(problem, init, method, max_iters, tol, gtol, precondition, refine,
                      learning_rate)
    return Stepper(st.state, traced_at(matmul_precision, st.step),
                   traced_at(matmul_precision, st.finish))


def _stepper(problem, init, method, max_iters, tol, gtol, precondition, refine,
             learning_rate) -> Stepper:
    if method == "exact":
        if refine is None:
            refine = 0 if jnp.finfo(problem.dtype).bits >= 64 else 1
        return _exact_stepper(problem, refine, max_iters)
    common = dict(grad=problem.grad_fn, max_iters=max_iters, tol=tol, gtol=gtol)
    if method == "alternating":
        precs = problem.block_preconditioners() if precondition else None
        return alternating_stepper(problem.fun, init, preconditioners=precs, **common)
    if method == "cg":
        prec = full_preconditioner(problem) if precondition else None
        # CG takes no decision on values (its value recursion is exact in differences), so its
        # two evaluations need no stored reference point: where statistics and solve are one
        # program, XLA drops the statistics' Krylov loop (see value_and_grad_self_referenced).
        return cg_stepper(lambda R, Q: value_and_grad_self_referenced(problem.stats, R, Q)[0],
                          init, preconditioner=prec, hvp=problem.hvp, **common)
    if method == "lbfgs":
        return lbfgs_stepper(problem.fun, init, **common)
    if method == "adam":
        return adam_stepper(problem.fun, init, learning_rate=learning_rate, **common)
    raise InputError(f"method: expected one of {METHODS}, got {method!r}")


_STATIC = ("method", "max_iters", "precondition", "refine", "learning_rate", "matmul_precision")


@partial(jax.jit, static_argnames=_STATIC)
def fit_problem(problem: Problem, init, **options) -> SolveResult:
    """Minimise a :class:`Problem`'s objective from ``init = (R0, Q0)`` (jitted; vmap-able).

    Options as :func:`fit_stepper`: ``method``, ``max_iters``, ``tol``, ``gtol``,
    ``precondition``, ``refine``, ``learning_rate``, ``matmul_precision``.
    """
    return run(fit_stepper(problem, init, **options))


@partial(jax.jit, static_argnames=_STATIC)
def fit_start(problem: Problem, init, **options) -> Any:
    """The solver's first state (for :func:`fit_advance`); a pytree of arrays."""
    return fit_stepper(problem, init, **options).state


@partial(jax.jit, static_argnames=_STATIC)
def fit_advance(problem: Problem, state: Any, stop_at, **options) -> Any:
    """Iterate from ``state`` until a stopping rule fires or iteration ``stop_at``.

    The same ``step`` as :func:`fit_problem`, so chunks of any size (and a run resumed from a
    saved state) follow the iterates of one uninterrupted run.
    """
    return advance(fit_stepper(problem, state.x, **options).step, state, stop_at)


@partial(jax.jit, static_argnames=_STATIC)
def fit_finish(problem: Problem, state: Any, **options) -> SolveResult:
    return fit_stepper(problem, state.x, **options).finish(state)


_CHECKED = ("max_iters", "tol", "gtol", "learning_rate", "refine")
FIT_OPTIONS = ("precondition", "refine", "learning_rate", "matmul_precision")
"""The options :func:`fit` passes on besides ``method``, ``init``, ``max_iters``, ``tol`` and
``gtol``."""


def check_options(options: dict) -> None:
    """The scalar options of :func:`fit_stepper` checked before anything is traced (a bad
    ``max_iters`` or ``tol`` would otherwise fail deep inside XLA or run silently wrong)."""
    check_solver_options(**{k: options[k] for k in _CHECKED if k in options})
    if not isinstance(options.get("precondition", True), bool):
        raise InputError(f"precondition: expected True or False, got {options['precondition']!r}")


def _start(problem: Problem, init):
    """``init`` checked against the problem (a pair of real, finite ``(n, m)`` arrays) and cast
    to its dtype, or zeros."""
    if not isinstance(problem, Problem):
        raise InputError("problem: expected a channel.Problem (Problem(A, B, Z, P, S, W)), got "
                         f"{type(problem).__name__}")
    if getattr(problem, "singular", None):
        raise InputError(problem.singular)
    if init is None:
        z = jnp.zeros(problem.shape, problem.dtype)
        return (z, z)
    return start_pair(init, problem.shape, problem.dtype, dims="(n, m)")


def fit(problem: Any, *, method: str = "alternating", init: Any = None, max_iters: int = 1000,
        tol: float | None = None, gtol: float | None = None, data: Any = None,
        **options: Any) -> SolveResult:
    """Fit seed 1's ``problem`` (a :class:`~matgrad_jax.problems.channel.Problem`; zeros when
    ``init`` is None), or a user's model to one data set.

    For a model — a :class:`~matgrad_jax.Model`, a :class:`~matgrad_jax.Derivation` or a
    registered derivation's name — ``data`` is a dict of its data arguments by name and
    ``init`` its starting parameters (a dict by name, or a tuple in argnums order); the fit is
    :meth:`Model.fit <matgrad_jax.Model.fit>` (``minimize`` with the hand gradient audited at
    ``init``), and ``method`` is one of :func:`~matgrad_jax.minimize`'s.
    """
    if not isinstance(problem, Problem):
        from .model import Model, as_model
        from .registry import Derivation

        if isinstance(problem, (str, Model, Derivation)):
            return as_model(problem).fit(data, init, method=method, max_iters=max_iters,
                                         tol=tol, gtol=gtol, **options)
    elif data is not None:
        raise InputError("data: for a model; a channel.Problem holds its data")
    if method not in METHODS:
        raise InputError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    unknown_options("fit", options, FIT_OPTIONS + ("method", "init", "max_iters", "tol", "gtol"))
    check_options(dict(options, max_iters=max_iters, tol=tol, gtol=gtol))
    return fit_problem(problem, _start(problem, init), method=method, max_iters=max_iters,
                       tol=tol, gtol=gtol, **options)


def fit_chunked(problem: Problem, init=None, *, state: Any = None,
                checkpoint_every: int | None = None, on_chunk=None,
                target_seconds: float = 0.25, **options) -> SolveResult:
    """:func:`fit` driven from the host in chunks, for progress reports and checkpoints.

    Each chunk is one call of the jitted :func:`fit_advance` (no host sync inside it). With
    ``checkpoint_every=N`` the chunks end at multiples of N; otherwise their length adapts so a
    chunk takes about ``target_seconds``, which bounds how often the host is called.
    ``on_chunk(state, final)`` is called after every chunk (``final`` once the solver stopped),
    e.g. to draw a progress bar or save ``state`` (a pytree of arrays; pass it back as ``state``
    to resume). The iterates equal those of one uninterrupted :func:`fit_problem`.
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise InputError(f"checkpoint_every: expected a positive integer, got {checkpoint_every}")
    unknown_options("fit_chunked", options, FIT_OPTIONS + ("method", "max_iters", "tol", "gtol"))
    check_options(options)
    if getattr(problem, "singular", None):
        raise InputError(problem.singular)
    if state is None:
        state = fit_start(problem, _start(problem, init), **options)
    state = drive(lambda st, stop: fit_advance(problem, st, stop, **options), state,
                  checkpoint_every=checkpoint_every, on_chunk=on_chunk,
                  target_seconds=target_seconds)
    return fit_finish(problem, state, **options)
