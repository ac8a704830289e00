"""Each solver's state: a NamedTuple of arrays (a pytree, as optax's states are).

Every state has ``x`` (the blocks), ``f`` (the value there), ``k`` (iterations done), ``code``
(an index into :data:`~matgrad_jax.solvers.result.REASONS`; ``RUNNING`` while it runs) and
``history`` (:class:`~matgrad_jax.solvers.result.History`): what :func:`~.stepper.run`,
:func:`~.stepper.advance`, :func:`~.stepper.drive` and
:func:`~matgrad_jax.solvers.result.build_result` read. The rest is the solver's own.

A checkpoint stores a state's leaves in field order (:func:`matgrad_jax.io.save_tree`), so the
field order is part of the checkpoint format (``matgrad-checkpoint/2``): a field is added at the
end, and the format's number moves with any change.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from jax import Array

from .result import History


class BlockDescentState(NamedTuple):
    """:func:`~matgrad_jax.solvers.alternating_minimize`'s state.

    ``g``: the gradient at ``x`` (kept for the next sweep's first block); ``gnorm0``: ‖∇f‖ at
    the start (the gradient rule's scale); ``alphas``: each block's last step length (the next
    search starts from it); ``opt``: the per-block optax states (empty without optimizers);
    ``last``, ``t``: the previous sweep's end and Nesterov's ``t`` (None without extrapolation).
    """

    x: Any
    f: Array
    g: Any
    gnorm0: Array
    k: Array
    code: Array
    alphas: tuple
    opt: tuple
    history: History
    last: Any = None
    t: Array | None = None


class OptaxState(NamedTuple):
    """:func:`~matgrad_jax.solvers.optax_minimize`'s state (L-BFGS, Adam, any transformation);
    ``opt`` is the transformation's own state."""

    x: Any
    f: Array
    g: Any
    gnorm0: Array
    k: Array
    code: Array
    opt: Any
    history: History


class CGState(NamedTuple):
    """:func:`~matgrad_jax.solvers.conjugate_gradient`'s state: residual ``r``, preconditioned
    residual ``z``, direction ``p`` and ``rz = <r, z>``."""

    x: Any
    f: Array
    gnorm0: Array
    r: Any
    z: Any
    p: Any
    rz: Array
    k: Array
    code: Array
    history: History


class ExactState(NamedTuple):
    """A closed-form solve's state: stopped from the start (``code`` is ``EXACT``)."""

    x: Any
    f: Array
    gnorm0: Array
    k: Array
    code: Array
    history: History


__all__ = ["BlockDescentState", "CGState", "ExactState", "OptaxState"]


class LBFGSState(NamedTuple):
    """:func:`~matgrad_jax.solvers.lbfgs_backtracking`'s state. ``g``, ``d``: the gradient at
    ``x`` and the search direction, flattened; ``alpha``: the next trial step along ``d``;
    ``gd = ⟨g, d⟩``; ``S``, ``Y``, ``rho``: the memory, circular buffers written at ``head``
    (an empty slot has ``rho = 0``); ``gamma``: the initial inverse-Hessian scale; ``trials``:
    rejected trial points of this step."""

    x: Any
    f: Array
    g: Array
    gnorm0: Array
    k: Array
    code: Array
    history: History
    d: Array
    alpha: Array
    gd: Array
    S: Array
    Y: Array
    rho: Array
    gamma: Array
    trials: Array
    head: Array
