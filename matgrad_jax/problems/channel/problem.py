"""A seed-1 data set as a pytree (:class:`Problem`): validated once, statistics computed once,
its value, gradient, Hessian product and exact solve; the data-level :func:`solve_exact`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ..._checks import (
    InputError,
    check_finite,
    check_shapes,
    check_solver_options,
    float_dtype,
    is_concrete,
    real_input,
    real_scalar,
)
from ..._typing import ArrayLike
from ...precision import fit_precision
from .literal import DATA_NAMES, DATA_SHAPES
from .operator import NormalOperator, _solve_exact_jit, solve_exact_stats
from .statistics import ChannelStats, _statistics_jit, channel_statistics
from .structured import structured_value_and_grad


def validate_data(A, B, Z, P, S, W, *, dtype=None) -> dict[str, Array | np.ndarray]:
    """Check names, ranks, shapes (in terms of n, m, k, q), dtypes and finiteness; cast to one
    dtype.

    Raises :class:`~matgrad_jax._checks.InputError` with one line naming the array. Returns the
    arrays as jitted code takes them: host input (lists, NumPy) as NumPy arrays, cast and checked
    on the host, which the jitted call then moves itself (for a small problem ``device_put``
    cost more than the solve); JAX arrays where they are, checked in one jitted reduction.
    """
    raw = dict(A=A, B=B, Z=Z, P=P, S=S, W=W)
    checked = {name: real_input(name, raw[name]) for name in DATA_NAMES}
    arrays = {name: a for name, (a, _) in checked.items()}
    n, m = arrays["A"].shape
    k = arrays["P"].shape[1]
    q = arrays["S"].shape[0]
    check_shapes(DATA_SHAPES, arrays, {"n": n, "m": m, "k": k, "q": q})
    dtype = jax.dtypes.canonicalize_dtype(
        float_dtype("dtype", dtype) if dtype is not None
        else np.result_type(*(d for _, d in checked.values()), np.float32))
    arrays = {name: a.astype(dtype) if isinstance(a, jax.Array) else np.asarray(a, dtype)
              for name, a in arrays.items()}
    check_finite(arrays)
    return arrays


def rank_problem(arrays, ridge, *, batch: str = "") -> str | None:
    """Why ``G = K_cK_cᴴ`` is singular by its shapes (rank at most ``min(k, q)`` below ``m``,
    and no ridge), or None. A minimiser then is not unique and every exact solve ends in NaN."""
    m = arrays["A"].shape[-1]
    k, q = arrays["P"].shape[-1], arrays["S"].shape[-2]
    if ridge == 0 and min(k, q) < m:
        return (f"G = K_c K_cᴴ is singular{batch}: its rank is at most min(k, q) = {min(k, q)} "
                f"< m = {m} (k={k}, q={q}), so the minimiser is not unique; pass ridge > 0 "
                "(matgrad fit --ridge; e.g. 1e-6 times the data's scale), or more columns in P "
                "/ rows in S")
    return None


def check_rank(arrays, ridge, *, batch: str = "") -> None:
    """:func:`rank_problem` as an :class:`InputError`."""
    why = rank_problem(arrays, ridge, batch=batch)
    if why:
        raise InputError(why)


def numerical_problem(Gr, Gi) -> str | None:
    """Why ``G`` is numerically singular, or None, tested by a Cholesky on the host: a failed
    one, or a pivot below ``m·eps`` of the largest diagonal entry (the smallest eigenvalue is at
    most the smallest squared pivot), as for P = 0."""
    G = np.asarray(Gr, np.float64) + 1j * np.asarray(Gi, np.float64)
    m = G.shape[-1]
    eps = float(np.finfo(np.asarray(Gr).dtype).eps)
    top = float(np.max(np.real(np.diagonal(G))))
    try:
        piv = np.real(np.diagonal(np.linalg.cholesky(G))) ** 2
        small = not top > 0 or float(piv.min()) <= m * eps * top
    except np.linalg.LinAlgError:
        small = True
    if small:
        return ("G = K_c K_cᴴ (+ ridge I) is numerically singular (P or S carries too little "
                f"energy: largest diagonal entry {top:.3g}), so the minimiser is not unique; "
                "pass ridge > 0 (matgrad fit --ridge)")
    return None


@jax.tree_util.register_pytree_node_class
class Problem:
    """A seed-1 data set, validated once, with the structured statistics precomputed.

    ``Problem(A, B, Z, P, S, W, ridge=0.0)`` checks shapes, dtypes and finiteness (one clear
    error naming the array), then computes :class:`ChannelStats`. ``singular`` says why ``G``
    is singular (its shapes, or a failed Cholesky), or is None: the value, gradient and Hessian
    product are defined either way, but :func:`~matgrad_jax.fit` refuses to solve. It is a
    pytree: it passes through ``jit``/``vmap`` and can be stacked for batches. ``ridge`` adds
    ``ridge * (||R||² + ||Q||²)`` to the objective. ``reference=False`` skips the value's
    reference point (16 products by G, often more than an exact solve costs): right for
    ``exact`` and ``cg``, which do not use it; value-based methods in float32
    (``alternating``, ``lbfgs``) want it (see :func:`channel_statistics`).
    """

    def __init__(self, A, B, Z, P, S, W, *, ridge: float = 0.0, dtype=None,
                 reference: bool = True):
        arrays = validate_data(A, B, Z, P, S, W, dtype=dtype)
        if is_concrete(ridge):
            ridge = real_scalar("ridge", ridge)
        self.stats = _statistics_jit(*(arrays[k] for k in DATA_NAMES), ridge,
                                     reference=reference)
        self.ridge = ridge
        self.singular = None
        if is_concrete(ridge) and is_concrete(self.stats.Gr):
            self.singular = (rank_problem(arrays, ridge)
                             or numerical_problem(self.stats.Gr, self.stats.Gi))

    # pytree protocol -------------------------------------------------------------------------
    def tree_flatten(self) -> tuple[tuple, None]:
        return (self.stats, self.ridge), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.stats, obj.ridge = children
        obj.singular = None  # not known for a Problem rebuilt from its statistics
        return obj

    @classmethod
    def from_stats(cls, stats: ChannelStats, ridge=0.0) -> Problem:
        return cls.tree_unflatten(None, (stats, ridge))

    # shapes ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``: the shape of R and of Q."""
        return tuple(self.stats.A.shape[-2:])

    @property
    def dtype(self):
        return self.stats.A.dtype

    def _check_point(self, R, Q):
        for name, x in (("R", R), ("Q", Q)):
            if tuple(jnp.shape(x)[-2:]) != self.shape:
                raise InputError(f"{name}: expected shape (n, m) = {self.shape}, "
                                 f"got {tuple(jnp.shape(x))}")

    # the objective ---------------------------------------------------------------------------
    def value(self, R: ArrayLike, Q: ArrayLike) -> Array:
        """φ(R, Q) from the statistics (jitted)."""
        self._check_point(R, Q)
        return _value_and_grad_jit(self, R, Q)[0]

    def grad(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        """(∂φ/∂R, ∂φ/∂Q), the structured hand gradient (jitted)."""
        self._check_point(R, Q)
        return _grad_jit(self, R, Q)

    def value_and_grad(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, tuple[Array, Array]]:
        self._check_point(R, Q)
        return _value_and_grad_jit(self, R, Q)

    # used inside solvers (no checks, traceable) ---------------------------------------------------
    def fun(self, R: ArrayLike, Q: ArrayLike) -> Array:
        return structured_value_and_grad(self.stats, R, Q)[0]

    def grad_fn(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        return structured_value_and_grad(self.stats, R, Q)[1]

    def hvp(self, R: ArrayLike, Q: ArrayLike) -> tuple[Array, Array]:
        """The Hessian times the direction ``(R, Q)``, in closed form: twice the normal operator
        (:class:`~matgrad_jax.problems.channel.operator.NormalOperator`). The objective is
        quadratic, so this equals the ``jvp`` of :meth:`grad_fn` at any point. CG uses it (under
        ``vmap`` on XLA:CPU its row sums are stored, where a ``jvp``'s tangent sums would be
        recomputed for every entry)."""
        Lr, Li = self.operator.mv(R, Q)
        return 2 * Lr, 2 * Li

    @property
    def operator(self) -> NormalOperator:
        r"""Half the Hessian, :math:`H \mapsto HG + C\,\mathrm{Diag}(\mathrm{Re}\langle
        c_j, h_j\rangle)`, as a named operator with its products and Woodbury solve."""
        return NormalOperator(self.stats)

    def block_preconditioners(self) -> tuple[Callable, Callable]:
        """Right preconditioners for the block steps, ``g -> g L_R⁻¹`` for R and ``g L_Q⁻¹``
        for Q: the exact inverses of each block's Hessian (halved,
        :meth:`~matgrad_jax.problems.channel.operator.NormalOperator.block_inverses`).

        The step along ``-g L_R⁻¹`` with the exact line search then lands on the block's
        minimiser (the seed's method with each block solved exactly). Preconditioning by
        ``Re G`` alone, without the Hadamard term's rank-one pieces, left the alternating method
        at a relative gap of 0.25 after 3000 sweeps when ``Re G`` is ill-conditioned.
        """
        return self.operator.block_inverses()

    def solve_exact(self) -> tuple[Array, Array]:
        """The exact minimiser (see :func:`solve_exact`)."""
        return _solve_exact_jit(self.stats)

    def __repr__(self):
        n, m = self.shape
        return f"Problem(n={n}, m={m}, dtype={self.dtype}, ridge={self.ridge})"


@jax.jit
@fit_precision
def _value_and_grad_jit(problem: Problem, R, Q):
    return structured_value_and_grad(problem.stats, R, Q)


@jax.jit
@fit_precision
def _grad_jit(problem: Problem, R, Q):
    return structured_value_and_grad(problem.stats, R, Q)[1]


@partial(jax.jit, static_argnames="refine")
@fit_precision
def _solve_exact_data_jit(A, B, Z, P, S, W, ridge, refine: int = 0):
    """Statistics, exact solve and its finiteness flag in one program: a single dispatch and
    one scalar back to the host per call of :func:`solve_exact`."""
    R, Q = solve_exact_stats(channel_statistics(A, B, Z, P, S, W, ridge, reference=False),
                             refine=refine)
    return R, Q, jnp.all(jnp.isfinite(R)) & jnp.all(jnp.isfinite(Q))


def solve_exact(A: ArrayLike, B: ArrayLike, Z: ArrayLike, P: ArrayLike, S: ArrayLike, W: ArrayLike,
                *, ridge: float = 0.0, refine: int = 0) -> tuple[Array, Array]:
    r"""The minimiser of the seed-1 objective (+ ``ridge * (||R||² + ||Q||²)``), in closed form.

    The objective is a convex quadratic in :math:`H = R + iQ`; its normal equations read
    :math:`HG + C\,\mathrm{Diag}(\mathrm{Re}\langle c_j,h_j\rangle)
    = Y + C\,\mathrm{Diag}(\mathrm{diag}Z)`
    with :math:`C = A + iB`, :math:`G = K_cK_c^H + \text{ridge}\,I`, :math:`Y = W_cK_c^H`: a
    Kronecker-structured operator plus ``m`` rank-one column terms. A Cholesky of ``G`` and an
    ``m x m`` Woodbury capacitance solve them in :math:`O(m^3 + nm^2)` after the statistics.

    ``G`` is singular whenever ``min(k, q) < m``; with ``ridge == 0`` that is an
    :class:`InputError` (pass ``ridge > 0``). ``refine`` steps of iterative refinement recover
    accuracy lost to ``cond(G) * eps`` in float32.

    Returns:
      ``(R, Q)``.
    """
    arrays = validate_data(A, B, Z, P, S, W)
    check_solver_options(refine=refine)
    n, m = arrays["A"].shape
    k, q = arrays["P"].shape[1], arrays["S"].shape[0]
    if is_concrete(ridge) and ridge == 0 and min(k, q) < m:
        raise InputError(
            f"G = K_c K_c^H is singular: rank <= min(k, q) = {min(k, q)} < m = {m}; "
            "the minimiser is not unique; pass ridge > 0"
        )
    if is_concrete(ridge) and not (np.isfinite(ridge) and ridge >= 0):
        raise InputError(f"ridge: expected a finite value >= 0, got {ridge}")
    R, Q, finite = _solve_exact_data_jit(*(arrays[k_] for k_ in DATA_NAMES), ridge,
                                         refine=refine)
    if is_concrete(finite) and not bool(finite):
        raise InputError(
            "G = K_c K_c^H (+ ridge I) is numerically singular (its Cholesky failed); "
            "pass a larger ridge"
        )
    return R, Q
