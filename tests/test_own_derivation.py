"""A user's own derivation, first class: registered, audited from the command line and pytest,
and fitted by ``minimize`` with a verified gradient."""

import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import matgrad_jax as mg
from matgrad_jax import examples
from matgrad_jax.audit import audit_derivation

MF_FILE = textwrap.dedent('''
    import jax.numpy as jnp
    import numpy as np
    import matgrad_jax as mg

    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((30, 20)))
    U0 = jnp.asarray(rng.standard_normal((30, 4)))
    V0 = jnp.asarray(rng.standard_normal((20, 4)))
    lam = 0.1

    def f(U, V):
        return jnp.sum((X - U @ V.T) ** 2) + lam * (jnp.sum(U ** 2) + jnp.sum(V ** 2))

    @mg.derivation(name="mf/right", objective=f, argnums=(0, 1), example_args=(U0, V0))
    def grad(U, V):
        E = X - U @ V.T
        return -2 * E @ V + 2 * lam * U, -2 * E.T @ U + 2 * lam * V

    @mg.derivation(name="mf/wrong", objective=f, argnums=(0, 1), example_args=(U0, V0))
    def grad_wrong(U, V):
        E = X - U @ V.T
        return -2 * E @ V + lam * U, -2 * E.T @ U + lam * V
''')


def _matgrad(*args, cwd):
    return subprocess.run([sys.executable, "-m", "matgrad_jax", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


# -- the registry --------------------------------------------------------------------------------

def test_register_decorator_and_listing():
    A = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    f = lambda X: jnp.sum((A @ X) ** 2)
    try:
        d = mg.register("test/lsq", f, lambda X: 2 * A.T @ (A @ X), argnums=0,
                        example_args=(jnp.ones((3, 2)),), source="test")
        assert d.arg_names == ("X",) and not d.builtin
        with pytest.raises(mg.InputError, match="registered already; pass replace=True"):
            mg.register("test/lsq", f, lambda X: 2 * A.T @ (A @ X), argnums=0,
                        example_args=(jnp.ones((3, 2)),))
        mg.register("test/lsq", f, lambda X: 2 * A.T @ (A @ X), argnums="X",
                    example_args=(jnp.ones((3, 2)),), replace=True)

        @mg.derivation(name="test/lsq_wrong", objective=f, argnums=0,
                       example_args=lambda seed=0: (jnp.ones((3, 2)),))
        def wrong(X):
            return A.T @ (A @ X)

        assert callable(wrong)
        names = [d.name for d in mg.derivations()]
        assert names[:11] == [d.name for d in mg.derivations(builtin=True)]
        assert {"test/lsq", "test/lsq_wrong"} <= set(names)
        assert [d.name for d in mg.derivations("test/lsq")] == ["test/lsq", "test/lsq_wrong"]
        assert audit_derivation(mg.derivations("test/lsq_wrong")[0]).diagnosis == "scale:0.5"
    finally:
        mg.unregister("test/lsq")
        mg.unregister("test/lsq_wrong")


def test_register_checks_its_input():
    with pytest.raises(mg.InputError, match="name"):
        mg.register("", jnp.sum, jnp.ones_like, argnums=0, example_args=(jnp.ones(2),))
    with pytest.raises(mg.InputError, match="example_args"):
        mg.register("test/bad", jnp.sum, jnp.ones_like, argnums=0, example_args=3)
    with pytest.raises(mg.InputError, match="gradient"):
        mg.register("test/bad", jnp.sum, None, argnums=0, example_args=(jnp.ones(2),))


def test_examples_are_users_derivations_and_audited():
    got = {d.name: audit_derivation(d) for d in mg.derivations("examples/")}
    assert got["examples/mf/right"].passed
    assert not got["examples/mf/missing_two"].passed
    assert got["examples/gaussian_nll/right"].passed
    assert got["examples/gaussian_nll/convention"].diagnosis == "symmetric-convention"
    assert not any(d.builtin for d in mg.derivations("examples/"))


# -- the command line and pytest -----------------------------------------------------------------

def test_matgrad_audit_a_users_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "mf.py").write_text(MF_FILE)
    proc = _matgrad("audit", "mf.py", "--json", "out.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "mf/right" in proc.stdout and "mf/wrong" in proc.stdout
    assert "1 passed, 1 failed" in proc.stdout and "channel/" not in proc.stdout
    with_seeds = _matgrad("audit", "mf.py", "--builtin", "--filter", "frobenius/general",
                          cwd=tmp_path)
    assert "gram/frobenius/general" in with_seeds.stdout and "mf/" not in with_seeds.stdout
    from matgrad_jax import cli  # the refusals come before any audit: in this process

    monkeypatch.chdir(tmp_path)
    for target, message in (("missing.py", "missing.py: no such file"),
                            ("broken.py", "broken.py: cannot import: ModuleNotFoundError: No "
                                          "module named 'nonexistent_module_x'"),
                            ("no_such.module", "no_such.module: cannot import")):
        if target == "broken.py":
            (tmp_path / target).write_text("import nonexistent_module_x\n")
        capsys.readouterr()
        rc = cli.main(["audit", target])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, err
        assert err.count("\n") == 1
    # a registration whose example is not a tuple of arguments: named, one line, exit 2
    (tmp_path / "dict_example.py").write_text(textwrap.dedent("""\
        import jax.numpy as jnp
        import matgrad_jax as mg
        mg.register("me/dict_example", lambda x: jnp.sum(x ** 2), lambda x: 2 * x, argnums=0,
                    example_args=lambda seed=0: {"x": jnp.ones(3)})
        """))
    capsys.readouterr()
    rc = cli.main(["audit", "dict_example.py"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "me/dict_example: args: expected a tuple of fun's arguments" in err, err


def test_pytest_matgrad_collects_one_item_per_derivation(tmp_path):
    (tmp_path / "test_mine.py").write_text(MF_FILE + textwrap.dedent('''

        def test_with_fixture(gradient_audit):
            assert gradient_audit(f, grad, (U0, V0), argnums=(0, 1)).passed
    '''))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--matgrad", "-q", "-p",
                           "no:cacheprovider"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 failed, 2 passed" in proc.stdout
    assert "FAILED ::matgrad::mf/wrong - mf/wrong: FAIL (autodiff comparison" in proc.stdout
    plain = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "1 passed" in plain.stdout  # without --matgrad: only the user's own test


# -- verified minimisation -----------------------------------------------------------------------

U0, V0, X = examples.mf_example()
F = lambda U, V: examples.mf_objective(U, V, X)
G = lambda U, V: examples.mf_gradient(U, V, X)
FSTAR = examples.mf_optimum(X, 5)


def test_wrong_gradient_raises_before_iterating():
    with pytest.raises(mg.GradientMismatch) as info:
        mg.minimize(F, (U0, V0), grad=lambda U, V: examples.mf_gradient_missing_two(U, V, X))
    assert set(info.value.report.failing_arguments) == {"U", "V"}
    res = mg.minimize(F, (U0, V0), grad=lambda U, V: examples.mf_gradient_missing_two(U, V, X),
                      on_mismatch="autodiff")
    assert res.verified == "autodiff fallback" and bool(res.converged)


def test_right_gradient_matches_optax_lbfgs():
    res = mg.minimize(F, (U0, V0), grad=G)
    assert isinstance(res, mg.SolveResult)
    assert res.verified == "start" and res.method == "lbfgs_backtracking"
    assert bool(res.converged)
    ref = mg.solvers.lbfgs(F, (U0, V0), max_iters=5000)  # jax.grad-driven optax L-BFGS
    assert abs(float(res.value) - float(ref.value)) <= 1e-8 * abs(float(ref.value))
    assert (float(res.value) - FSTAR) / FSTAR < 1e-8


@pytest.mark.parametrize("method", ["alternating", "lbfgs", "lbfgs_backtracking", "adam",
                                    optax.chain(optax.sgd(1e-3, momentum=0.9))])
def test_every_method_converges_with_defaults(method):
    res = mg.minimize(F, (U0, V0), grad=G, method=method, verify="off")
    assert bool(res.converged), res.reason
    assert (float(res.value) - FSTAR) / FSTAR < 1e-5


def test_verify_always_catches_a_gradient_wrong_elsewhere():
    def wrong_where_negative(U, V):  # right while every entry of U is positive
        gu, gv = G(U, V)
        return jnp.where(U < 0, -gu, gu), gv

    Up = jnp.abs(U0) + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the start audit finds it too: warn
        res = mg.minimize(F, (Up, V0), grad=wrong_where_negative, verify="always",
                          on_mismatch="warn")
    assert res.reason == "gradient mismatch" and not bool(res.converged)
    assert 0 < int(res.iterations) < 20000
    ok = mg.minimize(F, (U0, V0), grad=G, verify="always")
    assert bool(ok.converged) and ok.verified == "always"


def test_minimize_traces_under_jit_and_vmap():
    solve = jax.jit(lambda U, V: mg.minimize(F, (U, V), grad=G, verify="always"))
    res = solve(U0, V0)
    assert (res.method, res.verified) == ("lbfgs_backtracking", "always")
    assert (float(res.value) - FSTAR) / FSTAR < 1e-8
    starts = jnp.stack([U0, 1.1 * U0]), jnp.stack([V0, 0.9 * V0])
    vals = jax.vmap(lambda U, V: mg.minimize(F, (U, V), grad=G, verify="off").value)(*starts)
    assert np.all((np.asarray(vals) - FSTAR) / FSTAR < 1e-7)
    with pytest.raises(mg.InputError, match='verify="start" audits on the host'):
        jax.jit(lambda U, V: mg.minimize(F, (U, V), grad=G).value)(U0, V0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(init=[]), "init: expected a tuple of blocks"),
    (dict(init={"U": U0}), "init: expected an array or a tuple of arrays"),
    (dict(grad=lambda U, V: (U.T, V)), "grad: its gradient 0 has shape (5, 60); expected "
                                       "(60, 5)"),
    (dict(verify="sometimes"), "verify: expected one of"),
    (dict(method="newton"), "method: expected one of"),
])
def test_minimize_input_errors(kwargs, message):
    kw = {"init": (U0, V0), "grad": G, **kwargs}
    with pytest.raises(mg.InputError) as info:
        mg.minimize(F, kw.pop("init"), **kw)
    assert message in str(info.value)


def test_minimize_on_the_spd_likelihood():
    Sigma0, S = examples.nll_example()
    res = mg.minimize(lambda Sig: examples.nll_objective(Sig, S), Sigma0,
                      grad=lambda Sig: examples.nll_gradient(Sig, S), domains={0: "spd"})
    assert bool(res.converged)
    np.testing.assert_allclose(res.params[0], S, atol=1e-3)
    with pytest.raises(mg.GradientMismatch) as info:
        mg.minimize(lambda Sig: examples.nll_objective(Sig, S), Sigma0,
                    grad=lambda Sig: examples.nll_gradient_convention(Sig, S),
                    domains={0: "spd"})
    assert info.value.report.diagnosis == "symmetric-convention"


def test_alternating_minimize_checks_init_and_grad_shapes():
    with pytest.raises(mg.InputError, match="init: expected an array or a tuple of arrays"):
        mg.alternating_minimize(F, {"U": U0}, grad=G)
    with pytest.raises(mg.InputError, match=r"grad: its gradient 0 has shape \(5, 60\)"):
        mg.alternating_minimize(F, (U0, V0), grad=lambda U, V: (U.T, V))
