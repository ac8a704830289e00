"""Compiled audit programs are shared between functions that trace to the same program (a
notebook cell run again), and never stale: a changed array, scalar or derivative rule is seen."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
    traced = _counting_make_jaxpr(monkeypatch)
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


def test_large_factorisations_run_one_point_per_call(monkeypatch):
    """From LINALG_POINT_DIM on, a function that factorises is evaluated one point per call
    (mapped over the points, XLA:CPU hung at 220x220 and more), with the same values as a
    vmap; smaller ones, and functions without a factorisation, stay mapped. The audit of a
    log-determinant at that size passes, and a wrong gradient of it still fails."""
    n = programs.LINALG_POINT_DIM
    spd = lambda m: m @ m.T / len(m) + np.eye(len(m))  # noqa: E731
    f = lambda X: jnp.linalg.slogdet(X)[1]  # noqa: E731 - an LU inside a custom_jvp
    big, _ = programs.trace(f, spd(np.asarray(arr(n, n))))
    small, _ = programs.trace(f, spd(np.asarray(arr(8, 8))))
    plain, _ = programs.trace(lambda X: jnp.sum(X @ X), arr(n, n))
    assert programs.large_linalg(big.structure.jaxpr)
    assert not programs.large_linalg(small.structure.jaxpr)
    assert not programs.large_linalg(plain.structure.jaxpr)
    calls = []
    one = programs._one_point_program
    monkeypatch.setattr(programs, "_one_point_program",
                        lambda *a, **k: calls.append(1) or one(*a, **k))
    xs = np.stack([spd(np.asarray(arr(n, n))) for _ in range(3)])

    def point(fns, x, *, static):
        return fns[0](x), jax.grad(fns[0])(x)

    got = programs.apply_mapped(point, (big,), (xs,), (0,), differentiates=True)
    want = jax.vmap(lambda x: (f(x), jax.grad(f)(x)))(xs)
    assert calls  # traced one point at a time
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    X0 = jnp.asarray(xs[0])
    good = lambda X: jnp.linalg.inv(X).T  # noqa: E731
    r = check_gradient(f, good, (X0,), domains={0: "spd"}, budget="full")
    assert r.passed, r.message
    assert not check_gradient(f, lambda X: 2 * good(X), (X0,), domains={0: "spd"}).passed


def test_functions_closing_over_the_same_data_share_one_program_argument():
    """The objective and the hand gradient of an audit close over the same arrays: the program
    built from both takes each array once (so XLA can share ``A @ x`` between them), and a
    second array of equal shape is still its own argument, with its own values."""
    A, B = arr(5, 4), arr(5, 4)
    f, _ = programs.trace(lambda x: jnp.sum((A @ x) ** 2), arr(4))
    g, _ = programs.trace(lambda x: 2 * A.T @ (A @ x), arr(4))
    h, _ = programs.trace(lambda x: B @ x, arr(4))
    consts, index = programs._shared_consts((f, g, h))
    assert len(consts) == 2 and index[0] == index[1] != index[2]

    def point(fns, x, *, static):
        return fns[0](x), fns[1](x), fns[2](x)

    xs = arr(3, 4)
    got = programs.apply_mapped(point, (f, g, h), (xs,), (0,))
    want = (jnp.sum((xs @ A.T) ** 2, axis=1), 2 * (xs @ A.T) @ A, xs @ B.T)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


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


# -- a trace is reused only while everything the function reads is the same ------------------

SCALE = 2.0
HELPERS = [1.0]


def _helper(x):
    return SCALE * jnp.sum(x ** 2)


def _counting_make_jaxpr(monkeypatch):
    traced = []
    real = jax.make_jaxpr

    def counting(fn, *a, **k):
        traced.append(fn)
        return real(fn, *a, **k)

    monkeypatch.setattr(programs.jax, "make_jaxpr", counting)
    return traced


def _value(fn, *args):
    t, _ = programs.trace(fn, *args)
    return float(t(*args))


def test_an_unchanged_function_is_not_traced_again(monkeypatch):
    traced = _counting_make_jaxpr(monkeypatch)
    A = arr(4, 3)
    f = lambda x: _helper(A @ x)  # noqa: E731
    x = arr(3, 2)
    v = _value(f, x)
    g = lambda x: _helper(A @ x)  # noqa: E731 - redefined, the same code and values
    assert _value(g, x) == v and len(traced) == 1
    assert _value(f, arr(3, 2)) != v and len(traced) == 1  # other values, same shapes
    _value(f, arr(3, 5))  # other shapes: traced
    assert len(traced) == 2


def test_whatever_the_function_reads_is_seen_when_it_changes(monkeypatch):
    global SCALE, _helper
    x = arr(3, 2)
    A_np = np.array(arr(4, 3))
    f = lambda x: _helper(jnp.asarray(A_np) @ x) + HELPERS[0]  # noqa: E731
    v = _value(f, x)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3.0)  # a global a helper reads
    v_scale = _value(f, x)
    assert v_scale != v
    A_np *= 2  # a NumPy array changed in place
    v_array = _value(f, x)
    assert v_array != v_scale
    HELPERS[0] = 5.0  # a list mutated
    assert _value(f, x) == v_array + 4.0
    old = _helper
    try:
        _helper = lambda x: jnp.sum(x)  # noqa: E731 - a helper redefined
        assert _value(f, x) == float(jnp.sum(jnp.asarray(A_np) @ x)) + 5.0
    finally:
        _helper = old
    from matgrad_jax import _depends

    plain = _depends.key(f, (x,))[0]
    with jax.default_matmul_precision("highest"):  # a setting that changes what is traced
        assert _depends.key(f, (x,))[0] != plain
    assert _depends.key(f, (x.astype(jnp.float32),))[0] != plain


def test_module_attributes_defaults_and_objects(monkeypatch):
    import types

    from matgrad_jax import _depends

    mod = types.ModuleType("user_settings")
    mod.lam = 1.0
    x = arr(3)
    f = lambda x: mod.lam * jnp.sum(x)  # noqa: E731
    v = _value(f, x)
    mod.lam = 2.0
    assert _value(f, x) == 2 * v

    def with_default(x, c=[1.0]):  # noqa: B006 - a mutable default, mutated below
        return c[0] * jnp.sum(x)

    w = _value(with_default, x)
    with_default.__defaults__[0][0] = 3.0
    assert _value(with_default, x) == 3 * w

    class Model:
        scale = 1.0

        def loss(self, x):
            return self.scale * jnp.sum(x)

    m = Model()
    assert _depends.key(m.loss, (x,)) is None  # an object's attributes: never keyed
    u = _value(m.loss, x)
    m.scale = 4.0
    assert _value(m.loss, x) == 4 * u

    @jax.jit
    def under_jit(y):  # a tracer in the closure: never keyed
        return _depends.key(lambda z: jnp.sum(y * z), (x,)) is None

    assert under_jit(x)


def test_a_library_made_function_is_keyed_by_what_it_was_made_with():
    import optax

    from matgrad_jax import _depends

    x = arr(3)
    keys, values = [], []
    for lr in (0.1, 0.2):
        schedule = optax.linear_schedule(lr, 0.0, 10)  # an optax closure over lr
        f = lambda x, s=schedule: s(0) * jnp.sum(x)  # noqa: E731
        keys.append(_depends.key(f, (x,)))
        values.append(_value(f, x))
    assert keys[0] is None or keys[0][0] != keys[1][0]
    assert values[1] == pytest.approx(2 * values[0])


def test_costly_differentiated_points_run_one_per_call(monkeypatch):
    """From POINT_FLOPS of work per point, a program that differentiates runs one point per
    call (queued back to back), with the values of a vmap at rectangular shapes; a program
    that only evaluates the function stays mapped, and so does a cheap one."""
    A, M = arr(6, 5), arr(6, 3)
    xs = np.stack([np.asarray(arr(5, 3)) for _ in range(4)])
    f = lambda X: jnp.sum(jnp.tanh(A @ X - M) ** 2)  # noqa: E731
    t, _ = programs.trace(f, xs[0])
    calls = []
    one = programs._one_point_program
    monkeypatch.setattr(programs, "_one_point_program",
                        lambda *a, **k: calls.append(1) or one(*a, **k))

    def point(fns, x, *, static):
        return fns[0](x), jax.grad(fns[0])(x)

    def value(fns, x, *, static):
        return fns[0](x)

    want = jax.vmap(lambda x: (f(x), jax.grad(f)(x)))(xs)
    got = programs.apply_mapped(point, (t,), (xs,), (0,), differentiates=True)
    assert not calls  # below POINT_FLOPS: mapped
    monkeypatch.setattr(programs, "POINT_FLOPS", 0.0)
    got_each = programs.apply_mapped(point, (t,), (xs,), (0,), differentiates=True)
    assert calls  # traced one point at a time
    for a, b, c in zip(got, got_each, want):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, c, rtol=1e-12, atol=1e-14)
    calls.clear()
    vals = programs.apply_mapped(value, (t,), (xs,), (0,))
    assert not calls  # evaluating only: mapped
    np.testing.assert_allclose(vals, want[0], rtol=1e-12)
    g = lambda X: 2 * A.T @ (jnp.tanh(A @ X - M) / jnp.cosh(A @ X - M) ** 2)  # noqa: E731
    assert check_gradient(f, g, (jnp.asarray(xs[0]),)).passed
    assert not check_gradient(f, lambda X: g(X).T.T * 1.001, (jnp.asarray(xs[0]),)).passed


def test_the_package_loads_its_names_on_first_use():
    """``from matgrad_jax import check_gradient`` imports the audit, not the solvers, the
    registry or the seed problems; every public name is still there, ``mg.minimize`` stays the
    function after its submodule is imported, and an unknown name is an AttributeError."""
    import subprocess

    code = (
        "import sys\n"
        "from matgrad_jax import check_gradient\n"
        "assert callable(check_gradient)\n"
        "heavy = [m for m in ('matgrad_jax.solvers', 'matgrad_jax.registry', "
        "'matgrad_jax.problems', 'matgrad_jax.minimize', 'matgrad_jax.audit.hessian') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import matgrad_jax as mg\n"
        "missing = [n for n in mg.__all__ if getattr(mg, n, None) is None]\n"
        "assert not missing, missing\n"
        "import matgrad_jax.minimize, matgrad_jax.fit\n"
        "assert callable(mg.minimize) and callable(mg.fit) and mg.derivations()\n"
        "try:\n    mg.no_such_name\nexcept AttributeError:\n    print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
