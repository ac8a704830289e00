"""The audit is trusted or worthless: no false alarm, no miss, in float32 with x64 on and off,
on domains, at singular points; honest coverage; never a stale verdict; pytree and integer
arguments; Hessian products; a report people read."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import InputError, check_gradient, check_hessian, examples
from matgrad_jax.audit import DOMAINS, GradientReport
from matgrad_jax.audit.checks import float64
from matgrad_jax.testing import GradientAssertionError, assert_gradient

rng = np.random.default_rng(7)


def x64(on: bool):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if on else disable_x64()


def arr(*shape, dtype=jnp.float64):
    return jnp.asarray(rng.standard_normal(shape), dtype)


# -- the factorisation: a missing factor 2 in the regulariser ------------------------------------

# the user's factorisation of matgrad_jax.examples, its hand gradients written there
from matgrad_jax.examples import LAMBDA as LAM  # noqa: E402
from matgrad_jax.examples import mf_gradient as mf_grad  # noqa: E402
from matgrad_jax.examples import mf_gradient_missing_two as mf_grad_missing_2  # noqa: E402
from matgrad_jax.examples import mf_objective as mf  # noqa: E402

MF_ARGS = tuple(np.asarray(rng.standard_normal(s)) for s in ((60, 5), (40, 5), (60, 40)))


@pytest.mark.parametrize("x64_on, dtype", [(True, "float64"), (True, "float32"),
                                           (False, "float32")])
def test_factorisation_missing_two_fails_and_right_passes(x64_on, dtype):
    with x64(x64_on):
        args = tuple(jnp.asarray(a, dtype) for a in MF_ARGS)
        good = check_gradient(mf, mf_grad, args, argnums=(0, 1))
        bad = check_gradient(mf, mf_grad_missing_2, args, argnums=(0, 1))
        # 1 + 1e-4 on one block: well above what float32 resolves here
        tiny = check_gradient(mf, lambda *a: (mf_grad(*a)[0], (1 + 1e-4) * mf_grad(*a)[1]),
                              args, argnums=(0, 1))
    assert good.passed, good.message
    assert good.reference_dtype == "float64"
    assert not bad.passed and set(bad.failing_arguments) == {"U", "V"}
    assert 1e-4 < bad.max_rel_error < 1e-2
    assert not tiny.passed and tiny.failing_arguments == ("V",)
    assert tiny.diagnosis == "scale:1.0001"


# -- linear functions of float32 arguments (the Taylor remainder is the gradient's rounding) ----

KA, KB = np.asarray(rng.standard_normal((3, 5))), np.asarray(rng.standard_normal((6, 3)))
KC = np.asarray(rng.standard_normal((8, 15)))
CA = np.asarray(rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4)))


def _linear_cases(dtype):
    A, B = jnp.asarray(KA, dtype), jnp.asarray(KB, dtype)
    C, E = jnp.asarray(KC, dtype), jnp.asarray(KA[:2, :3], dtype)
    cdt = jnp.complex64 if dtype == "float32" else jnp.complex128
    Z, M = jnp.asarray(CA[:3], cdt), jnp.asarray(CA, cdt)
    kron_grad = lambda X: sum(E[i, j] * C[4 * i:4 * i + 4, 5 * j:5 * j + 5]
                              for i in range(2) for j in range(3))
    return [
        (lambda X: jnp.trace(A @ X @ B), lambda X: A.T @ B.T, (arr(5, 6, dtype=dtype),)),
        (lambda X: jnp.sum(jnp.kron(E, X) * C), kron_grad, (arr(4, 5, dtype=dtype),)),
        (lambda Z: jnp.real(jnp.sum(Z @ M)), lambda Z: jnp.conj(jnp.sum(M, axis=1))[None, :]
         * jnp.ones((3, 1), cdt), (Z,)),
    ]


@pytest.mark.parametrize("x64_on", [True, False])
def test_linear_float32_functions_pass(x64_on):
    with x64(x64_on):
        for fun, grad, args in _linear_cases("float32"):
            r = check_gradient(fun, grad, args)
            assert r.passed, r.message
            assert not any(w in r.message for w in ("mismatch", "FAIL"))


def test_low_precision_gradients_right_pass_wrong_fail():
    for dt in (jnp.float16, jnp.bfloat16, jnp.float32):
        A, X = arr(6, 5, dtype=dt), arr(5, 3, dtype=dt)
        fun = lambda X, A: jnp.sum((A @ X) ** 2).astype(jnp.float32)
        right = check_gradient(fun, lambda X, A: 2 * A.T @ (A @ X), (X, A))
        wrong = check_gradient(fun, lambda X, A: 2.1 * A.T @ (A @ X), (X, A))
        assert right.passed, (dt, right.message)
        assert not wrong.passed and wrong.diagnosis == "scale:1.05", (dt, wrong.message)


# -- singular and non-finite points ------------------------------------------------------------

def test_det_at_5x5_passes():
    X = arr(5, 5) + 2 * jnp.eye(5)
    for dt in ("float64", "float32"):
        r = check_gradient(jnp.linalg.det,
                           lambda X: jnp.linalg.det(X) * jnp.linalg.inv(X).T, (X.astype(dt),))
        assert r.passed, r.message


def _nan_on_skew(X):
    g = jnp.linalg.det(X) * jnp.linalg.inv(X).T
    return jnp.where(jnp.max(jnp.abs(X + X.T)) < 1e-6 * jnp.max(jnp.abs(X)), jnp.nan, g)


def test_nonfinite_only_on_a_structured_family_is_a_caveat():
    r = check_gradient(jnp.linalg.det, _nan_on_skew, (arr(5, 5) + 2 * jnp.eye(5),),
                       arg_names=("X",))
    assert r.passed, r.message
    assert r.where_it_holds.startswith("holds on generic inputs; not finite on skew X")
    assert r.statuses["nonfinite"] == 2


def test_nonfinite_on_generic_points_is_a_failure():
    f = lambda X: jnp.sum(X ** 2)
    # inf wherever an entry is positive: at every generic point, whatever the module's draws
    r = check_gradient(f, lambda X: jnp.where(X > 0, jnp.inf, 2 * X), (arr(4, 3),))
    assert not r.passed and r.diagnosis == "nonfinite"
    assert "not finite at" in r.blocks["X"]["location"]


def test_family_with_no_finite_point_is_untested_not_holding():
    # a triangular solve: every skew draw has a zero diagonal, so fun is not finite there
    L = jnp.tril(arr(4, 4)) + 3 * jnp.eye(4)
    b = arr(4)
    f = lambda L, b: jnp.sum(jax.scipy.linalg.solve_triangular(L, b, lower=True) ** 2)
    r = check_gradient(f, jax.grad(f), (L, b), arg_names=("L", "b"))
    assert r.passed
    assert "untested: skew L (2 points, all skipped" in r.where_it_holds
    assert "holds only" not in r.where_it_holds
    assert "skew:L" not in r.families
    wrong = check_gradient(f, lambda L, b: -jax.grad(f)(L, b), (L, b), arg_names=("L", "b"))
    assert "skew" not in wrong.where_it_holds.split("untested")[0]


def test_nan_everywhere_is_untested_never_a_pass():
    f = lambda X: jnp.sum(X) * jnp.nan
    r = check_gradient(f, lambda X: -jnp.ones_like(X), (arr(3, 3),))
    assert not r.passed and r.verdict == "untested" and r.diagnosis == "untested"
    assert r.points == 0 and r.message.startswith("UNTESTED")
    with pytest.raises(GradientAssertionError, match="^UNTESTED"):
        assert_gradient(f, lambda X: -jnp.ones_like(X), (arr(3, 3),))


def test_zero_size_argument_raises():
    with pytest.raises(InputError, match=r"args\[0\] \(X\): has size 0"):
        check_gradient(lambda X: jnp.sum(X), lambda X: jnp.ones_like(X), (jnp.zeros((0, 3)),))


def test_where_it_holds_never_says_every_input_when_the_example_passes():
    # the textbook NLL gradient without a domain: right at the (symmetric) example only
    S, Sig = _nll_data()
    r = check_gradient(nll, nll_grad, (Sig, S))
    assert not r.passed
    assert "fails on every tested input" not in r.where_it_holds
    assert "holds at the example point" in r.where_it_holds


# -- domains and the symmetric-gradient convention ---------------------------------------------

# the textbook gradient and the "symmetric gradient" 2G - G∘I, as matgrad_jax.examples has them
nll, nll_grad, nll_grad_convention = (examples.nll_objective, examples.nll_gradient,
                                      examples.nll_gradient_convention)


def _nll_data(n=5, k=9):
    M, N = rng.standard_normal((n, n)), rng.standard_normal((n, k))
    return jnp.asarray(N @ N.T / k), jnp.asarray(M @ M.T / n + np.eye(n))


@pytest.mark.parametrize("x64_on, dtype", [(True, "float64"), (True, "float32"),
                                           (False, "float32")])
def test_gaussian_nll_on_spd(x64_on, dtype):
    with x64(x64_on):
        _gaussian_nll_on_spd(dtype)


def _gaussian_nll_on_spd(dtype):
    S, Sig = (jnp.asarray(a, dtype) for a in _nll_data())
    ok = check_gradient(nll, nll_grad, (Sig, S), domains={"Sigma": "spd"})
    assert ok.passed, ok.message
    by_name = check_gradient(nll, nll_grad, (Sig, S), argnums="Sigma",
                             domains={"Sigma": "spd"})
    assert by_name.passed and by_name.arguments == ("Sigma",)
    conv = check_gradient(nll, nll_grad_convention, (Sig, S), domains={"Sigma": "spd"})
    assert not conv.passed and conv.diagnosis == "symmetric-convention"
    assert "sym(G)" in conv.message and "Frobenius" in conv.message


def test_domain_draws_stay_on_the_domain_and_data_stay_fixed():
    S, Sig = _nll_data()
    seen = []

    def spy(Sigma, S_):
        jax.debug.callback(lambda a, b: seen.append((np.asarray(a), np.asarray(b))), Sigma, S_)
        return nll(Sigma, S_)

    check_gradient(spy, nll_grad, (Sig, S), domains={"Sigma": "spd"}, taylor=False,
                   kinks=False, reference="jax", n_directions=0)
    assert seen
    for a, b in seen:
        if a.ndim == 2:
            np.testing.assert_allclose(a, a.T, atol=1e-12)
            assert np.linalg.eigvalsh(a)[0] > 0
            np.testing.assert_array_equal(b, np.asarray(S))  # data: fixed by default


def test_domain_checks_the_example():
    with pytest.raises(InputError, match="domain 'spd', but the example is not positive"):
        check_gradient(nll, nll_grad, (-jnp.eye(3), jnp.eye(3)), domains={"Sigma": "spd"})
    with pytest.raises(InputError, match="domains"):
        check_gradient(nll, nll_grad, (jnp.eye(3), jnp.eye(3)), domains={"Sigma": "round"})
    with pytest.raises(InputError, match="domains"):
        check_gradient(nll, nll_grad, (jnp.eye(3), jnp.eye(3)), domains={"Omega": "spd"})
    assert set(DOMAINS) == {"general", "symmetric", "spd", "skew", "diagonal", "fixed"}


def test_symmetric_and_skew_domains_project():
    A = arr(4, 4)
    X = arr(4, 4)
    f = lambda X: jnp.sum(A * X)  # gradient A; on symmetric X, sym(A) is the gradient
    Xs = (X + X.T) / 2
    assert check_gradient(f, lambda X: (A + A.T) / 2, (Xs,), domains={0: "symmetric"}).passed
    assert check_gradient(f, lambda X: A, (Xs,), domains={0: "symmetric"}).passed
    assert not check_gradient(f, lambda X: A.T * 0 + A + jnp.eye(4), (Xs,),
                              domains={0: "symmetric"}).passed
    Xk = (X - X.T) / 2
    assert check_gradient(f, lambda X: (A - A.T) / 2, (Xk,), domains={0: "skew"}).passed


# -- no stale verdicts -------------------------------------------------------------------------

def test_a_changed_global_is_seen():
    scale = {"c": 1.0}

    def f(X):
        return scale["c"] * jnp.sum(X ** 2)

    def g(X):
        return 2 * X

    X = arr(3, 4)
    assert check_gradient(f, g, (X,)).passed
    scale["c"] = 3.0
    second = check_gradient(f, g, (X,))
    assert not second.passed and second.diagnosis == "scale:0.333333"


# -- arguments as users have them --------------------------------------------------------------

class Params(NamedTuple):
    W: jnp.ndarray
    b: jnp.ndarray


def net(p, x):
    return jnp.sum(jnp.tanh(p["W"] @ x + p["b"][:, None]) ** 2)


def test_dict_and_namedtuple_arguments():
    p = {"W": arr(3, 4), "b": arr(3)}
    x = arr(4, 6)
    g = jax.grad(net)
    r = check_gradient(net, g, (p, x), arg_names=("p", "x"))
    assert r.passed and r.arguments == ("p.W", "p.b")
    bad = check_gradient(net, lambda p, x: {"W": g(p, x)["W"], "b": -g(p, x)["b"]}, (p, x),
                         arg_names=("p", "x"))
    assert bad.failing_arguments == ("p.b",) and bad.diagnosis == "sign"
    shape = check_gradient(net, lambda p, x: g(p, x)["W"], (p, x))
    assert shape.diagnosis == "shape"
    nt = Params(arr(3, 4), arr(3))
    fn = lambda q, x: net({"W": q.W, "b": q.b}, x)
    r = check_gradient(fn, jax.grad(fn), (nt, x))
    assert r.passed and r.arguments == ("q.W", "q.b")


def test_integer_argument_passes_through():
    idx = jnp.asarray([0, 2, 3])
    f = lambda X, idx: jnp.sum(X[idx] ** 3)
    g = lambda X, idx: jnp.zeros_like(X).at[idx].set(3 * X[idx] ** 2)
    r = check_gradient(f, g, (arr(5, 4), idx))
    assert r.passed, r.message
    with pytest.raises(InputError, match="expected a float or complex array to differentiate"):
        check_gradient(f, g, (arr(5, 4), idx), argnums=1)


@pytest.mark.parametrize("rtol", [-1, float("nan"), 0.0, "x"])
def test_bad_rtol_raises(rtol):
    with pytest.raises(InputError, match="rtol"):
        check_gradient(lambda X: jnp.sum(X ** 2), lambda X: 2 * X, (arr(2, 2),), rtol=rtol)


def test_argnums_by_unknown_name_raises():
    with pytest.raises(InputError, match="argnums: 'Y' names no argument"):
        check_gradient(lambda X: jnp.sum(X ** 2), lambda X: 2 * X, (arr(2, 2),), argnums="Y")


# -- Hessian products ----------------------------------------------------------------------------

def mf_hvp(U, V, X, v):
    dU, dV = v
    E = X - U @ V.T
    D = dU @ V.T + U @ dV.T
    return 2 * D @ V - 2 * E @ dV + 2 * LAM * dU, 2 * D.T @ U - 2 * E.T @ dU + 2 * LAM * dV


@pytest.mark.parametrize("x64_on, dtype", [(True, "float64"), (True, "float32"),
                                           (False, "float32")])
def test_check_hessian_right_and_wrong(x64_on, dtype):
    with x64(x64_on):
        _right_and_wrong_hessians(dtype)


def _right_and_wrong_hessians(dtype):
    args = (jnp.asarray(MF_ARGS[0][:12, :3], dtype), jnp.asarray(MF_ARGS[1][:7, :3], dtype),
            jnp.asarray(MF_ARGS[2][:12, :7], dtype))
    ok = check_hessian(mf, mf_hvp, args, argnums=(0, 1), arg_names=("U", "V", "X"))
    assert ok.passed and ok.kind == "hessian", ok.message
    # the Taylor remainder of the hand product, along a direction in each block: O(h²)
    assert ok.taylor["passed"] and ok.taylor["directions"] == ["U", "V"]
    assert min(ok.taylor["slopes"]) > 1.8 and "Taylor slopes" in ok.message
    assert not ok.kink["kink"]
    neg = check_hessian(mf, lambda *a: tuple(-t for t in mf_hvp(*a)), args, argnums=(0, 1),
                        arg_names=("U", "V", "X"))
    assert not neg.passed and neg.diagnosis == "sign"
    assert neg.failed_checks == ("autodiff comparison", "Taylor remainder")
    assert neg.taylor["failing_blocks"] == ["U", "V"]

    def cross_wrong(U, V, X, v):
        a, b = mf_hvp(U, V, X, v)
        return a, b + 4 * (X - U @ V.T).T @ v[0]  # the sign of -2Eᵀ dU flipped in H[V,U]

    bad = check_hessian(mf, cross_wrong, args, argnums=(0, 1), arg_names=("U", "V", "X"))
    assert not bad.passed
    assert "H[V,U]" in bad.failing_arguments and "H[U,V]" not in bad.failing_arguments
    assert bad.blocks["symmetry"]["diagnosis"] == "mismatch"


@jax.custom_jvp
def _cube(x):
    return x ** 3


@_cube.defjvp
def _cube_jvp(primals, tangents):  # right first derivative, a wrong second one (stop_gradient)
    (x,), (dx,) = primals, tangents
    return _cube(x), 3 * jax.lax.stop_gradient(x) ** 2 * dx


def test_check_hessian_judges_the_reference_by_taylor():
    f = lambda X: jnp.sum(_cube(X))  # noqa: E731
    X = arr(5, 4)
    # the hand product is right; jax.jvp of jax.grad is zero through the custom rule
    r = check_hessian(f, lambda X, v: 6 * X * v, (X,))
    assert r.verdict == "fail" and r.failed_checks == ("autodiff comparison",)
    assert r.taylor["passed"] and "reference (jax.jvp of jax.grad) may be what is wrong" in \
        r.message
    # a hand product that copies the wrong reference agrees with autodiff: Taylor fails it
    z = check_hessian(f, lambda X, v: 0 * v, (X,))
    assert z.verdict == "fail" and z.failed_checks == ("Taylor remainder",)
    assert z.failing_arguments == ("H[X,X]",) and "custom derivative rules" in z.where_it_holds
    assert z.blocks["H[X,X]"]["location"] == "Taylor remainder along a direction in X"


def test_check_hessian_at_a_kink_of_the_gradient():
    f = lambda X: 0.5 * jnp.sum(jax.nn.relu(X) ** 2)  # noqa: E731 - gradient relu(X): kinks
    X = np.array(arr(4, 3))
    X[0, 0] = 0.0
    r = check_hessian(f, lambda X, v: jnp.where(X > 0, v, 0.0), (jnp.asarray(X),))
    assert r.verdict == "nondifferentiable" and r.kink["kink"], r.message
    assert r.message.startswith("NONDIFFERENTIABLE") and r.statuses.get("kink") == 1
    smooth = check_hessian(f, lambda X, v: jnp.where(X > 0, v, 0.0), (jnp.abs(arr(4, 3)) + 0.5,))
    assert smooth.passed and not smooth.kink["kink"], smooth.message


def test_check_hessian_of_a_gaussian_likelihood_on_spd():
    def nll(S, Y):
        return jnp.linalg.slogdet(S)[1] + jnp.trace(jnp.linalg.solve(S, Y))

    def hvp(S, Y, V):  # the gradient S⁻¹ − S⁻¹YS⁻¹ differentiated along a symmetric V
        Si = jnp.linalg.inv(S)
        return -Si @ V @ Si + Si @ Y @ Si @ V @ Si + Si @ V @ Si @ Y @ Si

    A, B = arr(6, 6), arr(6, 20)
    S, Y = A @ A.T + 6 * jnp.eye(6), B @ B.T / 20
    r = check_hessian(nll, hvp, (S, Y), domains={"S": "spd"})
    assert r.passed and r.taylor["passed"] and min(r.taylor["slopes"]) > 1.8, r.message
    wrong = check_hessian(nll, lambda S, Y, V: hvp(S, Y, V) + jnp.linalg.inv(S) @ V, (S, Y),
                          domains={"S": "spd"})
    assert not wrong.passed and "Taylor remainder" in wrong.failed_checks


def test_check_hessian_of_a_float32_computation_skips_the_line_checks():
    f = lambda x: jnp.sum(jnp.asarray(x, jnp.float32) ** 4)  # noqa: E731 - float32 inside
    x = arr(5, 3, dtype=jnp.float32)
    r = check_hessian(f, lambda x, v: 12 * jnp.asarray(x, jnp.float32) ** 2 * v, (x,))
    assert r.passed and r.taylor == {} and r.kink == {}, r.message


def test_check_hessian_shape_error():
    r = check_hessian(lambda X: jnp.sum(X ** 4), lambda X, v: v[0], (arr(3, 2),))
    assert r.diagnosis == "shape"


# -- the report ----------------------------------------------------------------------------------

def test_report_reads_well():
    A, X = arr(6, 4), arr(4, 3)
    f = lambda X, A: jnp.sum((A @ X) ** 2)
    r = check_gradient(f, lambda X, A: -2 * A.T @ (A @ X), (X, A))
    text = repr(r)
    assert len(text) < 900 and text.count("\n") <= 7 and "error_map" not in text
    html = r._repr_html_()
    assert "<table>" in html and "sign" in html
    with pytest.raises(GradientAssertionError) as info:
        assert_gradient(f, lambda X, A: -2 * A.T @ (A @ X), (X, A))
    assert str(info.value).splitlines()[0].startswith("FAIL (autodiff comparison")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = r.plot()
    assert len(fig.axes) == 2


def test_consistency_check_catches_contradictions():
    r = GradientReport(False, "fail", 1e-9, "mismatch", 1e-7, dtype="float64",
                       arguments=("X",), where_it_holds="all tested inputs",
                       message="FAIL (Taylor remainder): diagnosis mismatch", points=3,
                       failed_checks=("autodiff comparison",))
    problems = r.consistency_problems()
    assert any("holds on all tested inputs" in p for p in problems)
    assert any("within tolerance" in p for p in problems)


def test_float64_context_restores_the_callers_setting():
    before = jax.config.jax_enable_x64
    with float64():
        assert jnp.ones(1).dtype == jnp.float64
    assert jax.config.jax_enable_x64 == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_points_lie_on_their_families_whether_drawn_on_threads_or_not(monkeypatch, dtype):
    """Every family's points are on the family, at the example's size, in the example's dtype,
    and the same whether the groups are drawn one after another or side by side."""
    from matgrad_jax.audit import points, spec

    X = np.asarray(arr(6, 6), dtype) * 3
    B = np.asarray(arr(6, 4), dtype)
    S = spec.build(lambda X, B: jnp.sum(X @ B), (X, B), (0, 1), None, None, False)
    build = dict(n_perturbed=2, n_random=2, n_family=2,
                 families=("symmetric", "skew", "psd", "diagonal"))
    monkeypatch.setattr(points, "PARALLEL_DRAW", 1 << 40)
    one = points.build(S, np.random.default_rng(5), **build)
    monkeypatch.setattr(points, "PARALLEL_DRAW", 0)
    side = points.build(S, np.random.default_rng(5), **build)
    for i in one.stacked:
        np.testing.assert_array_equal(one.stacked[i], side.stacked[i])
        assert one.stacked[i].dtype == dtype
    np.testing.assert_array_equal(one.labels, side.labels)
    Xs = one.stacked[0].astype(np.float64)
    rms = float(np.sqrt(np.mean(X.astype(np.float64) ** 2)))
    for label, x in zip(one.labels, Xs):
        off = x - np.diag(np.diag(x))
        if label == "symmetric:X":
            np.testing.assert_allclose(x, x.T, atol=0)
        elif label == "skew:X":
            np.testing.assert_allclose(x, -x.T, atol=0)
        elif label == "psd:X":
            np.testing.assert_allclose(x, x.T, rtol=1e-5, atol=1e-5 * rms)
            assert np.linalg.eigvalsh((x + x.T) / 2)[0] > -1e-4 * rms
        elif label == "diagonal:X":
            assert np.all(off == 0) and np.all(np.diag(x) != 0)
        assert 0.2 * rms < np.sqrt(np.mean(x ** 2)) < 5 * rms, label
    assert len(set(map(tuple, Xs.reshape(len(Xs), -1)[:, :3]))) == len(Xs)  # all distinct
    sp = spec.build(lambda S_: jnp.sum(S_), (np.eye(5, dtype=dtype) * 2,), 0, None,
                    {0: "spd"}, False)
    P = points.build(sp, np.random.default_rng(1), **build)
    for label, x in zip(P.labels, P.stacked[0].astype(np.float64)):
        np.testing.assert_allclose(x, x.T, rtol=1e-6, atol=1e-6)
        assert np.linalg.eigvalsh(x)[0] > 0, label
        if label == "diagonal:S_":
            assert np.all(x - np.diag(np.diag(x)) == 0)
