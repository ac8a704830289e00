import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import InputError, identities
from matgrad_jax.problems import channel

SHAPES = [(7, 5, 6, 9), (11, 4, 3, 8)]  # n != m != k != q


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _args(seed, shape, dtype=jnp.float64):
    n, m, k, q = shape
    return channel.example_args(seed, n=n, m=m, k=k, q=q, dtype=dtype)


@pytest.mark.parametrize("variant", ["corrected", "blocks", "kron_identity", "structured"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_variants_match_jax_grad_float64(variant, shape, seed):
    args = _args(seed, shape)
    ref = jax.grad(channel.objective, argnums=(0, 1))(*args)
    got = channel.GRADIENTS[variant](*args)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert _rel(g, r) < 1e-12


@pytest.mark.parametrize("variant", ["corrected", "blocks", "kron_identity", "structured"])
def test_variants_match_jax_grad_float32(variant):
    args = _args(0, SHAPES[0], jnp.float32)
    ref = jax.grad(channel.objective, argnums=(0, 1))(*args)
    got = channel.GRADIENTS[variant](*args)
    for g, r in zip(got, ref):
        assert g.dtype == jnp.float32
        assert _rel(g, r) < 50 * np.finfo(np.float32).eps ** 0.5 * 0.1


@pytest.mark.parametrize("shape", SHAPES)
def test_published_is_wrong_exactly_in_the_sign_of_F(shape):
    """The published dphi/dH_I = 2(BD - F) flips F; dphi/dH_R = 2(AD + E) is right."""
    args = _args(3, shape)
    R, Q, A, B, Z, P, S, W = args
    ref_R, ref_Q = jax.grad(channel.objective, argnums=(0, 1))(*args)
    pub_R, pub_Q = channel.grad_published(*args)
    assert _rel(pub_R, ref_R) < 1e-12
    assert _rel(pub_Q, ref_Q) > 0.1
    _, _, D, _ = channel.seed_matrices(*args)
    two_BD = 2 * B @ D
    two_F = ref_Q - two_BD
    np.testing.assert_allclose(pub_Q, two_BD - two_F, rtol=1e-10, atol=1e-10)


def test_literal_and_structured_objectives_agree():
    args = _args(1, SHAPES[1])
    v = channel.objective(*args)
    assert abs(channel.objective_structured(*args) - v) < 1e-10 * abs(v)
    prob = channel.Problem(*args[2:])
    assert abs(prob.value(args[0], args[1]) - v) < 1e-10 * abs(v)
    for g, r in zip(prob.grad(args[0], args[1]), jax.grad(channel.objective, (0, 1))(*args)):
        assert _rel(g, r) < 1e-12
    stats = prob.stats
    for g, r in zip(channel.structured_grad_complex(stats, args[0], args[1]),
                    prob.grad(args[0], args[1])):
        assert _rel(g, r) < 1e-12
    v4, g4 = channel.structured_value_and_grad_4m(stats, args[0], args[1])
    assert abs(v4 - v) < 1e-10 * abs(v)
    for g, r in zip(g4, prob.grad(args[0], args[1])):
        assert _rel(g, r) < 1e-12


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("n,m", [(9, 6), (40, 30)])  # written out (four products), GEMMs (three)
def test_times_g_is_the_real_form_product(dtype, tol, n, m):
    from matgrad_jax.xla_cpu import writes_out
    rng = np.random.default_rng(3)
    assert writes_out(jnp.zeros((n, m)), jnp.zeros((m, m))) == (n * m <= 1024)
    Xr, Xi, Mr, Mi = (jnp.asarray(rng.standard_normal(s), dtype)
                      for s in [(n, m), (n, m), (m, m), (m, m)])
    left, right = channel.times_g(Xr, Xi, Mr, Mi, Mr + Mi)
    ref = jnp.concatenate([Xr, Xi], 1) @ jnp.block([[Mr, Mi], [-Mi, Mr]])
    assert left.dtype == dtype and left.shape == (n, m)
    assert _rel(jnp.concatenate([left, right], 1), ref) < tol
    stats = channel.Problem(*_args(0, SHAPES[0])[2:]).stats
    np.testing.assert_array_equal(stats.G, jnp.block([[stats.Gr, stats.Gi],
                                                      [-stats.Gi, stats.Gr]]))
    np.testing.assert_allclose(stats.Gs, stats.Gr + stats.Gi, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(7, 5, 6, 9), (40, 24, 30, 50)])  # written-out and GEMM
def test_statistics_hold_the_data_gram_products(shape):
    A, B = _args(1, shape)[2:4]
    stats = channel.Problem(*_args(1, shape)[2:]).stats
    for got, want in ((stats.AtA, A.T @ A), (stats.BtB, B.T @ B), (stats.AtB, A.T @ B)):
        assert got.shape == (shape[1], shape[1])
        assert _rel(got, want) < 1e-13


def test_statistics_independent_of_k_q_route():
    # q > k uses S^T S; q <= k forms K: both must agree.
    # (tiny problems form K whatever q is; 2m * q > 1024 with q > k takes the SᵀS route)
    d1 = channel.make_data(6, 4, 5, 9, seed=2)
    d2 = channel.make_data(6, 4, 9, 5, seed=2)
    d3 = channel.make_data(6, 4, 5, 300, seed=2)
    for d in (d1, d2, d3):
        args = (d["R_true"], d["Q_true"]) + tuple(d[k] for k in channel.DATA_NAMES)
        prob = channel.Problem(*args[2:])
        ref = channel.objective(*args)
        assert abs(prob.value(*args[:2]) - ref) <= 1e-9 * max(1.0, abs(ref))
        for g, r in zip(prob.grad(*args[:2]), jax.grad(channel.objective, (0, 1))(*args)):
            assert _rel(g, r) < 1e-10


def test_kron_identities():
    rng = np.random.default_rng(0)
    Y = jnp.asarray(rng.standard_normal((6, 8)))
    X = jnp.asarray(rng.standard_normal((3, 4)))
    for L, fn in [(jnp.eye(2), lambda Y: identities.kron_identity_adjoint(Y, 2)),
                  (identities.J2, identities.kron_j2_adjoint)]:
        ref = jax.grad(lambda X, L=L: jnp.sum(Y * jnp.kron(L, X)))(X)
        np.testing.assert_allclose(fn(Y), ref, atol=1e-12)
        np.testing.assert_allclose(identities.kron_block_adjoint(Y, L), ref, atol=1e-12)


def test_problem_validation_messages():
    d = channel.make_data(6, 4, 5, 7)
    data = {k: np.asarray(d[k]) for k in channel.DATA_NAMES}
    bad = dict(data, P=data["P"][:-1])
    with pytest.raises(InputError, match=r"P: expected shape \(2m, k\) = \(8, 5\).*got \(7, 5\)"):
        channel.Problem(**bad)
    nan = dict(data, W=data["W"].copy())
    nan["W"][0, 0] = np.nan
    with pytest.raises(InputError, match="W: holds 1 NaN"):
        channel.Problem(**nan)
    with pytest.raises(InputError, match="Z: expected real data, got complex"):
        channel.Problem(**dict(data, Z=data["Z"] + 1j))
    with pytest.raises(InputError, match="S: empty array"):
        channel.Problem(**dict(data, S=np.zeros((0, 5))))
    prob = channel.Problem(**data)
    with pytest.raises(InputError, match="R: expected shape"):
        prob.value(jnp.zeros((3, 3)), jnp.zeros((6, 4)))


def test_validate_data_keeps_device_arrays_and_casts_host_input_on_the_host():
    d = channel.make_data(6, 4, 5, 7)
    host = {k: np.asarray(d[k], np.float32) for k in channel.DATA_NAMES}
    out = channel.validate_data(**dict(host, A=host["A"].tolist()))  # a list reads as float64
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in out.values())
    np.testing.assert_array_equal(out["W"], host["W"].astype(np.float64))
    # JAX arrays are not copied through the host: they come back as JAX arrays, on their device
    mixed = channel.validate_data(**dict(host, Z=d["Z"]))
    assert isinstance(mixed["Z"], jax.Array) and mixed["Z"].devices() == d["Z"].devices()
    assert {a.dtype for a in mixed.values()} == {np.dtype(np.float64)}
    # NaNs in several device arrays: the error names the first in DATA_NAMES order
    dev = {k: jnp.asarray(v) for k, v in host.items()}
    dev["W"] = dev["W"].at[0, 0].set(jnp.nan)
    dev["Z"] = dev["Z"].at[1, 1].set(jnp.inf)
    with pytest.raises(InputError, match="Z: holds 1 NaN/Inf"):
        channel.validate_data(**dev)
    with pytest.raises(InputError, match="W: holds 1 NaN/Inf"):
        channel.validate_data(**dict(dev, Z=host["Z"]))
    # without x64, float64 input is computed in float32 (jax's canonical dtype), with no warning
    # jax.enable_x64 in newer jax, jax.experimental.enable_x64 in older releases
    enable_x64 = (jax.enable_x64 if hasattr(jax, "enable_x64")
                  else importlib.import_module("jax.experimental").enable_x64)
    with enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = channel.validate_data(**{k: np.asarray(d[k]) for k in channel.DATA_NAMES})
        assert {a.dtype for a in out.values()} == {np.dtype(np.float32)}
        R, _ = channel.solve_exact(*out.values())
        assert R.dtype == jnp.float32


def test_exact_solve_matches_dense_least_squares():
    d = channel.make_data(5, 3, 4, 6, noise=0.2, seed=4)
    data = [d[k] for k in channel.DATA_NAMES]
    R, Q = channel.solve_exact(*data)
    n, m = 5, 3
    # Dense reference: the objective is ||J x - y||^2 with x = vec([R, Q]); build J by columns.
    x0 = jnp.zeros(2 * n * m)

    def residual(x):
        Rx, Qx = x[: n * m].reshape(n, m), x[n * m:].reshape(n, m)
        A, B, Z, P, S, W = data
        had = (jnp.eye(m) * (Rx.T @ A + Qx.T @ B) - Z).ravel()
        blk = (jnp.block([[Rx, -Qx], [Qx, Rx]]) @ P @ S.T - W).ravel()
        return jnp.concatenate([had, blk])

    J = jax.jacfwd(residual)(x0)
    x, *_ = np.linalg.lstsq(np.asarray(J), -np.asarray(residual(x0)), rcond=None)
    np.testing.assert_allclose(R, x[: n * m].reshape(n, m), atol=1e-9)
    np.testing.assert_allclose(Q, x[n * m:].reshape(n, m), atol=1e-9)


def test_singular_G_is_an_error_and_ridge_fixes_it():
    d = channel.make_data(6, 5, 3, 8, seed=1)  # k = 3 < m = 5: G singular
    data = [d[k] for k in channel.DATA_NAMES]
    with pytest.raises(InputError, match="singular"):
        channel.solve_exact(*data)
    R, Q = channel.solve_exact(*data, ridge=1e-3)
    prob = channel.Problem(*data, ridge=1e-3)
    g = prob.grad(R, Q)
    assert max(float(jnp.abs(x).max()) for x in g) < 1e-9


def test_exact_solve_float32_with_refinement():
    jax.config.update("jax_numpy_dtype_promotion", "standard")
    try:
        d = channel.make_data(40, 16, 24, 30, noise=0.01, seed=0, p_condition=30.0)
        data64 = [d[k] for k in channel.DATA_NAMES]
        R64, _ = channel.solve_exact(*data64)
        data32 = [x.astype(jnp.float32) for x in data64]
        R0, _ = channel.solve_exact(*data32)
        R2, _ = channel.solve_exact(*data32, refine=2)
        assert R2.dtype == jnp.float32
        assert _rel(R2, R64) <= _rel(R0, R64) + 1e-6
        assert _rel(R2, R64) < 1e-3
    finally:
        jax.config.update("jax_numpy_dtype_promotion", "strict")


def test_float32_value_is_accurate_near_the_optimum():
    # The plain form ||r||² + tr(XGXᵀ) - 2tr(XYᵀ) + ||W||² cancels against ||W||² and lost three
    # digits in float32 near the optimum, which stalled value-based line searches (alternating,
    # L-BFGS) at a gap of 1e-3. Differences of values are now right to float32 rounding.
    from matgrad_jax.fit import fit

    d = channel.make_data(48, 24, 40, 64, noise=0.01, seed=0)
    data = [d[k] for k in channel.DATA_NAMES]
    p64, p32 = channel.Problem(*data), channel.Problem(*data, dtype="float32")
    R, Q = p64.solve_exact()
    dR = 1e-3 * jax.random.normal(jax.random.PRNGKey(1), R.shape)
    exact_diff = float(p64.value(R + dR, Q) - p64.value(R, Q))
    f32_diff = float(p32.value(*(x.astype(jnp.float32) for x in (R + dR, Q)))
                     - p32.value(R.astype(jnp.float32), Q.astype(jnp.float32)))
    assert abs(f32_diff - exact_diff) <= 1e-2 * abs(exact_diff)
    f_star = float(p64.value(R, Q))
    for method in ("alternating", "lbfgs"):
        res = fit(p32, method=method, max_iters=2000, tol=0.0, gtol=0.0)
        gap = (float(p64.value(*(x.astype(jnp.float64) for x in res.params))) - f_star) / f_star
        assert gap < 1e-5, (method, gap)


@pytest.mark.parametrize("shape", [(3, 5, 4), (7, 16, 9), (5, 17, 6), (40, 30, 40)])
def test_matmul_small_and_large_paths(shape):
    from matgrad_jax.xla_cpu import matmul
    a, c, d = shape
    rng = np.random.default_rng(sum(shape))
    X, Y = rng.standard_normal((a, c)), rng.standard_normal((c, d))
    np.testing.assert_allclose(matmul(jnp.asarray(X), jnp.asarray(Y)), X @ Y, rtol=1e-13,
                               atol=1e-13)
    Xs = jnp.asarray(rng.standard_normal((3, a, c)))
    np.testing.assert_allclose(jax.vmap(matmul, (0, None))(Xs, jnp.asarray(Y)),
                               np.asarray(Xs) @ Y, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", [(3, 5, 4), (16, 20, 12), (7, 65, 5), (40, 30, 40)])
def test_vmapped_matmul_alone_vmapped_and_differentiated(shape):
    from matgrad_jax.xla_cpu import BATCHED_WRITE_OUT, vmapped_matmul
    a, c, d = shape
    rng = np.random.default_rng(sum(shape))
    X, Y = rng.standard_normal((4, a, c)), rng.standard_normal((4, c, d))
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    tol = dict(rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(vmapped_matmul(Xj[0], Yj[0]), X[0] @ Y[0], **tol)
    np.testing.assert_allclose(jax.jit(jax.vmap(vmapped_matmul))(Xj, Yj), X @ Y, **tol)
    np.testing.assert_allclose(jax.vmap(vmapped_matmul, (0, None))(Xj, Yj[1]), X @ Y[1], **tol)
    np.testing.assert_allclose(jax.vmap(jax.vmap(vmapped_matmul))(Xj[None], Yj[None]),
                               (X @ Y)[None], **tol)
    # alone a GEMM; under vmap on the CPU written out when small, a batched GEMM above that
    alone = jax.jit(vmapped_matmul).lower(Xj[0], Yj[0]).as_text()
    batched = jax.jit(jax.vmap(vmapped_matmul)).lower(Xj, Yj).compile().as_text()
    small = c <= BATCHED_WRITE_OUT[0] and a * d <= BATCHED_WRITE_OUT[1]
    assert "dot_general" in alone
    assert (" dot(" in batched) != small
    # the jvp is the product rule, alone and vmapped (reverse mode too)
    W = jnp.asarray(rng.standard_normal((4, a, d)))
    f = lambda x, y, w: jnp.sum(w * vmapped_matmul(x, y) ** 2)  # noqa: E731
    g = lambda x, y, w: jnp.sum(w * (x @ y) ** 2)  # noqa: E731
    for got, want in zip(jax.grad(f, (0, 1))(Xj[0], Yj[0], W[0]),
                         jax.grad(g, (0, 1))(Xj[0], Yj[0], W[0])):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
    for got, want in zip(jax.vmap(jax.grad(f, (0, 1)))(Xj, Yj, W),
                         jax.vmap(jax.grad(g, (0, 1)))(Xj, Yj, W)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("size, vmapped_through_k", [
    ((8, 4, 6, 10), True),  # K small: through K, alone and vmapped
    ((32, 16, 24, 40), True),  # alone through SᵀS (2m q > 1024); vmapped on the CPU through K
    ((20, 10, 8, 120), False),  # q > 64: through SᵀS, vmapped too
])
def test_kernel_products_alone_vmapped_and_differentiated(size, vmapped_through_k):
    n, m, k, q = size
    rng = np.random.default_rng(q)
    P, S = rng.standard_normal((4, 2 * m, k)), rng.standard_normal((4, q, k))
    W1, W2 = rng.standard_normal((4, n, q)), rng.standard_normal((4, n, q))
    K = P @ np.swapaxes(S, 1, 2)
    Kt = np.swapaxes(K, 1, 2)
    want = (K @ Kt, W1 @ Kt, W2 @ Kt)
    f = lambda P, S, W1, W2: (lambda o: (o[0], *o[1]))(  # noqa: E731
        channel.kernel_products(P, S, (W1, W2)))
    args = tuple(jnp.asarray(x) for x in (P, S, W1, W2))
    tol = dict(rtol=1e-12, atol=1e-11)
    for got, ref in zip(f(*(a[0] for a in args)), want):
        np.testing.assert_allclose(got, ref[0], **tol)
    for got, ref in zip(jax.jit(jax.vmap(f))(*args), want):
        np.testing.assert_allclose(got, ref, **tol)
    for got, ref in zip(jax.vmap(f, (None, 0, 0, 0))(args[0][0], *args[1:]), want):
        np.testing.assert_allclose(got[0], ref[0], **tol)  # an unbatched P
    hlo = jax.jit(jax.vmap(f)).lower(*args).compile().as_text()
    assert (" dot(" not in hlo) == vmapped_through_k  # written-out products on the CPU
    # the tangents are the product rule's, alone and vmapped
    def loss(f):
        return lambda *a: sum(jnp.sum(jnp.sin(x)) for x in f(*a))
    plain = lambda P, S, W1, W2: (P @ S.T @ S @ P.T, W1 @ S @ P.T, W2 @ S @ P.T)  # noqa: E731
    grads = jax.grad(loss(f), (0, 1, 2, 3))
    for got, ref in zip(grads(*(a[0] for a in args)),
                        jax.grad(loss(plain), (0, 1, 2, 3))(*(a[0] for a in args))):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)
    for got, ref in zip(jax.vmap(grads)(*args), jax.vmap(jax.grad(loss(plain), (0, 1, 2, 3)))(
            *args)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_hpd_inverse_and_solve_alone_and_vmapped():
    from matgrad_jax.linalg import hpd_inverse, hpd_solve, sweep_inverse
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 6, 6)) + 1j * rng.standard_normal((4, 6, 6))
    M = np.einsum("bij,bkj->bik", X, X.conj()) + 0.1 * np.eye(6)
    ref = np.linalg.inv(M)
    Mj = jnp.asarray(M)
    np.testing.assert_allclose(hpd_inverse(Mj[0]), ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(hpd_inverse))(Mj), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sweep_inverse(Mj), ref, rtol=1e-10, atol=1e-12)
    # under vmap no LAPACK call is left in the program (jaxlib 0.10's batched LAPACK can
    # deadlock XLA:CPU's thread pool, see linalg.hpd_inverse)
    hlo = jax.jit(jax.vmap(hpd_inverse)).lower(Mj).as_text().lower()
    assert "lapack" not in hlo and "cholesky" not in hlo
    b = jnp.asarray(rng.standard_normal((4, 6)) + 0j)
    want = np.linalg.solve(M, np.asarray(b)[..., None])[..., 0]
    np.testing.assert_allclose(jax.vmap(hpd_solve)(Mj, b), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hpd_solve(Mj[1], b[1]), want[1], rtol=1e-10, atol=1e-12)
    # the derivative of the inverse, alone and vmapped
    Mr = jnp.asarray(np.einsum("bij,bkj->bik", X.real, X.real) + np.eye(6))
    f = lambda A: jnp.sum(hpd_inverse(A) ** 2)  # noqa: E731
    fl = lambda A: jnp.sum(jnp.linalg.inv(A) ** 2)  # noqa: E731
    np.testing.assert_allclose(jax.vmap(jax.grad(f))(Mr), jax.vmap(jax.grad(fl))(Mr),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d", [3, 20])  # a written-out product below SMALL_MATMUL[0], a dot above
def test_hpd_solve_vmapped_small_and_large(d):
    from matgrad_jax.linalg import hpd_solve
    rng = np.random.default_rng(d)
    X = rng.standard_normal((5, d, d + 2))
    M = np.einsum("bij,bkj->bik", X, X) + 0.1 * np.eye(d)
    b = rng.standard_normal((5, d))
    want = np.linalg.solve(M, b[..., None])[..., 0]
    np.testing.assert_allclose(jax.jit(jax.vmap(hpd_solve))(jnp.asarray(M), jnp.asarray(b)),
                               want, rtol=1e-10, atol=1e-12)
    shared = np.linalg.solve(M, np.broadcast_to(b[0], (5, d))[..., None])[..., 0]
    np.testing.assert_allclose(jax.vmap(hpd_solve, (0, None))(jnp.asarray(M), jnp.asarray(b[0])),
                               shared, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [4, 20])  # unrolled, stored steps; a fori_loop above 16
@pytest.mark.parametrize("kind", ["real", "complex"])
def test_sweep_inverse_small_and_large(d, kind):
    from matgrad_jax.linalg import hpd_inverse, sweep_inverse
    rng = np.random.default_rng(d)
    X = rng.standard_normal((3, d, d + 3))
    if kind == "complex":
        X = X + 1j * rng.standard_normal((3, d, d + 3))
    # pivots near 1e3: a sweep written as one rank-one update per step, which forms row k as
    # r - (p - 1) r / p, cancels and lost 7 digits here (2e-9); each entry must be computed
    # as the sweep defines it
    M = 1e3 * (np.einsum("bij,bkj->bik", X, X.conj()) + 0.5 * np.eye(d))
    ref = np.linalg.inv(M)
    for got in (sweep_inverse(jnp.asarray(M)), jax.jit(jax.vmap(hpd_inverse))(jnp.asarray(M))):
        err = np.abs(np.asarray(got) - ref) / (np.abs(ref).max(axis=(1, 2), keepdims=True))
        assert err.max() < 1e-12, err.max()
    M32 = jnp.asarray(M, jnp.complex64 if kind == "complex" else jnp.float32)
    assert sweep_inverse(M32).dtype == M32.dtype


@pytest.mark.parametrize("m", [1, 5, 20])
def test_diagonal(m):
    from matgrad_jax.xla_cpu import diagonal
    Z = np.random.default_rng(m).standard_normal((3, m, m))
    np.testing.assert_array_equal(diagonal(jnp.asarray(Z[0])), np.diagonal(Z[0]))
    np.testing.assert_array_equal(jax.vmap(diagonal)(jnp.asarray(Z)),
                                  np.diagonal(Z, axis1=1, axis2=2))


@pytest.mark.parametrize("rows", [1, 7, 40, 90])
def test_sum_rows(rows):
    from matgrad_jax.xla_cpu import sum_rows
    X = np.random.default_rng(rows).standard_normal((rows, 5))
    np.testing.assert_allclose(sum_rows(jnp.asarray(X)), X.sum(axis=0), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(jax.vmap(sum_rows)(jnp.asarray(np.stack([X, 2 * X]))),
                               np.stack([X.sum(0), 2 * X.sum(0)]), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("rows", [7, 90])  # written out under vmap, a reduction above 64 rows
def test_sum_rows_differentiated_alone_and_vmapped(rows):
    from matgrad_jax.xla_cpu import sum_rows
    X = jnp.asarray(np.random.default_rng(rows).standard_normal((3, rows, 5)))
    ours = lambda X: jnp.sum(jnp.sin(sum_rows(X)))  # noqa: E731
    plain = lambda X: jnp.sum(jnp.sin(jnp.sum(X, axis=0)))  # noqa: E731
    np.testing.assert_allclose(jax.grad(ours)(X[0]), jax.grad(plain)(X[0]), rtol=1e-13)
    np.testing.assert_allclose(jax.vmap(jax.grad(ours))(X), jax.vmap(jax.grad(plain))(X),
                               rtol=1e-13)


def test_materialize_is_the_identity_and_stores_its_values_under_vmap():
    from matgrad_jax.xla_cpu import materialize
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 4, 3)))
    y = jnp.asarray(rng.standard_normal((6, 2)).astype(np.float32))
    nan = x.at[0, 0, 0].set(jnp.nan).at[2, 1, 1].set(-jnp.inf)
    alone = jax.jit(lambda a: materialize(a * 2)[0] + 1).lower(x[0]).compile().as_text()
    assert "while" not in alone  # outside vmap: nothing at all
    np.testing.assert_array_equal(materialize(x[0], y[0])[0], x[0])
    for a in (x, nan):
        out = jax.jit(jax.vmap(materialize))(a, y)
        np.testing.assert_array_equal(out[0], a)  # bit for bit, NaN and Inf included
        np.testing.assert_array_equal(out[1], y)
        assert out[1].dtype == np.float32
    out = jax.vmap(materialize, (0, None))(x, y[0])  # an unbatched operand comes back batched
    np.testing.assert_array_equal(out[1], np.broadcast_to(y[0], (6, 2)))
    # under vmap on the CPU the values pass through a loop XLA keeps (that is what stores them)
    hlo = jax.jit(jax.vmap(lambda a: materialize(a * 2)[0] + 1)).lower(x).compile().as_text()
    assert "while" in hlo
    # the tangent passes through, alone and vmapped
    f = lambda a: jnp.sum(materialize(a * a)[0])  # noqa: E731
    np.testing.assert_allclose(jax.grad(f)(x[0]), 2 * x[0])
    np.testing.assert_allclose(jax.vmap(jax.grad(f))(x), 2 * x)


def test_problem_without_reference_point_is_the_same_objective():
    # reference=False: X0 = 0, dY = Y, no Krylov steps; value and gradient are unchanged.
    args = _args(5, (9, 5, 7, 12))
    p_ref = channel.Problem(*args[2:])
    p_no = channel.Problem(*args[2:], reference=False)
    assert not np.any(p_no.stats.X0) and np.array_equal(p_no.stats.Y, p_no.stats.dY)
    assert np.any(p_ref.stats.X0)
    ref = channel.objective(*args)
    for p in (p_ref, p_no):
        assert abs(float(p.value(*args[:2])) - float(ref)) <= 1e-12 * abs(float(ref))
        for g, r in zip(p.grad(*args[:2]), jax.grad(channel.objective, (0, 1))(*args)):
            assert _rel(g, r) < 1e-12
    hlo = channel.statistics._statistics_jit.lower(*args[2:], reference=False).compile().as_text()
    assert " while(" not in hlo


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-11), (jnp.float32, 1e-4)])
def test_self_referenced_value_and_grad_match_jax_grad(dtype, tol):
    args = _args(6, (10, 4, 7, 13), dtype)  # n != m != k != q
    stats = channel.Problem(*args[2:], reference=False).stats
    v, g = channel.value_and_grad_self_referenced(stats, *args[:2])
    ref = channel.objective(*args)
    assert abs(float(v) - float(ref)) <= tol * abs(float(ref))
    for got, want in zip(g, jax.grad(channel.objective, (0, 1))(*args)):
        assert got.dtype == dtype and _rel(got, want) < tol


def test_vmapped_matmul_and_kernel_products_tangents_in_float32():
    # the custom jvps against jax.grad of plain products, float32, rectangular, alone and vmapped
    from matgrad_jax.xla_cpu import vmapped_matmul
    rng = np.random.default_rng(11)
    n, m, k, q = 5, 3, 4, 7
    P = jnp.asarray(rng.standard_normal((3, 2 * m, k)), jnp.float32)
    S = jnp.asarray(rng.standard_normal((3, q, k)), jnp.float32)
    W = jnp.asarray(rng.standard_normal((3, 2 * n, q)), jnp.float32)

    def ours(P, S, W):
        KKt, (WKt,) = channel.kernel_products(P, S, (W,))
        return jnp.sum(jnp.sin(KKt)) + jnp.sum(jnp.sin(WKt)) + jnp.sum(
            jnp.sin(vmapped_matmul(W, S)))

    def plain(P, S, W):
        K = P @ S.T
        return jnp.sum(jnp.sin(K @ K.T)) + jnp.sum(jnp.sin(W @ K.T)) + jnp.sum(jnp.sin(W @ S))

    for vm in (lambda f: f, jax.vmap):
        args = (P, S, W) if vm is jax.vmap else (P[0], S[0], W[0])
        got = vm(jax.grad(ours, (0, 1, 2)))(*args)
        want = vm(jax.grad(plain, (0, 1, 2)))(*args)
        for g, w in zip(got, want):
            assert g.dtype == jnp.float32
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_hvp_is_the_jvp_of_the_gradient_alone_and_vmapped(dtype, tol):
    # the closed-form Hessian product CG uses, against jax's jvp of jax.grad of the literal
    # objective, at rectangular shapes with a ridge; vmapped it stores its row sums
    n, m, k, q = 9, 4, 6, 11
    batch = [_args(s, (n, m, k, q), dtype) for s in range(3)]
    dirs = [_args(s + 50, (n, m, k, q), dtype)[:2] for s in range(3)]
    ridge = 0.3

    def literal_grad(R, Q, *data):
        f = lambda R, Q: channel.objective(R, Q, *data) + ridge * (jnp.sum(R * R)
                                                                    + jnp.sum(Q * Q))
        return jax.grad(f, (0, 1))(R, Q)

    def ours(R, Q, dR, dQ, *data):
        return channel.Problem(*data, ridge=ridge, reference=False).hvp(dR, dQ)

    def want(R, Q, dR, dQ, *data):
        return jax.jvp(lambda R, Q: literal_grad(R, Q, *data), (R, Q), (dR, dQ))[1]

    stacked = [jnp.stack(x) for x in zip(*(a[:2] + d + a[2:] for a, d in zip(batch, dirs)))]
    got_v, want_v = jax.vmap(ours)(*stacked), jax.vmap(want)(*stacked)
    for i in range(3):
        args = [x[i] for x in stacked]
        for g1, gv, w, wv in zip(ours(*args), (x[i] for x in got_v), want(*args),
                                 (x[i] for x in want_v)):
            assert g1.shape == (n, m) and g1.dtype == dtype
            assert _rel(g1, w) < tol and _rel(gv, wv) < tol


@pytest.mark.parametrize("call, message", [
    (lambda a: channel.Problem(*a, dtype=np.int32),
     "dtype: expected a real floating dtype (float32, float64), got int32"),
    (lambda a: channel.Problem(*a, dtype="bogus"), "dtype: expected a real floating dtype"),
    (lambda a: channel.solve_exact(*a, refine=-1), "refine: expected an integer >= 0, got -1"),
    (lambda a: channel.make_data(0, 5, 7, 11), "n: expected a positive integer, got 0"),
    (lambda a: channel.make_data(9, 5, 7, 11, noise=-0.1),
     "noise: expected a finite value >= 0, got -0.1"),
    (lambda a: channel.make_data(9, 5, 7, 11, p_condition=0.5),
     "p_condition: expected a finite value >= 1, got 0.5"),
])
def test_bad_options_of_problem_solve_and_data_raise_input_error(call, message):
    d = channel.make_data(9, 5, 7, 11)
    with pytest.raises(InputError) as info:
        call([d[k] for k in channel.DATA_NAMES])
    assert message in str(info.value)


@pytest.mark.parametrize("fn", [channel.objective, channel.grad_published,
                                channel.grad_kron_identity, channel.grad_structured,
                                channel.objective_structured, jax.jit(channel.grad_blocks)])
def test_literal_functions_name_the_argument_of_the_wrong_shape(fn):
    R, Q, A, B, Z, P, S, W = channel.example_args()  # n, m, k, q = 7, 5, 6, 9
    with pytest.raises(InputError, match=r"R: expected shape \(n, m\) = \(7, 5\) with n=7, m=5, "
                                         r"k=6, q=9, got \(5, 7\)"):
        fn(R.T, Q, A, B, Z, P, S, W)
    with pytest.raises(InputError, match=r"W: expected shape \(2n, q\) = \(14, 9\)"):
        fn(R, Q, A, B, Z, P, S, W[:-1])
