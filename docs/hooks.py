"""MkDocs hook: the API reference covers every public name, and every one has a docstring.

mkdocstrings renders what a page asks for and silently skips a member without a docstring. This
hook makes both gaps build warnings (so ``mkdocs build --strict`` fails on them):

- a name in ``matgrad_jax.__all__`` (other than modules and ``__version__``) that no
  ``::: matgrad_jax.NAME`` directive of ``docs/api/*.md`` renders;
- an object a directive renders, or a member it lists, that has no docstring.
"""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.matgrad_api")

_DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+.*\n?)*)", re.M)
_MEMBER = re.compile(r"^\s+- (\w+)\s*$", re.M)


def _griffe_object(package, path: str):
    """What mkdocstrings renders for ``::: path`` (griffe's view: a submodule wins over a name
    the package imports, so ``matgrad_jax.fit`` is the module; write ``matgrad_jax.fit.fit``)."""
    obj = package[path.split(".", 1)[1]] if "." in path else package
    return obj.final_target if obj.is_alias else obj


def directives(api_dir: Path) -> list[tuple[str, list[str], str]]:
    """``(target, listed members, page)`` for every ``:::`` directive of the API pages."""
    found = []
    for page in sorted(api_dir.glob("*.md")):
        for match in _DIRECTIVE.finditer(page.read_text()):
            found.append((match.group(1), _MEMBER.findall(match.group(2)), page.name))
    return found


def problems(docs_dir: Path) -> list[str]:
    """What is missing from the API reference, one sentence each (empty when complete)."""
    import griffe

    import matgrad_jax

    package = griffe.load("matgrad_jax", search_paths=[str(Path(__file__).resolve().parents[1])])
    found = directives(docs_dir / "api")
    out, rendered = [], set()
    for target, members, page in found:
        try:
            obj = _griffe_object(package, target)
        except (KeyError, griffe.AliasResolutionError) as exc:
            out.append(f"{page}: ::: {target} names nothing in matgrad_jax ({exc})")
            continue
        if members:
            for member in members:
                if member not in obj.members:
                    out.append(f"{page}: {target} has no member {member!r}")
                    continue
                sub = obj.members[member]
                sub = sub.final_target if sub.is_alias else sub
                rendered.add(sub.path)
                if not sub.docstring:
                    out.append(f"{page}: {target}.{member} has no docstring")
        else:
            rendered.add(obj.path)
            if not obj.docstring:
                out.append(f"{page}: {target} has no docstring")
    for name in matgrad_jax.__all__:
        value = getattr(matgrad_jax, name)
        if name.startswith("__") or inspect.ismodule(value):
            continue
        path = f"{value.__module__}.{value.__qualname__}"
        if path not in rendered:
            out.append(f"matgrad_jax.{name} ({path}) is public (in __all__) but no page of "
                       "docs/api renders it")
    return out


def on_pre_build(config) -> None:
    for problem in problems(Path(config["docs_dir"])):
        log.warning(problem)
