"""Problems × solvers (the grid of optimistix's ``tests/helpers.py``): every solver on every
problem reaches the problem's minimum, gives the same answer eagerly, under ``jit`` and lane by
lane under ``vmap``, and traces the user's functions a fixed number of times (not once an
iteration), with no retrace when only the data change.

Problems are users' objectives with hand gradients (each checked against ``jax.grad`` here), at
rectangular shapes; float64 (the suite runs with x64 on)."""

from __future__ import annotations

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import matgrad_jax as mg
from matgrad_jax import examples, programs, solvers

# -- problems: (objective(*blocks, data), hand gradient, data, start, invariant, f*) ------------


def _ls_objective(X, Y, data):
    """‖A X + Y B − C‖² + 0.1(‖X‖² + ‖Y‖²): a convex quadratic in two blocks."""
    A, B, C = data
    R = A @ X + Y @ B - C
    return jnp.sum(R * R) + 0.1 * (jnp.sum(X * X) + jnp.sum(Y * Y))


def _ls_gradient(X, Y, data):
    A, B, C = data
    R = A @ X + Y @ B - C
    return 2 * A.T @ R + 0.2 * X, 2 * R @ B.T + 0.2 * Y


def _ls_minimum(data, start):
    """The quadratic's minimum from its Hessian (dense, small): f(x*) with x* = x0 − H⁻¹∇f(x0)."""
    flat0, unravel = jax.flatten_util.ravel_pytree(start)
    f = lambda x: _ls_objective(*unravel(x), data)  # noqa: E731
    H = jax.hessian(f)(flat0)
    x = flat0 - jnp.linalg.solve(H, jax.grad(f)(flat0))
    return float(f(x))


def _least_squares(seed=0):
    n, k, q, p = 7, 5, 6, 4  # n ≠ k ≠ q ≠ p
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    A = jax.random.normal(keys[0], (n, k))
    B = jax.random.normal(keys[1], (p, q))
    C = jax.random.normal(keys[2], (n, q))
    start = (jax.random.normal(keys[3], (k, q)), jax.random.normal(keys[4], (n, p)))
    data = (A, B, C)
    return dict(f=_ls_objective, g=_ls_gradient, data=data, start=start,
                invariant=lambda X, Y: (X, Y), fstar=_ls_minimum(data, start))


def _factorisation(seed=0):
    U0, V0, X = examples.mf_example(seed=seed, n=12, m=9, r=3)
    return dict(f=lambda U, V, X: examples.mf_objective(U, V, X),
                g=lambda U, V, X: examples.mf_gradient(U, V, X), data=X, start=(U0, V0),
                invariant=lambda U, V: (U @ V.T,), fstar=examples.mf_optimum(X, 3))


PROBLEMS = {"least_squares": _least_squares, "factorisation": _factorisation}

# -- solvers: solver(fun, init, grad) -> result; the gap each must reach -------------------------

SOLVERS = {
    "alternating_exact": (functools.partial(mg.alternating_minimize, max_iters=3000,
                                            tol=1e-13), 1e-8),
    "alternating_armijo": (functools.partial(mg.alternating_minimize, max_iters=3000,
                                             tol=1e-13, line_search="armijo"), 1e-6),
    "lbfgs": (functools.partial(solvers.lbfgs, max_iters=500), 1e-9),
    "lbfgs_backtracking": (functools.partial(solvers.lbfgs_backtracking, max_iters=500), 1e-9),
    "adam": (functools.partial(solvers.adam, max_iters=3000, learning_rate=3e-2), 1e-3),
    "minimize_auto": (functools.partial(mg.minimize, verify="off"), 1e-9),
}

GRID = [(p, s) for p in PROBLEMS for s in SOLVERS]


@functools.cache
def _problem(name):
    return PROBLEMS[name]()


def _solve(problem, solver, start, data):
    fun = lambda *b: problem["f"](*b, data)  # noqa: E731
    grad = lambda *b: problem["g"](*b, data)  # noqa: E731
    return SOLVERS[solver][0](fun, start, grad=grad)


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_problems_hand_gradients_are_jax_grad(name):
    P = _problem(name)
    args = tuple(1.3 * b for b in P["start"])
    want = jax.grad(lambda *b: P["f"](*b, P["data"]), argnums=tuple(range(len(args))))(*args)
    for got, ref in zip(P["g"](*args, P["data"]), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, solver", GRID)
def test_every_solver_reaches_the_minimum(name, solver):
    P = _problem(name)
    res = _solve(P, solver, P["start"], P["data"])
    gap = (float(res.value) - P["fstar"]) / abs(P["fstar"])
    assert np.isfinite(gap) and -1e-10 < gap < SOLVERS[solver][1], (solver, gap, res.reason)


@pytest.mark.parametrize("name, solver", GRID)
def test_jit_equals_eager_equals_vmap(name, solver):
    P = _problem(name)
    eager = _solve(P, solver, P["start"], P["data"])
    jitted = jax.jit(lambda s, d: _solve(P, solver, s, d))(P["start"], P["data"])
    np.testing.assert_allclose(float(jitted.value), float(eager.value), rtol=1e-10)
    for a, b in zip(jitted.params, eager.params):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    assert int(jitted.iterations) == int(eager.iterations)

    # two lanes: the start, and the start scaled; each lane as its own solve
    starts = [P["start"], tuple(0.7 * b for b in P["start"])]
    stacked = tuple(jnp.stack(bs) for bs in zip(*starts))
    lanes = jax.vmap(lambda s: _solve(P, solver, s, P["data"]))(stacked)
    for i, start in enumerate(starts):
        single = eager if i == 0 else _solve(P, solver, start, P["data"])
        np.testing.assert_allclose(float(lanes.value[i]), float(single.value), rtol=1e-8)
        lane = tuple(x[i] for x in lanes.params)
        for a, b in zip(P["invariant"](*lane), P["invariant"](*single.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
def test_no_retrace_per_iteration_or_per_data(solver):
    """The objective and gradient are traced a fixed number of times per solve, whatever the
    iteration count; a jitted solve called with new data of the same shapes traces nothing."""
    P = _problem("least_squares")
    traces = {"f": 0, "g": 0}

    def f(*args):
        traces["f"] += 1
        return P["f"](*args)

    def g(*args):
        traces["g"] += 1
        return P["g"](*args)

    counted = dict(P, f=f, g=g)
    solve = SOLVERS[solver][0]

    def run(max_iters):
        traces.update(f=0, g=0)
        programs._TRACES.clear()  # minimize would reuse the first solve's trace of f and g
        fun = lambda *b: f(*b, P["data"])  # noqa: E731
        grad = lambda *b: g(*b, P["data"])  # noqa: E731
        res = solve(fun, P["start"], grad=grad, max_iters=max_iters)
        float(res.value)
        return dict(traces)

    few, many = run(3), run(300)
    assert few == many and 0 < few["f"] + few["g"] <= 30, (few, many)

    jitted = jax.jit(lambda s, d: _solve(counted, solver, s, d).value)
    jitted(P["start"], P["data"]).block_until_ready()
    traces.update(f=0, g=0)
    other = tuple(1.5 * x for x in P["data"])
    value = jitted(P["start"], other)
    assert traces == {"f": 0, "g": 0}
    assert np.isfinite(float(value)) and float(value) != float(jitted(P["start"], P["data"]))
