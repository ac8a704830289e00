"""The audit's view of a call: arguments as flat leaves, which are differentiated, their names
and domains; every check of the caller's input happens here, once.

Arguments may be arrays or pytrees of arrays (dict, tuple, NamedTuple). Internally the audit
works on the flat tuple of leaves: ``fun_flat(*leaves)`` and ``hand_flat(*leaves)`` rebuild the
user's arguments, and the hand gradient's pytree is flattened in the order of the differentiated
leaves. Blocks are named from the argument names and the pytree keys (``params.W``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from . import domains as dom


@dataclass(frozen=True)
class Spec:
    treedefs: tuple
    leaves: tuple  # the example's leaves, as given (jax arrays)
    leaf_arg: tuple[int, ...]
    leaf_names: tuple[str, ...]
    names: tuple[str, ...]  # argument names
    argnums: tuple[int, ...]
    multi: bool
    diff: tuple[int, ...]  # differentiated leaf indices, in the hand gradient's order
    domains: tuple[str, ...]  # per leaf
    grad_treedef: object

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(self.leaf_names[i] for i in self.diff)

    @property
    def varied(self) -> tuple[int, ...]:
        """Leaves that the sweep perturbs and redraws (all but the fixed ones)."""
        return tuple(i for i, d in enumerate(self.domains) if d != "fixed")

    def unflatten(self, leaves) -> tuple:
        out, k = [], 0
        for td in self.treedefs:
            n = td.num_leaves
            out.append(jax.tree_util.tree_unflatten(td, list(leaves[k:k + n])))
            k += n
        return tuple(out)

    def fun_flat(self, fun: Callable) -> Callable:
        return lambda *leaves: fun(*self.unflatten(leaves))

    def hand_flat(self, grad_fun: Callable) -> Callable:
        """``grad_fun`` on leaves, returning the differentiated leaves' gradients as a tuple."""
        return lambda *leaves: self.flat_gradient(grad_fun(*self.unflatten(leaves)))

    def flat_gradient(self, out) -> tuple:
        """The hand gradient's output as the differentiated leaves' gradients, in order."""
        if self.multi and isinstance(out, list):
            out = tuple(out)
        return tuple(jax.tree_util.tree_leaves(out))

    def structure_problem(self, grad_fun: Callable, out) -> str | None:
        """What is wrong with the hand gradient's structure or shapes at the example, or None."""
        if self.multi and isinstance(out, list):
            out = tuple(out)
        got = jax.tree_util.tree_structure(out)
        if got != self.grad_treedef:
            if self.multi and not isinstance(out, tuple):
                return (f"grad_fun returned {type(out).__name__}; expected a tuple of "
                        f"{len(self.argnums)} gradients (one per argnum {self.argnums})")
            if self.multi and len(out) != len(self.argnums):
                return (f"grad_fun returned {len(out)} array(s); expected {len(self.argnums)} "
                        f"(one per argnum {self.argnums})")
            return (f"grad_fun returned a {got}; expected the structure of the differentiated "
                    f"argument(s), {self.grad_treedef}")
        for g, i in zip(jax.tree_util.tree_leaves(out), self.diff):
            if tuple(jnp.shape(g)) != tuple(self.leaves[i].shape):
                return (f"grad_fun's gradient for {self.leaf_names[i]} has shape "
                        f"{tuple(jnp.shape(g))}; expected {tuple(self.leaves[i].shape)} (the "
                        f"shape of {self.leaf_names[i]})")
        return None


def _signature_names(fun) -> tuple[str, ...] | None:
    try:
        params = inspect.signature(fun).parameters.values()
    except (TypeError, ValueError):
        return None
    names = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            return None
    return tuple(names)


def _keyname(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(f".{k.key}")
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(f".{k.name}")
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(f"[{k.idx}]")
        else:
            parts.append(str(k))
    return "".join(parts)


def resolve_argnums(argnums, names: tuple[str, ...], nargs: int) -> tuple[tuple[int, ...], bool]:
    multi = isinstance(argnums, (tuple, list))
    items = tuple(argnums) if multi else (argnums,)
    out = []
    for a in items:
        if isinstance(a, str):
            if a not in names:
                raise InputError(f"argnums: {a!r} names no argument of fun (its arguments: "
                                 f"{', '.join(names)})")
            out.append(names.index(a))
        elif isinstance(a, (int, np.integer)) and not isinstance(a, bool):
            if not 0 <= int(a) < nargs:
                raise InputError(f"argnums: {a} is out of range for {nargs} arguments")
            out.append(int(a))
        else:
            raise InputError(f"argnums: expected an int, a name or a tuple of them, got {a!r}")
    if not out:
        raise InputError("argnums: expected at least one argument to differentiate, got ()")
    if len(set(out)) != len(out):
        raise InputError(f"argnums: {argnums!r} names an argument twice")
    return tuple(out), multi


def build(fun, args, argnums, arg_names, domains, vary_data) -> Spec:
    """Check the caller's input once and return the audit's :class:`Spec`."""
    if not callable(fun):
        raise InputError(f"fun: expected a callable, got {type(fun).__name__}")
    if not isinstance(args, (tuple, list)):
        got = (f"an array of shape {tuple(np.shape(args))}" if hasattr(args, "shape")
               else type(args).__name__)
        raise InputError(f"args: expected a tuple of fun's arguments ((x,) for one), got {got}")
    nargs = len(args)
    if nargs == 0:
        raise InputError("args: expected at least one argument, got ()")
    sig = _signature_names(fun)
    if arg_names is not None:
        names = tuple(str(n) for n in arg_names)
        if len(names) != nargs:
            raise InputError(f"arg_names: expected {nargs} names, got {len(names)}")
    elif sig is not None and len(sig) == nargs:
        names = sig
    else:
        names = tuple(f"x{i}" for i in range(nargs))
    argnums_t, multi = resolve_argnums(argnums, sig if sig and len(sig) == nargs else names,
                                       nargs)

    treedefs, leaves, leaf_arg, leaf_names = [], [], [], []
    for i, a in enumerate(args):
        try:
            with_path, td = jax.tree_util.tree_flatten_with_path(a)
            arrs = [jnp.asarray(x) for _, x in with_path]
        except TypeError as exc:
            raise InputError(f"args[{i}] ({names[i]}): expected an array or a pytree of arrays, "
                             f"got {type(a).__name__} ({exc})") from None
        if not arrs:
            raise InputError(f"args[{i}] ({names[i]}): holds no array")
        treedefs.append(td)
        for path, x in zip((p for p, _ in with_path), arrs):
            leaves.append(x)
            leaf_arg.append(i)
            leaf_names.append(names[i] + _keyname(path))

    # domains: by argument index or name
    declared: dict[int, str] = {}
    for key, kind in dict(domains or {}).items():
        if isinstance(key, str):
            if key not in names:
                raise InputError(f"domains: {key!r} names no argument (arguments: "
                                 f"{', '.join(names)})")
            idx = names.index(key)
        elif isinstance(key, (int, np.integer)) and 0 <= int(key) < nargs:
            idx = int(key)
        else:
            raise InputError(f"domains: key {key!r} is neither an argument name nor an index "
                             f"below {nargs}")
        if kind not in dom.KINDS:
            raise InputError(f"domains[{key!r}]: expected one of {dom.KINDS}, got {kind!r}")
        declared[idx] = kind
    leaf_domains = []
    for j, (x, i) in enumerate(zip(leaves, leaf_arg)):
        default = "general" if i in argnums_t else ("general" if vary_data else "fixed")
        kind = declared.get(i, default)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            if i in argnums_t:
                raise InputError(f"args[{i}] ({leaf_names[j]}): expected a float or complex "
                                 f"array to differentiate, got dtype {x.dtype}")
            kind = "fixed"  # integer/bool data pass through untouched
        if i in argnums_t:
            if kind == "fixed":
                raise InputError(f"domains[{names[i]!r}]: 'fixed' for a differentiated "
                                 "argument; differentiated arguments vary")
            if x.size == 0:
                raise InputError(f"args[{i}] ({leaf_names[j]}): has size 0 (shape "
                                 f"{tuple(x.shape)}); there is no gradient to audit")
        if kind in dom.SQUARE_KINDS:
            if treedefs[i].num_leaves != 1:
                raise InputError(f"domains[{names[i]!r}]: {kind!r} applies to a single square "
                                 "matrix, not to a pytree argument")
            why = dom.example_problem(kind, np.asarray(x))
            if why:
                raise InputError(f"args[{i}] ({names[i]}): domain {kind!r}, but the example is "
                                 f"{why}")
        leaf_domains.append(kind)

    diff = tuple(j for i in argnums_t for j, a in enumerate(leaf_arg) if a == i)
    grad_treedef = (jax.tree_util.tree_structure(tuple(args[i] for i in argnums_t)) if multi
                    else treedefs[argnums_t[0]])
    return Spec(tuple(treedefs), tuple(leaves), tuple(leaf_arg), tuple(leaf_names), names,
                argnums_t, multi, diff, tuple(leaf_domains), grad_treedef)


def check_options(*, rtol, seed, counts: Mapping[str, int], families: Sequence[str],
                  reference: str) -> None:
    """The audit's own options, named when wrong."""
    if rtol is not None:
        try:
            r = float(rtol)
        except (TypeError, ValueError):
            raise InputError(f"rtol: expected a positive number or None, got {rtol!r}") from None
        if not (math.isfinite(r) and r > 0):
            raise InputError(f"rtol: expected a finite number > 0 or None, got {rtol!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InputError(f"seed: expected an int, got {seed!r}")
    for name, v in counts.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise InputError(f"{name}: expected an int >= 0, got {v!r}")
    for f in families:
        if f not in ("symmetric", "skew", "psd", "diagonal"):
            raise InputError(f"families: expected names from ('symmetric', 'skew', 'psd', "
                             f"'diagonal'), got {f!r}")
    if reference not in ("auto", "jax", "taylor"):
        raise InputError(f"reference: expected 'auto', 'jax' or 'taylor', got {reference!r}")
