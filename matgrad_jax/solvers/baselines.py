"""Baselines with the same :class:`SolveResult`: optax L-BFGS and Adam, and (preconditioned)
conjugate gradient for quadratic objectives. Each loop is one ``lax.while_loop``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from .._checks import check_solver_options
from .._typing import ArrayLike
from ..xla_cpu import materialize
from .result import (
    CONVERGED_CODES,
    DECREASE,
    MAX_ITERS,
    RUNNING,
    STALLED,
    SolveResult,
    build_result,
    default_tolerances,
    empty_history,
    record,
    stopping_code,
    tree_norm,
    tree_vdot,
)
from .state import CGState, OptaxState

if TYPE_CHECKING:
    import optax
from .stepper import Stepper, promoting, run


def _setup(fun, init, grad, tol, gtol):
    init = tuple(init)
    packed = lambda blocks: fun(*blocks)
    if grad is None:
        packed_grad = jax.grad(packed)
    else:
        packed_grad = lambda blocks: tuple(grad(*blocks))
    real_dtype = jnp.finfo(jnp.result_type(jax.tree_util.tree_leaves(init)[0])).dtype
    tol, gtol = default_tolerances(real_dtype, tol, gtol)
    return init, packed, packed_grad, real_dtype, tol, gtol


def _result(s, converged_codes=CONVERGED_CODES):
    return build_result(s, converged_codes=converged_codes)


def optax_minimize(fun: Callable, init: Sequence[Any], optimizer: optax.GradientTransformation, *,
                   grad: Callable | None = None, max_iters: int = 1000, tol: float | None = None,
                   gtol: float | None = None, linesearch: bool = False) -> SolveResult:
    """Run an optax optimiser on all blocks jointly, inside one ``lax.while_loop``.

    ``linesearch=True`` for transformations that need ``value``/``grad``/``value_fn`` in
    ``update`` (``optax.lbfgs``).
    """
    return run(optax_stepper(fun, init, optimizer, grad=grad, max_iters=max_iters, tol=tol,
                             gtol=gtol, linesearch=linesearch))


def optax_stepper(fun, init, optimizer, *, grad=None, max_iters=1000, tol=None, gtol=None,
                  linesearch=False) -> Stepper:
    """:func:`optax_minimize` as a :class:`Stepper`."""
    # optax mixes int32/int64 counters internally: allow standard promotion for its code even
    # when the caller runs with jax_numpy_dtype_promotion="strict".
    check_solver_options(max_iters=max_iters, tol=tol, gtol=gtol)
    return promoting("standard", _optax_parts)(fun, init, optimizer, grad, max_iters, tol, gtol,
                                               linesearch)


def _optax_parts(fun, init, optimizer, grad, max_iters, tol, gtol, linesearch):
    import optax  # here, not at import: ``import matgrad_jax`` stays a tenth of a second faster

    x0, packed, packed_grad, real_dtype, tol, gtol = _setup(fun, init, grad, tol, gtol)
    f0, g0 = packed(x0), packed_grad(x0)
    gnorm0 = tree_norm(g0)
    s0 = OptaxState(x=x0, f=f0, g=g0, gnorm0=gnorm0, k=jnp.zeros((), jnp.int32),
                    code=stopping_code(0, jnp.inf, f0, gnorm0, gnorm0, tol, gtol, max_iters),
                    opt=optimizer.init(x0),
                    history=record(empty_history(max_iters, real_dtype), 0, f0, gnorm0))

    if linesearch:  # the line search differentiates value_fn: make that the hand gradient
        value_fn = _with_gradient(packed, packed_grad)
        from_state = optax.value_and_grad_from_state(value_fn)

    def body(s):
        gnorm0 = s.gnorm0
        if linesearch:
            upd, opt = optimizer.update(s.g, s.opt, s.x, value=s.f, grad=s.g,
                                        value_fn=value_fn)
            x = optax.apply_updates(s.x, upd)
            f, g = from_state(x, state=opt)  # the line search's own evaluation at x
        else:
            upd, opt = optimizer.update(s.g, s.opt, s.x)
            x = optax.apply_updates(s.x, upd)
            f, g = packed(x), packed_grad(x)
        gnorm = tree_norm(g)
        k = s.k + 1
        code = stopping_code(k, s.f, f, gnorm, gnorm0, tol, gtol, max_iters)
        if not linesearch:
            # First-order methods without a line search may raise f on a step; only a gradient
            # criterion (or running out) ends them.
            code = jnp.where(code == DECREASE, RUNNING, code)
            # ...and the cap must still apply (a zero step at the end of a decayed schedule is a
            # zero decrease: without this the loop never ended).
            code = jnp.where((code == RUNNING) & (k >= max_iters), MAX_ITERS, code)
        return OptaxState(x=x, f=f, g=g, gnorm0=gnorm0, k=k, code=code, opt=opt,
                          history=record(s.history, k, f, gnorm))

    return Stepper(s0, promoting("standard", body), _result)


def _with_gradient(value, gradient):
    """``value`` whose derivative (for ``jax.grad``, ``jax.value_and_grad``) is ``gradient``:
    optax's line searches differentiate the objective they are given, and the hand gradient
    (verified) is what every step must use, one evaluation of each per trial point."""
    @jax.custom_vjp
    def fn(blocks):
        return value(blocks)

    def fwd(blocks):
        return value(blocks), blocks

    def bwd(blocks, ct):
        return (jax.tree_util.tree_map(lambda t: (ct * t).astype(t.dtype), gradient(blocks)),)

    fn.defvjp(fwd, bwd)
    return fn


def lbfgs(fun: Callable, init: ArrayLike | Sequence[ArrayLike], *, grad: Callable | None = None,
          max_iters: int = 1000, tol: float | None = None, gtol: float | None = None,
          memory_size: int = 10) -> SolveResult:
    """optax L-BFGS with its zoom line search (strong Wolfe)."""
    return run(lbfgs_stepper(fun, init, grad=grad, max_iters=max_iters, tol=tol, gtol=gtol,
                             memory_size=memory_size))


def lbfgs_stepper(fun, init, *, grad=None, max_iters=1000, tol=None, gtol=None,
                  memory_size=10) -> Stepper:
    check_solver_options(memory_size=memory_size)
    import optax

    return optax_stepper(fun, init, optax.lbfgs(memory_size=memory_size), grad=grad,
                         max_iters=max_iters, tol=tol, gtol=gtol, linesearch=True)


def adam(fun: Callable, init: ArrayLike | Sequence[ArrayLike], *, grad: Callable | None = None,
         max_iters: int = 5000, tol: float | None = None, gtol: float | None = None,
         learning_rate: float = 1e-2, decay_steps: int | None = None) -> SolveResult:
    """optax Adam; the learning rate decays by cosine to 0 over ``decay_steps`` (default
    ``max_iters``) so the iterates settle instead of oscillating at a fixed step."""
    return run(adam_stepper(fun, init, grad=grad, max_iters=max_iters, tol=tol, gtol=gtol,
                            learning_rate=learning_rate, decay_steps=decay_steps))


def adam_stepper(fun, init, *, grad=None, max_iters=5000, tol=None, gtol=None,
                 learning_rate=1e-2, decay_steps: int | None = None) -> Stepper:
    check_solver_options(max_iters=max_iters, learning_rate=learning_rate,
                         decay_steps=decay_steps)
    import optax

    schedule = optax.cosine_decay_schedule(learning_rate, decay_steps or max(max_iters, 1))
    return optax_stepper(fun, init, optax.adam(schedule), grad=grad, max_iters=max_iters,
                         tol=tol, gtol=gtol)


def conjugate_gradient(fun: Callable, init: Sequence[Any], *, grad: Callable | None = None,
                       preconditioner: Callable | None = None, max_iters: int = 1000,
                       tol: float | None = None, gtol: float | None = None,
                       hvp: Callable | None = None) -> SolveResult:
    r"""Matrix-free (preconditioned) conjugate gradient on the normal equations of a quadratic.

    For a convex quadratic :math:`f`, :math:`\nabla f(x) = Ax - b`; products with :math:`A` are
    ``jvp``\ s of the gradient, so the objective's matrix is never formed. The value is updated in
    closed form, :math:`f(x+\alpha p) = f(x) + \alpha\langle g, p\rangle + \tfrac12\alpha^2
    \langle p, Ap\rangle`, so an iteration costs one Hessian-vector product.
    ``preconditioner(blocks) -> blocks`` applies :math:`M^{-1}` (symmetric positive definite).
    ``hvp(*blocks) -> blocks``: the product with :math:`A` where it is known in closed form
    (default: the ``jvp`` of the gradient).
    Stops when ``‖∇f‖ <= gtol ‖∇f(x0)‖`` (``tol`` is unused: CG's value decrease is not monotone
    in the residual).
    """
    return run(cg_stepper(fun, init, grad=grad, preconditioner=preconditioner,
                          max_iters=max_iters, tol=tol, gtol=gtol, hvp=hvp))


def _stored(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(treedef, materialize(*leaves))


def cg_stepper(fun, init, *, grad=None, preconditioner=None, max_iters=1000, tol=None,
               gtol=None, hvp=None) -> Stepper:
    """:func:`conjugate_gradient` as a :class:`Stepper`."""
    check_solver_options(max_iters=max_iters, tol=tol, gtol=gtol)
    x0, packed, packed_grad, real_dtype, _, gtol = _setup(fun, init, grad, tol, gtol)
    prec = preconditioner or (lambda r: r)
    f0, g0 = packed(x0), packed_grad(x0)
    gnorm0 = tree_norm(g0)
    if hvp is None:
        product = lambda p: jax.jvp(packed_grad, (x0,), (p,))[1]
    else:
        product = lambda p: tuple(hvp(*p))
    neg = lambda t: jax.tree_util.tree_map(jnp.negative, t)
    r0 = neg(g0)
    z0 = prec(r0)
    s0 = CGState(x=x0, f=f0, gnorm0=gnorm0, r=r0, z=z0, p=z0, rz=tree_vdot(r0, z0),
                 k=jnp.zeros((), jnp.int32),
                 code=stopping_code(0, jnp.inf, f0, gnorm0, gnorm0, 0.0, gtol, max_iters),
                 history=record(empty_history(max_iters, real_dtype), 0, f0, gnorm0))

    def body(s):
        gnorm0 = s.gnorm0
        # Ap and z are each read by an inner product and an update: stored once under vmap
        # on XLA:CPU rather than recomputed in both (xla_cpu.materialize; identity otherwise)
        Ap = _stored(product(s.p))
        pAp = tree_vdot(s.p, Ap)
        alpha = s.rz / pAp
        x = jax.tree_util.tree_map(lambda a, b: a + alpha * b, s.x, s.p)
        # <r, p> = <r, z> = rz: p = z + beta p_prev and r is orthogonal to p_prev; one inner
        # product fewer per iteration (4096 vmapped (8, 4, 6, 10) problems: 1.07-1.1x)
        f = s.f - alpha * s.rz + 0.5 * alpha**2 * pAp
        r = jax.tree_util.tree_map(lambda a, b: a - alpha * b, s.r, Ap)
        z = _stored(prec(r))
        rz = tree_vdot(r, z)
        p = jax.tree_util.tree_map(lambda a, b: a + (rz / s.rz) * b, z, s.p)
        gnorm = tree_norm(r)
        k = s.k + 1
        code = stopping_code(k, jnp.inf, f, gnorm, gnorm0, 0.0, gtol, max_iters)
        code = jnp.where(jnp.isfinite(pAp) & (pAp > 0) | (code != RUNNING), code, STALLED)
        return CGState(x=x, f=f, gnorm0=gnorm0, r=r, z=z, p=p, rz=rz, k=k, code=code,
                       history=record(s.history, k, f, gnorm))

    def finish(s):
        # Report the value at the final point exactly (the recursion drifts by rounding).
        return _result(s._replace(f=packed(s.x)))

    return Stepper(s0, body, finish)
