r"""The seed's alternating method: block-coordinate descent with exact line search.

The seed (``000_59df1aa91f78fd77.txt``, last comment) recommends "an ADMM-style iteration,
i.e. alternate between a gradient step for R, then a gradient step for Q", each with the step length
that minimises the cost. There are no multipliers or splitting: it is **block-coordinate
descent**, and is named so here.

One sweep takes each block in turn. For block :math:`i` with gradient :math:`g_i` and direction
:math:`d_i = -M_i^{-1}g_i` (``M_i = I`` unless a preconditioner is given), the step is
:math:`\alpha = -\langle g_i, d_i\rangle / \langle d_i, H_{ii}d_i\rangle`, with the curvature
from one Hessian-vector product (a ``jvp`` of the gradient): exact for any quadratic. For other
objectives the step is safeguarded by Armijo backtracking, so ``f`` never increases. An optax
``GradientTransformation`` per block may replace the line search.

Where it struggles: the rate of plain block steps degrades like the condition number of each
block's Hessian (for seed 1, ``cond(Re G)`` and the Hadamard term); with seed 1's block
preconditioners (each block's exact Hessian inverse) every block step solves its block and the
coupling between R and Q (``Im G``) alone sets the rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from .._checks import check_block_gradient, check_blocks, check_solver_options
from .._typing import is_optax_transformation
from .block_steps import nesterov_weight
from .descents import DESCENTS, BlockNewton, PreconditionedGradient, replace_block
from .descents import block_step as take_block_step
from .linesearch import SEARCHES
from .result import (
    RUNNING,
    STALLED,
    SolveResult,
    build_result,
    default_tolerances,
    empty_history,
    record,
    stopping_code,
    tree_norm,
)
from .state import BlockDescentState
from .stepper import Stepper, promoting, run

if TYPE_CHECKING:
    import optax


def _optax():
    """optax, imported where it is used: optax objects exist only once it is imported, and
    ``import matgrad_jax`` stays a tenth of a second faster without it."""
    import optax

    return optax


def alternating_minimize(
    fun: Callable[..., jax.Array],
    init: Sequence[Any],
    *,
    grad: Callable[..., tuple] | None = None,
    max_iters: int = 1000,
    tol: float | None = None,
    gtol: float | None = None,
    line_search: Any = "exact",
    preconditioners: Sequence[Callable | None] | None = None,
    optimizers: optax.GradientTransformation | Sequence[optax.GradientTransformation] | None = None,
    block_step: Any = "gradient",
    newton_iters: int = 50,
    balance: Callable | None = None,
    extrapolation: str | None = None,
) -> SolveResult:
    """Minimise ``fun(*blocks)`` by block-coordinate descent (the seed's "ADMM-style" method).

    Args:
      fun: ``fun(*blocks) -> scalar``.
      init: tuple of blocks (arrays or pytrees).
      grad: ``grad(*blocks) -> tuple of block gradients``; default ``jax.grad`` of ``fun``.
      max_iters: maximum number of sweeps.
      tol: stop when one sweep lowers ``f`` by at most ``tol * |f|`` (default ``eps^(3/4)``).
      gtol: stop when ``‖∇f‖ <= gtol * ‖∇f(init)‖`` (default ``eps^(2/3)``).
      line_search: ``"exact"`` (Hessian-vector curvature, Armijo safeguard), ``"armijo"``
        (backtracking from twice the previous step), or a search object with
        ``first_step(grad_i, x, d, slope, alpha_prev)``
        (:class:`~matgrad_jax.solvers.linesearch.CurvatureStep`, ``BacktrackingStep``,
        ``UnitStep`` or your own).
      preconditioners: per block, ``g -> M^{-1} g`` (symmetric positive definite) or None.
      optimizers: an optax transformation (or one per block) used instead of a line search.
      block_step: ``"gradient"`` (the seed's: along ``−M⁻¹g``) or ``"newton"``: along the
        block's Newton direction (conjugate gradients on Hessian-vector products, at most
        ``newton_iters``), from a step of 1 with the Armijo safeguard. For a block in which the
        objective is quadratic the Newton step is the block's minimiser: alternating least
        squares for a factorisation. Or a descent object with
        ``direction(grad_i, x, g, prec, dtype)``
        (:class:`~matgrad_jax.solvers.descents.PreconditionedGradient`, ``BlockNewton`` or your
        own): a block step is this direction × the ``line_search`` step
        (:func:`~matgrad_jax.solvers.descents.block_step`).
      balance: ``balance(*blocks) -> blocks``, a map that the model declares leaves what
        matters unchanged but may lower ``f`` (:func:`~matgrad_jax.solvers.balance_factors` for
        ``U Vᵀ`` with a ridge); applied after every sweep, kept only where ``f`` does not rise.
      extrapolation: None or ``"nesterov"``: sweeps extrapolated with Nesterov's weights, kept
        only where ``f`` is lower than at the sweep's end (else the momentum restarts).

    Returns:
      :class:`SolveResult`; the loop runs in one ``lax.while_loop``, so the call jits and vmaps.
    """
    init = check_blocks(init)
    if grad is not None:
        check_block_gradient(grad, init)
    return run(alternating_stepper(fun, init, grad=grad, max_iters=max_iters, tol=tol,
                                   gtol=gtol, line_search=line_search,
                                   preconditioners=preconditioners, optimizers=optimizers,
                                   block_step=block_step, newton_iters=newton_iters,
                                   balance=balance, extrapolation=extrapolation))


BLOCK_STEPS = DESCENTS
EXTRAPOLATIONS = (None, "nesterov")


def alternating_stepper(fun, init, *, grad=None, max_iters=1000, tol=None, gtol=None,
                        line_search="exact", preconditioners=None, optimizers=None,
                        block_step="gradient", newton_iters=50, balance=None,
                        extrapolation=None) -> Stepper:
    """:func:`alternating_minimize` as a :class:`Stepper` (for chunked or resumable runs)."""
    check_solver_options(max_iters=max_iters, tol=tol, gtol=gtol)
    init = tuple(init)
    nb = len(init)
    grad = grad or jax.grad(fun, argnums=tuple(range(nb)))
    precs = tuple(preconditioners) if preconditioners is not None else (None,) * nb
    if len(precs) != nb:
        raise ValueError(f"preconditioners: expected {nb} entries (one per block), "
                         f"got {len(precs)}")
    if extrapolation not in EXTRAPOLATIONS:
        raise ValueError(f"extrapolation: expected one of {EXTRAPOLATIONS}, got "
                         f"{extrapolation!r}")
    if balance is not None and not callable(balance):
        raise ValueError(f"balance: expected a callable or None, got {type(balance).__name__}")
    check_solver_options(newton_iters=newton_iters)
    descent, search = _descent_and_search(block_step, line_search, newton_iters)
    if is_optax_transformation(optimizers):
        optimizers = (optimizers,) * nb
    dtype = jnp.result_type(jax.tree_util.tree_leaves(init[0])[0])
    real_dtype = jnp.finfo(dtype).dtype
    tol, gtol = default_tolerances(real_dtype, tol, gtol)
    mode = "standard" if optimizers else None
    extra = dict(balance=balance, extrapolation=extrapolation)
    return promoting(mode, _parts)(fun, grad, init, max_iters, tol, gtol, descent, search, precs,
                                   optimizers, real_dtype, mode, extra)


def _descent_and_search(block_step, line_search, newton_iters):
    """The direction and the step search that ``block_step`` and ``line_search`` name (or are).
    A named line search is the descent's own default for it: a Newton direction starts from a
    step of 1 whatever ``line_search`` says."""
    if isinstance(block_step, str):
        if block_step not in BLOCK_STEPS:
            raise ValueError(f"block_step: expected one of {BLOCK_STEPS} or a descent, got "
                             f"{block_step!r}")
        descent = (BlockNewton(max_iters=newton_iters) if block_step == "newton"
                   else PreconditionedGradient())
    elif callable(getattr(block_step, "direction", None)):
        descent = block_step
    else:
        raise ValueError("block_step: expected 'gradient', 'newton' or an object with "
                         f"direction(grad_i, x, g, prec, dtype), got {type(block_step).__name__}")
    if isinstance(line_search, str):
        if line_search not in ("exact", "armijo"):
            raise ValueError(f"line_search: expected 'exact' or 'armijo', got {line_search!r}")
        default = getattr(descent, "default_search", None)
        return descent, (SEARCHES[line_search] if default is None else default(line_search))
    if callable(getattr(line_search, "first_step", None)):
        return descent, line_search
    raise ValueError("line_search: expected 'exact', 'armijo' or an object with "
                     f"first_step(grad_i, x, d, slope, alpha_prev), got "
                     f"{type(line_search).__name__}")


def _select(keep, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(keep, x, y), a, b)


def _parts(fun, grad, init, max_iters, tol, gtol, descent, search, precs, optimizers, real_dtype,
           mode, extra):
    nb = len(init)
    balance, extrapolation = extra["balance"], extra["extrapolation"]
    f_init = fun(*init)
    g_init = grad(*init)
    gnorm0 = tree_norm(g_init)
    opt_states = tuple(optimizers[i].init(init[i]) for i in range(nb)) if optimizers else ()
    one = jnp.ones((), real_dtype)
    state0 = BlockDescentState(
        x=init, f=f_init, g=g_init, gnorm0=gnorm0, k=jnp.zeros((), jnp.int32),
        code=stopping_code(0, jnp.inf, f_init, gnorm0, gnorm0, tol, gtol, max_iters),
        alphas=(one,) * nb, opt=opt_states,
        history=record(empty_history(max_iters, real_dtype), 0, f_init, gnorm0),
        last=init if extrapolation else None, t=one if extrapolation else None)

    def body(s):
        gnorm0 = s.gnorm0
        blocks, f, alphas, opt = s.x, s.f, list(s.alphas), list(s.opt)
        g = s.g  # the gradient at the iterate, kept from the previous iteration
        for i in range(nb):
            if i > 0:
                g = grad(*blocks)
            if optimizers:
                upd, opt[i] = optimizers[i].update(g[i], opt[i], blocks[i])
                blocks = replace_block(blocks, i, _optax().apply_updates(blocks[i], upd))
                f_i = fun(*blocks)
            else:
                blocks, f_i, alphas[i] = take_block_step(fun, grad, blocks, i, g[i], alphas[i],
                                                         f if i == 0 else f_i,
                                                         descent=descent, search=search,
                                                         prec=precs[i])
        f_new = f_i
        more = {}
        if balance is not None:
            balanced = tuple(balance(*blocks))
            f_b = fun(*balanced)
            keep = jnp.isfinite(f_b) & (f_b <= f_new)
            blocks, f_new = _select(keep, balanced, blocks), jnp.where(keep, f_b, f_new)
        if extrapolation:
            beta, t_next = nesterov_weight(s.t)
            y = jax.tree_util.tree_map(lambda a, b: a + beta * (a - b), blocks, s.last)
            f_y = fun(*y)
            keep = jnp.isfinite(f_y) & (f_y < f_new)
            more = dict(last=blocks, t=jnp.where(keep, t_next, 1.0).astype(real_dtype))
            blocks, f_new = _select(keep, y, blocks), jnp.where(keep, f_y, f_new)
        g_new = grad(*blocks)
        gnorm = tree_norm(g_new)
        k = s.k + 1
        code = stopping_code(k, f, f_new, gnorm, gnorm0, tol, gtol, max_iters)
        if not optimizers:
            # Every block refused to move while the gradient is not small: no descent possible.
            stuck = (f_new == f) & (code == RUNNING) & (k > 1)
            code = jnp.where(stuck, STALLED, code)
        return BlockDescentState(x=blocks, f=f_new, g=g_new, gnorm0=gnorm0, k=k, code=code,
                                 alphas=tuple(alphas), opt=tuple(opt),
                                 history=record(s.history, k, f_new, gnorm), **more)

    return Stepper(state0, promoting(mode, body), finish)


def finish(s) -> SolveResult:
    return build_result(s)
