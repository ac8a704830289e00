import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import check_gradient, derivations
from matgrad_jax.audit import audit_derivation
from matgrad_jax.problems import gram
from matgrad_jax.testing import GradientAssertionError, assert_gradient

rng = np.random.default_rng(0)
A = jnp.asarray(rng.standard_normal((7, 5)))
Y = jnp.asarray(rng.standard_normal((7, 4)))
X = jnp.asarray(rng.standard_normal((5, 4)))


def lsq(X, A, Y):
    return jnp.sum((A @ X - Y) ** 2)


def lsq_grad(X, A, Y):
    return 2 * A.T @ (A @ X - Y)


def test_correct_gradient_passes_float64_and_float32():
    r = check_gradient(lsq, lsq_grad, (X, A, Y))
    assert r.passed and r.diagnosis is None and r.verdict == "pass"
    assert all(s > 1.8 for s in r.taylor["slopes"])
    r32 = check_gradient(lsq, lsq_grad, tuple(a.astype(jnp.float32) for a in (X, A, Y)))
    assert r32.passed, r32.message
    # judged against a float64 reference, its formula evaluated in float64 too
    assert r32.reference_dtype == "float64" and r32.precision["formula_in_float64"]
    assert 0 < r32.precision["hand_rel_error"] < 1e-5


@pytest.mark.parametrize("planted, label", [
    (lambda *a: -lsq_grad(*a), "sign"),
    (lambda *a: 0.5 * lsq_grad(*a), "scale:0.5"),
    (lambda *a: 2 * lsq_grad(*a), "scale:2"),
])
def test_planted_sign_and_scale(planted, label):
    r = check_gradient(lsq, planted, (X, A, Y), arg_names=("X", "A", "Y"))
    assert not r.passed and r.diagnosis == label
    assert r.failing_arguments == ("X",)
    assert r.blocks["X"]["location"] == "all entries"
    assert all(s < 1.3 for s in r.taylor["slopes"])


def test_small_error_fails_in_float64():
    r = check_gradient(lsq, lambda *a: (1 + 1e-4) * lsq_grad(*a), (X, A, Y))
    assert not r.passed and r.diagnosis == "scale:1.0001"


def test_planted_transpose():
    S = jnp.asarray(rng.standard_normal((5, 5)))
    C = jnp.asarray(rng.standard_normal((5, 5)))
    f = lambda S, C: jnp.sum(C * S) + 0.5 * jnp.sum(S * S)
    r = check_gradient(f, lambda S, C: C.T + S.T, (S, C))
    assert r.diagnosis == "transpose"


def test_wrong_entries_are_localised():
    r = check_gradient(lsq, lambda *a: lsq_grad(*a).at[2].multiply(3.0), (X, A, Y),
                       arg_names=("X", "A", "Y"))
    assert r.diagnosis == "mismatch"
    assert r.blocks["X"]["location"].startswith("rows [2]")
    assert all(e[0] == 2 for e in r.blocks["X"]["entries"])


def test_which_block_is_wrong():
    f = lambda U, V: jnp.sum((U @ V) ** 2)
    good = jax.grad(f, argnums=(0, 1))
    U, V = jnp.asarray(rng.standard_normal((4, 3))), jnp.asarray(rng.standard_normal((3, 6)))
    r = check_gradient(f, lambda U, V: (good(U, V)[0], -good(U, V)[1]), (U, V), argnums=(0, 1),
                       arg_names=("U", "V"))
    assert r.failing_arguments == ("V",) and r.diagnosis == "sign"
    assert r.blocks["U"]["diagnosis"] is None


def test_domain_of_validity_symmetric_Q():
    r = check_gradient(gram.frobenius, gram.frobenius_grad_published, gram.example_args(0),
                       arg_names=("B", "Q"), domains={"Q": "general"})
    assert not r.passed
    assert "holds only for symmetric" in r.where_it_holds and "Q" in r.where_it_holds
    assert "skew" not in r.where_it_holds.split("holds only for")[1].split(" Q")[0]


def test_kink_reported_as_nondifferentiable():
    r = check_gradient(gram.spectral, gram.spectral_grad_published, gram.kink_args(),
                       arg_names=("B", "Q"))
    assert r.verdict == "nondifferentiable" and r.diagnosis == "nondifferentiable"
    smooth = check_gradient(gram.spectral, gram.spectral_grad_published, gram.example_args(0))
    assert smooth.passed and not smooth.kink["kink"]


def test_host_callback_function_audited_by_taylor():
    def f_host(X, A, Y):
        return jax.pure_callback(lambda X, A, Y: np.sum((A @ X - Y) ** 2),
                                 jax.ShapeDtypeStruct((), X.dtype), X, A, Y,
                                 vmap_method="sequential")

    ok = check_gradient(f_host, lsq_grad, (X, A, Y))
    assert ok.reference == "taylor-only" and ok.passed
    bad = check_gradient(f_host, lambda *a: 2 * lsq_grad(*a), (X, A, Y))
    assert not bad.passed and bad.diagnosis == "scale:2"
    assert all(abs(s - 1) < 0.2 for s in bad.taylor["slopes"])


def test_shape_and_error_reports():
    r = check_gradient(lsq, lambda X, A, Y: lsq_grad(X, A, Y).T, (X, A, Y))
    assert r.diagnosis == "shape" and "shape (4, 5)" in r.message
    r = check_gradient(lsq, lambda *a: 1 / 0, (X, A, Y))
    assert r.verdict == "error" and "ZeroDivisionError" in r.message


def test_complex_argument_real_inner_product():
    Z = jnp.asarray(rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2)))
    f = lambda Z: jnp.sum(jnp.abs(Z) ** 2)
    assert check_gradient(f, lambda Z: 2 * Z, (Z,)).passed
    assert check_gradient(f, lambda Z: 2 * jnp.conj(Z), (Z,)).diagnosis == "conjugate"


def test_report_serialises_and_renders():
    r = check_gradient(lsq, lambda *a: -lsq_grad(*a), (X, A, Y))
    json.dumps(r.to_dict())
    md = r._repr_markdown_()
    assert "sign" in md and "| verdict |" in md
    with pytest.raises(GradientAssertionError):
        assert_gradient(lsq, lambda *a: -lsq_grad(*a), (X, A, Y))
    assert assert_gradient(lsq, lsq_grad, (X, A, Y)).passed


EXPECTED = {
    "channel/phi/published": ("fail", ("Q",)),
    "gram/frobenius/published": ("fail", ("B",)),
    "gram/frobenius_squared/published": ("fail", ("B",)),
}


@pytest.mark.parametrize("d", derivations(builtin=True), ids=lambda d: d.name)
def test_registry_verdicts(d):
    r = audit_derivation(d)
    verdict, blocks = EXPECTED.get(d.name, ("pass", ()))
    assert r.verdict == verdict, r.message
    assert r.failing_arguments == blocks
    if d.name.startswith("gram/frob") and d.published:
        assert "holds only for symmetric" in r.where_it_holds


def test_audit_512_least_squares_runs():
    n = 512
    r_ = np.random.default_rng(1)
    args = tuple(jnp.asarray(r_.standard_normal((n, n)), jnp.float32) for _ in range(3))
    r = check_gradient(lsq, lsq_grad, args, n_family=0)
    assert r.passed, r.message


_X = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
_A = np.cos(np.arange(15.0)).reshape(5, 3)


@pytest.mark.parametrize("fun, args, message", [
    (lambda X, A: A @ X, (_X, _A), "fun: expected a real scalar output, got shape (5, 4) and "
                                   "dtype float64"),
    (lambda X, A: jax.lax.complex(jnp.sum(A @ X), 0.0 * jnp.sum(X)), (_X, _A),
     "got shape () and dtype complex128"),
    (lambda X, A: (jnp.sum(X),), (_X, _A), "fun: expected a real scalar output, got a tuple"),
    (lambda X, A: np.asarray(A) @ np.asarray(X), (_X, _A), "got shape (5, 4)"),  # host code
    (lambda X: jnp.sum(X ** 2), _X, "args: expected a tuple of fun's arguments ((x,) for one), "
                                    "got an array of shape (3, 4)"),
    (lambda X: jnp.sum(X ** 2), {"X": _X}, "got dict"),
])
def test_bad_objective_or_arguments_raise_one_clear_error(fun, args, message):
    """A non-scalar objective or a lone array for ``args`` is the caller's mistake, not a
    finding on the gradient: one InputError naming it (it used to be a TypeError from inside
    the Taylor test, or an audit of the array's rows as separate arguments)."""
    from matgrad_jax import InputError

    with pytest.raises(InputError) as info:
        check_gradient(fun, lambda X, *rest: 2 * X, args)
    assert message in str(info.value)


def test_host_objective_and_list_args_still_audited():
    fun = lambda X, A: float(np.sum((np.asarray(A) @ np.asarray(X)) ** 2))  # noqa: E731
    grad = lambda X, A: 2 * A.T @ (A @ X)  # noqa: E731
    report = check_gradient(fun, grad, [_X, _A])
    assert report.passed and report.reference == "taylor-only"
