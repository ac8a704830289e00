"""Compiled programs keyed on what a function computes, not on which Python object it is.

A notebook cell that is run again defines a new ``fun``; ``jax.jit`` keys its cache on the
function object, so every re-audit used to trace and compile its programs afresh. Here a
function is traced once per call (:func:`trace`) into a :class:`Traced`: a pytree whose
children are the arrays the function closes over (passed to the program as arguments, so a
changed array is seen) and whose static part is the jaxpr, compared by its printed text (which
holds every shape, dtype, primitive parameter and literal constant, so a changed Python scalar
is seen). Two functions that compute the same thing share one compiled program. A function
whose every dependency can be keyed (:mod:`matgrad_jax._depends`: its code by content, and the
values its code can read, as they are now) is not traced again while they are unchanged, so a
warm ``minimize`` call costs a few microseconds of Python rather than a trace.

:func:`apply` goes one step further: a program built from traced functions (the audit's
checks: ``vmap`` of the hand gradient and ``jax.grad`` at every point, forward mode, the Taylor
lines) is a module-level function of ``Traced`` arguments, so ``jax.jit`` finds it in its cache
by the traced functions' structure; a re-audit traces the user's functions, and nothing else.

Never stale: a jaxpr whose parameters hold something the text cannot pin down (a host callback,
a nested jaxpr with constants of its own, any object printed by identity) is not shared: it
runs through a fresh ``jax.jit`` every call. A custom derivative rule does not enter a program
that only evaluates the function, and is traced into the text of one that differentiates it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from functools import partial

import jax
import numpy as np

from . import _depends


def _jaxpr_types() -> tuple[type, type]:
    """JAX's ``ClosedJaxpr`` and ``Jaxpr`` classes, read off what the public ``make_jaxpr``
    returns (``jax.extend.core`` holds them too, but importing it loads Pallas: 45 ms of a
    cold audit's import, jax 0.10.2)."""
    closed = jax.make_jaxpr(lambda: 0.0)()
    return type(closed), type(closed.jaxpr)


ClosedJaxpr, Jaxpr = _jaxpr_types()

_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.dtype, np.generic)


class _Structure:
    """The static half of a :class:`Traced`: equal when the printed programs are equal."""

    __slots__ = ("key", "jaxpr", "in_tree", "out_tree", "_hash", "shareable", "rules", "_flops")

    def __init__(self, key, jaxpr, in_tree, out_tree):
        self.key, self.jaxpr, self.in_tree, self.out_tree = key, jaxpr, in_tree, out_tree
        self._hash = hash(key)
        self.shareable = cacheable(jaxpr)
        self.rules = has_rules(jaxpr)
        self._flops = None

    @property
    def flops(self) -> float:
        """:func:`flops` of the program, counted once."""
        if self._flops is None:
            self._flops = flops(self.jaxpr)
        return self._flops

    def __eq__(self, other):
        return isinstance(other, _Structure) and self._hash == other._hash and \
            self.key == other.key

    def __hash__(self):
        return self._hash


class Traced:
    """A traced function: ``structure`` (static) and ``consts`` (the arrays it closes over)."""

    def __init__(self, structure: _Structure, consts):
        self.structure, self.consts = structure, tuple(consts)

    @property
    def shareable(self) -> bool:
        """Its program is pinned down by its text (:func:`cacheable`)."""
        return self.structure.shareable

    @property
    def rules(self) -> bool:
        """It holds a custom derivative rule (whose behaviour its text does not show)."""
        return self.structure.rules

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


def _sub_jaxprs(value):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def has_rules(jaxpr) -> bool:
    """Whether ``jaxpr`` holds a custom derivative (``custom_jvp``/``custom_vjp``), at any
    depth: a program that differentiates it runs the rule, which the jaxpr's text omits."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name.startswith("custom"):
            return True
        for value in eqn.params.values():
            if any(has_rules(j) for j in _sub_jaxprs(value)):
                return True
    return False


_AVALS: dict = {}


def _aval(v) -> str:
    a = v.aval
    try:
        return _AVALS[a]
    except (KeyError, TypeError):
        pass
    shape = getattr(a, "shape", None)
    out = str(a) if shape is None else \
        f"{a.dtype}{list(shape)}{'w' if getattr(a, 'weak_type', False) else ''}"
    try:
        if len(_AVALS) > 4096:
            _AVALS.clear()
        _AVALS[a] = out
    except TypeError:  # an unhashable abstract value: not remembered
        pass
    return out


def _literal(value) -> str:
    a = np.asarray(value)
    return f"{a.dtype}{a.shape}{a.tobytes().hex()}"


def text(jaxpr) -> str:
    """The program as a string: every equation's primitive, operands (by position of
    definition, literals by value), result types and parameters (nested jaxprs recursively).
    Equal strings, equal programs; it is what :func:`trace` keys on (cheaper to build than
    JAX's pretty-printed form, which it pins down as tightly)."""
    ids: dict = {}
    out: list[str] = []

    def ref(v):
        if hasattr(v, "val") and not hasattr(v, "suffix"):  # a Literal
            return f"L{_literal(v.val)}:{_aval(v)}"
        return f"%{ids[v]}" if v in ids else "?"

    def define(vs):
        for v in vs:
            ids[v] = len(ids)

    def param(value):
        if isinstance(value, ClosedJaxpr):
            return "{" + text(value.jaxpr) + f"|consts:{[_aval_of(c) for c in value.consts]}}}"
        if isinstance(value, Jaxpr):
            return "{" + text(value) + "}"
        if isinstance(value, (tuple, list)):
            return "(" + ",".join(param(v) for v in value) + ")"
        return repr(value)

    define(jaxpr.constvars)
    define(jaxpr.invars)
    out.append(",".join(_aval(v) for v in jaxpr.constvars) + ";" +
               ",".join(_aval(v) for v in jaxpr.invars))
    for eqn in jaxpr.eqns:
        params = ",".join(f"{k}={param(v)}" for k, v in sorted(eqn.params.items()))
        line = (f"{eqn.primitive.name}({','.join(ref(v) for v in eqn.invars)})"
                f"[{params}]->{','.join(_aval(v) for v in eqn.outvars)}")
        if eqn.effects:
            line += f"!{sorted(map(str, eqn.effects))}"
        out.append(line)
        define(eqn.outvars)
    out.append("out:" + ",".join(ref(v) for v in jaxpr.outvars))
    return "\n".join(out)


def _aval_of(c) -> str:
    return f"{getattr(c, 'dtype', type(c).__name__)}{list(getattr(c, 'shape', ()))}"


_TRACES: dict = {}
_TRACES_KEPT = 16


def trace(fn: Callable, *args) -> tuple[Traced, bool]:
    """``fn`` traced at ``args``' shapes and dtypes (arrays or ``jax.ShapeDtypeStruct``); and
    whether its program may be shared.

    A function whose dependencies are pinned down (:func:`matgrad_jax._depends.key`: its code,
    and every value its code can read, as they are now) is not traced again while they are the
    same: the trace found before is returned. Where anything it reads has changed, or cannot be
    keyed, it is traced afresh; so is a program with a custom derivative rule or a callback."""
    dep = _depends.key(fn, args)
    if dep is not None:
        hit = _TRACES.get(dep[0])
        if hit is not None:
            return hit[0], hit[1]
    # a fresh wrapper: jax.make_jaxpr of the same function object may return its cached trace
    closed, out_shape = jax.make_jaxpr(lambda *a: fn(*a), return_shape=True)(*args)
    jaxpr = closed.jaxpr
    in_tree = jax.tree_util.tree_structure(args)
    out_tree = jax.tree_util.tree_structure(out_shape)
    key = (text(jaxpr), str(in_tree), str(out_tree))
    structure = _Structure(key, jaxpr, in_tree, out_tree)
    traced = Traced(structure, closed.consts)
    if dep is not None and structure.shareable and not structure.rules:
        if len(_TRACES) >= _TRACES_KEPT:
            _TRACES.pop(next(iter(_TRACES)))
        _TRACES[dep[0]] = (traced, True, dep[1])  # dep[1]: what the key's ids refer to
    return traced, structure.shareable


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


def _chunk(leaves, axes, max_bytes, point_bytes=None):
    """How many points one step of a mapped program holds (None: all of them, one ``vmap``)."""
    batched = _mapped_leaves(leaves, axes)
    if not batched:
        return None
    n = int(np.shape(batched[0])[0])
    if point_bytes is None:
        point_bytes = sum(int(np.dtype(y.dtype).itemsize * np.prod(np.shape(y)[1:]))
                          for y in batched)
    chunk = max(1, min(n, max_bytes // max(point_bytes * 8, 1)))  # ~8 live copies of a point
    return None if chunk >= n else int(chunk)


def _over_points(one, xs, axes, chunk):
    """``vmap(one, in_axes=axes)(*xs)``, or a sequential ``lax.map`` over chunks of points."""
    if chunk is None:
        return jax.vmap(one, in_axes=axes)(*xs)
    fixed = [None if a == 0 else x for x, a in zip(xs, axes)]

    def step(ms):
        it = iter(ms)
        return one(*[next(it) if a == 0 else f for f, a in zip(fixed, axes)])

    return jax.lax.map(step, tuple(x for x, a in zip(xs, axes) if a == 0), batch_size=chunk)


def mapped(fn: Callable, leaves, axes, *, max_bytes: int = 1 << 27):
    """``jax.vmap(fn, in_axes=axes)(*leaves)`` in one shared program; batches whose inputs
    exceed ``max_bytes`` run as a sequential ``lax.map`` over chunks, so memory stays bounded
    (the stacked outputs are still returned whole)."""
    axes = tuple(axes)
    chunk = _chunk(leaves, axes, max_bytes)
    return call(lambda *xs: _over_points(fn, xs, axes, chunk), *leaves)


# -- programs built from traced functions: compiled once per structure, never re-traced -------

@partial(jax.jit, static_argnums=(0, 1, 2, 5))
def _apply(program, structures, index, consts, args, static):
    fns = tuple(Traced(s, [consts[i] for i in idx]) for s, idx in zip(structures, index))
    return program(fns, *args, static=static)


def _shared_consts(fns) -> tuple[tuple, tuple]:
    """The arrays the traced functions close over, each once (by identity), and where each
    function's come from: the hand gradient and the objective of one audit close over the same
    data, and one program argument for both lets XLA share what they compute alike (``A @ X``
    of ``‖AX − M‖²`` and of its hand gradient) instead of computing it twice."""
    consts, where, index = [], {}, []
    for f in fns:
        idx = []
        for c in f.consts:
            if id(c) not in where:
                where[id(c)] = len(consts)
                consts.append(c)
            idx.append(where[id(c)])
        index.append(tuple(idx))
    return tuple(consts), tuple(index)


def apply(program: Callable, fns, args, *, static=(), differentiates: bool = False):
    """``program(fns, *args, static=static)`` compiled once for every call with the same
    ``program`` (a module-level function), the same traced functions ``fns`` (:class:`Traced`,
    equal when their printed programs are), the same shapes and the same ``static``: a
    re-audit of a redefined function neither traces nor compiles it again. A function that may
    not be shared, or one with a custom derivative rule in a program that ``differentiates``
    it, runs through :func:`call` instead (its composite traced afresh and keyed by its text)."""
    fns = tuple(fns)
    if all(f.shareable and not (differentiates and f.rules) for f in fns):
        consts, index = _shared_consts(fns)
        return _apply(program, tuple(f.structure for f in fns), index, consts, tuple(args),
                      static)
    return call(lambda *a: program(fns, *a, static=static), *args)


def _points_program(fns, *xs, static):
    point, axes, chunk, inner, only_first = static
    out = _over_points(lambda *a: point(fns, *a, static=inner), xs, axes, chunk)
    if only_first:  # sliced in the program: the other points' values are never outputs
        out = tuple(jax.tree_util.tree_map(lambda y: y[:1], o) if k in only_first else o
                    for k, o in enumerate(out))
    return out


def apply_mapped(point: Callable, fns, leaves, axes, *, static=(), differentiates: bool = False,
                 point_bytes: int | None = None, max_bytes: int = 1 << 27,
                 only_first: tuple = ()):
    """:func:`apply` of ``point(fns, *leaves_at_one_point, static=static)`` over the leading
    axis of the leaves whose ``axes`` entry is 0 (:func:`mapped`'s chunking; ``point_bytes``:
    the memory one point takes, where it is more than its inputs). ``only_first``: the
    indices of ``point``'s (tuple) outputs wanted at the first point only: they come back
    with a leading axis of 1, and their values at the other points are never copied."""
    axes = tuple(axes)
    if _count(leaves, axes) > 1 and (
            any(large_linalg(f.structure.jaxpr) for f in fns)
            or (differentiates and sum(f.structure.flops for f in fns) >= POINT_FLOPS)):
        return _point_by_point(point, tuple(fns), leaves, axes, static, differentiates,
                               only_first)
    chunk = _chunk(leaves, axes, max_bytes, point_bytes)
    return apply(_points_program, fns, leaves,
                 static=(point, axes, chunk, static, tuple(only_first)),
                 differentiates=differentiates)


POINT_FLOPS = 2e8
"""From this much work at one point (:func:`flops` of the functions a program evaluates there,
summed; ``‖AX − M‖²`` and its hand gradient at 512×512 are 8e8), a program that differentiates
is evaluated one point per call, the calls queued back to back, not mapped over the points: on
XLA:CPU (jaxlib 0.10.2, 2 cores) ``jax.grad`` mapped over 7 points of 1024×1024 ran 16–25%
slower than the same program one point at a time (the batched products' transposes), compiled
slower, and held every point's intermediates at once. A program that only evaluates the
function (the audit's lines) stays mapped: there the mapped products are the faster
(``docs/performance/xla-cpu.md``)."""

LINALG_POINT_DIM = 64
"""From this matrix size on, a function that factorises (LU, Cholesky, QR, eigen- or singular
values, triangular solves) is evaluated one point per call, not mapped over the points: on
XLA:CPU (jaxlib 0.10.2, 2 cores) a mapped program with ``slogdet``, ``solve`` and products of
300×300 matrices hung, every thread idle, in 5 runs of 5 (from about 220×220; one point per call
never did)."""


def large_linalg(jaxpr) -> bool:
    """Whether ``jaxpr`` factorises a matrix of at least :data:`LINALG_POINT_DIM` rows or
    columns, at any depth."""
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _LINALG:
            shape = getattr(getattr(eqn.invars[0], "aval", None), "shape", ())
            if len(shape) >= 2 and max(shape[-2:]) >= LINALG_POINT_DIM:
                return True
        for value in eqn.params.values():
            if any(large_linalg(j) for j in _sub_jaxprs(value)):
                return True
    return False


def _mapped_leaves(leaves, axes) -> list:
    """The array leaves that are mapped over the points (``axes`` entry 0)."""
    return [y for x, a in zip(leaves, axes) if a == 0 for y in jax.tree_util.tree_leaves(x)]


def _count(leaves, axes) -> int:
    """How many points the mapped leaves hold (0 where none is mapped)."""
    mapped = _mapped_leaves(leaves, axes)
    return int(np.shape(mapped[0])[0]) if mapped else 0


def _one_point_program(fns, *xs, static):
    point, inner = static
    return point(fns, *xs, static=inner)


def _point_by_point(point, fns, leaves, axes, static, differentiates, only_first=()):
    """:func:`apply_mapped` one point per call (one compiled program for all of them), the
    outputs stacked on the host (those in ``only_first`` from the first point alone). Each
    call is queued before the previous one's outputs are read, so the device never waits on
    the host, and at most two points' outputs are alive."""
    n = _count(leaves, axes)
    if all(f.shareable and not (differentiates and f.rules) for f in fns):
        def run(part):
            return apply(_one_point_program, fns, part, static=(point, static),
                         differentiates=differentiates)
    else:  # one fresh jit, shared by the points of this call
        jitted = jax.jit(lambda *a: _one_point_program(fns, *a, static=(point, static)))

        def run(part):
            return jitted(*part)
    out, tree = None, None
    whole = set()  # the flat outputs wanted at the first point only

    def store(p, result):
        nonlocal out, tree, whole
        got, tree = jax.tree_util.tree_flatten(result)
        if out is None:
            whole = _first_leaves(result, only_first)
            out = [np.empty((1 if j in whole else n,) + tuple(np.shape(y)), np.dtype(y.dtype))
                   for j, y in enumerate(got)]
        for j, (o, y) in enumerate(zip(out, got)):
            if p == 0 or j not in whole:
                o[p] = np.asarray(y)

    pending = None
    for p in range(n):
        part = [jax.tree_util.tree_map(lambda y, p=p: np.asarray(y)[p], x) if a == 0 else x
                for x, a in zip(leaves, axes)]
        result = run(part)  # queued: the device runs it while the previous one is read back
        if pending is not None:
            store(*pending)
        pending = (p, result)
    store(*pending)
    return jax.tree_util.tree_unflatten(tree, out)


def _first_leaves(result, only_first) -> set:
    """The flat indices of the leaves of ``result``'s (tuple) entries in ``only_first``."""
    idx, j = set(), 0
    for k, o in enumerate(result if only_first else ()):
        m = len(jax.tree_util.tree_leaves(o))
        if k in only_first:
            idx.update(range(j, j + m))
        j += m
    return idx


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


__all__ = ["LINALG_POINT_DIM", "POINT_FLOPS", "Traced", "apply", "apply_mapped", "cacheable",
           "call", "fingerprint", "flops", "has_rules", "large_linalg", "mapped", "trace"]


_CUBIC = {"cholesky": 1 / 3, "lu": 2 / 3, "qr": 4 / 3, "householder_product": 4 / 3,
          "eigh": 9.0, "eig": 25.0, "svd": 22.0, "schur": 25.0}
_LINALG = frozenset(_CUBIC) | {"triangular_solve", "hessenberg", "tridiagonal",
                               "tridiagonal_solve", "geqrf", "geqp3", "orgqr"}
"""The factorisations :func:`large_linalg` looks for: LAPACK calls on XLA:CPU."""


def flops(jaxpr) -> float:
    """A rough count of the floating-point work of one evaluation of ``jaxpr`` (a
    :class:`Traced`, a jaxpr or a closed jaxpr), from its shapes alone: ``2mnk`` per matrix
    product, textbook constants for factorisations, one per output element otherwise; loops
    counted once per known trip (a ``while`` once), a ``cond`` by its costliest branch. It
    sizes work (how many points an audit can afford), never a result."""
    if isinstance(jaxpr, Traced):
        jaxpr = jaxpr.structure.jaxpr
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        outs = [v.aval for v in eqn.outvars if hasattr(v.aval, "shape")]
        size = float(sum(np.prod(a.shape) for a in outs))
        ins = [v.aval for v in eqn.invars if hasattr(v, "aval") and hasattr(v.aval, "shape")]
        subs = [j for value in eqn.params.values() for j in _sub_jaxprs(value)]
        if name == "dot_general" and ins:
            (lc, _), _ = eqn.params["dimension_numbers"]
            total += 2.0 * size * float(np.prod([ins[0].shape[d] for d in lc]))
        elif name in _CUBIC and ins and len(ins[0].shape) >= 2:
            *batch, m, n = ins[0].shape
            total += _CUBIC[name] * float(np.prod(batch)) * m * n * min(m, n)
        elif name == "triangular_solve" and len(ins) == 2:
            total += float(np.prod(ins[1].shape)) * ins[0].shape[-1]
        elif name == "cond" and subs:
            total += max(flops(j) for j in subs)
        elif subs:
            trips = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
            total += trips * sum(flops(j) for j in subs)
        else:
            total += size
    return total
