"""A derivation read from its LaTeX: the seeds' own lines, as they stand, are the test."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import matgrad_jax as mg
from matgrad_jax import InputError
from matgrad_jax.audit import latex
from matgrad_jax.problems import chains

SHARED = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def test_shipped_seed_texts_are_the_seeds_verbatim():
    for which, fname in chains.SEED_TEXTS.items():
        shipped = chains.seed_text(which)
        assert "\\eqalign" in shipped
        if (SHARED / fname).exists():  # beside a checkout of the project
            assert shipped == (SHARED / fname).read_text(encoding="utf-8")


def test_macros_expand_with_and_without_arguments():
    defs, rest = latex.macros(r"\def\p#1#2{\frac{\partial #1}{\partial #2}}"
                              r"\def\LR#1{\left(#1\right)}$\p{\phi}{R} = \LR{A}$")
    assert set(defs) == {"p", "LR"} and "\\def" not in rest
    assert latex.expand(rest, defs) == r"$\frac{\partial \phi}{\partial R} = \left(A\right)$"
    defs, _ = latex.macros(r"\def\p{\partial}\def\grad#1#2{\frac{\p #1}{\p #2}}")
    assert latex.expand(r"\grad{\phi}{B} \phi", defs) == r"\frac{\partial \phi}{\partial B} \phi"


def test_seed1_from_its_latex():
    r = chains.check_seed_latex("channel/phi")
    texts = [ln.text for ln in r.lines]
    assert texts[0] == r"\phi = M:M + N:N"
    # the seed's third line has a parenthesis missing: not parsed, never guessed
    assert r.lines[2].verdict == "not parsed" and "unbalanced parentheses" in r.lines[2].message
    kron = next(i for i, t in enumerate(texts) if "I_Q" in t)
    assert all(ln.passed for i, ln in enumerate(r.lines[:kron + 1]) if i != 2), r.to_markdown()
    wrong = r.lines[r.first_wrong]
    assert r.first_wrong == len(r.lines) - 1 and r"\partial Q" in wrong.text
    assert wrong.diagnosis == "term-sign" and wrong.term == "−2F"
    # the SVD sums are reported as outside the dialect
    assert any(r"\sum" in t and "outside the dialect" in why for t, why in r.unparsed)
    assert not r.passed and r.verdict == "fail"


def test_seed2_frobenius_from_its_latex():
    r = chains.check_seed_latex("gram/frobenius")
    wrong = r.lines[r.first_wrong]
    assert wrong.text == "= 4(BB^T-Q)B:dB"
    assert wrong.where_it_holds.startswith("holds only for symmetric")
    assert all(ln.passed for ln in r.lines[:r.first_wrong])
    assert all(ln.follows for ln in r.lines[r.first_wrong + 1:])


def test_seed2_spectral_from_its_latex():
    r = chains.check_seed_latex("gram/spectral")
    assert r.passed, r.to_markdown()
    assert any(r"\implies" in t for t, _ in r.unparsed)


def test_a_users_latex_chain_in_float32_and_float64():
    text = r"""
    \def\LR#1{\left(#1\right)}
    $$\eqalign{
      \phi &= \|AX - M\|_F^2 \\
      d\phi &= 2\LR{AX-M}:A\,dX \\
      &= 2A^T\LR{AX-M}:dX \\
      \frac{\partial\phi}{\partial X} &= 2A^T\LR{AX-M} \\
    }$$"""
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        A, M, X = (jnp.asarray(rng.standard_normal(s).astype(dtype))
                   for s in ((5, 3), (5, 4), (3, 4)))
        fun = lambda X, A, M: jnp.sum((A @ X - M) ** 2)  # noqa: E731
        r = mg.check_derivation_latex(text, fun, {"X": X, "A": A, "M": M}, wrt="X")
        assert r.passed and len(r.lines) == 4, r.to_markdown()
    planted = text.replace(r"&= 2A^T\LR{AX-M}:dX", r"&= 2\LR{AX-M}^TA:dX")
    A, M, X = (jnp.asarray(rng.standard_normal(s)) for s in ((4, 4), (4, 4), (4, 4)))
    r = mg.check_derivation_latex(planted, lambda X, A, M: jnp.sum((A @ X - M) ** 2),
                                  {"X": X, "A": A, "M": M}, wrt="X")
    assert r.first_wrong == 2 and r.lines[2].diagnosis == "transpose", r.to_markdown()
    assert r.lines[3].passed


def test_latex_with_x64_off():
    with (jax.enable_x64(False) if hasattr(jax, "enable_x64") else
          __import__("jax.experimental", fromlist=["disable_x64"]).disable_x64()):
        r = chains.check_seed_latex("gram/frobenius")
    assert r.dtype == "float32" and r.lines[r.first_wrong].text == "= 4(BB^T-Q)B:dB"


def test_latex_bad_calls():
    f = lambda X: jnp.sum(X ** 2)  # noqa: E731
    X = jnp.ones((2, 3))
    with pytest.raises(InputError, match="no line states"):
        mg.check_derivation_latex(r"$$\eqalign{ A:B &= B:A }$$", f, {"X": X}, wrt="X")
    with pytest.raises(InputError, match="have no value"):
        mg.check_derivation_latex(r"\phi = X:X", f, {}, wrt="X")
    with pytest.raises(InputError, match="wrt"):
        mg.check_derivation_latex(r"\phi = X:X", f, {"X": X}, wrt="Y")
    with pytest.raises(InputError, match="blocks"):
        mg.check_derivation_latex(r"\phi = X:X", f, {"X": X}, wrt="X", blocks=[3])
    r = mg.check_derivation_latex(r"\eqalign{\phi &= X:X \\ d\phi &= 2X:dX \\ &= 2X^\top:dX}",
                                  f, {"X": X}, wrt="X")
    assert r.lines[2].verdict == "not parsed" and not r.passed and r.first_wrong is None
    assert r.verdict == "untested"
