"""A user's model (a registered derivation) through solve_batch and ``matgrad fit --model``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import matgrad_jax as mg
from matgrad_jax import examples
from matgrad_jax.model import Model

RNG = np.random.default_rng(0)
B, N, M, R = 5, 9, 7, 3  # rectangular: n != m != r
X = RNG.standard_normal((B, N, M))
U0, V0 = RNG.standard_normal((B, N, R)), RNG.standard_normal((B, M, R))


@jax.jit
def _one_solve(x, u, v):
    """One problem, alone (jitted once: the same program for every problem)."""
    return mg.minimize(lambda U, V: examples.mf_objective(U, V, x), (u, v),
                       grad=lambda U, V: examples.mf_gradient(U, V, x), verify="off")


def _single(i, dtype=np.float64):
    return _one_solve(*(jnp.asarray(a[i], dtype) for a in (X, U0, V0)))


def test_model_from_a_registered_derivation():
    model = Model.from_derivation("examples/mf/right")
    assert model.param_names == ("U", "V") and model.data_names == ("X",)
    assert model.argnums == (0, 1)
    d = mg.derivations("examples/gaussian_nll/right")[0]
    nll = Model.from_derivation(d)
    assert nll.param_names == ("Sigma",) and nll.data_names == ("S",)
    assert nll.domains == {"Sigma": "spd"}


@pytest.mark.parametrize("dtype, tol, reduced", [(np.float64, 1e-9, 1e-5),
                                                 (np.float32, 1e-3, 1e-2)])
def test_solve_batch_of_a_model_equals_single_minimize(dtype, tol, reduced):
    U, V = mg.solve_batch({"X": X.astype(dtype)}, model="examples/mf/right",
                          init={"U": U0.astype(dtype), "V": V0.astype(dtype)})
    assert U.shape == (B, N, R) and V.shape == (B, M, R) and U.dtype == dtype
    for i in range(B):
        single = _single(i, dtype)
        assert bool(single.converged)
        np.testing.assert_allclose(np.asarray(U[i]), np.asarray(single.params[0]), atol=tol)
        np.testing.assert_allclose(np.asarray(V[i]), np.asarray(single.params[1]), atol=tol)
        # near a stationary point of each problem's objective
        x = jnp.asarray(X[i], dtype)
        start = (jnp.asarray(U0[i], dtype), jnp.asarray(V0[i], dtype))
        g, g0 = (examples.mf_gradient(u, v, x) for u, v in ((U[i], V[i]), start))
        norm = lambda g: float(jnp.sqrt(sum(jnp.sum(jnp.asarray(b, dtype) ** 2) for b in g)))
        assert norm(g) < reduced * norm(g0)


def test_full_result_and_methods():
    res = mg.solve_batch({"X": X}, model="examples/mf/right", init=(U0, V0), method="lbfgs",
                         full_result=True)
    assert isinstance(res, mg.SolveResult) and res.converged.shape == (B,)
    assert bool(np.all(res.converged)) and np.all(np.isfinite(res.value))
    alt = mg.solve_batch({"X": X}, model="examples/mf/right", init=(U0, V0),
                         method="alternating", max_iters=50, full_result=True, verify="always")
    assert np.all(np.asarray(alt.iterations) <= 50)
    # checked inside every problem's loop as well: a right gradient is never stopped for it
    assert "gradient mismatch" not in list(np.atleast_1d(alt.reason))


def test_a_wrong_hand_gradient_is_refused_before_the_batch():
    with pytest.raises(mg.GradientMismatch) as info:
        mg.solve_batch({"X": X}, model="examples/mf/missing_two", init={"U": U0, "V": V0})
    assert info.value.report.failing_arguments == ("U", "V")
    # verify="off" fits what it is given (the user's choice)
    U, _ = mg.solve_batch({"X": X}, model="examples/mf/missing_two",
                          init={"U": U0, "V": V0}, verify="off", max_iters=20)
    assert U.shape == (B, N, R)


def test_an_exact_solve_of_a_model():
    # Gaussian likelihood in an SPD covariance: the minimiser is the scatter matrix itself.
    nll = Model.from_derivation("examples/gaussian_nll/right")
    nll = Model(nll.name, nll.value, nll.grad, nll.argnums, nll.arg_names,
                exact=lambda S: S, domains=nll.domains)
    S = np.stack([np.asarray(examples.nll_example(seed=s)[1]) for s in range(4)])
    (Sigma,) = mg.solve_batch({"S": S}, model=nll, method="exact")
    np.testing.assert_array_equal(np.asarray(Sigma), S)
    with pytest.raises(mg.InputError, match="'exact' needs a closed-form solve"):
        mg.solve_batch({"X": X}, model="examples/mf/right", init=(U0, V0), method="exact")


@pytest.mark.parametrize("kwargs, message", [
    (dict(data={"Y": X}, init={"U": U0, "V": V0}), r"data: missing array\(s\) X"),
    (dict(data={"X": X, "Z": X}, init={"U": U0, "V": V0}), r"data: unexpected array\(s\) Z"),
    (dict(data={"X": X}, init={"U": U0}), "init: expected arrays named U, V"),
    (dict(data={"X": X}, init=None), "needs starting values U, V"),
    (dict(data={"X": X[:3]}, init={"U": U0, "V": V0}), "leading batch axis of 3"),
    (dict(data={"X": np.where(X > 2, np.nan, X)}, init={"U": U0, "V": V0}), "NaN/Inf"),
    (dict(data={"X": X}, init={"U": U0, "V": V0}, method="newton"), "method: expected one of"),
    (dict(data={"X": X}, init={"U": U0, "V": V0}, ridge=0.1), "ridge: a seed-1 option"),
    (dict(data={"X": X}, init={"U": U0, "V": V0}, verify="never"), "verify: expected one of"),
])
def test_bad_calls_are_named(kwargs, message):
    with pytest.raises(mg.InputError, match=message):
        mg.solve_batch(model="examples/mf/right", **kwargs)


def test_an_unknown_model_is_named():
    with pytest.raises(mg.InputError, match="no derivation named 'nope/x'"):
        mg.solve_batch({"X": X}, model="nope/x", init=(U0, V0))


# -- matgrad fit --model ----------------------------------------------------------------------

MODEL_FILE = textwrap.dedent("""\
    import jax.numpy as jnp
    import numpy as np
    import matgrad_jax as mg

    lam = 0.1

    def f(U, V, X):
        return jnp.sum((X - U @ V.T) ** 2) + lam * (jnp.sum(U ** 2) + jnp.sum(V ** 2))

    def grad(U, V, X):
        E = X - U @ V.T
        return -2 * E @ V + 2 * lam * U, -2 * E.T @ U + 2 * lam * V

    def example(seed=0):
        r = np.random.default_rng(seed)
        return tuple(jnp.asarray(r.standard_normal(s)) for s in ((12, 3), (8, 3), (12, 8)))

    mg.register("mf/right", f, grad, argnums=(0, 1), example_args=example)
    mg.register("mf/wrong", f, lambda U, V, X: tuple(-g for g in grad(U, V, X)),
                argnums=(0, 1), example_args=example)
""")


def _cli(*args):
    return [sys.executable, "-m", "matgrad_jax", *map(str, args)]


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "mfm.py").write_text(MODEL_FILE)
    r = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", X=r.standard_normal((40, 30)), U0=r.standard_normal((40, 4)),
             V0=r.standard_normal((30, 4)))
    return tmp_path


def test_matgrad_fit_model_sigkill_then_resume_matches_uninterrupted(model_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # the seed's block descent at a fixed iteration count (tol 0): long enough to be killed
    fit = ("fit", "d.npz", "--model", "mfm.py:mf/right", "--method", "alternating",
           "--max-iters", 400, "--tol", 0)
    killed = model_dir / "killed"
    proc = subprocess.Popen(_cli(*fit, "--out", killed, "--checkpoint-every", 1), env=env,
                            cwd=model_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert ckpt.exists() and not (killed / "solution.npz").exists()
    with np.load(ckpt) as z:
        meta = json.loads(str(z["meta"]))
    assert 0 < meta["iteration"] < 400 and meta["model"] == "mf/right"

    resumed = subprocess.run(_cli(*fit, "--out", killed, "--resume"), env=env, cwd=model_dir,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = model_dir / "whole"
    done = subprocess.run(_cli(*fit, "--out", whole), env=env, cwd=model_dir,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "solution.npz (U, V)" in done.stdout
    a, b = np.load(killed / "solution.npz"), np.load(whole / "solution.npz")
    assert set(a.files) == {"U", "V"}
    for name in ("U", "V"):
        np.testing.assert_array_equal(a[name], b[name])  # bit for bit
    ha = json.loads((killed / "history.json").read_text())
    hb = json.loads((whole / "history.json").read_text())
    assert ha["resumed"] and ha["iterations"] == hb["iterations"] > meta["iteration"]
    assert ha["values"] == hb["values"] and ha["model"] == "mf/right"
    assert not ckpt.exists()


def test_matgrad_fit_model_refuses_with_one_line(model_dir):
    def run(*args):
        proc = subprocess.run(_cli("fit", "d.npz", "--out", model_dir / "o", *args),
                              cwd=model_dir, capture_output=True, text=True, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        return lines[0]

    assert "fails its audit at the start" in run("--model", "mfm.py:mf/wrong")
    assert "registers no derivation 'mf/nope'" in run("--model", "mfm.py:mf/nope")
    assert "expected TARGET:NAME" in run("--model", "mfm.py")
    assert "--method exact" in run("--model", "mfm.py:mf/right", "--method", "exact")
    np.savez(model_dir / "d.npz", X=np.ones((40, 30)), U0=np.ones((40, 4)))
    assert "missing starting value(s) V0" in run("--model", "mfm.py:mf/right")
    assert not (model_dir / "o" / "solution.npz").exists()


def test_fit_of_a_model_on_one_data_set():
    U0_, V0_, X_ = examples.mf_example()
    res = mg.fit("examples/mf/right", data={"X": X_}, init={"U": U0_, "V": V0_},
                 method="lbfgs")
    assert bool(res.converged) and res.method == "lbfgs" and res.verified == "start"
    g = examples.mf_gradient(*res.params, X_)
    g0 = examples.mf_gradient(U0_, V0_, X_)
    assert float(jnp.linalg.norm(g[0])) < 1e-5 * float(jnp.linalg.norm(g0[0]))
    Sigma0, S = examples.nll_example()
    with pytest.raises(mg.GradientMismatch) as info:  # the model's SPD domain is used
        mg.fit("examples/gaussian_nll/convention", data={"S": S}, init={"Sigma": Sigma0},
               method="lbfgs")
    assert info.value.report.diagnosis == "symmetric-convention"
    with pytest.raises(mg.InputError, match="data: for a model"):
        from matgrad_jax.problems import channel

        d = channel.make_data(6, 4, 5, 7)
        mg.fit(channel.Problem(*(d[k] for k in channel.DATA_NAMES)), data={"X": X_})


def test_a_model_declares_what_its_method_needs():
    """A factorisation declares ALS and balancing for the alternating method: fit,
    solve_batch(model=...) and the chunked fit behind ``matgrad fit --model`` all use them,
    a caller's options take precedence, and a bad declaration is named."""
    from matgrad_jax.fit_model import fit_model_chunked
    from matgrad_jax.solvers import balance_factors

    U0_, V0_, X_ = examples.mf_example(0, 30, 20, 4)  # rectangular
    fstar = examples.mf_optimum(X_, 4)
    model = Model("mf", examples.mf_objective, examples.mf_gradient, (0, 1), ("U", "V", "X"),
                  solver_options={"alternating": {"block_step": "newton",
                                                  "balance": balance_factors}})
    plain = Model("mf", examples.mf_objective, examples.mf_gradient, (0, 1), ("U", "V", "X"))
    res = model.fit({"X": X_}, {"U": U0_, "V": V0_}, method="alternating")
    assert bool(res.converged) and int(res.iterations) <= 10
    assert abs(float(res.value) - fstar) <= 1e-10 * abs(fstar)
    slow = plain.fit({"X": X_}, {"U": U0_, "V": V0_}, method="alternating", max_iters=50)
    assert int(slow.iterations) == 50 and float(slow.value) - fstar > 1e-6 * abs(fstar)
    overridden = model.fit({"X": X_}, {"U": U0_, "V": V0_}, method="alternating",
                           block_step="gradient", balance=None, max_iters=50)
    np.testing.assert_array_equal(np.asarray(overridden.value), np.asarray(slow.value))
    chunked = fit_model_chunked(model, {"X": X_}, (U0_, V0_), method="alternating")
    assert int(chunked.iterations) == int(res.iterations)
    np.testing.assert_allclose(float(chunked.value), float(res.value), rtol=1e-12)
    # the built-in example declares the same, so solve_batch(model=...) runs ALS there
    alt = mg.solve_batch({"X": X}, model="examples/mf/right", init=(U0, V0),
                         method="alternating", full_result=True, verify="off")
    assert bool(np.all(alt.converged)) and int(np.max(alt.iterations)) <= 60
    with pytest.raises(mg.InputError, match="solver_options of 'mf': 'newton' is not a method"):
        Model("mf", examples.mf_objective, examples.mf_gradient, (0, 1), ("U", "V", "X"),
              solver_options={"newton": {}})
    with pytest.raises(mg.InputError, match=r"solver_options\['alternating'\] of 'bad'"):
        mg.register("bad", examples.mf_objective, examples.mf_gradient, argnums=(0, 1),
                    example_args=examples.mf_example, solver_options={"alternating": [1]})


def _lam_objective(U, V, X, lam=0.05):
    return examples.mf_objective(U, V, X) + (lam - 0.1) * (jnp.sum(U**2) + jnp.sum(V**2))


def _lam_gradient(U, V, X, lam=0.05):
    gU, gV = examples.mf_gradient(U, V, X)
    return gU + 2 * (lam - 0.1) * U, gV + 2 * (lam - 0.1) * V


@pytest.fixture
def lam_derivation():
    mg.register("test/mf_lam", _lam_objective, _lam_gradient, argnums=(0, 1),
                example_args=examples.mf_example, replace=True)
    yield "test/mf_lam"
    mg.unregister("test/mf_lam")  # the registry is per process: leave it as found


def test_a_default_argument_is_optional_data(tmp_path, lam_derivation):
    """``def f(U, V, X, lam=0.05)``: lam is data with a default, used where the data leave it
    out (fit, solve_batch, ``matgrad fit --model``) and overridden where they give it."""
    model = Model.from_derivation("test/mf_lam")
    assert model.data_names == ("X", "lam") and model.defaults == {"lam": 0.05}
    U0_, V0_, X_ = examples.mf_example()
    init = {"U": U0_, "V": V0_}
    res = mg.fit("test/mf_lam", data={"X": X_}, init=init, method="lbfgs")
    assert bool(res.converged)
    g = _lam_gradient(*res.params, X_)  # stationary for lam = 0.05, not for another lam
    g0 = _lam_gradient(U0_, V0_, X_)
    assert float(jnp.linalg.norm(g[0])) < 1e-5 * float(jnp.linalg.norm(g0[0]))
    other = mg.fit("test/mf_lam", data={"X": X_, "lam": np.float64(0.5)}, init=init,
                   method="lbfgs")
    assert float(jnp.linalg.norm(_lam_gradient(*other.params, X_, 0.5)[0])) < 1e-4
    assert float(other.value) > float(res.value)

    stacked = mg.solve_batch({"X": X[:2]}, model="test/mf_lam",
                             init={"U": U0[:2], "V": V0[:2]}, method="lbfgs")
    for i in range(2):
        one = mg.fit("test/mf_lam", data={"X": X[i]}, init={"U": U0[i], "V": V0[i]},
                     method="lbfgs", verify="off")
        np.testing.assert_allclose(stacked[0][i] @ stacked[1][i].T,
                                   one.params[0] @ one.params[1].T, rtol=1e-6, atol=1e-8)
    with pytest.raises(mg.InputError, match="defaults: nope are not data arguments"):
        Model("m", _lam_objective, _lam_gradient, (0, 1), ("U", "V", "X", "lam"),
              defaults={"nope": 1.0})

    (tmp_path / "lam.py").write_text(textwrap.dedent("""\
        import jax.numpy as jnp
        import numpy as np
        import matgrad_jax as mg

        def f(U, V, X, lam=0.05):
            return jnp.sum((X - U @ V.T) ** 2) + lam * (jnp.sum(U ** 2) + jnp.sum(V ** 2))

        def g(U, V, X, lam=0.05):
            E = X - U @ V.T
            return -2 * E @ V + 2 * lam * U, -2 * E.T @ U + 2 * lam * V

        def example(seed=0):
            r = np.random.default_rng(seed)
            return tuple(jnp.asarray(r.standard_normal(s)) for s in ((12, 3), (8, 3), (12, 8)))

        mg.register("mf/lam", f, g, argnums=(0, 1), example_args=example)
    """))
    r = np.random.default_rng(2)
    np.savez(tmp_path / "d.npz", X=r.standard_normal((12, 8)), U0=r.standard_normal((12, 3)),
             V0=r.standard_normal((8, 3)))
    proc = subprocess.run(_cli("fit", "d.npz", "--model", "lam.py:mf/lam", "--method", "lbfgs",
                               "--out", tmp_path / "o"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "o" / "solution.npz") as z:
        assert set(z.files) == {"U", "V"}


def test_lbfgs_backtracking_resumes_from_a_checkpoint_bit_for_bit(tmp_path):
    """The one-evaluation-per-step L-BFGS through the chunked fit behind ``matgrad fit
    --model``: stopped at a checkpoint, saved, read back and resumed, it ends where an
    uninterrupted fit ends, bit for bit."""
    from matgrad_jax.fit_model import fit_model_chunked
    from matgrad_jax.io import load_tree, save_tree

    model = Model.from_derivation("examples/mf/right")
    U0_, V0_, X_ = examples.mf_example()
    opts = dict(method="lbfgs_backtracking", max_iters=60, tol=0.0, gtol=0.0)
    whole = fit_model_chunked(model, {"X": X_}, (U0_, V0_), **opts)
    saved = []

    def on_chunk(state, final):
        if not saved and int(state.k) >= 10:
            save_tree(tmp_path / "c.npz", state, {"k": int(state.k)})
            saved.append(state)

    fit_model_chunked(model, {"X": X_}, (U0_, V0_), checkpoint_every=10, on_chunk=on_chunk,
                      **opts)
    state, meta = load_tree(tmp_path / "c.npz", saved[0])
    assert meta["k"] == 10 and type(state).__name__ == "LBFGSState"
    resumed = fit_model_chunked(model, {"X": X_}, (U0_, V0_), state=state, **opts)
    assert int(resumed.iterations) == int(whole.iterations) == 60
    for a, b in zip(resumed.params, whole.params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
