"""What a Python function computes depends on, as a hashable key, or None where that cannot be
pinned down; :func:`matgrad_jax.programs.trace` reuses a trace only when the key is equal.

The key holds the function's code (by content: a redefined function of the same source has
the same key) and, recursively, everything its code can read: default
arguments, closure cells, the globals its code (and the code it nests) names, the named
attributes of a module it reads (``mymodule.scale``), the functions it calls, the elements of
the tuples, lists and dicts it holds. Values are keyed by what they are now: a Python scalar or
string by value, a NumPy array by its bytes (it can be changed in place), a JAX array by
identity (it cannot), so a changed global, a mutated list or a redefined helper gives another
key. The key is built afresh at every call (a few microseconds per object).

Anything else gives None, and the caller traces as before: an instance of a class (``self.W``
could change), a tracer (under ``jit``/``vmap``), an object of unknown kind, a NumPy array over
:data:`MAX_ARRAY_BYTES`, or more than :data:`MAX_OBJECTS` objects. Library code (JAX, NumPy,
SciPy, optax, the standard library) is taken as fixed and keyed by name.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import sys
import types

import jax
import numpy as np

MAX_OBJECTS = 400
MAX_ARRAY_BYTES = 1 << 20
_LIBRARIES = frozenset({"jax", "jaxlib", "numpy", "scipy", "optax", "math", "cmath",
                        "functools", "operator", "itertools", "builtins", "typing"})
_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.generic, np.dtype)
_CONFIG = ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion",
           "jax_default_matmul_precision", "jax_default_prng_impl")


class _Unknown(Exception):
    """Something whose effect on the trace the key cannot pin down."""


def _library(module_name) -> bool:
    root = (module_name or "").split(".", 1)[0]
    return root in _LIBRARIES or root in sys.stdlib_module_names


def _names(code) -> frozenset:
    """The global and attribute names a code object and the code it nests can read."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return frozenset(out)


def _code(code) -> tuple:
    """A code object by what it is (its bytecode, constants, names and signature), not by where
    it was defined: a notebook cell run again defines equal code."""
    consts = tuple(_code(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                   for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, code.co_flags)


class _Key:
    def __init__(self):
        self.parts: list = []
        self.keep: list = []  # JAX arrays keyed by identity, kept alive with the key
        self.seen: dict = {}
        self.count = 0

    def add(self, value, names=frozenset()):
        self.count += 1
        if self.count > MAX_OBJECTS:
            raise _Unknown("too many objects")
        parts = self.parts
        if isinstance(value, _PLAIN):
            parts.append(("v", type(value).__name__, repr(value)))
            return
        if isinstance(value, jax.core.Tracer):
            raise _Unknown("a tracer")
        if isinstance(value, jax.Array):
            parts.append(("a", id(value)))
            self.keep.append(value)
            return
        if isinstance(value, np.ndarray):
            if value.dtype == object or value.nbytes > MAX_ARRAY_BYTES:
                raise _Unknown("a large or object array")
            a = np.ascontiguousarray(value)
            parts.append(("n", str(a.dtype), a.shape,
                          hashlib.blake2b(a.view(np.uint8).reshape(-1).data,
                                          digest_size=16).digest()))
            return
        if id(value) in self.seen:
            parts.append(("r", self.seen[id(value)]))
            return
        self.seen[id(value)] = len(self.seen)
        self.keep.append(value)  # ids in the key stay unique while it lives
        if isinstance(value, (tuple, list, frozenset, set)):
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            parts.append(("s", type(value).__name__, len(items)))
            for v in items:
                self.add(v, names)
            return
        if isinstance(value, dict) and type(value) is dict:
            parts.append(("d", len(value)))
            for k, v in value.items():
                if not isinstance(k, _PLAIN):
                    raise _Unknown("a dict key")
                parts.append(("k", repr(k)))
                self.add(v, names)
            return
        if isinstance(value, types.ModuleType):
            parts.append(("m", value.__name__))
            if not _library(value.__name__):
                for name in sorted(names):
                    if name in vars(value):
                        parts.append(("attr", name))
                        self.add(vars(value)[name], names)
            return
        if isinstance(value, functools.partial):
            parts.append(("p",))
            self.add(value.func)
            self.add(value.args)
            self.add(dict(value.keywords))
            return
        if isinstance(value, types.FunctionType):
            if _library(getattr(value, "__module__", None)):
                parts.append(("lib", value.__module__, value.__qualname__))
                for cell in value.__closure__ or ():  # a library's factory-made function:
                    self.add(cell.cell_contents)  # keyed by what it was made with too
                return
            self._function(value)
            return
        if isinstance(value, (types.BuiltinFunctionType, type)) or callable(value):
            module = getattr(value, "__module__", None)
            if isinstance(module, str) and _library(module) and not hasattr(value, "__self__") \
                    or getattr(value, "__self__", None) is builtins:
                parts.append(("lib", module, getattr(value, "__qualname__", repr(value))))
                return
            wrapped = getattr(value, "__wrapped__", None)  # a jax.jit of a user's function
            if wrapped is not None and type(value).__module__.startswith("jax"):
                parts.append(("w", type(value).__name__))
                self.add(wrapped)
                return
        raise _Unknown(type(value).__name__)

    def _function(self, fn):
        code = fn.__code__
        self.parts.append(("f", _code(code)))
        names = _names(code)
        self.add(fn.__defaults__ or ())
        self.add(dict(fn.__kwdefaults__ or {}))
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                self.parts.append(("empty",))
                continue
            self.add(contents, names)
        g = fn.__globals__
        for name in sorted(names):
            if name in g:
                self.parts.append(("g", name))
                self.add(g[name], names)
            elif hasattr(builtins, name):
                continue
        return


def key(fn, args) -> tuple | None:
    """The dependency key of ``fn`` called at ``args``' shapes and dtypes, with the JAX
    settings that change a trace; None where it cannot be pinned down (see the module doc)."""
    k = _Key()
    try:
        for leaf in jax.tree_util.tree_leaves(args):
            if isinstance(leaf, jax.core.Tracer):
                return None
            k.parts.append(("arg", tuple(np.shape(leaf)), str(np.dtype(leaf.dtype)),
                            bool(getattr(getattr(leaf, "aval", leaf), "weak_type", False))))
        k.parts.append(("tree", str(jax.tree_util.tree_structure(args))))
        k.parts.append(("config", tuple(repr(getattr(jax.config, n, None)) for n in _CONFIG)))
        k.add(fn)
    except _Unknown:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: no key, trace as before
        return None
    return tuple(k.parts), tuple(k.keep)
