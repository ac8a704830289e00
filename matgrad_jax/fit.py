"""Fit the seed-1 model with any method, every one returning a :class:`SolveResult`.

``method``: ``exact`` (Cholesky + Woodbury), ``alternating`` (the seed's block-coordinate
descent with exact line search, preconditioned by ``Re G`` unless ``precondition=False``),
``cg`` (conjugate gradient on the normal equations, preconditioned by ``I ⊗ G⁻¹`` unless
``precondition=False``), ``lbfgs`` and ``adam`` (optax).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .problems.channel import Problem, solve_exact_stats, structured_value_and_grad
from .solvers import adam, alternating_minimize, conjugate_gradient, lbfgs
from .solvers.result import EXACT, SolveResult, empty_history, record, tree_norm

METHODS = ("exact", "alternating", "cg", "lbfgs", "adam")


def full_preconditioner(problem: Problem):
    """``(R, Q) -> [R Q] G_big⁻¹``: the exact inverse of the block term's Hessian (``I ⊗ G⁻¹``)."""
    chol = jnp.linalg.cholesky(problem.stats.G)
    m = problem.shape[1]

    def apply(blocks):
        X = jnp.concatenate(blocks, axis=1)
        Y = jax.scipy.linalg.cho_solve((chol, True), X.T).T
        return (Y[:, :m], Y[:, m:])

    return apply


def _exact_result(problem: Problem, refine: int, max_iters: int) -> SolveResult:
    R, Q = solve_exact_stats(problem.stats, refine=refine)
    value, g = structured_value_and_grad(problem.stats, R, Q)
    hist = record(empty_history(max_iters, value.dtype), 0, value, tree_norm(g))
    return SolveResult((R, Q), value, jnp.zeros((), jnp.int32), jnp.array(True),
                       jnp.array(EXACT), tree_norm(g), hist)


@partial(jax.jit, static_argnames=("method", "max_iters", "precondition", "refine",
                                   "learning_rate"))
def fit_problem(problem: Problem, init, *, method: str = "alternating", max_iters: int = 1000,
                tol=None, gtol=None, precondition: bool = True, refine: int = 1,
                learning_rate: float = 1e-2) -> SolveResult:
    """Minimise a :class:`Problem`'s objective from ``init = (R0, Q0)`` (jitted; vmap-able)."""
    if method == "exact":
        return _exact_result(problem, refine, max_iters)
    common = dict(grad=problem.grad_fn, max_iters=max_iters, tol=tol, gtol=gtol)
    if method == "alternating":
        precs = problem.block_preconditioners() if precondition else None
        return alternating_minimize(problem.fun, init, preconditioners=precs, **common)
    if method == "cg":
        prec = full_preconditioner(problem) if precondition else None
        return conjugate_gradient(problem.fun, init, preconditioner=prec, **common)
    if method == "lbfgs":
        return lbfgs(problem.fun, init, **common)
    if method == "adam":
        return adam(problem.fun, init, learning_rate=learning_rate, **common)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def fit(problem: Problem, *, method: str = "alternating", init=None, max_iters: int = 1000,
        tol=None, gtol=None, **options) -> SolveResult:
    """Check the method and the start, then :func:`fit_problem` (zeros when ``init`` is None)."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if init is None:
        z = jnp.zeros(problem.shape, problem.dtype)
        init = (z, z)
    else:
        problem._check_point(*init)
        init = tuple(jnp.asarray(x, problem.dtype) for x in init)
    return fit_problem(problem, init, method=method, max_iters=max_iters, tol=tol, gtol=gtol,
                       **options)
