r"""Scale-out with JAX's own machinery: many problems over devices, one big problem's rows over
devices, and several hosts under ``jax.distributed``.

* :func:`solve_batch` — a stack of independent seed-1 problems (one per subcarrier, frame,
  sensor…). The batch axis is placed with a :class:`~jax.sharding.NamedSharding` over a 1-d
  :class:`~jax.sharding.Mesh` of all devices, and ``jax.shard_map`` gives each device its slice
  to solve with the vmapped solver. Each device runs its own ``while_loop``: there is no
  communication at all, not even to agree when to stop.
* :func:`solve_rows` — one problem whose ``n`` rows of ``H`` are spread over the devices. The
  structured gradient ``X G - Y`` is row-parallel with ``G`` (``2m x 2m``) replicated; the
  Hadamard term and the Woodbury capacitance need ``m``-vectors and ``m x m`` sums over rows,
  which XLA's SPMD partitioner turns into all-reduces from the sharding annotations.
* Multi-host: call ``jax.distributed.initialize(...)`` first in every process; ``jax.devices()``
  then lists the devices of all processes, both functions build their mesh over it, every
  process passes the same ``data`` (each process copies only its own shards to its devices), and
  the results are global arrays (``jax.experimental.multihost_utils.process_allgather`` brings
  them to every host). ``tests/test_scale.py`` runs two processes on loopback.

A batch (or ``n``) that the device count does not divide is padded — with copies of the last
problem, or with zero rows, which are exactly inert: their gradient ``2 h G`` is zero at the zero
start — and the padding is cut off at the end. JAX cannot lay an array out unevenly, so in that
case the returned arrays are replicated rather than sharded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._checks import (
    InputError,
    as_real_numpy,
    check_shapes,
    common_float_dtype,
    float_dtype,
    real_scalar,
    start_pair,
    unknown_options,
)
from ._typing import Array, DTypeLike
from .fit import METHODS, check_options, fit_stepper
from .problems.channel import (
    DATA_NAMES,
    DATA_SHAPES,
    Problem,
    channel_statistics,
    check_rank,
    statistics_from_halves,
)
from .solvers.result import SolveResult
from .solvers.stepper import run
from .xla_cpu import batch_compiler_options

_OPTIONS = ("max_iters", "tol", "gtol", "precondition", "refine", "learning_rate",
            "matmul_precision")


def device_mesh(axis_name: str = "batch", devices: Sequence | None = None) -> Mesh:
    """A 1-d mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (axis_name,))


def _validate(data, stacked: bool, dtype=None) -> dict[str, np.ndarray]:
    """Host-side checks (NumPy: nothing is copied to a device before it is placed)."""
    what = "a dict of stacked arrays" if stacked else "a dict of arrays"
    if not isinstance(data, Mapping):
        raise InputError(f"data: expected {what} {', '.join(DATA_NAMES)}, "
                         f"got {type(data).__name__}")
    missing = [k for k in DATA_NAMES if k not in data]
    if missing:
        raise InputError(f"data: missing array(s) {', '.join(missing)} "
                         f"(found: {', '.join(sorted(map(str, data))) or 'none'})")
    ndim = 3 if stacked else 2
    arrays = {k: as_real_numpy(k, data[k], ndim=ndim) for k in DATA_NAMES}
    if stacked:
        b = arrays["A"].shape[0]
        for k, a in arrays.items():
            if a.shape[0] != b:
                raise InputError(f"{k}: expected a leading batch axis of {b} (as A), "
                                 f"got shape {a.shape}")
    one = {k: (a[0] if stacked else a) for k, a in arrays.items()}
    n, m = one["A"].shape
    dims = {"n": n, "m": m, "k": one["P"].shape[1], "q": one["S"].shape[0]}
    check_shapes(DATA_SHAPES, one, dims)
    dtype = (float_dtype("dtype", dtype) if dtype is not None
             else common_float_dtype(*arrays.values()))
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise InputError("dtype: float64 needs jax_enable_x64 (jax.config.update("
                         "'jax_enable_x64', True)); pass dtype='float32' otherwise")
    arrays = {k: a.astype(dtype, copy=False) for k, a in arrays.items()}
    for k, a in arrays.items():
        finite = np.isfinite(a)
        if not finite.all():
            where = ""
            if stacked:
                bad = np.flatnonzero(~finite.reshape(a.shape[0], -1).all(axis=1))
                where = f" in problem(s) {', '.join(map(str, bad[:5]))}" + (
                    "…" if bad.size > 5 else "")
            raise InputError(f"{k}: holds {int((~finite).sum())} NaN/Inf value(s){where}; "
                             "all data must be finite")
    return arrays


def _options(method, options) -> tuple:
    if method not in METHODS:
        raise InputError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        unknown_options("solve_batch", options, _OPTIONS)
    check_options(options)
    return tuple(sorted({"method": method, **options}.items()))


def _place(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array: each process copies only its addressable shards."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _pad(x: np.ndarray, size: int, axis: int, mode: str) -> np.ndarray:
    extra = size - x.shape[axis]
    if extra == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return np.pad(x, widths, mode=mode)


def _check_init(init, shape, dtype):
    return None if init is None else start_pair(init, shape, dtype, host=True)


# --------------------------------------------------------------------------------------------
# Many problems: the batch axis over the devices
# --------------------------------------------------------------------------------------------


CHUNK_BYTES = 16 * 2**20
"""On CPU devices :func:`solve_batch` solves each device's slice in chunks whose data take at
most this many bytes (see its ``chunk_size``)."""


def solve_batch(data: Mapping, *, model: Any = None, method: str | None = None,
                mesh: Mesh | None = None, init: Any = None, ridge: float = 0.0,
                dtype: DTypeLike | None = None, full_result: bool = False,
                chunk_size: int | None = None, verify: str = "start",
                **options: Any) -> tuple[Array, ...] | SolveResult:
    """Solve a stack of problems — seed 1's, or a user's model — the batch spread over all
    devices.

    Args:
      data: for seed 1 (``model=None``), a dict of arrays ``A, B, Z, P, S, W``, each with a
        leading batch axis ``b`` (``A: (b, n, m)``, ``P: (b, 2m, k)``, …). For a model, a dict
        of stacked arrays named by its arguments that are not differentiated (its data).
      model: None (seed 1), a registered derivation's name (``"mf/right"``), a
        :class:`~matgrad_jax.Derivation` or a :class:`~matgrad_jax.model.Model`.
      method: seed 1: ``exact`` (default), ``alternating``, ``cg``, ``lbfgs`` or ``adam`` (see
        :mod:`matgrad_jax.fit`). A model: ``auto`` (default; L-BFGS with backtracking,
        ``lbfgs_backtracking``), ``alternating``, ``lbfgs``, ``adam``, ``cg``, or ``exact``
        where the model has a closed-form solve (see :func:`~matgrad_jax.minimize`).
      mesh: a 1-d mesh (default: :func:`device_mesh` over ``jax.devices()``).
      init: seed 1: optional stacked start ``(R0, Q0)``, each ``(b, n, m)``; zeros by default.
        A model: a dict of stacked starting values named by its differentiated arguments
        (required unless the method is ``exact``).
      verify: a model's hand gradient is audited at the first problem before the batch is
        solved (``"start"``, default; a failure raises
        :class:`~matgrad_jax.GradientMismatch`), also checked inside every problem's loop
        (``"always"``), or not (``"off"``). Seed 1's gradients are audited by the test suite.
      ridge: Tikhonov weight added to every problem.
      dtype: computation dtype (default: the data's widest float).
      full_result: return the batched :class:`SolveResult` instead of ``(R, Q)``.
      chunk_size: each device solves its slice of the batch ``chunk_size`` problems at a time
        (``jax.lax.map`` of the vmapped solver); ``0``: all at once. Default: on CPU devices,
        the largest power of two whose problems' data take at most :data:`CHUNK_BYTES`
        (16 MiB), so that a chunk's intermediates stay in the caches; on other devices, all at
        once (measured in ``docs/performance/xla-cpu.md``).
      options: ``max_iters``, ``tol``, ``gtol``, ``precondition``, ``refine``, ``learning_rate``,
        ``matmul_precision`` (see :func:`~matgrad_jax.fit.fit_stepper`). A model also takes
        ``lanes=N``: each device runs its problems through a work queue of N lanes
        (:mod:`matgrad_jax.solvers.queue`) instead of all at once under ``vmap``.

    Returns:
      ``(R, Q)``, each ``(b, n, m)`` — for a model, its differentiated arrays stacked, in
      ``argnums`` order — sharded over the mesh along the batch axis (replicated when the
      device count does not divide ``b``).
    """
    if model is not None:
        from .scale_model import solve_model_batch

        _no_seed1_options(ridge, dtype)
        return solve_model_batch(data, model, init=init, method=method, mesh=_check_mesh(mesh),
                                 full_result=full_result, chunk_size=chunk_size, verify=verify,
                                 **options)
    method = "exact" if method is None else method
    arrays = _validate(data, stacked=True, dtype=dtype)
    opts = _options(method, options)
    ridge = real_scalar("ridge", ridge)
    check_rank(arrays, ridge, batch=" in every problem")
    b, n, m = arrays["A"].shape
    dt = arrays["A"].dtype
    init = _check_init(init, (b, n, m), dt)
    mesh = _check_mesh(mesh)
    axis = mesh.axis_names[0]
    ndev = mesh.shape[axis]
    padded = -(-b // ndev) * ndev
    sharding = NamedSharding(mesh, P(axis))
    chunk = _chunk_size(chunk_size, arrays, padded // ndev, mesh)
    placed = {k: _place(_pad(a, padded, 0, "edge"), sharding) for k, a in arrays.items()}
    x0 = None if init is None else tuple(_place(_pad(a, padded, 0, "edge"), sharding)
                                         for a in init)
    # Only (R, Q) unless asked: XLA then drops the histories and final values from the program.
    res = _solve_batch_sharded(placed, x0, float(ridge), mesh, opts, bool(full_result), chunk)
    if padded != b:
        res = jax.tree_util.tree_map(lambda x: x[:b], res)
    if not full_result:
        _refuse_nonfinite(res)
    return res


def _no_seed1_options(ridge, dtype) -> None:
    if ridge:
        raise InputError("ridge: a seed-1 option; a model's objective is its own")
    if dtype is not None:
        raise InputError("dtype: a model's problems are solved in their data's dtype; cast the "
                         "arrays instead")


def _refuse_nonfinite(params) -> None:
    """(R, Q) with NaN/Inf rows are never handed back as an answer: the problems whose G was
    numerically singular are named (one host sync, after the solve). With ``full_result`` they
    come back with ``converged=False`` and reason ``"non-finite value"`` instead."""
    flags = jax.jit(lambda R, Q: jnp.all(jnp.isfinite(R), axis=(-2, -1))
                    & jnp.all(jnp.isfinite(Q), axis=(-2, -1)))(*params)
    if flags.ndim and not flags.is_fully_addressable:  # across hosts: each checks its own
        idx = np.asarray(sorted(
            (s.index[0].start or 0) + int(i) for s in flags.addressable_shards
            for i in np.flatnonzero(~np.asarray(s.data))), dtype=int)
        bad = np.zeros(flags.shape[0], bool)
        bad[idx] = True
    else:
        bad = ~np.asarray(flags)
    if bad.ndim and bad.any():
        idx = np.flatnonzero(bad)
        raise InputError(f"problem(s) {', '.join(map(str, idx[:8]))}{'…' if idx.size > 8 else ''}"
                         f": the solve ended non-finite ({idx.size} of {bad.size}; G = K_c K_cᴴ "
                         "numerically singular there?); pass ridge=... > 0, or full_result=True "
                         "for the per-problem results")
    if not bad.ndim and bool(bad):
        raise InputError("the solve ended non-finite (G = K_c K_cᴴ numerically singular?); "
                         "pass ridge=... > 0, or full_result=True")


def _check_mesh(mesh) -> Mesh:
    if mesh is None:
        return device_mesh()
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh: expected a jax.sharding.Mesh (see matgrad_jax.scale.device_mesh)"
                         f" or None, got {type(mesh).__name__} {mesh!r}")
    if len(mesh.axis_names) != 1:
        raise InputError(f"mesh: expected a 1-d mesh, got axes {mesh.axis_names}")
    return mesh


def _chunk_size(chunk_size, arrays, per_device: int, mesh: Mesh) -> int:
    """The chunk each device solves at a time (0: its whole slice); see :func:`solve_batch`."""
    if chunk_size is None:
        if any(d.platform != "cpu" for d in mesh.devices.flat):
            return 0
        b = arrays["A"].shape[0]
        per_problem = max(1, sum(a.nbytes for a in arrays.values()) // b)
        fit = max(1, CHUNK_BYTES // per_problem)
        chunk = 1 << (fit.bit_length() - 1)  # a power of two
    elif isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool) \
            and chunk_size >= 0:
        chunk = int(chunk_size)
    else:
        raise InputError(f"chunk_size: expected None or an integer >= 0, got {chunk_size!r}")
    return 0 if chunk >= per_device else chunk


def _solve_batch_program(arrays, init, ridge, mesh, opts, full=True, chunk=0):
    spec = P(mesh.axis_names[0])
    options = dict(opts)

    def one(a, x0):
        stats = channel_statistics(*(a[k] for k in DATA_NAMES), ridge)
        problem = Problem.from_stats(stats, ridge)
        if x0 is None:
            z = jnp.zeros_like(a["A"])
            x0 = (z, z)
        res = run(fit_stepper(problem, x0, **options))
        return res if full else res.params

    def local(arrays, init):  # this device's slice of the batch
        if chunk:
            return jax.lax.map(lambda a: one(*a), (arrays, init), batch_size=chunk)
        return jax.vmap(one)(arrays, init)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                         check_vma=False)(arrays, init)


@cache
def _solve_batch_jit(method: str):
    """The jitted program for ``method``: the exact solve and CG compile with the small-problem
    options (XLA:CPU's older loop emitter; see :mod:`~matgrad_jax.xla_cpu`), the others
    as usual. Built at the first call, not at import (the options' probe starts the backend)."""
    return jax.jit(_solve_batch_program, compiler_options=batch_compiler_options(method),
                   static_argnames=("ridge", "mesh", "opts", "full", "chunk"))


def _solve_batch_sharded(arrays, init, ridge, mesh, opts, full=True, chunk=0):
    return _solve_batch_jit(dict(opts)["method"])(arrays, init, ridge, mesh, opts, full, chunk)


# --------------------------------------------------------------------------------------------
# One large problem: the rows of H over the devices
# --------------------------------------------------------------------------------------------


def solve_rows(data: Mapping, *, model: Any = None, method: str | None = None,
               mesh: Mesh | None = None, init: Any = None, ridge: float = 0.0,
               dtype: DTypeLike | None = None, full_result: bool = False,
               verify: str = "start", **options: Any) -> tuple[Array, ...] | SolveResult:
    """Solve one problem — seed 1's, or a user's model that declares independent rows — with
    its rows spread over the devices.

    Seed 1 (``model=None``): the rows of ``H`` (and of ``A``, ``B``, ``W``) are sharded; ``G``
    and every other ``m``- or ``k``-sized array is replicated; the per-row work (``X G``, the
    Hadamard term, the Woodbury solve) runs on each device's rows, and XLA inserts the
    all-reduces of the ``m``-vectors and ``m x m`` sums. ``method`` defaults to ``exact``.
    Arguments as :func:`solve_batch`, without the batch axis. Returns ``(R, Q)`` sharded by rows
    (replicated when the device count does not divide ``n``).

    A model (a registered derivation's name, a :class:`~matgrad_jax.Derivation` or a
    :class:`~matgrad_jax.Model`) whose :attr:`~matgrad_jax.Model.rows` say which axes index
    independent rows (``{"X": 0, "U": 0}`` for a factorisation): ``data`` holds its data
    arguments by name, ``init`` its starting parameters (a dict by name, or a tuple in argnums
    order); the named axes are sharded over the mesh (by default the most devices that divide
    the row count), the rest replicated, and one :func:`~matgrad_jax.minimize` runs on them
    (``method`` defaults to ``auto``; ``verify`` as :func:`solve_batch`). Returns the
    parameters in argnums order, row-indexed ones sharded by rows, or the
    :class:`SolveResult`.
    """
    if model is not None:
        from .scale_model import solve_model_rows

        _no_seed1_options(ridge, dtype)
        return solve_model_rows(data, model, init=init, method=method, mesh=mesh,
                                full_result=full_result, verify=verify, **options)
    if verify != "start":
        raise InputError("verify: for a model's hand gradient; seed 1's gradients are audited "
                         "by the test suite")
    method = "exact" if method is None else method
    arrays = _validate(data, stacked=False, dtype=dtype)
    opts = _options(method, options)
    ridge = real_scalar("ridge", ridge)
    check_rank(arrays, ridge)
    n, m = arrays["A"].shape
    q = arrays["S"].shape[0]
    dt = arrays["A"].dtype
    init = _check_init(init, (n, m), dt)
    mesh = _check_mesh(mesh) if mesh is not None else device_mesh("rows")
    axis = mesh.axis_names[0]
    ndev = mesh.shape[axis]
    padded = -(-n // ndev) * ndev
    rows = NamedSharding(mesh, P(axis, None))
    rep = NamedSharding(mesh, P())
    # Zero rows are inert (their gradient 2 h G vanishes at h = 0), so padding is exact.
    W3 = _pad(arrays["W"].reshape(2, n, q), padded, 1, "constant")
    placed = dict(
        A=_place(_pad(arrays["A"], padded, 0, "constant"), rows),
        B=_place(_pad(arrays["B"], padded, 0, "constant"), rows),
        W=_place(W3, NamedSharding(mesh, P(None, axis, None))),
        **{k: _place(arrays[k], rep) for k in ("Z", "P", "S")},
    )
    x0 = None if init is None else tuple(_place(_pad(a, padded, 0, "constant"), rows)
                                         for a in init)
    res = _solve_rows_sharded(placed, x0, float(ridge), mesh, opts)
    if padded != n:
        res = res._replace(params=tuple(x[:n] for x in res.params))
    if not full_result:
        _refuse_nonfinite(res.params)
    return res if full_result else res.params


@partial(jax.jit, static_argnames=("ridge", "mesh", "opts"))
def _solve_rows_sharded(arrays, init, ridge, mesh, opts) -> SolveResult:
    axis = mesh.axis_names[0]
    rows = NamedSharding(mesh, P(axis, None))
    W3 = arrays["W"]  # (2, n, q): the halves, rows sharded alike
    stats = statistics_from_halves(arrays["A"], arrays["B"], arrays["Z"], arrays["P"],
                                   arrays["S"], W3[0], W3[1], ridge)
    stats = stats._replace(**{f: jax.lax.with_sharding_constraint(getattr(stats, f), rows)
                              for f in ("Y", "X0", "dY")})
    if init is None:
        z = jnp.zeros_like(arrays["A"])
        init = (z, z)
    res = run(fit_stepper(Problem.from_stats(stats, ridge), init, **dict(opts)))
    params = tuple(jax.lax.with_sharding_constraint(x, rows) for x in res.params)
    return res._replace(params=params)
