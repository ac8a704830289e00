"""Compiled audit programs are shared between functions that trace to the same program (a
notebook cell run again), and never stale: a changed array, scalar or derivative rule is seen."""

import jax
import jax.numpy as jnp
import numpy as np

from matgrad_jax import check_gradient, programs

rng = np.random.default_rng(3)


def arr(*shape):
    return jnp.asarray(rng.standard_normal(shape))


def cell(A, M, c=2.0):
    """What a notebook cell defines anew each time it runs: the objective and a hand gradient."""
    f = lambda X: jnp.sum((A @ X - M) ** 2)  # noqa: E731
    g = lambda X: c * A.T @ (A @ X - M)  # noqa: E731
    return f, g


def _sizes():
    return programs._run._cache_size(), programs._apply._cache_size()


def test_a_redefined_function_reuses_the_compiled_programs():
    A, M, X = arr(7, 5), arr(7, 3), arr(5, 3)
    assert check_gradient(*cell(A, M), (X,)).passed
    size = _sizes()
    again = check_gradient(*cell(A, M), (X,))  # new function objects, same program
    assert again.passed and _sizes() == size


def test_a_reaudit_traces_only_the_users_functions(monkeypatch):
    """The audit's programs are built from the user's traced functions and found in the jit
    cache by their structure: a re-audit traces fun and the hand gradient, nothing else."""
    A, M, X = arr(7, 5), arr(7, 3), arr(5, 3)
    assert check_gradient(*cell(A, M), (X,)).passed
    traced = []
    real = jax.make_jaxpr

    def counting(fn, *a, **k):
        traced.append(fn)
        return real(fn, *a, **k)

    monkeypatch.setattr(programs.jax, "make_jaxpr", counting)
    assert check_gradient(*cell(A, M), (X,)).passed
    # fun in the arguments' dtype and in float64, the hand gradient once
    assert len(traced) == 3


def test_a_changed_array_is_seen_without_recompiling():
    A, M, X = arr(7, 5), arr(7, 3), arr(5, 3)
    Ag, Mg = jnp.array(A), jnp.array(M)  # the gradient's own copies (a cell of its own)
    g = lambda X: 2 * Ag.T @ (Ag @ X - Mg)  # noqa: E731
    assert check_gradient(lambda X: jnp.sum((A @ X - M) ** 2), g, (X,)).passed
    size = programs._run._cache_size()
    M2 = 3 * M  # the objective changed; the hand gradient did not and is now wrong
    r = check_gradient(lambda X: jnp.sum((A @ X - M2) ** 2), g, (X,))
    assert not r.passed and programs._run._cache_size() == size


def test_a_changed_scalar_is_a_new_program():
    A, M, X = arr(7, 5), arr(7, 3), arr(5, 3)
    assert check_gradient(*cell(A, M, 2.0), (X,)).passed
    wrong = check_gradient(*cell(A, M, 2.5), (X,))
    assert not wrong.passed and wrong.diagnosis == "scale:1.25"


def test_a_redefined_custom_rule_is_seen():
    def make(k):
        @jax.custom_jvp
        def h(x):
            return jnp.sum(jnp.sin(x))

        h.defjvp(lambda p, t: (h(p[0]), jnp.sum(k * jnp.cos(p[0]) * t[0])))
        return h

    x = arr(4)
    # evaluating the function does not run its rule; differentiating it prints the rule's ops
    assert programs.trace(make(1.0), x)[1]
    assert str(programs.trace(jax.grad(make(1.0)), x)[0].structure.key) != \
        str(programs.trace(jax.grad(make(2.0)), x)[0].structure.key)
    right = check_gradient(make(1.0), jnp.cos, (x,))
    assert right.passed
    # the same printed program with another rule: jax.grad now disagrees with fun's values
    wrong = check_gradient(make(2.0), jnp.cos, (x,))
    assert not wrong.passed


def test_call_matches_jit_and_mapped_matches_vmap():
    A = arr(6, 6)
    fn = lambda x, y: jnp.tanh(A @ x) * y  # noqa: E731
    x, y = arr(6), arr(6)
    np.testing.assert_allclose(programs.call(fn, x, y), jax.jit(fn)(x, y))
    xs = arr(9, 6)
    want = jax.vmap(fn, in_axes=(0, None))(xs, y)
    np.testing.assert_allclose(programs.mapped(fn, (xs, y), (0, None)), want)
    # chunked (sequential lax.map) when a point is large against max_bytes: the same values
    np.testing.assert_allclose(programs.mapped(fn, (xs, y), (0, None), max_bytes=8 * 6 * 8 * 2),
                               want)


def test_apply_mapped_matches_vmap_chunked_or_not():
    A = arr(6, 6)
    t, ok = programs.trace(lambda x, y: jnp.tanh(A @ x) * y, arr(6), arr(6))
    assert ok and not t.rules
    xs, y = arr(9, 6), arr(6)

    def point(fns, x, y, *, static):
        return static * fns[0](x, y)

    want = 2.0 * jax.vmap(lambda x: jnp.tanh(A @ x) * y)(xs)
    np.testing.assert_allclose(programs.apply_mapped(point, (t,), (xs, y), (0, None),
                                                     static=2.0), want)
    np.testing.assert_allclose(programs.apply_mapped(point, (t,), (xs, y), (0, None),
                                                     static=2.0, point_bytes=1 << 20,
                                                     max_bytes=1 << 24), want)


def test_flops_counts_products_loops_and_branches():
    A, B = arr(5, 7), arr(7, 3)
    assert programs.flops(programs.trace(lambda a, b: a @ b, A, B)[0]) == 2 * 5 * 7 * 3

    def looped(a, b):
        return jax.lax.scan(lambda c, _: (c, a @ b), 0.0, None, length=4)[1]

    assert programs.flops(programs.trace(looped, A, B)[0]) >= 4 * 2 * 5 * 7 * 3

    def branch(a, b, p):
        return jax.lax.cond(p, lambda: jnp.sum(a @ b), lambda: jnp.sum(a))

    n = programs.flops(programs.trace(branch, A, B, True)[0])
    assert 2 * 5 * 7 * 3 <= n < 2 * 2 * 5 * 7 * 3


def test_callbacks_are_never_shared():
    f = lambda x: jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)  # noqa
    assert not programs.trace(f, arr(3))[1]
    assert programs.trace(lambda x: jnp.sum(jax.jit(jnp.tanh)(x)), arr(3))[1]
