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
    """``state`` (a pytree holding at least ``x``, ``f``, ``k``, ``code`` and ``history``),
    ``step`` (one iteration) and ``finish`` (state -> :class:`SolveResult`)."""

    state: dict[str, Any]
    step: Callable[[dict], dict]
    finish: Callable[[dict], SolveResult]


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
    state = jax.lax.while_loop(lambda s: s["code"] == RUNNING, stepper.step, stepper.state)
    return stepper.finish(state)


def advance(step: Callable[[dict], dict], state: dict, stop_at) -> dict:
    """Iterate until a stopping rule fires or ``state["k"] == stop_at`` (a traced integer)."""
    return jax.lax.while_loop(lambda s: (s["code"] == RUNNING) & (s["k"] < stop_at), step, state)
