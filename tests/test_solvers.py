import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import matgrad_jax as mg
from matgrad_jax import solvers
from matgrad_jax._checks import InputError
from matgrad_jax.fit import fit, fit_chunked, fit_problem
from matgrad_jax.problems import channel, gram
from matgrad_jax.solvers import adam, alternating_minimize, lbfgs


def _problem(p_condition=1.0, seed=1, shape=(20, 12, 16, 26), ridge=0.0):
    d = channel.make_data(*shape, noise=0.05, seed=seed, p_condition=p_condition)
    return channel.Problem(*(d[k] for k in channel.DATA_NAMES), ridge=ridge), d


def _gap(res, exact):
    return (float(res.value) - float(exact.value)) / abs(float(exact.value))


@pytest.mark.parametrize("method, opts", [
    ("alternating", {}),
    ("alternating", {"precondition": False}),
    ("cg", {}),
    ("cg", {"precondition": False}),
    ("lbfgs", {}),
    ("adam", {"max_iters": 20000, "learning_rate": 0.05}),
])
def test_iterative_methods_reach_exact_minimiser(method, opts):
    prob, _ = _problem()
    exact = fit(prob, method="exact")
    res = fit(prob, method=method, **{"max_iters": 5000, **opts})
    assert bool(res.converged), res.reason
    assert abs(_gap(res, exact)) < 1e-10
    values, _ = res.trace()
    assert len(values) == int(res.iterations) + 1


@pytest.mark.parametrize("method", ["alternating", "cg", "lbfgs"])
def test_ill_conditioned_converges_or_says_not(method):
    prob, _ = _problem(p_condition=1e3)
    exact = fit(prob, method="exact")
    res = fit(prob, method=method, max_iters=300)
    if bool(res.converged):
        assert abs(_gap(res, exact)) < 1e-8
    else:
        assert res.reason == "max_iters reached" and int(res.iterations) == 300


def test_rank_deficient_with_ridge():
    prob, d = _problem(shape=(10, 8, 5, 6), ridge=1e-2)
    exact = fit(prob, method="exact")
    assert float(jnp.abs(prob.grad(*exact.params)[0]).max()) < 1e-9
    res = fit(prob, method="cg", max_iters=500)
    assert not bool(res.converged) or abs(_gap(res, exact)) < 1e-10


def test_alternating_never_increases_nonquadratic():
    B0, Q = gram.make_data(8, 3, family="symmetric", seed=0)
    f = lambda B: gram.frobenius_squared(B, Q)
    # two column blocks of B
    fun = lambda B1, B2: f(jnp.concatenate([B1, B2], axis=1))
    res = alternating_minimize(fun, (B0[:, :1], B0[:, 1:]), max_iters=200)
    values, _ = res.trace()
    assert np.all(np.diff(values) <= 1e-12 * np.abs(values[:-1]))
    opt = gram.optimal_values(Q, 3)["frobenius"] ** 2
    assert float(res.value) <= values[0]
    assert float(res.value) >= opt - 1e-9


def test_optax_block_updates():
    prob, _ = _problem()
    z = jnp.zeros(prob.shape)
    res = alternating_minimize(prob.fun, (z, z), grad=prob.grad_fn,
                               optimizers=optax.sgd(1e-2), max_iters=50)
    values, _ = res.trace()
    assert values[-1] < values[0]
    assert not bool(res.converged) and res.reason == "max_iters reached"


def test_vmapped_batch_equals_single_solves():
    probs = [_problem(seed=s)[0] for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *probs)
    z = jnp.zeros((3,) + probs[0].shape)
    for method in ("alternating", "exact", "cg"):
        batch = jax.vmap(lambda p, r, q, method=method: fit_problem(
            p, (r, q), method=method, max_iters=2000))(stacked, z, z)
        for i, p in enumerate(probs):
            single = fit(p, method=method, max_iters=2000)
            # Under vmap the preconditioners' inverses come from the LAPACK-free sweep
            # (linalg.hpd_inverse), alone from Cholesky: the rounding differs, so iterative
            # methods may stop an iteration or a few apart, within their tolerance.
            assert abs(float(batch.value[i] - single.value)) <= 1e-10 * abs(float(single.value))
            np.testing.assert_allclose(batch.params[0][i], single.params[0],
                                       rtol=1e-8 if method == "exact" else 1e-4, atol=1e-10)
            assert abs(int(batch.iterations[i]) - int(single.iterations)) <= max(
                2, int(single.iterations) // 20)
    assert batch.reason.shape == (3,)


def test_contract_names_importable():
    import matgrad_jax
    from matgrad_jax.problems.channel import solve_exact as ch_exact
    from matgrad_jax.problems.gram import solve_exact as gr_exact

    assert callable(matgrad_jax.alternating_minimize) and callable(matgrad_jax.check_gradient)
    assert matgrad_jax.SolveResult is not None and callable(ch_exact) and callable(gr_exact)
    from matgrad_jax.testing import assert_gradient  # noqa: F401


def test_optax_loop_ends_at_max_iters_when_steps_are_zero():
    # A zero step (learning rate 0, or the end of a decayed schedule) is a zero decrease; the
    # first-order loop ignores the decrease rule and once never reached its cap: it must stop.
    from matgrad_jax.solvers import adam

    fun = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    res = adam(fun, (jnp.zeros(3),), learning_rate=0.0, max_iters=25, tol=0.0, gtol=0.0)
    assert int(res.iterations) == 25 and res.reason == "max_iters reached"


@pytest.mark.parametrize("method", ["exact", "cg"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_exact_result_value_needs_no_krylov_reference(dtype, method):
    # exact and cg report values with the point itself as reference, so when statistics and
    # solve are one program the statistics' Krylov loop is dropped: exact has no while loop
    # left, cg only its own.
    # One value is accurate to a few eps * ||W||² either way (one rounded subtraction).
    d = channel.make_data(13, 6, 9, 11, seed=4)
    data = [d[k].astype(dtype) for k in channel.DATA_NAMES]

    def solve(*data):
        problem = channel.Problem.from_stats(channel.channel_statistics(*data))
        z = jnp.zeros_like(data[0])
        return fit_problem(problem, (z, z), method=method, gtol=1e-12, max_iters=200)

    res = jax.jit(solve)(*data)
    p64 = channel.Problem(*(d[k] for k in channel.DATA_NAMES))
    x64 = [x.astype(jnp.float64) for x in res.params]
    eps = float(jnp.finfo(dtype).eps)
    assert abs(float(res.value) - float(p64.value(*x64))) <= 20 * eps * float(p64.stats.const)
    z = jnp.zeros(p64.shape)
    g0 = float(jnp.sqrt(sum(jnp.sum(x * x) for x in p64.grad(z, z))))
    assert float(res.grad_norm) <= 1e3 * eps * g0
    hlo = jax.jit(solve).lower(*data).compile().as_text()
    assert hlo.count(" while(") == (0 if method == "exact" else 1)


def test_conjugate_gradient_with_closed_form_hvp_matches_the_jvp():
    from matgrad_jax.solvers import conjugate_gradient

    prob, _ = _problem(shape=(11, 5, 7, 13))
    z = jnp.zeros(prob.shape)
    via_jvp = conjugate_gradient(prob.fun, (z, z), grad=prob.grad_fn, max_iters=500)
    closed = conjugate_gradient(prob.fun, (z, z), grad=prob.grad_fn, hvp=prob.hvp,
                                max_iters=500)
    assert bool(closed.converged) and bool(via_jvp.converged)
    assert abs(int(closed.iterations) - int(via_jvp.iterations)) <= 1
    for a, b in zip(closed.params, via_jvp.params):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("call, message", [
    (lambda p: fit(p, max_iters=-1), "max_iters: expected an integer >= 0, got -1"),
    (lambda p: fit(p, max_iters=2.5), "max_iters: expected an integer >= 0, got 2.5 (float)"),
    (lambda p: fit(p, max_iters=True), "max_iters: expected an integer >= 0, got True"),
    (lambda p: fit(p, tol=-1e-3), "tol: expected a finite real number >= 0, got -0.001"),
    (lambda p: fit(p, tol=float("nan")), "tol: expected a finite real number >= 0, got nan"),
    (lambda p: fit(p, tol="1e-3"), "tol: expected a real number >= 0, got '1e-3'"),
    (lambda p: fit(p, gtol=np.ones(2)), "gtol: expected a real number >= 0"),
    (lambda p: fit(p, method="adam", learning_rate=-0.1),
     "learning_rate: expected a finite real number >= 0, got -0.1"),
    (lambda p: fit(p, method="exact", refine=-1), "refine: expected an integer >= 0, got -1"),
    (lambda p: fit_chunked(p, method="cg", tol=-1.0), "tol: expected a finite real number"),
    (lambda p: alternating_minimize(p.fun, (jnp.zeros(p.shape),) * 2, gtol=-1.0),
     "gtol: expected a finite real number >= 0, got -1.0"),
    (lambda p: lbfgs(p.fun, (jnp.zeros(p.shape),) * 2, memory_size=0),
     "memory_size: expected an integer >= 1, got 0"),
    (lambda p: adam(p.fun, (jnp.zeros(p.shape),) * 2, learning_rate=float("inf")),
     "learning_rate: expected a finite real number >= 0, got inf"),
])
def test_bad_solver_options_raise_one_clear_error(call, message):
    """Checked where they enter, before tracing: no XLA shape error, no silent nonsense (a
    negative tol used to be accepted and stop nothing)."""
    prob, _ = _problem(shape=(5, 3, 4, 6))
    with pytest.raises(InputError) as info:
        call(prob)
    assert message in str(info.value)


@pytest.mark.parametrize("call, message", [
    (lambda p, z: fit({"A": z}), "problem: expected a channel.Problem"),
    (lambda p, z: fit(p, init=z), "init: expected a pair (R0, Q0), got ndarray"),
    (lambda p, z: fit(p, init=(z,)), "init: expected a pair (R0, Q0), got a sequence of 1"),
    (lambda p, z: fit(p, init=(z.T, z)), "R0: expected shape (n, m) = (5, 3), got (3, 5)"),
    (lambda p, z: fit(p, init=(z, z + 1j)), "Q0: expected real data, got complex dtype"),
    (lambda p, z: fit(p, init=(z * np.nan, z)), "R0: holds 15 NaN/Inf value(s)"),
    (lambda p, z: fit(p, precondition="yes"), "precondition: expected True or False, got 'yes'"),
    (lambda p, z: fit_chunked(p, (z, z[:-1])), "Q0: expected shape (n, m) = (5, 3), got (4, 3)"),
])
def test_bad_problem_or_start_raise_one_clear_error(call, message):
    prob, _ = _problem(shape=(5, 3, 4, 6))
    with pytest.raises(InputError) as info:
        call(prob, np.zeros((5, 3)))
    assert message in str(info.value)


def test_solver_options_zero_and_traced_values_pass():
    prob, _ = _problem(shape=(5, 3, 4, 6))
    res = fit(prob, method="alternating", max_iters=0)  # evaluates the start only
    assert int(res.iterations) == 0 and res.reason == "max_iters reached"
    assert int(fit(prob, method="adam", max_iters=0).iterations) == 0
    # a tolerance may be traced (its value is not known at the boundary): vmapped over tol
    its = jax.vmap(lambda t: fit(prob, method="alternating", tol=t).iterations)(
        jnp.array([1e-4, 1e-12]))
    assert int(its[0]) < int(its[1])


# -- L-BFGS with a backtracking search, one evaluation per loop step -------------------------------


def _x64(on):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if on else disable_x64()


@pytest.mark.parametrize("x64, dtype", [(True, jnp.float64), (True, jnp.float32),
                                        (False, jnp.float32)])
def test_lbfgs_backtracking_reaches_the_factorisation_optimum(x64, dtype):
    from matgrad_jax import examples

    with _x64(x64):
        U0, V0, X = examples.mf_example(seed=3, n=11, m=7, r=3, dtype=dtype)  # rectangular
        res = solvers.lbfgs_backtracking(lambda U, V: examples.mf_objective(U, V, X), (U0, V0),
                                         grad=lambda U, V: examples.mf_gradient(U, V, X))
        assert res.params[0].dtype == dtype and bool(res.converged), res.reason
        fstar = examples.mf_optimum(np.asarray(X, np.float64), 3)
        gap = (float(res.value) - fstar) / abs(fstar)
        assert -1e-10 < gap < (1e-9 if dtype == jnp.float64 else 1e-4), gap
        # the hand gradient is what it runs on: the same as with jax.grad
        auto = solvers.lbfgs_backtracking(lambda U, V: examples.mf_objective(U, V, X), (U0, V0))
        np.testing.assert_allclose(float(auto.value), float(res.value),
                                   rtol=1e-10 if dtype == jnp.float64 else 1e-4)


def test_lbfgs_backtracking_in_batches_and_its_stops():
    from matgrad_jax import examples

    data = [examples.mf_example(seed=s, n=8, m=6, r=2) for s in range(6)]
    U0, V0, X = (jnp.stack([d[i] for d in data]) for i in range(3))

    def solve(u, v, x):
        return mg.minimize(lambda U, V: examples.mf_objective(U, V, x), (u, v),
                           grad=lambda U, V: examples.mf_gradient(U, V, x),
                           method="lbfgs_backtracking", verify="off")

    batch = jax.jit(jax.vmap(solve))(U0, V0, X)
    one = jax.jit(solve)
    for i in range(len(data)):
        r = one(U0[i], V0[i], X[i])
        assert bool(r.converged) and int(r.iterations) == int(batch.iterations[i])
        np.testing.assert_allclose(np.asarray(batch.params[0][i]), np.asarray(r.params[0]),
                                   rtol=1e-8, atol=1e-10)  # reductions batched: rounding
    # a function that is NaN off the start: no step is accepted and it never says converged
    f = lambda x: jnp.where(jnp.all(x == 1.0), jnp.sum(x**2), jnp.nan)
    r = solvers.lbfgs_backtracking(f, (jnp.ones(3),), grad=lambda x: 2 * x, max_trials=5)
    assert not bool(r.converged) and r.reason == "no descent possible" and int(r.iterations) == 0
    with pytest.raises(mg.InputError, match="max_trials"):
        solvers.lbfgs_backtracking(f, (jnp.ones(3),), max_trials=0)


def test_a_small_decrease_ends_a_run_only_where_the_next_step_expects_no_more():
    from matgrad_jax.solvers.result import DECREASE, MAX_ITERS, RUNNING, stopping_code

    def code(f_old, f_new, expected, tol=1e-12, k=5):
        return int(stopping_code(k, jnp.float64(f_old), jnp.float64(f_new), 1.0, 1.0, tol, 0.0,
                                 100, expected=None if expected is None else
                                 jnp.float64(expected)))

    f = 14.3
    small = f - 1e-12 * f / 2  # a relative decrease of 5e-13, below tol
    assert code(f, small, None) == DECREASE  # the plain rule: one step decides
    assert code(f, small, 1e-12 * f / 4) == DECREASE  # and the next step expects no more
    assert code(f, small, 6.5e-11) == RUNNING  # a short step, more to come: not the end
    assert code(f, f - 1e-9, 0.0) == RUNNING  # a decrease above tol is never the end
    # tol = 0: an unchanged f ends a run where the next step's expectation is below f's
    # rounding (the floor), not otherwise
    assert code(f, f, 1e-16 * f, tol=0.0) == DECREASE
    assert code(f, f, 1e-12 * f, tol=0.0) == RUNNING
    assert code(f, small, 6.5e-11, k=100) == MAX_ITERS  # max_iters still ends it


def test_lbfgs_backtracking_at_the_rounding_floor_with_tol_zero_converges():
    # a factorisation whose gradient cannot reach gtol = 1e-10 in float64: with tol = 0 the run
    # ends where f no longer changes and the next step expects less than f's rounding
    from matgrad_jax import examples

    rng = np.random.default_rng(0)
    X, U0, V0 = (jnp.asarray(rng.standard_normal(s)) for s in ((40, 12), (40, 3), (12, 3)))
    res = solvers.lbfgs_backtracking(lambda U, V: examples.mf_objective(U, V, X), (U0, V0),
                                     grad=lambda U, V: examples.mf_gradient(U, V, X),
                                     max_iters=3000, tol=0.0, gtol=1e-10)
    assert bool(res.converged) and res.reason == "relative decrease below tol", res.reason
    assert int(res.iterations) < 3000
    fstar = examples.mf_optimum(np.asarray(X), 3)
    assert abs(float(res.value) - fstar) <= 1e-12 * abs(fstar)
