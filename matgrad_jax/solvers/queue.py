"""A batch of independent problems through a fixed number of lanes: a work queue.

``jax.vmap`` of a ``while_loop`` runs every problem until the slowest one stops: with a median
of 46 loop steps and a maximum of 95 (4096 small factorisations), half the work is lanes that
wait. Here ``lanes`` problems run side by side; whenever some stop, their states are written
out and the next problems from the queue take their lanes, so the loop runs about
``sum(steps) / lanes`` rounds plus the last problem's tail. Everything is one ``while_loop``
in one compiled program: no host sync, no recompiles.

A lane's state carries a two-entry window of the history (entries ``k mod 2``, see
:func:`~.result.record`); after each step the entry of the lane's iteration is copied into the
full history of its problem, kept outside the lanes. So a lane costs what the step touches,
whatever ``max_iters`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .result import RUNNING, History, SolveResult, entry
from .stepper import Stepper

WINDOW = 2
"""History entries a lane keeps (its iteration's and the one before)."""


def _rows(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _put(tree, idx, new):
    """Rows ``idx`` of every leaf set from ``new`` (an index past the end is dropped)."""
    return jax.tree_util.tree_map(lambda a, b: a.at[idx].set(b, mode="drop"), tree, new)


def run_queued(make: Callable[[Any, Any], Stepper], data: Any, init: Any, *, lanes: int,
               refills: int | None = None) -> SolveResult:
    """Solve ``b`` problems (``data`` and ``init``, pytrees with a leading axis of ``b``) in
    ``lanes`` lanes; ``make(data_i, init_i)`` gives problem i's :class:`Stepper`.

    ``refills`` (default ``max(1, lanes // 8)``) bounds the problems started in one round: a
    start evaluates the objective, so starting a few at a time keeps each round's cost near one
    step of the lanes. The result is a stacked :class:`SolveResult`, problem i's the one
    ``run(make(data_i, init_i))`` gives (up to the rounding of a different vectorisation).
    """
    b = jax.tree_util.tree_leaves(init)[0].shape[0]
    lanes = max(1, min(int(lanes), b))
    refills = max(1, min(lanes, lanes // 8 if refills is None else int(refills)))

    def start(d, x0):
        s = make(d, x0).state
        return s._replace(history=History(*(h[:WINDOW] for h in s.history)))

    def step(d, x0, s):
        return make(d, x0).step(s)  # x0 gives the structure; XLA drops the start's evaluation

    first = jax.eval_shape(lambda d, x: jax.vmap(start)(d, x), _rows(data, jnp.arange(1)),
                           _rows(init, jnp.arange(1)))
    full = jax.eval_shape(lambda d, x: make(d, x).state.history, _rows(data, 0), _rows(init, 0))
    out = jax.tree_util.tree_map(lambda a: jnp.zeros((b,) + a.shape[1:], a.dtype), first)
    hist = History(*(jnp.full((b,) + h.shape, jnp.nan, h.dtype) for h in full))
    lane_state = jax.tree_util.tree_map(lambda a: jnp.zeros((lanes,) + a.shape[1:], a.dtype),
                                        first)
    lane_data, lane_init = _rows(data, jnp.zeros(lanes, int)), _rows(init, jnp.zeros(lanes, int))
    slot = jnp.full((lanes,), b)  # the problem in each lane; b: idle

    def copy_entries(hist, slot, s):
        """Each busy lane's history entry at its iteration into its problem's full history."""
        k = s.k
        vals = (jax.vmap(entry)(s.history.values, k), jax.vmap(entry)(s.history.grad_norms, k))
        return History(*(h.at[slot, k].set(v, mode="drop") for h, v in zip(hist, vals)))

    def refill(c, count):
        lane_state, lane_data, lane_init, slot, nxt, out, hist, written = c
        free = jnp.nonzero(slot >= b, size=count, fill_value=lanes)[0]
        probs = nxt + jnp.arange(count)
        ok = (free < lanes) & (probs < b)  # a prefix: free lanes first, problems in order
        pick = jnp.minimum(probs, b - 1)
        d_new, x_new = _rows(data, pick), _rows(init, pick)
        fresh = jax.vmap(start)(d_new, x_new)
        done = fresh.code != RUNNING  # stopped at its start: written out, given no lane
        hist = copy_entries(hist, jnp.where(ok, probs, b), fresh)
        out = _put(out, jnp.where(ok & done, probs, b), fresh)
        place = jnp.where(ok & ~done, free, lanes)
        lane_state = _put(lane_state, place, fresh)
        lane_data, lane_init = _put(lane_data, place, d_new), _put(lane_init, place, x_new)
        slot = slot.at[place].set(probs, mode="drop")
        n = jnp.sum(ok)
        return (lane_state, lane_data, lane_init, slot, nxt + n, out, hist,
                written + jnp.sum(ok & done))

    def body(c):
        lane_state, lane_data, lane_init, slot, nxt, out, hist, written = c
        lane_state = jax.vmap(step)(lane_data, lane_init, lane_state)
        busy = slot < b
        hist = copy_entries(hist, slot, lane_state)
        stopped = busy & (lane_state.code != RUNNING)
        out = _put(out, jnp.where(stopped, slot, b), lane_state)
        slot = jnp.where(stopped, b, slot)
        c = (lane_state, lane_data, lane_init, slot, nxt, out, hist,
             written + jnp.sum(stopped))
        # every round, not under lax.cond: a cond would copy the full histories it carries
        return refill(c, refills)

    # the lanes start idle and fill ``refills`` a round: one traced start (compile time halves)
    c = (lane_state, lane_data, lane_init, slot, jnp.zeros((), int), out, hist,
         jnp.zeros((), int))
    c = jax.lax.while_loop(lambda c: c[-1] < b, body, c)
    out, hist = c[5], c[6]
    finish = make(_rows(data, 0), _rows(init, 0)).finish
    return jax.vmap(finish)(out._replace(history=hist))
