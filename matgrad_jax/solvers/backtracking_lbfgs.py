"""L-BFGS whose loop step is one evaluation: the line search is part of the state.

A step evaluates the objective and the (hand) gradient at one trial point ``x + α d``. If the
Armijo condition ``f(x + α d) ≤ f(x) + c₁ α ⟨∇f, d⟩`` holds the point is accepted: the pair
``(s, y) = (α d, ∇f(x + α d) − ∇f(x))`` enters the memory when ``⟨s, y⟩ > 0`` (the curvature
condition a Wolfe search would guarantee, so the inverse-Hessian model stays positive definite)
and the two-loop recursion gives the next direction, tried first at ``α = 1``. Otherwise ``α``
shrinks to the minimiser of the quadratic through ``f(x)``, ``⟨∇f, d⟩`` and ``f(x + α d)``,
kept within ``[0.1 α, 0.5 α]`` (backtracking).

There is no loop inside the loop. Under ``vmap`` a nested line search (optax's zoom) runs every
lane's search until the slowest lane's ends, at every iteration, evaluating all lanes each
time; here a lane that accepts its step moves on while another backtracks, so a batch costs the
most evaluations any one lane needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._checks import check_solver_options
from .._typing import ArrayLike
from .result import (
    DECREASE,
    RUNNING,
    STALLED,
    SolveResult,
    build_result,
    default_tolerances,
    empty_history,
    entry,
    expected_bound,
    record,
    stopping_code,
)
from .state import LBFGSState
from .stepper import Stepper, run

ARMIJO = 1e-4
"""``c₁`` of the sufficient-decrease (Armijo) condition."""


def lbfgs_backtracking(fun: Callable, init: ArrayLike | Sequence[ArrayLike], *,
                       grad: Callable | None = None, max_iters: int = 1000,
                       tol: float | None = None, gtol: float | None = None,
                       memory_size: int = 10, max_trials: int = 30) -> SolveResult:
    """L-BFGS with a backtracking (Armijo) line search, one evaluation of ``fun`` and ``grad``
    per loop step (see the module's text). ``iterations`` counts accepted steps;
    ``max_trials`` bounds the trial points of one step (then it stops: *no descent possible*,
    or converged by relative decrease where the step's predicted decrease is below ``tol``).
    An accepted step whose relative decrease is below ``tol`` ends the run only where the next
    step's predicted decrease ``−⟨∇f, d⟩`` is below ``tol · |f|`` too (or below what ``f``'s
    rounding resolves): on an ill-conditioned objective one short step is not the end."""
    return run(lbfgs_backtracking_stepper(fun, init, grad=grad, max_iters=max_iters, tol=tol,
                                          gtol=gtol, memory_size=memory_size,
                                          max_trials=max_trials))


def _dot(a, b):
    """``⟨a, b⟩`` as a product and a sum (XLA fuses it; a batched ``dot`` of vectors under
    ``vmap`` is a library call per lane on CPU)."""
    return jnp.sum(a * b)


def _two_loop(q, S, Y, rho, gamma, head):
    """``H q`` for the L-BFGS inverse Hessian of the pairs in the circular buffers ``S``, ``Y``
    (the newest at ``head − 1``; an empty slot has ``rho = 0`` and contributes nothing) and
    ``H₀ = γ I``."""
    m = S.shape[0]
    order = [(head - 1 - j) % m for j in range(m)]  # newest first
    alphas = []
    for i in order:
        a = rho[i] * _dot(S[i], q)
        q = q - a * Y[i]
        alphas.append(a)
    r = gamma * q
    for i, a in zip(reversed(order), reversed(alphas)):
        b = rho[i] * _dot(Y[i], r)
        r = r + (a - b) * S[i]
    return r


def lbfgs_backtracking_stepper(fun, init, *, grad=None, max_iters=1000, tol=None, gtol=None,
                               memory_size=10, max_trials=30) -> Stepper:
    """:func:`lbfgs_backtracking` as a :class:`Stepper`."""
    check_solver_options(max_iters=max_iters, tol=tol, gtol=gtol, memory_size=memory_size)
    if not isinstance(max_trials, int) or isinstance(max_trials, bool) or max_trials < 1:
        from .._checks import InputError

        raise InputError(f"max_trials: expected a positive integer, got {max_trials!r}")
    x0 = tuple(init)
    flat0, unravel = ravel_pytree(x0)
    dtype = flat0.dtype
    value = lambda v: fun(*unravel(v))
    if grad is None:
        gradient = lambda v: ravel_pytree(jax.grad(lambda *b: fun(*b), range(len(x0)))(
            *unravel(v)))[0]
    else:
        gradient = lambda v: ravel_pytree(tuple(grad(*unravel(v))))[0].astype(dtype)
    real = jnp.finfo(dtype).dtype
    tol, gtol = default_tolerances(real, tol, gtol)
    eps, tiny = jnp.finfo(real).eps, jnp.finfo(real).tiny
    m, n = memory_size, flat0.size

    f0, g0 = value(flat0), gradient(flat0)
    gnorm0 = jnp.linalg.norm(g0)
    gamma0 = jnp.minimum(1.0, 1.0 / jnp.maximum(gnorm0, tiny)).astype(real)
    d0 = -gamma0 * g0
    s0 = LBFGSState(
        x=x0, f=f0, g=g0, gnorm0=gnorm0, k=jnp.zeros((), jnp.int32),
        code=stopping_code(0, jnp.inf, f0, gnorm0, gnorm0, tol, gtol, max_iters),
        history=record(empty_history(max_iters, real), 0, f0, gnorm0),
        d=d0, alpha=jnp.ones((), real), gd=_dot(g0, d0),
        S=jnp.zeros((m, n), dtype), Y=jnp.zeros((m, n), dtype), rho=jnp.zeros((m,), real),
        gamma=gamma0, trials=jnp.zeros((), jnp.int32), head=jnp.zeros((), jnp.int32))

    def step(s):
        x, _ = ravel_pytree(s.x)
        xt = x + s.alpha * s.d
        ft, gt = value(xt), gradient(xt)
        ok = jnp.isfinite(ft) & (ft <= s.f + ARMIJO * s.alpha * s.gd)

        # accepted: the pair enters the memory when <s, y> > 0; the next direction
        sv, yv = s.alpha * s.d, gt - s.g
        sy, yy = _dot(sv, yv), _dot(yv, yv)
        keep = ok & (sy > eps * jnp.sqrt(_dot(sv, sv)) * jnp.sqrt(yy))
        h = s.head
        S = s.S.at[h].set(jnp.where(keep, sv, s.S[h]))  # one row written: in place
        Y = s.Y.at[h].set(jnp.where(keep, yv, s.Y[h]))
        rho = s.rho.at[h].set(jnp.where(keep, 1 / jnp.where(keep, sy, 1.0), s.rho[h]))
        head = jnp.where(keep, (h + 1) % m, h).astype(h.dtype)
        gamma = jnp.where(keep, sy / jnp.where(keep, yy, 1.0), s.gamma)
        d = -_two_loop(gt, S, Y, rho, gamma, head)
        gd = _dot(gt, d)
        descent = jnp.isfinite(gd) & (gd < 0)
        gtn = jnp.sqrt(_dot(gt, gt))
        d = jnp.where(descent, d, -gt / jnp.maximum(gtn, tiny))  # restart: the gradient
        gd = jnp.where(descent, gd, -gtn)

        # rejected: backtrack to the minimiser of the interpolating quadratic
        curv = ft - s.f - s.alpha * s.gd
        quad = -s.gd * s.alpha**2 / jnp.where(curv > 0, 2 * curv, 1.0)
        shrunk = jnp.clip(jnp.where(jnp.isfinite(ft) & (curv > 0), quad, 0.1 * s.alpha),
                          0.1 * s.alpha, 0.5 * s.alpha)
        trials = jnp.where(ok, 0, s.trials + 1)
        # no step found: converged if the step's predicted decrease is below the bound an
        # accepted step's expected decrease meets (stopping_code's expected=), else stalled
        small = -s.gd <= expected_bound(s.f, tol)
        stuck = jnp.where(small, DECREASE, STALLED)

        k = s.k + ok.astype(s.k.dtype)
        # a small decrease ends the run only where the next step expects no more (-<g, d>, the
        # rule of a step that finds no point below): on an ill-conditioned objective one
        # short step is not the end
        code = jnp.where(ok, stopping_code(k, s.f, ft, gtn, s.gnorm0, tol, gtol, max_iters,
                                           expected=-gd),
                         jnp.where(trials >= max_trials, stuck, RUNNING)).astype(s.code.dtype)
        sel = lambda a, b: jnp.where(ok, a, b)
        return LBFGSState(
            x=unravel(sel(xt, x)), f=sel(ft, s.f), g=sel(gt, s.g), gnorm0=s.gnorm0, k=k,
            code=code,
            history=record(s.history, k, sel(ft, s.f), sel(gtn, entry(s.history.grad_norms, s.k))),
            d=sel(d, s.d), alpha=sel(jnp.ones_like(s.alpha), shrunk), gd=sel(gd, s.gd),
            S=S, Y=Y, rho=rho, gamma=gamma, trials=trials, head=head)

    return Stepper(s0, step, build_result)
