"""The lines of a derivation: :func:`step`, :func:`from_gradient`, and the conditions a line may
assume (``assumes="symmetric Q"``, ``"dQ = 0"``).

A line states the differential dφ as a function ``fn(*args, dargs) -> real scalar`` of the point
``args`` and the tangent ``dargs`` of ``args[argnums]`` (a tuple when ``argnums`` is one), or, for
a line that states the value (``φ = M:M + N:N``), ``fn(*args) -> φ``. A line may return its terms
instead of their sum, as a dict ``{"2AD:dR": ..., "2C:(I₂⊗dR)": ...}`` or a sequence: the audit
then names the term a wrong line got wrong (its sign, a factor, a transposition).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp

from .._checks import InputError

STATES = ("differential", "value")
FAMILY_WORDS = {"symmetric": "symmetric", "skew": "skew", "skew-symmetric": "skew",
                "psd": "psd", "diagonal": "diagonal", "spd": "spd",
                "positive-definite": "spd"}
ASSUMES_FORMS = ("'symmetric Q' / 'Q symmetric' / 'Q = Q^T' (also skew, psd, diagonal, spd)",
                 "'dQ = 0' (the tangent of a differentiated argument is zero)")


@dataclass(frozen=True)
class Step:
    """One line of a derivation.

    Attributes:
      text: the line as the user wrote it (shown beside its verdict).
      fn: ``fn(*args, dargs)`` -> dφ (``fn(*args)`` -> φ when ``states="value"``): a real
        scalar, or its terms as a dict or a sequence of real scalars.
      assumes: a condition under which the line is claimed to hold (``"symmetric Q"``,
        ``"dQ = 0"``, several joined by ``,`` or ``and``); the line is tested where it holds.
      states: ``"differential"`` (default) or ``"value"``.
      source: where the line comes from (``"seeds/000_….txt:10"``).
    """

    text: str
    fn: Callable
    assumes: str | None = None
    states: str = "differential"
    source: str = ""
    wrt: tuple = field(default=(), compare=False)  # set by from_gradient


class GradientLine:
    """A line that states a gradient, as a differential: ``⟨grad_fun(*args), dargs⟩``.

    ``grad_fun`` returns the gradient shaped like ``args[argnums]`` (a tuple for a tuple
    ``argnums``), or, with ``wrt``, the partial gradient of the named argument(s) only (the line
    then assumes the other tangents zero, as ``∂φ/∂Q`` does). It may return a dict of named
    terms, each shaped like the gradient, e.g. ``{"2BD": 2*B@D, "-2F": -2*F}``.
    """

    def __init__(self, grad_fun: Callable, wrt=None):
        if not callable(grad_fun):
            raise InputError(f"grad_fun: expected a callable, got {type(grad_fun).__name__}")
        self.grad_fun = grad_fun
        if wrt is None:
            self.wrt: tuple = ()
        elif isinstance(wrt, (str, int)):
            self.wrt = (wrt,)
        else:
            self.wrt = tuple(wrt)

    def __call__(self, *args_and_dargs):
        *args, dargs = args_and_dargs
        out = self.grad_fun(*args)
        named = out if isinstance(out, dict) else {None: out}
        total = 0.0
        for g in named.values():
            total = total + sum(jnp.real(jnp.vdot(a, b)) for a, b in
                                zip(jax.tree_util.tree_leaves(g),
                                    jax.tree_util.tree_leaves(dargs)))
        return total


def from_gradient(grad_fun: Callable,
                  wrt: str | int | tuple[str | int, ...] | None = None) -> GradientLine:
    """A line stating a gradient, as the differential ``⟨grad_fun(*args), dargs⟩`` it implies.

    Args:
      grad_fun: ``grad_fun(*args)`` -> the gradient w.r.t. ``args[argnums]``; or, with
        ``wrt``, the partial gradient(s) of those arguments only; or a dict of named terms.
      wrt: an argument name (or index into ``args``), or a tuple of them, for a line that states
        a partial gradient (``∂φ/∂Q``): the other differentiated tangents are taken as zero.
    """
    return GradientLine(grad_fun, wrt)


def step(text: str, fn: Callable, *, assumes: str | None = None, states: str = "differential",
         source: str = "") -> Step:
    """One line of a derivation: its ``text`` and the function ``fn`` that states it (see
    :class:`Step`)."""
    return normalize([Step(text, fn, assumes, states, source)])[0]


def normalize(steps) -> tuple[Step, ...]:
    """``steps`` as a tuple of :class:`Step` (pairs ``(text, fn)`` accepted), checked once."""
    if isinstance(steps, (Step, str)) or not hasattr(steps, "__iter__"):
        raise InputError(f"steps: expected a sequence of (text, fn) pairs or step(...) lines, "
                         f"got {type(steps).__name__}")
    out = []
    for i, s in enumerate(steps):
        if isinstance(s, Step):
            st = s
        elif isinstance(s, (tuple, list)) and len(s) in (2, 3):
            st = Step(s[0], s[1], s[2] if len(s) == 3 else None)
        else:
            raise InputError(f"steps[{i}]: expected a (text, fn) pair or matgrad_jax.step(text, "
                             f"fn), got {type(s).__name__}")
        if not isinstance(st.text, str) or not st.text.strip():
            raise InputError(f"steps[{i}]: expected the line's text (a non-empty str), got "
                             f"{st.text!r}")
        if not callable(st.fn):
            raise InputError(f"steps[{i}] ({st.text!r}): expected a callable fn, got "
                             f"{type(st.fn).__name__}")
        if st.states not in STATES:
            raise InputError(f"steps[{i}] ({st.text!r}): states must be one of {STATES}, got "
                             f"{st.states!r}")
        if st.assumes is not None and not isinstance(st.assumes, str):
            raise InputError(f"steps[{i}] ({st.text!r}): assumes must be a str such as "
                             f"'symmetric Q' or 'dQ = 0', got {type(st.assumes).__name__}")
        if isinstance(st.fn, GradientLine) and st.states == "value":
            raise InputError(f"steps[{i}] ({st.text!r}): a from_gradient line states a "
                             "differential, not a value")
        wrt = st.fn.wrt if isinstance(st.fn, GradientLine) else ()
        out.append(Step(st.text, st.fn, st.assumes, st.states, st.source, wrt))
    if not out:
        raise InputError("steps: expected at least one line, got none")
    return tuple(out)


@dataclass(frozen=True)
class Condition:
    kind: str  # "family": the point's leaf is drawn on a family; "zero": a tangent block is 0
    leaf: int  # leaf index (family) or differentiated-block position (zero)
    family: str = ""
    text: str = ""


_ZERO = re.compile(r"^d\s*([A-Za-z_][\w.\[\]]*)\s*=\s*0$")
_FAM_FIRST = re.compile(r"^([a-z\-]+)\s+([A-Za-z_][\w.\[\]]*)$")
_FAM_LAST = re.compile(r"^([A-Za-z_][\w.\[\]]*)\s+(?:is\s+)?([a-z\-]+)$")
_SYM_EQ = re.compile(r"^([A-Za-z_][\w.\[\]]*)\s*=\s*\1\s*(?:\^T|\^\{T\}|ᵀ|\.T)$")


def parse_assumes(text: str | None, spec, where: str) -> tuple[Condition, ...]:
    """``"symmetric Q, dR = 0"`` -> conditions on the audit's leaves (``spec``)."""
    if not text:
        return ()
    out = []
    for clause in re.split(r",|;|\band\b", text):
        c = clause.strip()
        if not c:
            continue
        m = _ZERO.match(c)
        if m:
            blocks = _blocks_named(m.group(1), spec, where, c)
            out += [Condition("zero", b, text=c) for b in blocks]
            continue
        fam = name = None
        m = _SYM_EQ.match(c)
        if m:
            fam, name = "symmetric", m.group(1)
        else:
            for rx, fi, ni in ((_FAM_FIRST, 1, 2), (_FAM_LAST, 2, 1)):
                m = rx.match(c)
                if m and m.group(fi).lower() in FAMILY_WORDS:
                    fam, name = FAMILY_WORDS[m.group(fi).lower()], m.group(ni)
                    break
        if fam is None:
            raise InputError(f"{where}: cannot read the condition {c!r}; accepted forms: "
                             + "; ".join(ASSUMES_FORMS))
        leaf = _leaf_named(name, spec, where, c)
        out.append(Condition("family", leaf, fam, c))
    return tuple(out)


def _leaf_named(name, spec, where, clause) -> int:
    if name in spec.leaf_names:
        return spec.leaf_names.index(name)
    if name in spec.names:
        idx = [j for j, a in enumerate(spec.leaf_arg) if spec.names[a] == name]
        if len(idx) == 1:
            return idx[0]
    raise InputError(f"{where}: {clause!r} names {name!r}, which is no single-array argument "
                     f"(arguments: {', '.join(spec.leaf_names)})")


def _blocks_named(name, spec, where, clause) -> list[int]:
    for pos, leaf in enumerate(spec.diff):
        if spec.leaf_names[leaf] == name:
            return [pos]
    if name in spec.names:
        a = spec.names.index(name)
        found = [pos for pos, leaf in enumerate(spec.diff) if spec.leaf_arg[leaf] == a]
        if found:
            return found
    raise InputError(f"{where}: {clause!r} names d{name}, but {name!r} is not differentiated "
                     f"(differentiated: {', '.join(spec.block_names)})")


def wrt_blocks(wrt: tuple, spec, where: str) -> tuple[int, ...]:
    """The differentiated-block positions a ``from_gradient(..., wrt=...)`` line covers."""
    out: list[int] = []
    for w in wrt:
        if isinstance(w, int) and not isinstance(w, bool):
            if w not in spec.argnums:
                raise InputError(f"{where}: wrt={w} is not among argnums {spec.argnums}")
            out += [p for p, leaf in enumerate(spec.diff) if spec.leaf_arg[leaf] == w]
        elif isinstance(w, str):
            out += _blocks_named(w, spec, where, f"wrt={w!r}")
        else:
            raise InputError(f"{where}: wrt must name arguments (str or int), got {w!r}")
    return tuple(dict.fromkeys(out))
