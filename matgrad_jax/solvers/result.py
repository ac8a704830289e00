"""What every solver returns: :class:`SolveResult`, a pytree (it passes through jit and vmap)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

REASONS = (
    "running",
    "gradient norm below gtol",
    "relative decrease below tol",
    "max_iters reached",
    "non-finite value",
    "no descent possible",
    "exact solve",
    "gradient mismatch",
)
"""Why a solve stopped, indexed by ``SolveResult.reason``'s code (``REASONS[code]``)."""
RUNNING, GRADIENT, DECREASE, MAX_ITERS, NONFINITE, STALLED, EXACT, MISMATCH = range(len(REASONS))
CONVERGED_CODES = (GRADIENT, DECREASE, EXACT)


class History(NamedTuple):
    """Fixed-size buffers: entry ``k`` is the value / gradient norm at the start of iteration ``k``
    (NaN past the last iteration)."""

    values: Array
    grad_norms: Array


class SolveResult(NamedTuple):
    """A solver's answer.

    Attributes:
      params: the tuple of blocks at the end.
      value: the objective there.
      iterations: iterations (sweeps for the alternating method) taken.
      converged: True only when a stopping rule was met, never when iterations ran out.
      reason_code: index into :data:`REASONS` (an array, so the result vmaps).
      grad_norm: ‖∇f‖ at the end.
      history: :class:`History`.
    """

    params: Any
    value: Array
    iterations: Array
    converged: Array
    reason_code: Array
    grad_norm: Array
    history: History

    @property
    def reason(self):
        """Why the solver stopped, in words (an array of words for a batch)."""
        codes = np.asarray(self.reason_code)
        if codes.ndim == 0:
            return REASONS[int(codes)]
        return np.vectorize(lambda c: REASONS[int(c)])(codes)

    def trace(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, gradient norms) of the iterations actually taken."""
        v, g = np.asarray(self.history.values), np.asarray(self.history.grad_norms)
        keep = np.isfinite(v)
        return v[keep], g[keep]

    def to_dict(self) -> dict:
        values, gnorms = self.trace()
        return {
            "value": float(self.value), "iterations": int(self.iterations),
            "converged": bool(self.converged), "reason": self.reason,
            "grad_norm": float(self.grad_norm), "values": values.tolist(),
            "grad_norms": gnorms.tolist(),
        }

    def _repr_markdown_(self) -> str:
        if np.ndim(self.value) != 0:
            conv = np.asarray(self.converged)
            return (f"**SolveResult** (batch of {conv.size}): {int(conv.sum())} converged, "
                    f"iterations {int(np.min(self.iterations))}–{int(np.max(self.iterations))}")
        rows = [("value", f"{float(self.value):.10g}"), ("iterations", int(self.iterations)),
                ("converged", bool(self.converged)), ("reason", self.reason),
                ("gradient norm", f"{float(self.grad_norm):.3e}")]
        body = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return "**SolveResult**\n\n| field | value |\n|---|---|\n" + body + "\n"


def build_result(state, *, converged_codes=CONVERGED_CODES, converged=None,
                 grad_norm=None) -> SolveResult:
    """The one place a :class:`SolveResult` is made from a solver's final state. A result whose
    value or parameters are not finite is never converged: its reason becomes
    ``"non-finite value"`` (an exact solve of a singular system ends so, and so may a divergent
    iteration)."""
    finite = jnp.isfinite(state.f)
    for leaf in jax.tree_util.tree_leaves(state.x):
        finite &= jnp.all(jnp.isfinite(leaf))
    if converged is None:
        converged = jnp.isin(state.code, jnp.asarray(converged_codes))
    gnorm = entry(state.history.grad_norms, state.k) if grad_norm is None else grad_norm
    code = jnp.where(finite, state.code, NONFINITE).astype(jnp.asarray(state.code).dtype)
    return SolveResult(state.x, state.f, state.k, converged & finite, code, gnorm,
                       state.history)


def empty_history(max_iters: int, dtype) -> History:
    nan = jnp.full((max_iters + 1,), jnp.nan, dtype)
    return History(nan, nan)


def record(history: History, k, value, grad_norm) -> History:
    """Entry ``k`` set to (value, grad_norm). Buffers shorter than ``max_iters + 1`` are a
    window written modulo their length (the work queue of :mod:`.queue` keeps two entries per
    lane and the full buffers outside the loop); full-length buffers are written at ``k``."""
    i = k % history.values.shape[0]
    return History(history.values.at[i].set(value), history.grad_norms.at[i].set(grad_norm))


def entry(buffer, k):
    """Entry ``k`` of a history buffer, full-length or a window (see :func:`record`)."""
    return buffer[k % buffer.shape[0]]


def default_tolerances(dtype, tol, gtol):
    """Defaults from the dtype: tol = eps^(3/4) (1.1e-12 in float64, 6.4e-6 in float32),
    gtol = eps^(2/3)."""
    eps = float(jnp.finfo(dtype).eps)
    return (eps ** 0.75 if tol is None else tol), (eps ** (2 / 3) if gtol is None else gtol)


def expected_bound(f, tol):
    """Below what a step's *expected* decrease counts as none at ``f``: ``tol · max(|f|, tiny)``,
    or ``eps · |f|`` (what f's rounding resolves) where that is more, so ``tol = 0`` ends at
    the floor."""
    finfo = jnp.finfo(jnp.result_type(f))
    return jnp.maximum(tol * jnp.maximum(jnp.abs(f), finfo.tiny), finfo.eps * jnp.abs(f))


def stopping_code(k, f_old, f_new, gnorm, gnorm0, tol, gtol, max_iters, expected=None):
    """The shared termination rule (one place, as optimistix's ``cauchy_termination``).

    * ``‖∇f‖ <= gtol · max(‖∇f(x0)‖, tiny)`` -> converged (gradient);
    * ``0 <= f_old - f_new <= tol · max(|f_new|, tiny)`` -> converged (relative decrease);
      where a solver passes ``expected``, the decrease its next step expects, that too must be
      below :func:`expected_bound` (one short step is not the end);
    * non-finite value -> stopped, not converged; ``k >= max_iters`` -> not converged.
    """
    tiny = jnp.finfo(jnp.result_type(f_new)).tiny
    decrease = f_old - f_new
    bound = tol * jnp.maximum(jnp.abs(f_new), tiny)
    small_decrease = (decrease <= bound) & (decrease >= 0)
    if expected is not None:
        small_decrease &= expected <= expected_bound(f_new, tol)
    code = jnp.where(gnorm <= gtol * jnp.maximum(gnorm0, tiny), GRADIENT, RUNNING)
    code = jnp.where((code == RUNNING) & small_decrease, DECREASE, code)
    code = jnp.where(jnp.isfinite(f_new), code, NONFINITE)
    code = jnp.where((code == RUNNING) & (k >= max_iters), MAX_ITERS, code)
    return code


def tree_norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree_util.tree_leaves(tree)))


def tree_vdot(a, b) -> Array:
    return sum(jnp.sum(jnp.real(jnp.conj(x) * y)) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
