"""A solver split into its parts, so the same iteration can run in one loop or in chunks.

Every iterative solver here is ``state0``, a pure ``step(state) -> state`` and
``finish(state) -> SolveResult``. :func:`run` puts ``step`` in one ``lax.while_loop``;
:func:`advance` runs it until an iteration count, so a host loop can report progress or write a
checkpoint between chunks. Both execute the same ``step`` on the same state, so a chunked (or
interrupted and resumed) run reaches the answer of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from .result import RUNNING, SolveResult


class Stepper(NamedTuple):
    """``state`` (a NamedTuple of :mod:`~matgrad_jax.solvers.state`: at least ``x``, ``f``,
    ``k``, ``code`` and ``history``), ``step`` (one iteration) and ``finish``
    (state -> :class:`SolveResult`)."""

    state: Any
    step: Callable[[Any], Any]
    finish: Callable[[Any], SolveResult]


def promoting(mode: str | None, fn: Callable) -> Callable:
    """``fn`` traced under ``jax.numpy_dtype_promotion(mode)`` (None: the caller's mode)."""
    if mode is None:
        return fn

    def wrapped(*args):
        with jax.numpy_dtype_promotion(mode):
            return fn(*args)

    return wrapped


def run(stepper: Stepper) -> SolveResult:
    """Iterate until a stopping rule fires, in one ``lax.while_loop``."""
    state = jax.lax.while_loop(lambda s: s.code == RUNNING, stepper.step, stepper.state)
    return stepper.finish(state)


def advance(step: Callable[[Any], Any], state: Any, stop_at) -> Any:
    """Iterate until a stopping rule fires or ``state.k == stop_at`` (a traced integer)."""
    return jax.lax.while_loop(lambda s: (s.code == RUNNING) & (s.k < stop_at), step, state)


def drive(advance_to: Callable[[Any, Any], Any], state: Any, *,
          checkpoint_every: int | None = None, on_chunk: Callable | None = None,
          target_seconds: float = 0.25) -> Any:
    """Run ``state`` to its end from the host, a chunk at a time: ``advance_to(state, stop)``
    (a jitted :func:`advance`) until iteration ``stop``, one host sync per chunk.

    With ``checkpoint_every=N`` chunks end at multiples of N; otherwise a chunk's length doubles
    until it takes about ``target_seconds``. ``on_chunk(state, final)`` is called after every
    chunk (once, with ``final=True``, when nothing was left to run). Returns the final state.
    """
    import time

    import jax.numpy as jnp

    chunk = checkpoint_every or 8
    k, ran = int(state.k), False
    while int(state.code) == RUNNING:
        ran = True
        stop = (k // chunk + 1) * chunk if checkpoint_every else k + chunk
        t0 = time.perf_counter()
        state = advance_to(state, jnp.asarray(stop, jnp.int32))
        k = int(state.k)  # the one host sync per chunk
        if not checkpoint_every and time.perf_counter() - t0 < target_seconds / 2:
            chunk *= 2
        if on_chunk is not None:
            on_chunk(state, int(state.code) != RUNNING)
    if on_chunk is not None and not ran:
        on_chunk(state, True)
    return state
