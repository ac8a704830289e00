"""The README and the documentation: the site builds strictly, the quick starts and the guides'
examples run and print what they say, every public function is annotated."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ("audit.md", "domains.md", "hessian.md", "derivations.md")


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def with_checks(block: str) -> tuple[str, list[str]]:
    """The block with each checked line turned into a print, and the outputs it must give.

    Checked lines: ``print(...)  # text`` (prints ``text``; at any indentation), ``print(...)``
    followed by a line that is only ``# text``, and a top-level bare expression
    ``expr  # literal`` (prints ``repr(expr)``, which must equal the literal's repr).
    Comments that are not literals are prose.
    """
    lines, out, expected = block.rstrip("\n").split("\n"), [], []
    for i, line in enumerate(lines):
        code, _, comment = line.partition("  #")
        comment = comment.strip()
        is_top = not line.startswith((" ", "\t"))
        try:
            node = ast.parse(code.strip()).body if code.strip() else []
        except SyntaxError:
            node = []
        is_print = (len(node) == 1 and isinstance(node[0], ast.Expr)
                    and code.strip().startswith("print("))
        expr = is_top and len(node) == 1 and isinstance(node[0], ast.Expr)
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if is_print and comment:
            expected.append(comment)
        elif is_print and nxt.startswith("# ") and nxt[2:].strip():
            expected.append(nxt[2:].strip())
        elif expr and comment:
            try:
                value = ast.literal_eval(comment)
            except (ValueError, SyntaxError):
                out.append(line)
                continue
            out.append(f"print(repr(({code.strip()})))")
            expected.append(repr(value))
            continue
        out.append(line)
    return "\n".join(out), expected


def _run(script: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def _printed(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.strip().split("\n") if line.strip()]


def test_readme_is_a_short_guide_whose_quick_starts_run(tmp_path):
    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 12 * 1024, readme.stat().st_size
    text = readme.read_text()
    for section in ("## Install", "## Quick start 1", "## Quick start 2", "## Quick start 3",
                    "## Command line", "## Where is what", "## Documentation"):
        assert section in text, section
    for link in re.findall(r"\]\(((?:docs|notebooks)/[^)#]*)", text):
        assert (ROOT / link).exists(), link
    audit, mf, fit, batch = python_blocks(readme)
    (tmp_path / "mf.py").write_text(mf)
    script, expected = zip(*(with_checks(b) for b in (audit, fit, batch)))
    proc = _run("\n".join(script), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _printed(proc.stdout) == [e for part in expected for e in part], proc.stdout
    assert [len(e) for e in expected] == [2, 3, 1]

    cli = subprocess.run([sys.executable, "-m", "matgrad_jax", "audit", "mf.py"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert cli.returncode == 1 and "mf/wrong" in cli.stdout and "U, V" in cli.stdout, cli.stdout
    pt = subprocess.run([sys.executable, "-m", "pytest", "--matgrad", "--matgrad-target",
                         "mf.py", "-q", "-p", "no:cacheprovider"], capture_output=True,
                        text=True, cwd=tmp_path, timeout=300)
    assert "1 failed, 1 passed" in pt.stdout, pt.stdout[-2000:]


def test_the_guides_examples_print_what_they_say(tmp_path):
    parts, expected = [], []
    for name in GUIDES:
        for block in python_blocks(ROOT / "docs" / "guide" / name):
            code, exp = with_checks(block)
            # each block in a namespace of its own, one process for all of them
            parts.append(f"exec(compile({code!r}, {name!r}, 'exec'), {{}})")
            expected += exp
    assert len(expected) >= 4
    proc = _run("\n".join(parts), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _printed(proc.stdout) == expected, proc.stdout


def test_with_checks_reads_the_three_forms():
    code, expected = with_checks(textwrap.dedent("""\
        x = 1
        print(x)  # 1
        print(x + 1)
        # 2
        x, 'a'  # (1, 'a')
        x  # prose, not checked
    """))
    assert expected == ["1", "2", "(1, 'a')"]
    assert "print(repr((x, 'a')))" in code and "  x  # prose" not in code
    assert code.split("\n")[-1] == "x  # prose, not checked"


def test_docs_build_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link or reference, a public name the API pages do not
    render, or one without a docstring fails (docs/hooks.py); nothing is fetched."""
    pytest.importorskip("mkdocs")
    env = {k: v for k, v in os.environ.items() if k != "MATGRAD_DOCS_EXECUTE"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(tmp_path / "site")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    site = tmp_path / "site"
    api = (site / "api" / "audit" / "index.html").read_text()
    assert "check_gradient" in api and "argnums" in api
    assert (site / "notebooks" / "01_derivations_audited" / "index.html").is_file()
    perf = (site / "performance" / "index.html").read_text()
    assert "Problem.grad" in perf  # the generated tables


def test_the_api_pages_cover_every_public_name_and_their_hook_fails_on_gaps(tmp_path):
    hooks = _hooks()
    assert hooks.problems(ROOT / "docs") == []
    api = tmp_path / "docs" / "api"
    api.mkdir(parents=True)
    (api / "x.md").write_text("::: matgrad_jax.check_gradient\n\n::: matgrad_jax.examples\n"
                              "    options:\n      members:\n        - mf_gradient\n"
                              "        - no_such_name\n")
    found = hooks.problems(tmp_path / "docs")
    assert any("matgrad_jax.minimize" in p and "no page" in p for p in found)
    assert any("no_such_name" in p for p in found)
    assert not any("check_gradient" in p for p in found)


def _unannotated(fun) -> list[str]:
    sig = inspect.signature(fun)
    missing = [name for name, p in sig.parameters.items()
               if p.annotation is inspect.Parameter.empty and name not in ("self", "cls")]
    if sig.return_annotation is inspect.Signature.empty and fun.__name__ != "__init__":
        missing.append("return")
    return missing


def _hooks():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.pop(0)
    return hooks


def _python_object(obj):
    """The Python object behind a griffe object (a submodule is imported, not the package's
    attribute of the same name)."""
    import importlib

    if obj.is_module:
        return importlib.import_module(obj.path)
    return getattr(_python_object(obj.parent), obj.name)


def test_every_public_function_has_type_hints():
    import griffe

    import matgrad_jax

    hooks = _hooks()
    package = griffe.load("matgrad_jax", search_paths=[str(ROOT)])
    objects = [getattr(matgrad_jax, n) for n in matgrad_jax.__all__
               if not n.startswith("__") and not inspect.ismodule(getattr(matgrad_jax, n))]
    for target, members, _ in hooks.directives(ROOT / "docs" / "api"):
        owner = hooks._griffe_object(package, target)
        if members:
            objects += [getattr(_python_object(owner), m) for m in members]
        else:
            objects.append(_python_object(owner))
    missing = {}
    for obj in objects:
        funs = [obj] if inspect.isfunction(obj) else []
        if inspect.isclass(obj) and obj.__module__.startswith("matgrad_jax"):
            funs = [v for k, v in vars(obj).items()
                    if inspect.isfunction(v) and not k.startswith("_")]
        for fun in funs:
            if gaps := _unannotated(fun):
                missing[f"{fun.__module__}.{fun.__qualname__}"] = gaps
    assert not missing, missing
