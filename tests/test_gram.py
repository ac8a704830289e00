import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import InputError
from matgrad_jax.problems import gram

OBJECTIVES = [
    (gram.frobenius, gram.FROBENIUS_GRADIENTS),
    (gram.frobenius_squared, gram.FROBENIUS_SQUARED_GRADIENTS),
    (gram.spectral, gram.SPECTRAL_GRADIENTS),
]


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("obj, grads", OBJECTIVES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("family", ["generic", "symmetric"])
def test_general_forms_match_jax_grad(obj, grads, seed, family):
    B, Q = gram.make_data(9, 4, family=family, seed=seed)
    ref = jax.grad(obj)(B, Q)
    for name, fn in grads.items():
        if name == "published" and obj is not gram.spectral and family == "generic":
            continue
        assert _rel(fn(B, Q), ref) < 1e-10, name


@pytest.mark.parametrize("obj, grads", OBJECTIVES[:2])
def test_published_frobenius_fails_for_nonsymmetric_Q(obj, grads):
    B, Q = gram.make_data(9, 4, family="generic", seed=5)
    ref = jax.grad(obj)(B, Q)
    assert _rel(grads["published"](B, Q), ref) > 0.05
    X = B @ B.T - Q
    # published - general is exactly the skew part of X: 2(X - Xᵀ)B, or (X - Xᵀ)B/φ
    c = 2.0 if obj is gram.frobenius_squared else 1.0 / float(gram.frobenius(B, Q))
    np.testing.assert_allclose(grads["published"](B, Q) - grads["general"](B, Q),
                               c * (X - X.T) @ B, rtol=1e-10, atol=1e-12)
    assert not np.allclose(X, X.T)


def test_float32_gradients():
    B, Q = gram.make_data(12, 5, family="generic", seed=1, dtype=jnp.float32)
    for obj, grads in OBJECTIVES:
        ref = jax.grad(obj)(B, Q)
        name = "lanczos" if obj is gram.spectral else "general"
        assert _rel(grads[name](B, Q), ref) < 1e-3


def test_lanczos_matches_svd_and_warm_starts():
    B, Q = gram.make_data(60, 7, seed=2)
    sigma, g, v = gram.spectral_value_and_grad_lanczos(B, Q, steps=40)
    assert abs(sigma - gram.spectral(B, Q)) < 1e-10 * sigma
    assert _rel(g, gram.spectral_grad_published(B, Q)) < 1e-8
    s2, _, _ = gram.spectral_value_and_grad_lanczos(B, Q, v0=v, steps=4)
    assert abs(s2 - sigma) < 1e-10 * sigma


def test_solve_exact_optimal_values():
    B0, Q = gram.make_data(10, 4, family="symmetric", seed=3)
    for rank in (2, 4):
        B = gram.solve_exact(Q, rank)
        assert B.shape == (10, rank)
        opt = gram.optimal_values(Q, rank)
        assert abs(gram.frobenius(B, Q) - opt["frobenius"]) < 1e-10
        assert abs(gram.spectral(B, Q) - opt["spectral"]) < 1e-10
        # stationary for the Frobenius objective, and no random B does better
        assert float(jnp.abs(gram.frobenius_squared_grad_general(B, Q)).max()) < 1e-9
        rng = np.random.default_rng(0)
        for _ in range(20):
            Bt = B + 0.05 * rng.standard_normal(B.shape)
            assert gram.frobenius(Bt, Q) >= opt["frobenius"] - 1e-12
            assert gram.spectral(Bt, Q) >= opt["spectral"] - 1e-12
    Qg = gram.make_data(10, 4, family="generic", seed=3)[1]
    B = gram.solve_exact(Qg, 3)
    assert abs(gram.frobenius(B, Qg) - gram.optimal_values(Qg, 3)["frobenius"]) < 1e-10


def test_solve_exact_bad_input():
    with pytest.raises(InputError, match="Q: expected a square"):
        gram.solve_exact(np.zeros((3, 4)), 2)
    with pytest.raises(InputError, match="rank: expected an integer"):
        gram.solve_exact(np.eye(3), 5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n: expected a positive integer, got 0"),
    (dict(r=2.5), "r: expected a positive integer, got 2.5"),
    (dict(family="hermitian"), "family: expected one of generic, symmetric, skew, psd, "
                               "diagonal, got 'hermitian'"),
    (dict(dtype="int8"), "dtype: expected a real floating dtype (float32, float64), got int8"),
])
def test_make_data_refuses_bad_arguments(kwargs, message):
    with pytest.raises(InputError) as info:
        gram.make_data(**kwargs)
    assert message in str(info.value)


def test_objectives_and_gradients_name_a_mismatched_q():
    B, Q = np.ones((6, 3)), np.eye(5)
    for fn in (gram.frobenius, gram.spectral, gram.frobenius_grad_general,
               gram.spectral_grad_lanczos, jax.jit(gram.frobenius_squared)):
        with pytest.raises(InputError, match=r"Q: expected shape \(n, n\) = \(6, 6\) with "
                                             r"n = B.shape\[0\], got \(5, 5\)"):
            fn(B, Q)
    with pytest.raises(InputError, match=r"v0: expected shape \(n,\) = \(6,\), got \(5,\)"):
        gram.spectral_value_and_grad_lanczos(B, np.eye(6), v0=np.ones(5))
