"""``solve_batch(data, model=...)``: a stack of a user's problems, the batch over the devices.

The same layout as the seed-1 batch (:mod:`matgrad_jax.scale`): the stacked data and starting
values are placed with a :class:`~jax.sharding.NamedSharding` over a 1-d mesh, and
``jax.shard_map`` gives each device its slice, which it solves with :func:`~matgrad_jax.minimize`
under ``vmap`` (one ``while_loop`` per device, no communication). The hand gradient is audited
once, on the host, at the first problem, before anything is placed.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._checks import InputError
from .model import Model, as_model, float_dtype_of, to_device

VERIFY = ("start", "always", "off")


def solve_model_batch(data: Mapping | None, model: Any, *, init: Any, method: str | None,
                      mesh: Mesh, full_result: bool, chunk_size: int | None,
                      verify: str = "start", **options: Any):
    """The body of :func:`~matgrad_jax.solve_batch` for a model (see there)."""
    from .minimize import GradientMismatch
    from .scale import _pad as pad
    from .scale import _place as place

    model = as_model(model)
    method = _checked_call(model, method, full_result, verify)
    lanes = _checked_lanes(options.pop("lanes", None), method, chunk_size)
    if chunk_size is not None and not (isinstance(chunk_size, (int, np.integer))
                                       and not isinstance(chunk_size, bool) and chunk_size >= 0):
        raise InputError(f"chunk_size: expected None or an integer >= 0, got {chunk_size!r}")
    arrays, blocks, b = model.prepare(data, stacked=True, init=init if method != "exact" else
                                      None)
    dt = float_dtype_of(arrays, blocks)
    opts = tuple(sorted(options.items()))
    if model.grad is not None and verify in ("start", "always") and method != "exact":
        _audit_first(model, arrays, blocks, dt, GradientMismatch)
    axis = mesh.axis_names[0]
    ndev = mesh.shape[axis]
    padded = -(-b // ndev) * ndev
    sharding = NamedSharding(mesh, P(axis))
    placed = {k: place(pad(np.asarray(a, dt if np.issubdtype(a.dtype, np.floating) else None),
                           padded, 0, "edge"), sharding) for k, a in arrays.items()}
    x0 = None if blocks is None else tuple(place(pad(np.asarray(a, dt), padded, 0, "edge"),
                                                 sharding) for a in blocks)
    chunk = 0 if not chunk_size or chunk_size >= padded // ndev else int(chunk_size)
    res = _program(model, placed, x0, mesh, method, "always" if verify == "always" else "off",
                   opts, bool(full_result), chunk, lanes)
    if padded != b:
        res = jax.tree_util.tree_map(lambda x: x[:b], res)
    if not full_result:
        _refuse_nonfinite(model, res)
    return res


def _checked_call(model: Model, method: str | None, full_result: bool, verify: str) -> str:
    """The method (``auto`` for None), checked against the model, with ``full_result`` and
    ``verify``."""
    from .minimize import METHODS

    method = "auto" if method is None else method
    if method == "exact":
        if model.exact is None:
            raise InputError(f"method: 'exact' needs a closed-form solve, and model "
                             f"{model.name!r} has none; use one of "
                             f"{', '.join(m for m in METHODS if m != 'exact')}")
    elif method not in METHODS:
        raise InputError(f"method: expected one of {', '.join(METHODS + ('exact',))}, "
                         f"got {method!r}")
    if method == "exact" and full_result:
        raise InputError("full_result: a model's exact solve gives its parameters only (no "
                         "iterations or history); pass full_result=False")
    if verify not in VERIFY:
        raise InputError(f"verify: expected one of {VERIFY}, got {verify!r}")
    return method


def _checked_lanes(lanes, method: str, chunk_size) -> int | None:
    """``lanes``: None (every problem of a device at once, under ``vmap``) or the lanes of a
    work queue per device (:func:`~matgrad_jax.solvers.queue.run_queued`)."""
    if lanes is None:
        return None
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes < 1:
        raise InputError(f"lanes: expected None or a positive integer, got {lanes!r}")
    if method == "exact":
        raise InputError("lanes: a work queue runs an iterative method; method 'exact' has no "
                         "iterations")
    if chunk_size:
        raise InputError(f"lanes: a work queue replaces chunk_size; pass one of them, got "
                         f"lanes={lanes}, chunk_size={chunk_size}")
    return int(lanes)


def _audit_first(model: Model, arrays, blocks, dt, mismatch) -> None:
    """The hand gradient audited at the first problem (its data and start), on the host."""
    first = to_device({k: a[0] for k, a in arrays.items()}, dt)
    report = model.audit(first, tuple(jnp.asarray(a[0], dt) for a in blocks))
    if not report.passed:
        raise mismatch(report)


@partial(jax.jit, static_argnames=("model", "mesh", "method", "verify", "opts", "full",
                                   "chunk", "lanes"))
def _program(model, arrays, init, mesh, method, verify, opts, full, chunk, lanes=None):
    from .minimize import minimize, minimize_stepper
    from .solvers.queue import run_queued

    spec = P(mesh.axis_names[0])
    options = dict(opts)

    def one(d, x0):
        if method == "exact":
            params = model.exact(**d)
            return tuple(params) if isinstance(params, (tuple, list)) else (params,)
        res = minimize(model.objective(d), x0, grad=model.gradient(d), method=method,
                       verify=verify, domains=None, **model.method_options(method, options))
        return res.result if full else res.params

    def make(d, x0):
        return minimize_stepper(model.objective(d), x0, grad=model.gradient(d), method=method,
                                verify=verify, **model.method_options(method, options))

    def local(d, x0):
        if lanes:
            res = run_queued(make, d, x0, lanes=lanes)
            return res if full else res.params
        if chunk:
            return jax.lax.map(lambda a: one(*a), (d, x0), batch_size=chunk)
        return jax.vmap(one)(d, x0)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                         check_vma=False)(arrays, init)


def _refuse_nonfinite(model: Model, params: tuple) -> None:
    """Parameters with NaN/Inf are never handed back as an answer: the problems are named."""
    flags = jax.jit(lambda ps: jnp.stack([
        jnp.all(jnp.isfinite(p.reshape(p.shape[0], -1)), axis=1) for p in ps]).all(axis=0))(
        tuple(params))
    if not flags.is_fully_addressable:
        return  # across hosts each process sees its own shards; full_result=True to inspect
    bad = np.flatnonzero(~np.asarray(flags))
    if bad.size:
        raise InputError(f"problem(s) {', '.join(map(str, bad[:8]))}{'…' if bad.size > 8 else ''}"
                         f": the fit of model {model.name!r} ended non-finite ({bad.size} of "
                         f"{flags.shape[0]}); pass full_result=True for the per-problem results")


# One problem of a model, its independent rows over the devices
# --------------------------------------------------------------------------------------------


def solve_model_rows(data: Mapping | None, model: Any, *, init: Any, method: str | None,
                     mesh: Mesh | None, full_result: bool, verify: str = "start",
                     **options: Any):
    """The body of :func:`~matgrad_jax.solve_rows` for a model (see there)."""
    from math import gcd

    from .minimize import GradientMismatch
    from .scale import _check_mesh
    from .scale import _place as place

    model = as_model(model)
    if not model.rows:
        raise InputError(f"model: {model.name!r} declares no independent rows, which "
                         "solve_rows spreads over the devices; register it with rows={name: "
                         "axis} (e.g. rows={'X': 0, 'U': 0} for a factorisation)")
    method = _checked_call(model, method, full_result, verify)
    arrays, blocks, _ = model.prepare(data, init=init if method != "exact" else None)
    named = {**arrays, **dict(zip(model.param_names, blocks or ()))}
    n, first = None, None
    for name, axis in model.rows.items():
        if name not in named:
            continue  # a parameter with no start (an exact solve): it is the answer
        shape = named[name].shape
        if len(shape) <= axis:
            raise InputError(f"{name}: model {model.name!r} declares its rows along axis "
                             f"{axis}, but it has shape {shape}")
        if n is None:
            n, first = shape[axis], name
        elif shape[axis] != n:
            raise InputError(f"{name}: expected {n} rows along axis {axis} (as {first}), got "
                             f"{shape[axis]} (shape {shape})")
    if mesh is None:
        # JAX lays an array out evenly: the most devices that divide the rows (a model's rows
        # cannot be padded in general, unlike seed 1's inert zero rows)
        devices = jax.devices()
        mesh = Mesh(np.array(devices[:gcd(n, len(devices))]), ("rows",))
    else:
        mesh = _check_mesh(mesh)
        if n % mesh.devices.size:
            raise InputError(f"mesh: its {mesh.devices.size} devices do not divide the {n} rows "
                             f"of {first}; pass a mesh whose size divides {n}, or mesh=None")
    dt = float_dtype_of(arrays, blocks)
    if model.grad is not None and verify in ("start", "always") and method != "exact":
        report = model.audit(to_device(arrays, dt), tuple(jnp.asarray(b, dt) for b in blocks))
        if not report.passed:
            raise GradientMismatch(report)
    axis_name = mesh.axis_names[0]

    def sharding(name, ndim):
        axis = model.rows.get(name)
        return NamedSharding(mesh, P() if axis is None else
                             P(*(axis_name if i == axis else None for i in range(ndim))))

    placed = {k: place(np.asarray(a, dt if np.issubdtype(a.dtype, np.floating) else None),
                       sharding(k, a.ndim)) for k, a in arrays.items()}
    shardings = x0 = None
    if blocks is not None:
        shardings = tuple(sharding(name, b.ndim) for name, b in zip(model.param_names, blocks))
        x0 = tuple(place(np.asarray(b, dt), s) for b, s in zip(blocks, shardings))
    res = _rows_program(model, placed, x0, shardings, method,
                        "always" if verify == "always" else "off",
                        tuple(sorted(options.items())), bool(full_result))
    if not full_result:
        if not all(bool(jnp.all(jnp.isfinite(p))) for p in res):
            raise InputError(f"the fit of model {model.name!r} ended non-finite; pass "
                             "full_result=True for the result")
    return res


@partial(jax.jit, static_argnames=("model", "shardings", "method", "verify", "opts", "full"))
def _rows_program(model, arrays, init, shardings, method, verify, opts, full):
    """One solve on row-sharded inputs: XLA's SPMD partitioner turns the sums over rows into
    all-reduces; the row-indexed parameters stay sharded by rows."""
    from .minimize import minimize

    if method == "exact":
        params = model.exact(**arrays)
        return tuple(params) if isinstance(params, (tuple, list)) else (params,)
    res = minimize(model.objective(arrays), init, grad=model.gradient(arrays), method=method,
                   verify=verify, domains=None, **model.method_options(method, dict(opts)))
    params = tuple(jax.lax.with_sharding_constraint(p, s)
                   for p, s in zip(res.params, shardings))
    return res.result._replace(params=params) if full else params
