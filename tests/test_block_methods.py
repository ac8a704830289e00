"""Block-coordinate descent made competitive on a user's factorisation: a Newton step per block
(ALS where a block is quadratic), balancing of the factors, Nesterov extrapolation of sweeps;
and L-BFGS's line search on the hand gradient."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import examples, minimize, solvers
from matgrad_jax.examples import LAMBDA, mf_example, mf_gradient, mf_objective, mf_optimum
from matgrad_jax.solvers import alternating_minimize, balance_factors
from matgrad_jax.solvers.block_steps import newton_direction


def _mf(n=30, m=20, r=4, seed=0):
    U0, V0, X = mf_example(seed, n, m, r)
    return (U0, V0), X, mf_optimum(X, r)


def test_balancing_keeps_the_product_and_lowers_the_ridge():
    rng = np.random.default_rng(0)
    U = jnp.asarray(rng.standard_normal((9, 3)) * np.array([[5.0, 1.0, 0.2]]))
    V = jnp.asarray(rng.standard_normal((7, 3)) / np.array([[5.0, 1.0, 0.2]]))
    Ub, Vb = balance_factors(U, V)
    np.testing.assert_allclose(Ub @ Vb.T, U @ V.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Ub.T @ Ub, Vb.T @ Vb, rtol=1e-8, atol=1e-10)
    ridge = lambda a, b: float(jnp.sum(a**2) + jnp.sum(b**2))  # noqa: E731
    assert ridge(Ub, Vb) < ridge(U, V)
    # the least over invertible A: no random A does better
    for _ in range(5):
        A = jnp.asarray(rng.standard_normal((3, 3)))
        assert ridge(Ub @ A, Vb @ jnp.linalg.inv(A).T) >= ridge(Ub, Vb) - 1e-9


def test_newton_direction_is_the_block_minimiser_of_a_quadratic_block():
    (U0, V0), X, _ = _mf(12, 8, 3)
    grad_u = lambda U: mf_gradient(U, V0, X)[0]  # noqa: E731
    d = newton_direction(grad_u, U0, grad_u(U0), max_iters=50, rtol=1e-12)
    # the U block's exact minimiser, in closed form: X V (VᵀV + λI)⁻¹
    U_star = X @ V0 @ jnp.linalg.inv(V0.T @ V0 + LAMBDA * jnp.eye(3))
    np.testing.assert_allclose(U0 + d, U_star, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("opts", [
    {"block_step": "newton"},
    {"block_step": "newton", "balance": balance_factors},
    {"block_step": "newton", "balance": balance_factors, "extrapolation": "nesterov"},
    {"extrapolation": "nesterov"},
])
def test_block_options_reach_the_closed_form_optimum(opts):
    blocks, X, fstar = _mf()
    f = lambda U, V: mf_objective(U, V, X)  # noqa: E731
    g = lambda U, V: mf_gradient(U, V, X)  # noqa: E731
    res = alternating_minimize(f, blocks, grad=g, max_iters=20000, **opts)
    values, _ = res.trace()
    assert np.all(np.diff(values) <= 1e-12 * np.abs(values[1:]))  # f never rises
    assert bool(res.converged), res.reason
    assert (float(res.value) - fstar) / fstar < 1e-7


def test_balancing_and_newton_need_far_fewer_sweeps():
    blocks, X, fstar = _mf(60, 40, 5)
    f = lambda U, V: mf_objective(U, V, X)  # noqa: E731
    g = lambda U, V: mf_gradient(U, V, X)  # noqa: E731
    plain = alternating_minimize(f, blocks, grad=g, max_iters=20000)
    fast = alternating_minimize(f, blocks, grad=g, max_iters=20000, block_step="newton",
                                balance=balance_factors)
    assert (float(fast.value) - fstar) / fstar < 1e-8
    assert int(fast.iterations) * 10 < int(plain.iterations)


def test_minimize_passes_block_options_and_jits():
    blocks, X, fstar = _mf()
    f = lambda U, V: mf_objective(U, V, X)  # noqa: E731
    g = lambda U, V: mf_gradient(U, V, X)  # noqa: E731
    res = minimize(f, blocks, grad=g, method="alternating", block_step="newton",
                   balance=balance_factors, extrapolation="nesterov")
    assert res.method == "alternating" and (float(res.value) - fstar) / fstar < 1e-8
    run = jax.jit(lambda U, V: minimize(f, (U, V), grad=g, method="alternating", verify="off",
                                        block_step="newton", balance=balance_factors).value)
    np.testing.assert_allclose(run(*blocks), fstar, rtol=1e-8)


@pytest.mark.parametrize("bad, message", [
    ({"block_step": "exact"}, "block_step"),
    ({"extrapolation": "anderson"}, "extrapolation"),
    ({"balance": 3}, "balance"),
    ({"newton_iters": 0}, "newton_iters"),
])
def test_bad_block_options_are_named(bad, message):
    blocks, X, _ = _mf(6, 5, 2)
    with pytest.raises((ValueError, TypeError), match=message):
        alternating_minimize(lambda U, V: mf_objective(U, V, X), blocks, **bad)


def test_lbfgs_line_search_uses_the_hand_gradient():
    from matgrad_jax.solvers.baselines import _with_gradient

    value = lambda b: jnp.sum(b[0] ** 2)  # noqa: E731
    marked = lambda b: (3.0 * b[0],)  # noqa: E731 - not 2x: which one optax sees
    fn = _with_gradient(value, marked)
    x = (jnp.arange(4.0),)
    v, g = jax.value_and_grad(fn)(x)
    assert float(v) == float(value(x))
    np.testing.assert_array_equal(g[0], 3.0 * x[0])
    blocks, X, fstar = _mf(10, 7, 2)
    res = minimize(lambda U, V: mf_objective(U, V, X), blocks,
                   grad=lambda U, V: mf_gradient(U, V, X), verify="off", method="lbfgs")
    assert (float(res.value) - fstar) / fstar < 1e-8


def test_minimize_a_second_call_shares_the_compiled_loop():
    from matgrad_jax.minimize import _shared

    blocks, X, _ = _mf(11, 7, 2)
    first = minimize(lambda U, V: mf_objective(U, V, X), blocks,
                     grad=lambda U, V: mf_gradient(U, V, X))
    size = _shared._cache_size()
    X2 = X * 1.5  # a redefined objective of the same structure: same program, new data
    second = minimize(lambda U, V: mf_objective(U, V, X2), blocks,
                      grad=lambda U, V: mf_gradient(U, V, X2))
    assert _shared._cache_size() == size
    assert float(second.value) != float(first.value)
    np.testing.assert_allclose(float(second.value), mf_optimum(X2, 2), rtol=1e-8)


@pytest.mark.parametrize("x64", [True, False])
def test_block_options_in_float32(x64):
    ctx = jax.enable_x64(x64) if hasattr(jax, "enable_x64") else None
    if ctx is None:
        from jax.experimental import disable_x64, enable_x64

        ctx = enable_x64() if x64 else disable_x64()
    with ctx:
        U0, V0, X = mf_example(1, 30, 20, 4, dtype=jnp.float32)
        fstar = mf_optimum(X, 4)
        f = lambda U, V: mf_objective(U, V, X)  # noqa: E731
        g = lambda U, V: mf_gradient(U, V, X)  # noqa: E731
        res = alternating_minimize(f, (U0, V0), grad=g, max_iters=500, block_step="newton",
                                   balance=balance_factors)
        assert res.params[0].dtype == jnp.float32
        values, _ = res.trace()
        assert np.all(np.diff(values) <= 1e-6 * np.abs(values[1:]))
        assert bool(res.converged), res.reason
        assert (float(res.value) - fstar) / fstar < 1e-4


# -- block descent as a direction × a step search -------------------------------------------------


def _mf_problem():
    U0, V0, X = examples.mf_example(seed=4, n=11, m=7, r=3)
    return ((lambda U, V: examples.mf_objective(U, V, X)),
            (lambda U, V: examples.mf_gradient(U, V, X)), (U0, V0))


@pytest.mark.parametrize("names, parts", [
    (dict(), dict(block_step=solvers.PreconditionedGradient(),
                  line_search=solvers.CurvatureStep())),
    (dict(line_search="armijo"), dict(line_search=solvers.BacktrackingStep())),
    (dict(block_step="newton", newton_iters=20),
     dict(block_step=solvers.BlockNewton(max_iters=20), line_search=solvers.UnitStep())),
])
def test_named_block_steps_are_their_composed_parts_bit_for_bit(names, parts):
    f, g, x0 = _mf_problem()
    a = alternating_minimize(f, x0, grad=g, max_iters=60, **names)
    b = alternating_minimize(f, x0, grad=g, max_iters=60, **parts)
    assert int(a.iterations) == int(b.iterations)
    for x, y in zip(a.params, b.params):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_users_own_step_search_composes_with_any_direction():
    class HalfStep(NamedTuple):  # a fixed first step of 0.5, then the Armijo safeguard
        def first_step(self, grad_i, x, d, slope, alpha_prev):
            return jnp.full_like(alpha_prev, 0.5)

    f, g, x0 = _mf_problem()
    for descent in (solvers.PreconditionedGradient(), solvers.BlockNewton()):
        res = alternating_minimize(f, x0, grad=g, max_iters=200, block_step=descent,
                                   line_search=HalfStep())
        values, _ = res.trace()
        assert np.all(np.diff(values) <= 1e-12 * np.abs(values[:-1]))  # never rises
        assert values[-1] < 0.5 * values[0]


def test_bad_descents_and_searches_are_named():
    f, g, x0 = _mf_problem()
    with pytest.raises(ValueError, match="block_step: expected 'gradient', 'newton' or an object"):
        alternating_minimize(f, x0, grad=g, block_step=object())
    with pytest.raises(ValueError, match="line_search: expected 'exact', 'armijo' or an object"):
        alternating_minimize(f, x0, grad=g, line_search=3)
    with pytest.raises(ValueError, match="block_step: expected one of"):
        alternating_minimize(f, x0, grad=g, block_step="newtonian")
