"""The work queue (``solvers/queue.py``, ``solve_batch(model=..., lanes=N)``) and the small
products a user's function runs with under ``vmap`` (``xla_cpu.small_products``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import matgrad_jax as mg
from matgrad_jax import examples, solvers, xla_cpu
from matgrad_jax.minimize import minimize_stepper
from matgrad_jax.solvers.queue import run_queued
from matgrad_jax.solvers.stepper import run

B, N, M, R = 7, 9, 6, 2  # rectangular: n != m != r


def _problems(dtype):
    data = [examples.mf_example(i, N, M, R, dtype=dtype) for i in range(B)]
    U0, V0, X = (jnp.stack([d[k] for d in data]) for k in range(3))
    # problem 3 starts at a stationary point (U = V = 0): it stops before its first step
    return U0.at[3].set(0), V0.at[3].set(0), X


def _make(method):
    def make(X, x0):
        return minimize_stepper(lambda u, v: examples.mf_objective(u, v, X), x0,
                                grad=lambda u, v: examples.mf_gradient(u, v, X), method=method,
                                max_iters=300)
    return make


@pytest.mark.parametrize("method, lanes", [("lbfgs_backtracking", 1), ("lbfgs_backtracking", 3),
                                           ("lbfgs", 3), ("alternating", 3)])
def test_the_queue_gives_each_problem_its_own_solve(method, lanes):
    """Problem i's result (parameters, value, iterations, reason, history) is the one its own
    solve gives, whatever the lanes, also for a problem that stops at its start."""
    U0, V0, X = _problems(jnp.float64)
    make = _make(method)
    res = jax.jit(lambda U, V, X: run_queued(make, X, (U, V), lanes=lanes))(U0, V0, X)
    assert int(res.reason_code[3]) == solvers.REASONS.index("gradient norm below gtol")
    assert int(res.iterations[3]) == 0
    single = jax.jit(lambda u, v, x: run(make(x, (u, v))))
    for i in range(B):
        one = single(U0[i], V0[i], X[i])
        assert int(res.iterations[i]) == int(one.iterations), i
        assert int(res.reason_code[i]) == int(one.reason_code), i
        np.testing.assert_allclose(res.params[0][i], one.params[0], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(res.value[i], one.value, rtol=1e-10)
        np.testing.assert_allclose(res.history.values[i], one.history.values, rtol=1e-10)
        np.testing.assert_allclose(res.history.grad_norms[i], one.history.grad_norms,
                                   rtol=1e-6, atol=1e-9 * float(one.history.grad_norms[0]))


@pytest.mark.parametrize("x64", [True, False])
def test_solve_batch_with_lanes_equals_the_vmapped_batch(x64):
    """``solve_batch(model=..., lanes=N)`` over the forced host devices gives the answers of
    the vmapped batch, in float64 and float32 (x64 on and off)."""
    with jax.enable_x64(x64):
        dt = jnp.float64 if x64 else jnp.float32
        U0, V0, X = _problems(dt)
        opts = dict(model="examples/mf/right", init={"U": U0, "V": V0},
                    method="lbfgs_backtracking", full_result=True)
        queued = mg.solve_batch({"X": X}, lanes=2, **opts)
        plain = mg.solve_batch({"X": X}, **opts)
        tol = 1e-9 if x64 else 2e-3
        assert queued.params[0].dtype == dt
        np.testing.assert_array_equal(np.asarray(queued.reason_code),
                                      np.asarray(plain.reason_code))
        np.testing.assert_allclose(np.asarray(queued.value), np.asarray(plain.value), rtol=tol)
        fit = np.einsum("bnr,bmr->bnm", *queued.params)
        ref = np.einsum("bnr,bmr->bnm", *plain.params)
        np.testing.assert_allclose(fit, ref, rtol=tol, atol=tol)


def test_lanes_are_checked():
    U0, V0, X = _problems(jnp.float64)
    opts = dict(model="examples/mf/right", init={"U": U0, "V": V0})
    with pytest.raises(mg.InputError, match="lanes: expected None or a positive integer, got 0"):
        mg.solve_batch({"X": X}, lanes=0, **opts)
    with pytest.raises(mg.InputError, match="lanes: a work queue replaces chunk_size"):
        mg.solve_batch({"X": X}, lanes=2, chunk_size=2, **opts)
    from matgrad_jax.scale_model import _checked_lanes

    with pytest.raises(mg.InputError, match="has no iterations"):
        _checked_lanes(2, "exact", None)


def test_small_products_change_nothing_for_one_problem_and_batch_as_written_out():
    """For one problem the program is the function's own (the same lowered text); under
    ``vmap`` the products are written out, with the same values and gradients."""
    U, V, X = examples.mf_example(0, N, M, R)
    f = lambda u, v: examples.mf_objective(u, v, X)
    g = lambda u, v: examples.mf_gradient(u, v, X)
    fs, gs = xla_cpu.small_products(f), xla_cpu.small_products(g)
    assert jax.jit(fs).lower(U, V).as_text() == jax.jit(f).lower(U, V).as_text()
    assert jax.jit(gs).lower(U, V).as_text() == jax.jit(g).lower(U, V).as_text()
    Us, Vs, Xs = (jnp.stack([a * (1 + 0.1 * i) for i in range(4)]) for a in (U, V, X))
    batched = jax.vmap(lambda u, v, x: xla_cpu.small_products(
        lambda a, b: examples.mf_gradient(a, b, x))(u, v))
    assert "dot_general" not in jax.jit(batched).lower(Us, Vs, Xs).as_text()
    for got, want in zip(batched(Us, Vs, Xs), jax.vmap(examples.mf_gradient)(Us, Vs, Xs)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    grad = jax.vmap(jax.grad(lambda u, v, x: xla_cpu.small_products(
        lambda a, b: examples.mf_objective(a, b, x))(u, v), (0, 1)))(Us, Vs, Xs)
    for got, want in zip(grad, jax.vmap(examples.mf_gradient)(Us, Vs, Xs)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_small_products_leave_other_programs_alone():
    """No 2-d product, a batched product, a large one: the same values as the function."""
    A = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 80, 70)))
    for fun, batch in [(lambda x: jnp.sum(jnp.sin(x)), A[:, 0]),
                       (lambda x: jnp.einsum("bij,bkj->bik", x, x).sum(), A),
                       (lambda x: jnp.sum(x @ x.T), A[:, 0])]:
        np.testing.assert_allclose(jax.vmap(xla_cpu.small_products(fun))(batch),
                                   jax.vmap(fun)(batch), rtol=1e-12)


@pytest.mark.parametrize("method", ["lbfgs_backtracking"])
def test_vmap_of_minimize_gives_each_problem_its_own_solve(method):
    """``jax.vmap(minimize)`` (a work queue for this method) with the data batched, and with
    only the starts batched (the data closed over, unbatched), with the checks inside the loop:
    each lane is its problem's own solve."""
    U0, V0, X = _problems(jnp.float64)

    def solve(u, v, x):
        r = mg.minimize(lambda a, b: examples.mf_objective(a, b, x), (u, v),
                        grad=lambda a, b: examples.mf_gradient(a, b, x), method=method,
                        verify="always", max_iters=300)
        return r.value, r.iterations, r.reason_code, r.params[0] @ r.params[1].T

    single = jax.jit(solve)
    by_data = jax.jit(jax.vmap(solve))(U0, V0, X)
    by_start = jax.jit(jax.vmap(lambda u, v: solve(u, v, X[0])))(U0, V0)
    for lanes, data in ((by_data, X), (by_start, jnp.stack([X[0]] * B))):
        for i in range(B):
            one = single(U0[i], V0[i], data[i])
            assert int(lanes[1][i]) == int(one[1]) and int(lanes[2][i]) == int(one[2])
            np.testing.assert_allclose(lanes[0][i], one[0], rtol=1e-10)
            np.testing.assert_allclose(lanes[3][i], one[3], rtol=1e-8, atol=1e-10)
