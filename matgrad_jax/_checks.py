"""Boundary checks: one clear error naming the argument, what was expected and what was given.

These run once, where data enters (``Problem(...)``, file loading, public solvers); the numerical
code behind them trusts its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class InputError(ValueError):
    """Bad input at the library boundary; the message is one line meant for a person."""


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def as_real_array(name: str, x, *, ndim: int = 2, dtype=None) -> jax.Array:
    """Convert ``x`` to a real floating JAX array of rank ``ndim`` or raise :class:`InputError`.

    A JAX array is checked from its metadata and stays where it is (a device array is not
    copied to the host and back)."""
    arr = x if isinstance(x, jax.Array) else _host_array(name, x)
    dtype = _check_real(name, arr, ndim, dtype)
    return jnp.asarray(arr, dtype=dtype)


def real_input(name: str, x, *, ndim: int = 2):
    """``(array, dtype)``: ``x`` checked as :func:`as_real_array` checks it, and the floating
    dtype it converts to (canonical: float32 where x64 is off), with nothing converted or moved
    yet. A JAX array is returned as it is; anything else as a NumPy array."""
    arr = x if isinstance(x, jax.Array) else _host_array(name, x)
    return arr, jax.dtypes.canonicalize_dtype(_check_real(name, arr, ndim, None))


def as_real_numpy(name: str, x, *, ndim: int = 2, dtype=None) -> np.ndarray:
    """:func:`as_real_array` on the host: a NumPy array (nothing is copied to a device)."""
    arr = _host_array(name, x)
    return arr.astype(_check_real(name, arr, ndim, dtype), copy=False)


def _host_array(name, x) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - anything unconvertible is the user's input
        raise InputError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise InputError(f"{name}: object arrays are not accepted (got dtype=object)")
    return arr


def _check_real(name, arr, ndim, dtype):
    """Rank, emptiness and kind checks; returns the floating dtype to convert to."""
    if arr.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}-d array, got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise InputError(f"{name}: empty array (shape {tuple(arr.shape)})")
    kind = np.dtype(arr.dtype).kind
    if kind == "c":
        raise InputError(f"{name}: expected real data, got complex dtype {arr.dtype}")
    if arr.dtype.name == "bfloat16" or (kind == "f" and arr.dtype.itemsize < 4):
        return np.dtype(np.float32) if dtype is None else dtype  # widened: float16, bfloat16
    if kind not in "fiub":
        raise InputError(f"{name}: expected a real numeric array (float32/float64, or "
                         f"integers), got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if kind == "f" else jnp.result_type(float)
    return dtype


def check_finite(arrays: Mapping[str, jax.Array | np.ndarray]) -> None:
    """Raise :class:`InputError` naming the first array holding NaN or Inf (concrete arrays only).

    NumPy arrays are checked on the host; JAX arrays in one jitted reduction and one transfer of
    the flags, whatever their number (a host sync per array cost more than a small solve)."""
    names = [k for k, a in arrays.items() if is_concrete(a)]
    on_device = [k for k in names if isinstance(arrays[k], jax.Array)]
    flags = dict(zip(on_device, np.asarray(_all_finite([arrays[k] for k in on_device]))
                     if on_device else ()))
    for name in names:
        a = arrays[name]
        ok = flags[name] if name in flags else bool(np.isfinite(np.asarray(a)).all())
        if not ok:
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(np.asarray(a))))
            raise InputError(f"{name}: holds {bad} NaN/Inf value(s); all data must be finite")


@jax.jit
def _all_finite(arrays):
    return jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays])


def check_shapes(expected: Mapping[str, tuple], arrays: Mapping[str, jax.Array],
                 dims: Mapping[str, int]) -> None:
    """Check symbolic shapes such as ``{"P": ("2m", "k")}`` against ``dims = {"m": 3, ...}``.

    The error names the array, the expected shape in symbols and numbers, and the actual shape.
    """
    for name, sym in expected.items():
        want = tuple(_eval_dim(s, dims) for s in sym)
        got = tuple(arrays[name].shape)
        if got != want:
            sym_txt = "(" + ", ".join(sym) + ")"
            raise InputError(
                f"{name}: expected shape {sym_txt} = {want} with "
                + ", ".join(f"{k}={v}" for k, v in dims.items())
                + f", got {got}"
            )


def _eval_dim(sym: str, dims: Mapping[str, int]) -> int:
    if sym in dims:
        return dims[sym]
    if sym[:-1].isdigit() and sym[-1] in dims:
        return int(sym[:-1]) * dims[sym[-1]]
    raise KeyError(sym)


def common_float_dtype(*arrays) -> np.dtype:
    """The floating dtype all arrays are computed in (the widest floating input)."""
    return np.result_type(*[np.dtype(a.dtype) for a in arrays], np.float32)


def start_pair(init, shape: tuple, dtype, *, dims: str | None = None, host: bool = False):
    """A start ``init = (R0, Q0)`` checked: a pair of real, finite arrays of ``shape`` (called
    ``dims`` in the message, e.g. ``"(n, m)"``), cast to ``dtype``; NumPy arrays on the host
    when ``host`` (see :func:`as_real_numpy`), else JAX arrays left where they are. Tracers pass
    the finiteness check unchecked (see :func:`check_finite`)."""
    if not (isinstance(init, Sequence) and len(init) == 2):
        got = (f"a sequence of {len(init)}" if isinstance(init, Sequence)
               else type(init).__name__)
        raise InputError(f"init: expected a pair (R0, Q0), got {got}")
    convert = as_real_numpy if host else as_real_array
    start = {name: convert(name, x, ndim=len(shape), dtype=dtype)
             for name, x in zip(("R0", "Q0"), init)}
    want = f"{dims} = {tuple(shape)}" if dims else f"{tuple(shape)}"
    for name, x in start.items():
        if tuple(x.shape) != tuple(shape):
            raise InputError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    check_finite(start)
    return start["R0"], start["Q0"]


def float_dtype(name: str, dtype) -> np.dtype:
    """``dtype`` as float32 or float64 (the dtypes the solvers compute in), or
    :class:`InputError` naming ``name``, what it expects and what it got."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"{name}: expected a real floating dtype (float32, float64), "
                         f"got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise InputError(f"{name}: expected a real floating dtype (float32, float64), got {dt}"
                         + (" (the solvers compute in float32 or float64; cast the data)"
                            if dt.kind == "f" or dt.name == "bfloat16" else ""))
    return dt


def real_scalar(name: str, value, *, minimum: float = 0.0) -> float:
    """A finite real scalar >= ``minimum`` (concrete), or :class:`InputError` naming it."""
    if isinstance(value, bool):
        raise InputError(f"{name}: expected a finite number >= {minimum:g}, got {value!r}")
    if np.ndim(value) != 0:
        raise InputError(f"{name}: expected a scalar, got an array of shape "
                         f"{tuple(np.shape(value))}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a finite number >= {minimum:g}, got "
                         f"{value!r}") from None
    if not (np.isfinite(v) and v >= minimum):
        raise InputError(f"{name}: expected a finite number >= {minimum:g}, got {v}")
    return v


def unknown_options(where: str, options, known) -> None:
    """:class:`InputError` for an option ``where`` does not take, with the nearest known name
    (a typo such as ``max_iter`` reads as one line, not a TypeError from inside)."""
    import difflib

    bad = sorted(set(options) - set(known))
    if bad:
        hints = []
        for b in bad:
            close = difflib.get_close_matches(b, list(known), n=1)
            hints.append(f"{b!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InputError(f"{where}: unexpected option(s) {', '.join(hints)}; it takes "
                         f"{', '.join(sorted(known))}")


def check_sizes(**sizes) -> None:
    """Each of ``sizes`` an integer >= 1, or :class:`InputError` naming the first that is not."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}: expected a positive integer, got {value!r}")


def check_solver_options(*, max_iters=None, tol=None, gtol=None, learning_rate=None,
                         refine=None, memory_size=None, decay_steps=None,
                         newton_iters=None) -> None:
    """Check a solver's scalar options where they enter, before any tracing.

    ``max_iters``, ``refine``: integers ``>= 0`` (``max_iters=0`` evaluates the start only);
    ``memory_size``, ``decay_steps``: integers ``>= 1``; ``tol``, ``gtol``: finite reals
    ``>= 0``; ``learning_rate``: a finite real ``>= 0`` (0 freezes the iterates, a negative rate
    would climb) or an optax schedule (a callable).
    None means "the default" and is not checked, nor is a traced value (under ``jit``/``vmap``
    a tolerance may be an array; its value is not known here)."""
    for name, value, least in (("max_iters", max_iters, 0), ("refine", refine, 0),
                               ("memory_size", memory_size, 1),
                               ("newton_iters", newton_iters, 1),
                               ("decay_steps", decay_steps, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name}: expected an integer >= {least}, "
                             f"got {value!r} ({type(value).__name__})")
        if value < least:
            raise InputError(f"{name}: expected an integer >= {least}, got {value}")
    for name, value in (("tol", tol), ("gtol", gtol), ("learning_rate", learning_rate)):
        if value is None or not is_concrete(value) or (name == "learning_rate"
                                                       and callable(value)):
            continue
        try:
            x = np.asarray(value)
            ok_kind = x.shape == () and x.dtype.kind in "fiu"  # not bool (kind "b")
        except Exception:  # noqa: BLE001 - anything unconvertible is the user's input
            ok_kind = False
        if not ok_kind:
            raise InputError(f"{name}: expected a real number >= 0, got {value!r}")
        v = float(x)
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name}: expected a finite real number >= 0, got {v}")


def check_blocks(init) -> tuple:
    """``init`` as a tuple of float blocks (a lone array is one block), or :class:`InputError`
    naming ``init``."""
    if isinstance(init, (tuple, list)):
        if not init:
            raise InputError("init: expected a tuple of blocks (arrays), got an empty one")
        blocks = tuple(init)
    elif hasattr(init, "shape") and hasattr(init, "dtype"):
        blocks = (init,)
    else:
        raise InputError(f"init: expected an array or a tuple of arrays (one per block), got "
                         f"{type(init).__name__}")
    out = []
    for i, b in enumerate(blocks):
        leaves = jax.tree_util.tree_leaves(b)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.inexact)
                                 for x in leaves):
            raise InputError(f"init[{i}]: expected a float array (or pytree of them), got "
                             f"{type(b).__name__}")
        out.append(jax.tree_util.tree_map(jnp.asarray, b))
    return tuple(out)


def check_block_gradient(grad, blocks, out=None) -> None:
    """The hand gradient's structure against the blocks, before anything iterates (a wrong
    shape would otherwise surface as 'jvp called with different primal and tangent shapes').
    ``out``: its output's shapes where a trace already found them."""
    if out is None:
        try:
            out = jax.eval_shape(grad, *blocks)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"grad: raised {type(exc).__name__} at init: {exc}") from None
    if len(blocks) == 1 and not isinstance(out, (tuple, list)):
        out = (out,)
    out = tuple(out) if isinstance(out, (tuple, list)) else out
    want = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), blocks)
    if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(want):
        raise InputError(f"grad: returned {jax.tree_util.tree_structure(out)}; expected one "
                         f"gradient per block of init, {jax.tree_util.tree_structure(want)}")
    for i, (g, b) in enumerate(zip(jax.tree_util.tree_leaves(out),
                                   jax.tree_util.tree_leaves(want))):
        if tuple(g.shape) != tuple(b.shape):
            raise InputError(f"grad: its gradient {i} has shape {tuple(g.shape)}; expected "
                             f"{tuple(b.shape)} (the shape of its block)")
