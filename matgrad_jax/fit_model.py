"""A user's model fitted from the host in chunks: progress, checkpoints, resume.

The same :class:`~matgrad_jax.solvers.stepper.Stepper` that :func:`~matgrad_jax.minimize` runs
in one ``while_loop``, advanced by a jitted :func:`model_advance` a chunk at a time (one host
sync per chunk). Every chunk executes the same ``step`` on the same state, so a run interrupted
at a checkpoint and resumed reaches the iterates of one uninterrupted run bit for bit. This is
what ``matgrad fit DATA --model TARGET:NAME`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax

from ._checks import InputError, check_solver_options
from .model import Model
from .solvers.result import SolveResult
from .solvers.stepper import Stepper, advance, drive

_STATIC = ("model", "method", "opts")


def model_stepper(model: Model, data: Mapping, init: tuple, method: str,
                  opts: tuple = ()) -> Stepper:
    """The solver of ``method`` (as :func:`~matgrad_jax.minimize` names them) for one data set,
    as a :class:`~matgrad_jax.solvers.stepper.Stepper`."""
    from .minimize import AUTO_METHOD, _as_tuple_grad, _stepper

    chosen = AUTO_METHOD if method == "auto" else method
    grad = model.gradient(data)
    return _stepper(model.objective(data), tuple(init),
                    None if grad is None else _as_tuple_grad(grad), chosen,
                    model.method_options(method, dict(opts)))


def model_start(model: Model, data: Mapping, init: tuple, method: str, opts: tuple = ()) -> Any:
    """The solver's first state, a pytree of arrays (a checkpoint's template)."""
    return model_stepper(model, data, init, method, opts).state


@partial(jax.jit, static_argnames=_STATIC)
def model_advance(model: Model, data: Mapping, state: Any, stop_at: Any, method: str,
                  opts: tuple = ()) -> Any:
    """Iterate from ``state`` until a stopping rule fires or iteration ``stop_at``."""
    return advance(model_stepper(model, data, state.x, method, opts).step, state, stop_at)


@partial(jax.jit, static_argnames=_STATIC)
def model_finish(model: Model, data: Mapping, state: Any, method: str,
                 opts: tuple = ()) -> SolveResult:
    """The :class:`~matgrad_jax.SolveResult` of a final state."""
    return model_stepper(model, data, state.x, method, opts).finish(state)


def fit_model_chunked(model: Model, data: Mapping, init: tuple, *, method: str = "auto",
                      state: Any = None, checkpoint_every: int | None = None,
                      on_chunk: Callable | None = None, target_seconds: float = 0.25,
                      **options: Any) -> SolveResult:
    """Fit ``model`` to one data set from ``init``, in chunks (see the module docstring).

    ``on_chunk(state, final)`` is called after every chunk; with ``checkpoint_every=N`` chunks
    end at multiples of N (save ``state`` there, and pass it back as ``state`` to resume);
    otherwise a chunk lasts about ``target_seconds``. ``options``: ``max_iters``, ``tol``,
    ``gtol`` and the method's own (see :func:`~matgrad_jax.minimize`).
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise InputError(f"checkpoint_every: expected a positive integer, got {checkpoint_every}")
    check_solver_options(**{k: options[k] for k in ("max_iters", "tol", "gtol")
                            if k in options})
    opts = tuple(sorted(options.items()))
    if state is None:
        state = model_start(model, data, init, method, opts)
    state = drive(lambda st, stop: model_advance(model, data, st, stop, method, opts), state,
                  checkpoint_every=checkpoint_every, on_chunk=on_chunk,
                  target_seconds=target_seconds)
    return model_finish(model, data, state, method, opts)
