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

import jax
import jax.numpy as jnp

from .._checks import InputError
from .derivation_report import DerivationReport, LineResult
from .steps import from_gradient, step

GRAMMAR = r"""
?start: sum
?sum: term
    | "-" term            -> neg
    | sum "+" term        -> add
    | sum "-" term        -> sub
?term: kron
    | kron ":" kron       -> frob
?kron: product
    | kron OTIMES product -> kron
    | kron ODOT product   -> hadamard
?product: factor
    | product factor      -> juxt
?factor: atom
    | factor "^" SYMBOL               -> sup_symbol
    | factor "^" NUMBER               -> sup_number
    | factor "^" "{" SYMBOL "}"       -> sup_symbol
    | factor "^" "{" signed "}"       -> sup_number
?signed: NUMBER | "-" NUMBER -> negnum
?atom: NUMBER                         -> number
    | SYMBOL                          -> symbol
    | DSYMBOL                         -> differential
    | "(" sum ")"
    | "{" sum "}"
    | NORM_OPEN sum NORM_CLOSE        -> norm
    | TR "(" sum ")"                  -> trace
    | DIAG "(" sum ")"                -> diag
    | "\\frac" "{" sum "}" "{" sum "}" -> frac
OTIMES: "\\otimes"
ODOT: "\\odot"
TR.3: "\\operatorname{Tr}" | "\\mathrm{Tr}" | "{\\rm Tr}" | "\\Tr" | "\\tr"
DIAG.3: "\\operatorname{Diag}" | "\\mathrm{Diag}" | "{\\rm Diag}" | "\\Diag"
NORM_CLOSE.2: /‖_(F|S|2|\{F\}|\{S\}|\{2\})/
NORM_OPEN: "‖"
NUMBER: /\d+(\.\d+)?/
DSYMBOL.2: /d(?:[A-Za-ce-z]|\\(?:@DGREEK@))@SUB@/
SYMBOL: /(?:[A-Za-ce-z]|\\(?:@GREEK@))@SUB@/
%import common.WS
%ignore WS
"""

_SUB = r"(?:_(?:\{[A-Za-z0-9]+\}|[A-Za-z0-9]))?"  # one subscript: I_2, H_R, e_{k}
_GREEK = ("phi", "psi", "sigma", "lambda", "alpha", "beta", "gamma", "mu", "nu", "theta",
          "omega", "Phi", "Psi", "Sigma", "Theta", "Lambda", "Omega")
_DGREEK = tuple(g for g in _GREEK if g in ("phi", "psi") or g[0].isupper())  # dφ, dΣ; not dσ
GRAMMAR = (GRAMMAR.replace("@SUB@", _SUB).replace("@GREEK@", "|".join(_GREEK))
           .replace("@DGREEK@", "|".join(_DGREEK)))
_PARSER = None


def _parser():
    global _PARSER
    if _PARSER is None:
        try:
            import lark
        except ImportError:  # pragma: no cover - the optional extra
            raise InputError("check_derivation_latex needs the 'latex' extra: pip install "
                             "'matgrad_jax[latex]' (lark)") from None
        _PARSER = lark.Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)
    return _PARSER


# -- the text: macros, blocks, lines -----------------------------------------------------------

def _braced(text: str, i: int) -> tuple[str, int]:
    """The group starting at ``text[i] == "{"``, and the index after it."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{" and (j == 0 or text[j - 1] != "\\"):
            depth += 1
        elif text[j] == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    raise ValueError("unbalanced braces")


def macros(text: str) -> tuple[dict[str, tuple[int, str]], str]:
    r"""The ``\def\name#1#2{body}`` macros of ``text``, and the text without them."""
    out, rest, i = {}, [], 0
    rx = re.compile(r"\\def\\([A-Za-z]+)((?:#\d)*)\{")
    while True:
        m = rx.search(text, i)
        if not m:
            rest.append(text[i:])
            break
        rest.append(text[i:m.start()])
        body, end = _braced(text, m.end() - 1)
        out[m.group(1)] = (len(m.group(2)) // 2, body)
        i = end
    return out, "".join(rest)


def expand(text: str, defs: Mapping[str, tuple[int, str]], limit: int = 50) -> str:
    """``text`` with every macro of ``defs`` expanded (arguments braced or one character)."""
    for _ in range(limit):
        changed = False
        for name, (nargs, body) in defs.items():
            rx = re.compile(r"\\" + name + r"(?![A-Za-z])")
            pos = 0
            while True:
                m = rx.search(text, pos)
                if not m:
                    break
                j, args = m.end(), []
                for _a in range(nargs):
                    while j < len(text) and text[j] == " ":
                        j += 1
                    if j < len(text) and text[j] == "{":
                        arg, j = _braced(text, j)
                    elif j < len(text) and text[j] == "\\":
                        k = re.match(r"\\[A-Za-z]+|\\.", text[j:])
                        arg, j = k.group(0), j + len(k.group(0))
                    else:
                        arg, j = text[j:j + 1], j + 1
                    args.append(arg)
                rep = body
                for k, arg in enumerate(args, 1):
                    rep = rep.replace(f"#{k}", arg)
                text = text[:m.start()] + rep + text[j:]
                pos = m.start() + len(rep) if rep.startswith("\\" + name) else m.start()
                changed = True
        if not changed:
            return text
    raise ValueError("macro expansion does not terminate")


def latex_blocks(text: str) -> list[str]:
    r"""The bodies of the ``\eqalign{…}`` and ``aligned``/``align`` blocks (the whole text when
    there are none)."""
    found = []
    for m in re.finditer(r"\\eqalign\s*\{", text):
        found.append((m.start(), _braced(text, m.end() - 1)[0]))
    for m in re.finditer(r"\\begin\{(aligned|align\*?|eqnarray\*?)\}(.*?)\\end\{\1\}", text,
                         re.S):
        found.append((m.start(), m.group(2)))
    return [b for _, b in sorted(found)] or [text]


def lines_of(block: str) -> list[str]:
    r"""``block`` split at ``\\`` outside braces."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(block):
        c = block[i]
        if c == "\\" and block[i + 1:i + 2] == "\\" and depth == 0:
            out.append("".join(cur))
            cur, i = [], i + 2
            continue
        if c == "\\" and i + 1 < len(block):  # an escaped character stays with its backslash
            cur.append(block[i:i + 2])
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


_SPACING = re.compile(r"\\[,:;! ]|\\q?quad\b|~|\\(?:big|Big|bigg|Bigg)[lr]?(?![A-Za-z])")


def clean(text: str) -> str:
    """Spacing and sizing commands dropped, norms as ``‖``, alignment marks removed."""
    t = _SPACING.sub(" ", text)
    t = re.sub(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])", "", t)
    t = t.replace(r"\|", "‖").replace(r"\Vert", "‖").replace("&", " ")
    t = re.sub(r"\\color\{[^}]*\}", "", t)
    return re.sub(r"\s+", " ", t).strip()


# -- compiling the parse tree to functions -----------------------------------------------------

class Env:
    """Symbol values at one point and their differentials along one tangent."""

    def __init__(self, values: dict, tangents: dict, definitions: dict, functions: dict, wrt):
        self.values, self.tangents = values, tangents
        self.definitions, self.functions, self.wrt = definitions, functions, wrt
        self.cache: dict = {}

    def value(self, name):
        if name in self.values:
            return self.values[name]
        if name not in self.cache:
            if name in self.functions:
                self.cache[name] = self.functions[name](self)
            elif name in self.definitions:
                self.cache[name] = self.definitions[name](self)
            else:
                raise KeyError(name)
        return self.cache[name]

    def diff(self, name):
        if name in self.tangents:
            return self.tangents[name]
        if name in self.values:  # data: its differential is zero
            return jnp.zeros_like(self.values[name])
        prim = tuple(self.values[w] for w in self.wrt)
        tans = tuple(self.tangents[w] for w in self.wrt)

        def of(*ws):
            env = Env({**self.values, **dict(zip(self.wrt, ws))}, {}, self.definitions,
                      self.functions, self.wrt)
            return env.value(name)
        return jax.jvp(of, prim, tans)[1]


def _scalar(x):
    return jnp.ndim(x) == 0


def _juxt(a, b):
    if _scalar(a) or _scalar(b):
        return a * b
    return a @ b


def _power(x, p):
    if _scalar(x):
        return x ** p
    if p == -1:
        return jnp.linalg.inv(x)
    if float(p).is_integer() and p > 0:
        return jnp.linalg.matrix_power(x, int(p))
    raise ValueError(f"matrix power {p}")


def _norm(x, kind):
    if kind in ("F", "{F}"):
        return jnp.sqrt(jnp.sum(x * x))
    if jnp.ndim(x) == 2:
        return jnp.linalg.norm(x, ord=2)
    return jnp.sqrt(jnp.sum(x * x))


def _symbol_name(tok: str) -> str:
    return re.sub(r"_\{([A-Za-z0-9]+)\}", r"_\1", str(tok))


def compile_tree(tree) -> Callable:
    """A parse tree -> ``fn(env)``."""
    import lark

    if isinstance(tree, lark.Token):
        raise ValueError(f"unexpected token {tree!r}")
    kind, ch = tree.data, tree.children
    if kind == "sup_number":
        f, p = compile_tree(ch[0]), _exponent(ch[1])
        return lambda env: _power(f(env), p)
    c = [compile_tree(x) if isinstance(x, lark.Tree) else x for x in ch]
    if kind == "number":
        v = float(ch[0])
        return lambda env: v
    if kind == "symbol":
        name = _symbol_name(ch[0])
        return lambda env: env.value(name)
    if kind == "differential":
        name = _symbol_name(str(ch[0])[1:])
        return lambda env: env.diff(name)
    if kind == "neg":
        f = c[0]
        return lambda env: -f(env)
    if kind in ("add", "sub", "frob", "kron", "hadamard", "juxt"):
        a, b = c[0], c[-1]
        op = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
              "frob": lambda x, y: jnp.sum(x * y), "kron": jnp.kron,
              "hadamard": lambda x, y: x * y, "juxt": _juxt}[kind]
        return lambda env: op(a(env), b(env))
    if kind == "sup_symbol":
        if _symbol_name(ch[1]) != "T":
            raise ValueError(f"superscript {ch[1]!r} (only ^T, ^{{-1}} and numbers are read)")
        f = c[0]
        return lambda env: jnp.swapaxes(f(env), -1, -2) if jnp.ndim(f(env)) >= 2 else f(env)
    if kind == "norm":
        f, sub = c[1], str(ch[2])[2:]
        return lambda env: _norm(f(env), sub)
    if kind == "trace":
        f = c[1]
        return lambda env: jnp.trace(f(env))
    if kind == "diag":
        f = c[1]
        return lambda env: jnp.diag(f(env)) if jnp.ndim(f(env)) == 1 else jnp.diag(
            jnp.diagonal(f(env)))
    if kind == "frac":
        a, b = c[0], c[1]
        return lambda env: a(env) / b(env)
    raise ValueError(f"construct {kind!r} is outside the dialect")


def _exponent(node):
    import lark

    if isinstance(node, lark.Tree) and node.data == "negnum":
        return -float(node.children[0])
    return float(node)


def terms_of(tree) -> list:
    """The top-level terms of a sum as (sign, tree), a numeric factor distributed over a
    parenthesised sum (``2(BD−F)`` -> ``2BD``, ``−2F``)."""
    import lark

    if isinstance(tree, lark.Tree):
        if tree.data == "add":
            return terms_of(tree.children[0]) + terms_of(tree.children[1])
        if tree.data == "sub":
            return terms_of(tree.children[0]) + [(-s, t) for s, t in terms_of(tree.children[1])]
        if tree.data == "neg":
            return [(-s, t) for s, t in terms_of(tree.children[0])]
        if (tree.data == "juxt" and isinstance(tree.children[0], lark.Tree)
                and tree.children[0].data == "number" and isinstance(tree.children[1], lark.Tree)
                and tree.children[1].data in ("add", "sub")):
            coef = tree.children[0]
            return [(s, lark.Tree("juxt", [coef, t])) for s, t in terms_of(tree.children[1])]
    return [(1, tree)]


def unparse(tree) -> str:
    """A short text for a term (for the report)."""
    import lark

    if isinstance(tree, lark.Token):
        return _symbol_name(tree)
    k, ch = tree.data, tree.children
    if k == "number":
        v = float(ch[0])
        return str(int(v)) if v.is_integer() else str(v)
    if k == "symbol":
        return _symbol_name(ch[0]).replace("\\", "")
    if k == "differential":
        return "d" + _symbol_name(str(ch[0])[1:]).replace("\\", "")
    if k == "juxt":
        a, b = unparse(ch[0]), unparse(ch[1])
        if isinstance(ch[1], lark.Tree) and ch[1].data in ("add", "sub", "neg", "frob"):
            b = f"({b})"
        return a + b
    if k in ("add", "sub"):
        return f"{unparse(ch[0])}{'+' if k == 'add' else '−'}{unparse(ch[1])}"
    if k == "neg":
        return "−" + unparse(ch[0])
    if k == "frob":
        return f"{unparse(ch[0])}:{unparse(ch[1])}"
    if k in ("kron", "hadamard"):
        return f"{unparse(ch[0])}{'⊗' if k == 'kron' else '⊙'}{unparse(ch[2])}"
    if k == "sup_symbol":
        return unparse(ch[0]) + "ᵀ"
    if k == "sup_number":
        return f"{unparse(ch[0])}^{_exponent(ch[1]):g}"
    if k == "norm":
        return f"‖{unparse(ch[1])}‖"
    if k == "trace":
        return f"Tr({unparse(ch[1])})"
    if k == "diag":
        return f"Diag({unparse(ch[1])})"
    if k == "frac":
        return f"({unparse(ch[0])})/({unparse(ch[1])})"
    return k


# -- reading the lines ---------------------------------------------------------------------------

def _parse(text: str):
    import lark

    outside = _OUTSIDE.search(text)
    if outside:
        raise ValueError(_outside_reason(outside.group(0)))
    if text.count("(") != text.count(")"):
        raise ValueError(f"unbalanced parentheses ({text.count('(')} '(' and "
                         f"{text.count(')')} ')')")
    try:
        return _parser().parse(text)
    except lark.exceptions.LarkError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"cannot parse: {first}") from None


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


_OUTSIDE = re.compile(r"\\(?:sum|prod|max|min|lim|int|iff|implies|Rightarrow|in)(?![A-Za-z])")


def _outside_reason(cmd: str) -> str:
    return f"{cmd} is outside the dialect" + (
        " (sums over SVD factors and the like are not read)" if cmd in (r"\sum", r"\prod")
        else "")


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
