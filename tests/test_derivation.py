"""A derivation audited line by line: ``check_derivation``, ``step``, ``from_gradient``, the
seeds' chains, and the first wrong line named with what is wrong there."""

import contextlib
import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import matgrad_jax as mg
from matgrad_jax import InputError


def _x64(on):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if on else disable_x64()


def fr(X, Y):
    return jnp.sum(X * Y)


# ---- a user's chain: matrix factorisation ‖UVᵀ − X‖² at rectangular shapes ----------------------

def mf_args(dtype=jnp.float64, n=7, m=5, k=3):
    rng = np.random.default_rng(1)
    return tuple(jnp.asarray(rng.standard_normal(s).astype(np.dtype(dtype)))
                 for s in ((n, k), (m, k), (n, m)))


def mf(U, V, X):
    return jnp.sum((U @ V.T - X) ** 2)


def mf_steps(planted=False):
    E = lambda U, V, X: U @ V.T - X
    mid = ((lambda U, V, X, d: {"2EV:dU": 2 * fr(E(U, V, X) @ V, d[0]),
                                 "2EᵀU:dV": 2 * fr(E(U, V, X).T @ U, d[1])})
           if not planted else
           # planted: the term's matrix written untransposed, (EᵀU)ᵀ = UᵀE in place of EᵀU
           (lambda U, V, X, d: {"2EV:dU": 2 * fr(E(U, V, X) @ V, d[0]),
                                "2UᵀE:dV": 2 * fr(U.T @ E(U, V, X), d[1])}))
    return [
        mg.step("φ = E:E", lambda U, V, X: fr(E(U, V, X), E(U, V, X)), states="value"),
        ("dφ = 2E:(dU Vᵀ + U dVᵀ)", lambda U, V, X, d: 2 * fr(E(U, V, X),
                                                              d[0] @ V.T + U @ d[1].T)),
        ("= 2EV:dU + 2EᵀU:dV", mid) if not planted else ("= 2EV:dU + 2UᵀE:dV (planted)", mid),
        ("∂φ/∂U = 2EV, ∂φ/∂V = 2EᵀU",
         mg.from_gradient(lambda U, V, X: (2 * E(U, V, X) @ V, 2 * E(U, V, X).T @ U))),
    ]


@pytest.mark.parametrize("dtype, x64", [(jnp.float64, True), (jnp.float32, True),
                                        (jnp.float32, False)])  # float64 arrays need x64
def test_right_chain_passes_float32_float64(dtype, x64):
    with _x64(x64):
        r = mg.check_derivation(mf, mf_steps(), mf_args(dtype), argnums=(0, 1))
    assert r.passed and r.first_wrong is None and r.verdict == "pass", r.to_markdown()
    assert [ln.passed for ln in r.lines] == [True] * 4
    assert all(ln.points > 0 for ln in r.lines)
    assert r.lines[2].follows is True and r.lines[1].follows is None  # value, then differential
    assert r.dtype == np.dtype(dtype).name


def test_planted_middle_error_is_found_at_that_line():
    U, V, X = mf_args(n=6, m=6, k=6)  # square, so the wrong transposition type-checks
    r = mg.check_derivation(mf, mf_steps(planted=True), (U, V, X), argnums=(0, 1))
    assert not r.passed and r.first_wrong == 2, r.to_markdown()
    wrong = r.lines[2]
    assert wrong.verdict == "fail" and wrong.follows is False
    assert wrong.diagnosis == "term-transpose" and wrong.term == "2UᵀE:dV"
    assert r.lines[1].passed and r.lines[0].passed
    # the last line is right again: it passes, and does not follow from the wrong line
    assert r.lines[3].passed and r.lines[3].follows is False
    assert "line 3" in r.headline()
    # a transpose dropped from one factor (EU for EᵀU) is found at that line too
    steps = mf_steps()
    steps[2] = ("= 2EV:dU + 2EU:dV", lambda U, V, X, d: 2 * fr((U @ V.T - X) @ V, d[0])
                + 2 * fr((U @ V.T - X) @ U, d[1]))
    r = mg.check_derivation(mf, steps, (U, V, X), argnums=(0, 1))
    assert r.first_wrong == 2 and r.lines[2].follows is False and r.lines[3].passed


def test_planted_error_at_rectangular_shapes_and_its_diagnoses():
    """At n ≠ m ≠ k a dropped transpose does not type-check: the line's error is the finding.
    A sign, a factor and an extra term are each named."""
    U, V, X = mf_args()
    E = lambda U, V, X: U @ V.T - X
    base = mf_steps()

    def chain(mid):
        return base[:2] + [("= (planted)", mid)] + base[3:]

    r = mg.check_derivation(mf, chain(lambda U, V, X, d: 2 * fr(E(U, V, X) @ V, d[0])
                                      + 2 * fr(E(U, V, X) @ U, d[1])), (U, V, X),
                            argnums=(0, 1))
    assert r.first_wrong == 2 and r.lines[2].verdict == "error"
    assert "raised" in r.lines[2].message
    cases = {
        "term-sign": lambda U, V, X, d: {"a": 2 * fr(E(U, V, X) @ V, d[0]),
                                         "b": -2 * fr(E(U, V, X).T @ U, d[1])},
        "term-scale:0.5": lambda U, V, X, d: {"a": 2 * fr(E(U, V, X) @ V, d[0]),
                                              "b": 4 * fr(E(U, V, X).T @ U, d[1])},
        "term-absent": lambda U, V, X, d: {"a": 2 * fr(E(U, V, X) @ V, d[0]),
                                           "b": 2 * fr(E(U, V, X).T @ U, d[1]),
                                           "c": fr(U, d[0])},
        "sign": lambda U, V, X, d: -2 * fr(E(U, V, X) @ V, d[0]) - 2 * fr(E(U, V, X).T @ U,
                                                                         d[1]),
    }
    for label, mid in cases.items():
        r = mg.check_derivation(mf, chain(mid), (U, V, X), argnums=(0, 1))
        assert r.first_wrong == 2, (label, r.to_markdown())
        assert r.lines[2].diagnosis == label, (label, r.lines[2])
        if label.startswith("term-"):
            assert r.lines[2].term == ("c" if label == "term-absent" else "b")


def test_assumes_tests_the_line_on_its_family_and_carries_it():
    B, Q = mg.problems.gram.example_args()
    Q = (Q + Q.T) / 2  # the example satisfies the assumption too
    chain = mg.chains("gram/frobenius")[0]
    lines = list(chain.steps)
    lines[4] = mg.step(lines[4].text, lines[4].fn, assumes="symmetric Q")
    r = mg.check_derivation(mg.problems.gram.frobenius, lines, (B, Q), domains={"Q": "general"})
    assert r.passed, r.to_markdown()
    assert r.lines[4].conditions == ("symmetric Q",)
    assert r.lines[5].conditions == ("symmetric Q (from line 5)",)
    # the same line, assumed on skew Q, fails there
    lines[4] = mg.step(lines[4].text, lines[4].fn, assumes="Q skew")
    r = mg.check_derivation(mg.problems.gram.frobenius, lines, (B, Q), domains={"Q": "general"})
    assert r.first_wrong == 4 and "skew" in r.lines[4].where_it_holds


def test_assumption_on_fixed_data_varies_it():
    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((4, 4)))
    x = jnp.asarray(rng.standard_normal(4))
    f = lambda x, A: x @ A @ x
    steps = [("dφ = 2 xᵀA dx", lambda x, A, dx: 2 * x @ A @ dx)]
    assert mg.check_derivation(f, steps, (x, A)).first_wrong == 0
    steps = [mg.step("dφ = 2 xᵀA dx", steps[0][1], assumes="A = A^T")]
    r = mg.check_derivation(f, steps, (x, A))
    assert r.passed and r.lines[0].points >= 3, r.to_markdown()


# ---- the seeds ----------------------------------------------------------------------------------

def test_seed1_first_wrong_line_is_the_sign_of_F():
    (c,) = mg.chains("channel/phi")
    r = c.check()
    kron = next(i for i, ln in enumerate(r.lines) if "(J₂⊗I_Q)C" in ln.text)
    assert all(ln.passed for ln in r.lines[:kron + 1]), r.to_markdown()
    wrong = r.lines[r.first_wrong]
    assert "∂φ/∂Q = 2(BD−F)" in wrong.text and r.first_wrong == len(r.lines) - 1
    assert wrong.diagnosis == "term-sign" and "F" in wrong.term
    assert "sign of the term −2F" in wrong.explanation
    assert all(ln.source.startswith("seeds/000_59df1aa91f78fd77.txt:") for ln in r.lines)


def test_seed2_first_wrong_line_holds_only_for_symmetric_Q():
    (c,) = mg.chains("gram/frobenius")
    r = c.check()
    wrong = r.lines[r.first_wrong]
    assert wrong.text == "= 4(BBᵀ−Q)B:dB"
    assert wrong.where_it_holds.startswith("holds only for symmetric")
    assert wrong.diagnosis == "family" and wrong.follows is False
    assert all(ln.passed for ln in r.lines[:r.first_wrong])
    assert all(ln.follows for ln in r.lines[r.first_wrong + 1:])  # inherited, not new


@pytest.mark.parametrize("name", ["channel/svd_route", "channel/kron_identity", "gram/spectral"])
def test_seed_chains_that_hold(name):
    (c,) = mg.chains(name)
    r = c.check()
    assert r.passed, r.to_markdown()


def test_seed_verdicts_without_x64():
    with _x64(False):  # (x64 on: the two tests above)
        r1 = mg.chains("channel/phi")[0].check()
        r2 = mg.chains("gram/frobenius")[0].check()
    assert (r1.lines[r1.first_wrong].diagnosis, r2.lines[r2.first_wrong].diagnosis) == (
        "term-sign", "family")


def test_chains_registry_names():
    names = [c.name for c in mg.chains(builtin=True)]
    assert names == ["channel/phi", "channel/svd_route", "channel/kron_identity",
                     "gram/frobenius", "gram/spectral"]
    assert all(c.name.startswith(("channel", "gram/frobenius", "gram/spectral"))
               for c in mg.chains(builtin=True))
    assert mg.chains("gram/") == tuple(c for c in mg.chains() if "gram/" in c.name)
    d = {x.name: x for x in mg.derivations(builtin=True)}
    assert d["channel/phi/published"].chain == "channel/phi"


# ---- the report ----------------------------------------------------------------------------------

def test_report_renders_and_is_jsonable():
    r = mg.chains("gram/frobenius")[0].check()
    md = r.to_markdown()
    assert "✗" in md and "✓" in md and "= 4(BBᵀ−Q)B:dB" in md
    assert r._repr_markdown_() == md and "<table>" in r._repr_html_()
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["first_wrong"] == r.first_wrong and doc["kind"] == "derivation"
    assert not r.consistency_problems()
    assert r.summary().startswith(f"{r.first_wrong + 1}: ")


def test_bad_calls_raise_named_errors():
    args = mf_args()
    with pytest.raises(InputError, match="steps: expected at least one line"):
        mg.check_derivation(mf, [], args, argnums=(0, 1))
    with pytest.raises(InputError, match=r"steps\[0\]: expected a \(text, fn\) pair"):
        mg.check_derivation(mf, [lambda *a: 0.0], args, argnums=(0, 1))
    with pytest.raises(InputError, match="cannot read the condition"):
        mg.check_derivation(mf, [mg.step("x", lambda U, V, X, d: 0.0, assumes="U is nice")],
                            args, argnums=(0, 1))
    with pytest.raises(InputError, match="needs a square matrix"):
        mg.check_derivation(mf, [mg.step("x", lambda U, V, X, d: 0.0, assumes="symmetric U")],
                            args, argnums=(0, 1))
    with pytest.raises(InputError, match="'X' is not differentiated"):
        mg.check_derivation(mf, [mg.step("x", lambda U, V, X, d: 0.0, assumes="dX = 0")],
                            args, argnums=(0, 1))
    with pytest.raises(InputError, match="every tangent zero"):
        mg.check_derivation(mf, [mg.step("x", lambda U, V, X, d: 0.0,
                                         assumes="dU = 0, dV = 0")], args, argnums=(0, 1))
    # a line returning a matrix is a finding about that line, not a crash
    r = mg.check_derivation(mf, [("dφ", lambda U, V, X, d: d[0])], args, argnums=(0, 1))
    assert r.lines[0].verdict == "error" and "shape" in r.lines[0].message
    # a stated gradient of the wrong shape too
    r = mg.check_derivation(mf, [("∂φ/∂U", mg.from_gradient(lambda U, V, X: U.T, wrt="U"))],
                            args, argnums=(0, 1))
    assert r.lines[0].verdict == "error" and "shape" in r.lines[0].message


def test_nonfinite_line_never_passes():
    args = mf_args()
    r = mg.check_derivation(mf, [("dφ", lambda U, V, X, d: jnp.nan * fr(U, d[0]))], args,
                            argnums=(0, 1))
    assert not r.passed and r.lines[0].statuses.get("nonfinite")


# ---- the command line ----------------------------------------------------------------------------

USER_CHAIN = textwrap.dedent('''
    import jax.numpy as jnp
    import numpy as np
    import matgrad_jax as mg

    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((5, 3)))
    M = jnp.asarray(rng.standard_normal((5, 4)))
    X0 = jnp.asarray(rng.standard_normal((3, 4)))

    def f(X):
        return jnp.sum((A @ X - M) ** 2)

    mg.register_chain("ls/chain", f, [
        ("dφ = 2(AX−M):A dX", lambda X, dX: 2 * jnp.sum((A @ X - M) * (A @ dX))),
        ("= 2Aᵀ(AX−M):dX", lambda X, dX: 2 * jnp.sum(A.T @ (A @ X - M) * dX)),
        ("∂φ/∂X = 2(AX−M)A", mg.from_gradient(lambda X: 2 * A.T @ (A @ X - M) * 2)),
    ], argnums=0, example_args=(X0,))
''')


def test_cli_audit_shows_a_users_chain(tmp_path):
    path = tmp_path / "chain.py"
    path.write_text(USER_CHAIN)
    out = subprocess.run([sys.executable, "-m", "matgrad_jax", "audit", str(path), "--json",
                          str(tmp_path / "a.json")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ls/chain" in out.stdout and "3: ∂φ/∂X = 2(AX−M)A" in out.stdout
    doc = json.loads((tmp_path / "a.json").read_text())
    (rep,) = [d for d in doc if d.get("kind") == "derivation"]
    assert rep["first_wrong"] == 2 and rep["lines"][2]["diagnosis"] == "scale:0.5"


def test_step_and_from_gradient_are_callable_alone():
    U, V, X = mf_args()
    g = mg.from_gradient(lambda U, V, X: (U, V))
    d = (jnp.ones_like(U), jnp.ones_like(V))
    assert np.isclose(float(g(U, V, X, d)), float(jnp.sum(U) + jnp.sum(V)))
    s = mg.step("φ", mf, states="value")
    assert isinstance(s, mg.Step) and s.states == "value"
    with contextlib.suppress(InputError):
        mg.step("", mf)
        raise AssertionError("an empty text must raise")


def test_pytest_matgrad_collects_a_users_chain(tmp_path):
    (tmp_path / "chain.py").write_text(USER_CHAIN)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--matgrad", "--matgrad-target",
                           "chain.py", "-q", "-p", "no:cacheprovider"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "FAILED ::matgrad::chain:ls/chain" in proc.stdout
    assert "the first wrong line is line 3" in proc.stdout


def test_gaussian_nll_in_an_spd_matrix_and_the_symmetric_convention():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((5, 5))
    Sig = jnp.asarray(G @ G.T / 5 + np.eye(5))
    Y = rng.standard_normal((5, 40))
    S = jnp.asarray(Y @ Y.T / 40)
    nll = lambda Sig, S: jnp.linalg.slogdet(Sig)[1] + jnp.trace(jnp.linalg.solve(Sig, S))  # noqa
    inv = jnp.linalg.inv
    grad = lambda Sig, S: inv(Sig) - inv(Sig) @ S @ inv(Sig)  # noqa: E731
    steps = [
        ("dφ = tr(Σ⁻¹dΣ) − tr(Σ⁻¹SΣ⁻¹dΣ)",
         lambda Sig, S, d: jnp.trace(inv(Sig) @ d) - jnp.trace(inv(Sig) @ S @ inv(Sig) @ d)),
        ("∂φ/∂Σ = Σ⁻¹ − Σ⁻¹SΣ⁻¹", mg.from_gradient(grad)),
        ("'symmetric gradient' 2G − G∘I",
         mg.from_gradient(lambda Sig, S: 2 * grad(Sig, S) - grad(Sig, S) * jnp.eye(5))),
    ]
    r = mg.check_derivation(nll, steps, (Sig, S), domains={"Sig": "spd"})
    assert r.first_wrong == 2 and r.lines[1].passed, r.to_markdown()
    assert r.lines[2].diagnosis == "symmetric-convention"


def test_pytree_argument_and_a_dict_gradient():
    rng = np.random.default_rng(0)
    p = {"W": jnp.asarray(rng.standard_normal((3, 4))), "b": jnp.asarray(rng.standard_normal(3))}
    X = jnp.asarray(rng.standard_normal((4, 6)))
    E = lambda p, X: p["W"] @ X + p["b"][:, None]  # noqa: E731
    f = lambda p, X: jnp.sum(E(p, X) ** 2)  # noqa: E731
    steps = [("dφ = 2E:(dW X + db 1ᵀ)",
              lambda p, X, d: 2 * jnp.sum(E(p, X) * (d["W"] @ X + d["b"][:, None]))),
             ("∂φ/∂W = 2EXᵀ, ∂φ/∂b = 2E1",
              mg.from_gradient(lambda p, X: {"W": 2 * E(p, X) @ X.T,
                                             "b": 2 * jnp.sum(E(p, X), axis=1)}))]
    r = mg.check_derivation(f, steps, (p, X), argnums="p")
    assert r.passed, r.to_markdown()
    steps[1] = ("∂φ/∂W = EXᵀ (half)", mg.from_gradient(
        lambda p, X: {"W": E(p, X) @ X.T, "b": 2 * jnp.sum(E(p, X), axis=1)}))
    r = mg.check_derivation(f, steps, (p, X), argnums="p")
    assert r.first_wrong == 1 and r.lines[1].diagnosis == "scale:0.5", r.lines[1]
