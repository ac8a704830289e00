"""Compiled programs keyed on what a function computes, not on which Python object it is.

A notebook cell that is run again defines a new ``fun``; ``jax.jit`` keys its cache on the
function object, so every re-audit used to trace and compile its programs afresh. Here a
function is traced once per call (:func:`trace`) into a :class:`Traced`: a pytree whose
children are the arrays the function closes over (passed to the program as arguments, so a
changed array is seen) and whose static part is the jaxpr, compared by its printed text (which
holds every shape, dtype, primitive parameter and literal constant, so a changed Python scalar
is seen). Two functions that compute the same thing share one compiled program.

Never stale: a jaxpr whose parameters hold something the text cannot pin down (a host callback,
a nested jaxpr with constants of its own, any object printed by identity) is not shared: it
runs through a fresh ``jax.jit`` every call. A custom derivative rule does not enter a program
that only evaluates the function, and is traced into the text of one that differentiates it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable

import jax
import numpy as np

try:  # jax >= 0.4.36
    from jax.extend.core import ClosedJaxpr, Jaxpr
except ImportError:  # pragma: no cover - older jax
    from jax.core import ClosedJaxpr, Jaxpr

_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.dtype, np.generic)


class _Structure:
    """The static half of a :class:`Traced`: equal when the printed programs are equal."""

    __slots__ = ("key", "jaxpr", "in_tree", "out_tree", "_hash")

    def __init__(self, key, jaxpr, in_tree, out_tree):
        self.key, self.jaxpr, self.in_tree, self.out_tree = key, jaxpr, in_tree, out_tree
        self._hash = hash(key)

    def __eq__(self, other):
        return isinstance(other, _Structure) and self._hash == other._hash and \
            self.key == other.key

    def __hash__(self):
        return self._hash


class Traced:
    """A traced function: ``structure`` (static) and ``consts`` (the arrays it closes over)."""

    def __init__(self, structure: _Structure, consts):
        self.structure, self.consts = structure, tuple(consts)

    def out_shapes(self):
        """The output's structure, shapes and dtypes (``jax.eval_shape``'s answer)."""
        s = self.structure
        return jax.tree_util.tree_unflatten(
            s.out_tree, [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in s.jaxpr.outvars])

    def __call__(self, *args):
        s = self.structure
        flat = jax.tree_util.tree_leaves(args)
        out = jax.core.eval_jaxpr(s.jaxpr, self.consts, *flat)
        return jax.tree_util.tree_unflatten(s.out_tree, out)


jax.tree_util.register_pytree_node(
    Traced, lambda t: (t.consts, t.structure), lambda s, c: Traced(s, c))


def _plain(value) -> bool:
    """Whether a primitive parameter is pinned down by its printed form: plain values,
    enums, named tuples and nested jaxprs of plain values; nothing callable or opaque."""
    if isinstance(value, _PLAIN) or isinstance(value, (type, enum.Enum)):
        return True
    if isinstance(value, (tuple, list, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, ClosedJaxpr):
        return not value.consts and cacheable(value.jaxpr)
    if isinstance(value, Jaxpr):
        return cacheable(value)
    if type(value).__name__ in ("Mesh", "AbstractMesh"):
        return True
    if callable(value) or type(value).__name__ in _OPAQUE:
        return False  # a rule or callback: its behaviour is not in the text
    if hasattr(value, "_fields"):  # NamedTuple parameters (dimension numbers)
        return all(_plain(v) for v in value)
    text = repr(value)
    return " at 0x" not in text and "object at" not in text


_OPAQUE = ("WrappedFun", "HashableFunction", "Partial")


_RULES = ("jvp_jaxpr_fun", "jvp_jaxpr_thunk", "jvp", "fwd_jaxpr_thunk", "bwd", "out_trees",
          "fwd", "symbolic_zeros")
"""A custom derivative's rules: they do not enter the program that evaluates the jaxpr (only
its ``call_jaxpr`` does), and a differentiated program has them traced into its text."""


def cacheable(jaxpr) -> bool:
    """Whether the program that evaluates ``jaxpr`` is pinned down by its text: no host
    callback (its Python code is not printed), no opaque parameter, recursively."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if "callback" in name:
            return False
        custom = name.startswith("custom")
        for key, value in eqn.params.items():
            if custom and key in _RULES:
                continue
            if not _plain(value):
                return False
    return True


def trace(fn: Callable, *args) -> tuple[Traced, bool]:
    """``fn`` traced at ``args``' shapes and dtypes; and whether its program may be shared."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    jaxpr = closed.jaxpr
    in_tree = jax.tree_util.tree_structure(args)
    out_tree = jax.tree_util.tree_structure(out_shape)
    key = (str(jaxpr), str(in_tree), str(out_tree))
    return Traced(_Structure(key, jaxpr, in_tree, out_tree), closed.consts), cacheable(jaxpr)


@jax.jit
def _run(traced: Traced, args):
    return traced(*args)


def call(fn: Callable, *args):
    """``jax.jit(fn)(*args)``, with the compiled program shared by every function that traces
    to the same program (see the module docstring); a fresh ``jax.jit`` where it may not be."""
    traced, shared = trace(fn, *args)
    if not shared:
        return jax.jit(fn)(*args)
    return _run(traced, args)


def mapped(fn: Callable, leaves, axes, *, max_bytes: int = 1 << 27):
    """``jax.vmap(fn, in_axes=axes)(*leaves)`` in one shared program; batches whose inputs
    exceed ``max_bytes`` run as a sequential ``lax.map`` over chunks, so memory stays bounded
    (the stacked outputs are still returned whole)."""
    leaves_of = jax.tree_util.tree_leaves
    batched = [x for x, a in zip(leaves, axes) if a == 0]
    first = [y for x in batched for y in leaves_of(x)]
    n = int(np.shape(first[0])[0]) if first else 1
    per_point = sum(int(np.dtype(y.dtype).itemsize * np.prod(np.shape(y)[1:])) for y in first)
    chunk = max(1, min(n, max_bytes // max(per_point * 8, 1)))  # ~8 live copies of a point
    axes = tuple(axes)
    if chunk >= n or not first:
        return call(jax.vmap(fn, in_axes=axes), *leaves)

    def program(*xs):
        fixed = [None if a == 0 else x for x, a in zip(xs, axes)]

        def one(ms):
            it = iter(ms)
            return fn(*[next(it) if a == 0 else f for f, a in zip(fixed, axes)])

        return jax.lax.map(one, tuple(x for x, a in zip(xs, axes) if a == 0), batch_size=chunk)

    return call(program, *leaves)


def fingerprint(*parts) -> str:
    """A digest of traced programs (their text and the bytes of the arrays they close over),
    arrays (their dtype, shape and bytes) and plain values, with the JAX settings that change
    what a program computes: equal fingerprints, equal computations."""
    h = hashlib.blake2b(digest_size=20)
    for name in ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_default_matmul_precision"):
        h.update(repr(getattr(jax.config, name)).encode())
    for part in parts:
        for leaf in jax.tree_util.tree_leaves(part):  # a Traced's leaves: its constants
            if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
                a = np.ascontiguousarray(np.asarray(leaf))
                h.update(f"{a.dtype}{a.shape}".encode())
                h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
            else:
                h.update(repr(leaf).encode())
        if isinstance(part, Traced):
            h.update(repr(part.structure.key).encode())
    return h.hexdigest()


__all__ = ["Traced", "cacheable", "call", "fingerprint", "mapped", "trace"]
