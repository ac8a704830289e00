r"""``check_derivation_latex``: a derivation checked from its LaTeX, line by line.

The dialect is the one of matrix-calculus answers such as the seeds': ``\def`` macros (expanded
first), ``A:B`` (Frobenius product), ``\odot``, ``\otimes``, ``^T``, ``^{-1}``, ``^2``,
``\operatorname{Tr}(…)``, ``\operatorname{Diag}(…)``, ``\|…\|_F`` (and ``_S``/``_2``, the spectral
norm), ``\frac{…}{…}``, juxtaposition as the matrix product (a scalar times a matrix where one side
is a scalar), numbers, single-letter symbols with a subscript (``I_2``, ``H_R``, ``u_1``), Greek
letters, and ``d``-prefixed differentials (``dR``, ``dR^T``, ``dM`` of a defined ``M``). Lines are
read from ``\eqalign{…}`` / ``aligned`` blocks (or the whole text), split at ``\\``:

* ``\phi &= …`` (also ``\phi^2``): a value line; ``d\phi &= …`` (also ``2\phi\,d\phi``): a
  differential line; ``\frac{\partial\phi}{\partial R} &= …``: a gradient line w.r.t. ``R``;
  ``&= …`` continues the line above;
* ``M &= …`` with ``M`` a single symbol: a definition, bound for the lines that use ``M`` (its
  differential ``dM`` is the JVP of its definition);
* anything else — an identity about other quantities, a sum over SVD factors (``\sum_k``), a line
  with several equalities, unbalanced parentheses — is reported as not parsed, with the reason,
  never guessed.

Parsed lines become :func:`~matgrad_jax.step` functions and go through
:func:`~matgrad_jax.check_derivation`. Requires the ``latex`` extra (`lark
<https://github.com/lark-parser/lark>`_).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from .._checks import InputError
from .derivation_report import DerivationReport, LineResult
from .latex_parse import (
    _OUTSIDE,
    Env,
    _outside_reason,
    _parse,
    _symbol_name,
    clean,
    compile_tree,
    expand,
    latex_blocks,
    lines_of,
    macros,
    terms_of,
    unparse,
)
from .steps import from_gradient, step


def check_derivation_latex(
    text: str,
    fun: Callable,
    symbols: Mapping,
    *,
    wrt: str | int | tuple[str | int, ...] | None,
    phi: str = r"\phi",
    assumes: Mapping[str, str] | None = None,
    blocks: Sequence[int] | None = None,
    domains: Mapping | None = None,
    name: str | None = None,
    source: str | None = None,
    **options: Any,
) -> DerivationReport:
    r"""Check a derivation written in LaTeX, line by line (see the module docstring).

    Args:
      text: the LaTeX: one or more ``\eqalign{…}`` blocks (or lines separated by ``\\``), with
        any ``\def`` macros they use.
      fun: ``fun(*args)`` -> φ; its parameter names are keys of ``symbols`` (the arguments).
      symbols: LaTeX symbol -> value: arrays (``fun``'s arguments, by its parameter names, and
        constants such as ``"I_2"``), or callables of ``fun``'s arguments by name
        (``"E": lambda R, Q, A, B, Z, P, S, W: ...``) for quantities the text defines with
        constructs outside the dialect. A symbol the text defines (``M &= …``) is bound by
        that definition unless ``symbols`` gives it.
      wrt: the differentiated argument(s), by name.
      phi: the LaTeX name of the objective (``\phi``; ``\psi`` also read).
      assumes: condition per line, keyed by a fragment of the line's LaTeX, e.g.
        ``{"2(AD+E):dR": "dQ = 0"}`` (as the text says in prose: "set dQ = 0").
      blocks: which of the text's ``\eqalign``/``aligned`` blocks to read (0-based, in order of
        appearance; default all): a text may derive two objectives (seed 2's two norms).
      domains: as in :func:`~matgrad_jax.check_derivation`.
      name: a name for the report.
      source: where the text comes from (shown in the report).
      **options: the other options of :func:`~matgrad_jax.check_derivation`.

    Returns:
      A ``DerivationReport``; lines that state φ, dφ or a gradient but could not be parsed are
      in ``.lines`` with verdict ``"not parsed"`` and the reason; every other line not read
      (identities, definitions outside the dialect) is in ``.unparsed`` as ``(text, reason)``.
    """
    from .derivation import check_derivation

    if not isinstance(text, str) or not text.strip():
        raise InputError("text: expected the derivation's LaTeX (a non-empty str)")
    if not isinstance(symbols, Mapping):
        raise InputError(f"symbols: expected a dict of LaTeX name -> array or callable, got "
                         f"{type(symbols).__name__}")
    wrt_t = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    params = [p.name for p in inspect.signature(fun).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    missing = [p for p in params if p not in symbols]
    if missing:
        raise InputError(f"symbols: fun's argument(s) {', '.join(missing)} have no value")
    for w in wrt_t:
        if w not in params:
            raise InputError(f"wrt: {w!r} is not an argument of fun ({', '.join(params)})")
    args = tuple(symbols[p] for p in params)
    constants = {k: v for k, v in symbols.items() if k not in params and not callable(v)}
    given = {k: v for k, v in symbols.items() if k not in params and callable(v)}
    phi_rx = re.escape(phi)

    defs, body = macros(text)
    chosen: list = []  # (latex line, kind, lhs-info, tree or reason)
    unparsed: list[tuple[str, str]] = []
    definitions: dict[str, Callable] = {}
    found = latex_blocks(body)
    if blocks is not None:
        bad = [b for b in blocks if not isinstance(b, int) or not -len(found) <= b < len(found)]
        if bad:
            raise InputError(f"blocks: {bad} out of range; the text has {len(found)} block(s)")
        found = [found[b] for b in blocks]
    for blk in found:
        prev_kind = None
        for raw in lines_of(blk):
            try:
                line = clean(expand(raw, defs))
            except ValueError as exc:
                unparsed.append((raw, str(exc)))
                prev_kind = None
                continue
            if not line:
                continue
            outside = _OUTSIDE.search(line)
            parts = [p.strip() for p in _split_top(line, "=")]
            if outside and (len(parts) != 2 or not _lhs_kind(parts[0], phi_rx, prev_kind)):
                unparsed.append((line, _outside_reason(outside.group(0))))
                prev_kind = None if len(parts) != 2 or parts[0] else prev_kind
                continue
            if len(parts) != 2:
                unparsed.append((line, f"{len(parts) - 1} equalities on one line; one per "
                                       "line is read" if len(parts) > 2 else "no equality"))
                prev_kind = None
                continue
            lhs, rhs = parts
            kind = _lhs_kind(lhs, phi_rx, prev_kind)
            if kind is None:
                sym = _definition_symbol(lhs)
                if sym is not None:
                    try:
                        definitions[sym] = compile_tree(_parse(rhs))
                    except ValueError as exc:
                        why = (f"definition of {sym} not read ({exc})"
                               + ("; bound by symbols" if sym in symbols else ""))
                        unparsed.append((line, why))
                    prev_kind = None
                    continue
                unparsed.append((line, "its left side is neither φ, dφ, ∂φ/∂X nor one "
                                       "symbol: an identity this check does not bind"
                                 if lhs else "continues a line that was not read"))
                prev_kind = None
                continue
            prev_kind = kind
            try:
                chosen.append((line, kind, _parse(rhs), None))
            except ValueError as exc:
                chosen.append((line, kind, None, str(exc)))
    if not chosen:
        raise InputError("text: no line states φ, dφ or a gradient of φ "
                         f"({len(unparsed)} line(s) not read: "
                         + "; ".join(f"{t!r}: {r}" for t, r in unparsed[:3]) + ")")

    def make_env(a, tangents=None):
        values = {**constants, **dict(zip(params, a))}
        funcs = {k: (lambda env, g=g: g(**{p: env.values[p] for p in _params(g)}))
                 for k, g in given.items()}
        funcs[phi] = lambda env: fun(*(env.values[p] for p in params))
        defs_ = {k: v for k, v in definitions.items() if k not in symbols}
        return Env(values, tangents or {}, defs_, funcs, wrt_t)

    steps_, positions, not_parsed = [], [], {}
    for idx, (line, kind, tree, why) in enumerate(chosen):
        cond = next((c for frag, c in (assumes or {}).items() if frag in line), None)
        if tree is None:
            not_parsed[idx] = why
            continue
        try:
            steps_.append(_step(line, kind, tree, make_env, fun, wrt_t, cond))
        except ValueError as exc:
            not_parsed[idx] = str(exc)
            continue
        positions.append(idx)
    report = None
    if steps_:
        report = check_derivation(fun, steps_, args, argnums=wrt_t if len(wrt_t) > 1 else
                                  wrt_t[0], domains=domains, name=name, source=source,
                                  **options)
    return _merge(report, chosen, positions, not_parsed, unparsed, name, source)


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside braces (``\\sum_{i=1}`` keeps its ``=``)."""
    out, depth, cur = [], 0, []
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _params(g):
    return [p.name for p in inspect.signature(g).parameters.values()]


def _lhs_kind(lhs: str, phi_rx: str, prev):
    if not lhs:
        return prev
    s = lhs.replace(" ", "")
    p = phi_rx.replace(" ", "")
    if re.fullmatch(p, s):
        return ("value", 1.0)
    m = re.fullmatch(p + r"\^\{?(\d+)\}?", s)
    if m:
        return ("value", float(m.group(1)))
    m = re.fullmatch(r"(.*?)d" + p, s)
    if m and "d" not in m.group(1).replace("\\phi", "").replace("\\psi", ""):
        return ("differential", m.group(1))
    m = re.fullmatch(r"\\frac\{\\partial" + p + r"\}\{\\partial([A-Za-z](?:_\{?\w+\}?)?)\}", s)
    if m:
        return ("gradient", _symbol_name(m.group(1)))
    return None


def _definition_symbol(lhs: str):
    s = lhs.replace(" ", "")
    if re.fullmatch(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?", s):
        return _symbol_name(s)
    return None


def _step(line, kind, tree, make_env, fun, wrt, cond):
    tag, info = kind
    names_terms = [(s, t, ("−" if s < 0 else "") + unparse(t)) for s, t in terms_of(tree)]
    compiled = [(s, compile_tree(t), nm) for s, t, nm in names_terms]
    if tag == "value":
        power = info

        def fn(*a):
            env = make_env(a)
            total = sum(s * f(env) for s, f, _ in compiled)
            return total ** (1.0 / power) if power != 1 else total
        return step(line, fn, states="value", assumes=cond)
    if tag == "gradient":
        if info not in wrt:
            raise ValueError(f"a gradient w.r.t. {info}, which is not among wrt {wrt}")

        def grad(*a):
            env = make_env(a)
            return {nm: s * f(env) for s, f, nm in compiled}
        return step(line, from_gradient(grad, wrt=info), assumes=cond)
    coef_tree = None
    if info:
        coef_tree = compile_tree(_parse(info.replace("\\phi", " \\phi ").replace("\\psi",
                                                                              " \\psi ")))

    def dfn(*a):
        *pt, d = a
        d = d if isinstance(d, tuple) else (d,)
        env = make_env(tuple(pt), dict(zip(wrt, d)))
        c = coef_tree(env) if coef_tree is not None else 1.0
        out = {nm: s * f(env) / c for s, f, nm in compiled}
        for nm, v in out.items():
            if jnp.ndim(v) != 0:
                raise ValueError(f"the term {nm} is a matrix of shape {jnp.shape(v)}, not a "
                                 "scalar")
        return out if len(out) > 1 else next(iter(out.values()))
    return step(line, dfn, assumes=cond)


def _merge(report, chosen, positions, not_parsed, unparsed, name, source) -> DerivationReport:
    from . import verdict
    from .derivation import _message

    lines: list[LineResult] = []
    checked = iter(report.lines if report is not None else [])
    for idx, (line, kind, _, _) in enumerate(chosen):
        if idx in not_parsed:
            lines.append(LineResult(idx, line, False, "not parsed", states=kind[0] if kind[0]
                                    == "value" else "differential",
                                    message=f"not parsed: {not_parsed[idx]}",
                                    explanation=f"not parsed: {not_parsed[idx]}"))
        else:
            ln = next(checked)
            ln.index = idx
            lines.append(ln)
    first = next((ln.index for ln in lines if ln.verdict in ("fail", "error")), None)
    passed = all(ln.passed for ln in lines)
    verdict_ = "pass" if passed else ("fail" if first is not None else "untested")
    out = DerivationReport(lines, passed, first, verdict_, name=name, source=source,
                           dtype=report.dtype if report else "",
                           directions=report.directions if report else 0)
    out.unparsed = list(unparsed)
    out.message = _message(out)
    n_np = len(not_parsed)
    if n_np:
        out.message += f" {n_np} line(s) not parsed (not counted as holding)."
    return verdict.finish(out)


def seed_text(path) -> str:
    """A seed file's text (bounded read)."""
    from pathlib import Path

    p = Path(path)
    if p.stat().st_size > 1 << 20:
        raise InputError(f"{path}: larger than 1 MiB; not a derivation")
    return p.read_text(encoding="utf-8")


__all__: Sequence[str] = ("check_derivation_latex", "seed_text")
