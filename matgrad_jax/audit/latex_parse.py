r"""Reading a derivation's LaTeX: the grammar of the dialect (see
:mod:`~matgrad_jax.audit.latex`), ``\def`` macros, the ``\eqalign``/``aligned`` blocks and their
lines, and the compiler from a parse tree to a JAX function of the symbols. Requires the
``latex`` extra (lark)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from .._checks import InputError

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

_OUTSIDE = re.compile(r"\\(?:sum|prod|max|min|lim|int|iff|implies|Rightarrow|in)(?![A-Za-z])")


def _outside_reason(cmd: str) -> str:
    return f"{cmd} is outside the dialect" + (
        " (sums over SVD factors and the like are not read)" if cmd in (r"\sum", r"\prod")
        else "")


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
