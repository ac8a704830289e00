"""``minimize``: fit with a hand gradient that is verified first (and, if asked, all along).

The gradient a user hands an optimiser is audited at the start (:func:`~matgrad_jax.
check_gradient` at ``init``); with ``verify="always"`` the jitted loop also compares it, every
``verify_every`` iterations, with ``jax.jvp`` along one random direction, with no host sync and
no Python in the loop, and stops with reason ``"gradient mismatch"`` where they disagree. An
optimiser that is handed a wrong gradient then never reports convergence at a wrong point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import programs
from ._checks import InputError, check_block_gradient, check_blocks, check_solver_options
from ._typing import ArrayLike, is_optax_transformation
from .solvers.alternating import alternating_stepper
from .solvers.backtracking_lbfgs import lbfgs_backtracking_stepper
from .solvers.baselines import adam_stepper, cg_stepper, lbfgs_stepper, optax_stepper
from .solvers.result import MISMATCH, REASONS, RUNNING, SolveResult
from .solvers.stepper import Stepper, run
from .xla_cpu import small_products

METHODS = ("auto", "alternating", "lbfgs", "lbfgs_backtracking", "adam", "cg")
AUTO_METHOD = "lbfgs_backtracking"
"""What ``method="auto"`` runs on an objective with no exact solve: L-BFGS whose Armijo
backtracking is part of the loop's state. To a 1e-8 gap on users' factorisations it is as fast as
optax's L-BFGS (zoom line search) alone, and under ``vmap`` it runs as a work queue, several
times faster than a loop (``docs/performance/``); one method, so a problem's iterates are the
same alone and in a batch."""
VERIFY = ("start", "always", "off")
ON_MISMATCH = ("raise", "autodiff", "warn")


class GradientMismatch(InputError):
    """The hand gradient failed its audit at the start; ``.report`` holds the
    :class:`~matgrad_jax.GradientReport`."""

    def __init__(self, report):
        super().__init__(f"the hand gradient fails its audit at init: {report.headline()}")
        self.report = report


class MinimizeResult(SolveResult):
    """A :class:`~matgrad_jax.SolveResult` (it is one: ``params``, ``value``, ``iterations``,
    ``converged``, ``reason``, …) that also says what ran: ``method`` (the one ``"auto"``
    picked) and ``verified`` (``"start"``, ``"always"``, ``"off"`` or ``"autodiff fallback"``).
    A pytree whose two labels are static, so it passes through ``jit`` and ``vmap``."""

    def __new__(cls, result: SolveResult, method: str, verified: str):
        obj = super().__new__(cls, *result)
        obj.method, obj.verified = method, verified
        return obj

    @property
    def result(self) -> SolveResult:
        return SolveResult(*self)

    def __repr__(self):
        return (f"MinimizeResult(method={self.method!r}, verified={self.verified!r}, "
                f"value={self.value}, iterations={self.iterations}, "
                f"converged={self.converged}, reason={self.reason!r})")

    def _repr_markdown_(self):
        return (self.result._repr_markdown_()
                + f"\nmethod **{self.method}**, gradient verified: **{self.verified}**\n")


jax.tree_util.register_pytree_node(
    MinimizeResult, lambda r: (tuple(r), (r.method, r.verified)),
    lambda aux, children: MinimizeResult(SolveResult(*children), *aux))


def _as_tuple_grad(grad):
    def g(*blocks):
        out = grad(*blocks)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    return g


def _stepper(fun, blocks, grad, method, opts) -> Stepper:
    if is_optax_transformation(method):
        return optax_stepper(fun, blocks, method, grad=grad, **opts)
    if method == "alternating":
        return alternating_stepper(fun, blocks, grad=grad, **opts)
    if method == "lbfgs":
        return lbfgs_stepper(fun, blocks, grad=grad, **opts)
    if method == "lbfgs_backtracking":
        return lbfgs_backtracking_stepper(fun, blocks, grad=grad, **opts)
    if method == "adam":
        return adam_stepper(fun, blocks, grad=grad, **opts)
    if method == "cg":
        return cg_stepper(fun, blocks, grad=grad, **opts)
    raise InputError(f"method: expected one of {METHODS} or an optax GradientTransformation, "
                     f"got {method!r}")


def _verified_step(step, fun, grad, every: int, dtype):
    """``step`` followed, every ``every`` iterations, by one directional check of ``grad``
    against ``jax.jvp(fun)`` at the new point (inside the loop: ``lax.cond``, no host sync)."""
    eps = float(jnp.finfo(dtype).eps)
    thr = 100 * np.sqrt(eps)

    def check(s):
        x = s.x
        leaves, tree = jax.tree_util.tree_flatten(x)
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), s.k), len(leaves))
        v = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, a.shape, a.dtype)
                                                for k, a in zip(keys, leaves)])
        g = grad(*x)
        hand = sum(jnp.sum(a * b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                 jax.tree_util.tree_leaves(v)))
        true = jax.jvp(lambda *b: fun(*b), tuple(x), tuple(v))[1]
        n = sum(a.size for a in leaves)
        gn = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g)))
        vn = jnp.sqrt(sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(v)))
        scale = gn * vn / np.sqrt(n) + jnp.abs(true) + jnp.finfo(dtype).tiny
        bad = jnp.abs(hand - true) > thr * scale
        return s._replace(code=jnp.where(bad, MISMATCH, s.code).astype(s.code.dtype))

    def wrapped(s):
        s = step(s)
        due = (s.k % every == 0) | (s.code != RUNNING)
        return jax.lax.cond(due, check, lambda t: t, s)

    return wrapped


def minimize(fun: Callable, init: ArrayLike | Sequence[ArrayLike], *, grad: Callable | None = None,
             method: Any = "auto", verify: str = "start", on_mismatch: str = "raise",
             domains: Mapping | None = None, verify_every: int = 25, max_iters: int | None = None,
             **solver_options: Any) -> MinimizeResult:
    """Minimise ``fun(*blocks)`` from ``init`` with a verified gradient.

    Args:
      fun: ``fun(*blocks) -> real scalar``.
      init: a tuple of blocks (a lone array is one block).
      grad: ``grad(*blocks)`` -> one gradient per block (a hand derivation); default
        ``jax.grad`` of ``fun``.
      method: ``"auto"`` (:data:`AUTO_METHOD`, L-BFGS with backtracking, recorded in
        ``result.method``), ``"alternating"`` (the seed's block-coordinate descent, exact line
        search), ``"lbfgs"`` (optax's, zoom line search), ``"lbfgs_backtracking"`` (one
        evaluation per loop step; a work queue under ``vmap``, see
        :func:`~matgrad_jax.solvers.lbfgs_backtracking`), ``"adam"``, ``"cg"`` (quadratics), or
        any optax ``GradientTransformation``.
      verify: ``"start"`` (default): audit it at ``init`` before any
        iteration (on the host: not under ``jit``); ``"always"``: also check it along a random
        direction every ``verify_every`` iterations inside the loop, stopping with reason
        ``"gradient mismatch"`` (under ``jit``/``vmap`` only the loop's checks run); ``"off"``:
        no check. Without ``grad`` there is nothing to verify (``jax.grad`` is used) and
        ``result.verified`` is ``"off"``.
      on_mismatch: at a failed start audit, ``"raise"`` :class:`GradientMismatch` (with the
        report), ``"autodiff"`` continue with ``jax.grad`` (``result.verified`` says so), or
        ``"warn"`` and continue with the hand gradient.
      domains: the blocks' domains for the start audit (see :func:`~matgrad_jax.check_gradient`).
      max_iters: default 20000 (the stopping rules, relative decrease and gradient norm, end a
        run long before that when it converges).
      solver_options: ``tol``, ``gtol``, and each method's own (``learning_rate``,
        ``memory_size``, ``line_search``, ``preconditioners``, …).

    Returns:
      :class:`MinimizeResult` (``params``, ``value``, ``iterations``, ``converged``,
      ``reason``, ``method``, ``verified``). With ``verify="off"`` or ``"always"`` the call
      traces under ``jax.jit`` and ``jax.vmap``.
    """
    blocks = check_blocks(init)
    if verify not in VERIFY:
        raise InputError(f"verify: expected one of {VERIFY}, got {verify!r}")
    if on_mismatch not in ON_MISMATCH:
        raise InputError(f"on_mismatch: expected one of {ON_MISMATCH}, got {on_mismatch!r}")
    if not isinstance(verify_every, int) or verify_every < 1:
        raise InputError(f"verify_every: expected an int >= 1, got {verify_every!r}")
    chosen, max_iters = _resolved(method, max_iters)
    name = chosen if isinstance(chosen, str) else "optax"
    nb = len(blocks)
    autodiff = jax.grad(fun, argnums=tuple(range(nb)))
    verified, shared = verify, None
    if grad is None:
        g = autodiff
        verified = "off"
    else:
        if not callable(grad):
            raise InputError(f"grad: expected a callable or None, got {type(grad).__name__}")
        g = _as_tuple_grad(grad)
        shared = _traced(fun, g, blocks)  # None under jit/vmap or for unshareable code
        check_block_gradient(grad, blocks, None if shared is None else shared.out_shapes()[1])
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(blocks))
        if verify == "start" and traced:
            raise InputError('verify="start" audits on the host and cannot run under '
                             'jax.jit or jax.vmap; pass verify="off" or "always" there')
        if verify in ("start", "always") and not traced:  # traced "always": the loop's checks
            report = _start_audit(fun, g, blocks, domains, shared)
            if not report.passed:
                if on_mismatch == "raise":
                    raise GradientMismatch(report)
                if on_mismatch == "autodiff":
                    g, verified, shared = autodiff, "autodiff fallback", None
                else:
                    import warnings

                    warnings.warn(f"minimize: {report.headline()}; continuing with the hand "
                                  "gradient", RuntimeWarning, stacklevel=2)
    opts = dict(max_iters=max_iters, **solver_options)
    always = verify == "always" and verified == "always"
    dtype = jnp.finfo(jnp.result_type(jax.tree_util.tree_leaves(blocks)[0])).dtype
    return MinimizeResult(_solve_shared(fun, g, blocks, chosen, opts, always, verify_every, dtype,
                                        shared), name, verified)


_AUDITS: dict = {}
_AUDITS_KEPT = 32


def _start_audit(fun, g, blocks, domains, shared):
    """The hand gradient's audit at ``init`` (structured families off: the fit's domain is the
    blocks'). An identical call, the same programs closing over the same arrays from the same
    start with the same domains, is not audited again: its report is the one found before."""
    from .audit import check_gradient

    nb = len(blocks)
    key = None
    if shared is not None:
        key = programs.fingerprint(shared, tuple(blocks), repr(sorted(
            (str(k), str(v)) for k, v in dict(domains or {}).items())))
    if key is not None and key in _AUDITS:
        return _AUDITS[key]
    report = check_gradient(fun, lambda *b: g(*b) if nb > 1 else g(*b)[0], blocks,
                            argnums=tuple(range(nb)) if nb > 1 else 0, domains=domains,
                            n_family=0)
    if key is not None:
        if len(_AUDITS) >= _AUDITS_KEPT:
            _AUDITS.pop(next(iter(_AUDITS)))
        _AUDITS[key] = report
    return report


def _resolved(method, max_iters):
    """The method ``"auto"`` stands for, and ``max_iters`` (default 20000), checked."""
    max_iters = 20000 if max_iters is None else max_iters
    check_solver_options(max_iters=max_iters)
    chosen = AUTO_METHOD if (isinstance(method, str) and method == "auto") else method
    if isinstance(chosen, str) and chosen not in METHODS:
        raise InputError(f"method: expected one of {METHODS} or an optax GradientTransformation,"
                         f" got {method!r}")
    return chosen, max_iters


def _problem_stepper(fun, g, blocks, chosen, opts, always, every, dtype) -> Stepper:
    # the same programs for one problem; under vmap on XLA:CPU small products written out
    st = _stepper(small_products(fun), blocks, small_products(g), chosen, dict(opts))
    if always:
        st = Stepper(st.state, _verified_step(st.step, fun, g, every, dtype), st.finish)
    return st


def _solve(fun, g, blocks, chosen, opts, always, every, dtype):
    return run(_problem_stepper(fun, g, blocks, chosen, opts, always, every, dtype))


def minimize_stepper(fun: Callable, init: ArrayLike | Sequence[ArrayLike], *,
                     grad: Callable | None = None, method: Any = "auto", verify: str = "off",
                     verify_every: int = 25, max_iters: int | None = None,
                     **solver_options: Any) -> Stepper:
    """The iteration :func:`minimize` runs, as a :class:`~matgrad_jax.solvers.stepper.Stepper`
    (``state``, ``step``, ``finish``), for a driver of its own: chunks, or the work queue of
    :func:`~matgrad_jax.solvers.queue.run_queued`. ``verify`` is ``"off"`` or ``"always"``
    (the checks inside the loop); the start audit is the caller's. Traceable under ``jit`` and
    ``vmap``."""
    blocks = check_blocks(init)
    if verify not in ("off", "always"):
        raise InputError(f"verify: expected 'off' or 'always' for a stepper, got {verify!r}")
    chosen, max_iters = _resolved(method, max_iters)
    g = jax.grad(fun, argnums=tuple(range(len(blocks)))) if grad is None else \
        _as_tuple_grad(grad)
    dtype = jnp.finfo(jnp.result_type(jax.tree_util.tree_leaves(blocks)[0])).dtype
    return _problem_stepper(fun, g, blocks, chosen, dict(max_iters=max_iters, **solver_options),
                            verify == "always" and grad is not None, verify_every, dtype)


@partial(jax.jit, static_argnums=(2,))
def _shared(fg_t, blocks, static):
    chosen, opts, always, every, dtype = static
    # one traced program for both; XLA drops the half a call does not use
    return _solve(lambda *b: fg_t(*b)[0], lambda *b: fg_t(*b)[1], blocks, chosen, opts, always,
                  every, dtype)


def _solve_shared(fun, g, blocks, chosen, opts, always, every, dtype, shared=None):
    """The solve in one compiled program shared by every call whose objective and gradient trace
    to the same programs (:mod:`~matgrad_jax.programs`): a second call, or a redefined function
    of the same structure, runs without tracing the loop or compiling. Under ``jit``/``vmap``, or
    with options that are not plain values, the loop is traced in place."""
    static = (chosen, tuple(sorted(opts.items())), always, every, np.dtype(dtype))
    plain = all(isinstance(v, (int, float, bool, str, type(None))) or _ours(v)
                for v in opts.values())
    if plain and shared is None:
        shared = _traced(fun, g, blocks)
    if plain and shared is not None:
        return _shared(shared, tuple(blocks), static)
    return _solve_in_place(fun, g, blocks, chosen, opts, always, every, dtype)


QUEUE_LANES = 256
"""Under ``vmap`` a solve of :data:`QUEUED_METHODS` runs as a work queue of at most this many
lanes (:func:`~matgrad_jax.solvers.queue.run_queued`; measured in
``docs/performance/history.md``)."""
QUEUED_METHODS = ("lbfgs_backtracking",)
"""The methods whose ``vmap`` is a work queue. ``lbfgs`` and ``alternating`` were faster so too
(4096 small factorisations: 1.1–1.3× and 1.8×), but a queue compiles about a third longer; they
run under plain ``vmap`` unless ``solve_batch(..., lanes=N)`` asks for the queue."""


def _solve_in_place(fun, g, blocks, chosen, opts, always, every, dtype):
    """The solve traced where it is called. Under ``vmap`` it is a work queue: problems that
    stop hand their lanes to the next ones, instead of every lane running until the slowest
    stops. The functions' closed-over values (a batch's data, under ``vmap``) become arguments
    (``jax.closure_convert``) so that the batching rule sees them."""
    from .solvers.queue import run_queued
    from .xla_cpu import batched

    if not (isinstance(chosen, str) and chosen in QUEUED_METHODS):
        return _solve(fun, g, blocks, chosen, opts, always, every, dtype)
    try:
        fun_c, cf = jax.closure_convert(fun, *blocks)
        g_c, cg = jax.closure_convert(g, *blocks)
    except Exception:  # noqa: BLE001 - not convertible: the plain loop, where errors say why
        return _solve(fun, g, blocks, chosen, opts, always, every, dtype)

    dtypes = [jnp.result_type(b) for b in blocks]
    cast = lambda b: [x.astype(t) for x, t in zip(b, dtypes)]  # the converted programs' dtypes

    def make(x0, cf, cg):
        return _problem_stepper(lambda *b: fun_c(*cast(b), *cf), lambda *b: g_c(*cast(b), *cg),
                                x0, chosen, opts, always, every, dtype)

    @jax.custom_batching.custom_vmap
    def solve(x0, cf, cg):
        return run(make(x0, cf, cg))

    @solve.def_vmap
    def _solve_vmap(axis_size, in_batched, x0, cf, cg):
        x0, cf, cg = batched(axis_size, tuple(tuple(b) for b in in_batched), (x0, cf, cg))
        res = run_queued(lambda d, x: make(x, *d), (cf, cg), x0,
                         lanes=min(axis_size, QUEUE_LANES))
        return res, jax.tree_util.tree_map(lambda _: True, res)

    return solve(tuple(blocks), tuple(cf), tuple(cg))


def _ours(value) -> bool:
    """A function of this package's (``solvers.balance_factors``): pure, fixed by its name."""
    return callable(value) and getattr(value, "__module__", "").startswith("matgrad_jax.") \
        and getattr(value, "__qualname__", "<").isidentifier()


def _traced(fun, g, blocks):
    """``(fun, g)`` traced as one shareable program ``blocks -> (value, gradients)``
    (:func:`matgrad_jax.programs.trace`), or None under ``jit``/``vmap``, for untraceable code
    and for programs that may not be shared."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(blocks)):
        return None
    try:
        fg_t, ok = programs.trace(lambda *b: (fun(*b), g(*b)), *blocks)
    except Exception:  # noqa: BLE001 - untraceable: run in place, where errors say what failed
        return None
    return fg_t if ok else None

assert REASONS[MISMATCH] == "gradient mismatch"
