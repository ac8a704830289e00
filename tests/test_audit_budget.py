"""A costly function is screened first (``budget="auto"``): fewer points and directions, every
structured family still tested, and the full audit wherever the screen finds anything. Rectangular
and square shapes, float64 and float32 (x64 on and off)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import InputError, check_gradient, programs
from matgrad_jax.audit.check import SCREEN_FLOPS

rng = np.random.default_rng(11)


def x64(on: bool):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if on else disable_x64()


def least_squares(n, m, k, dtype=jnp.float64):
    """‖AX − M‖² with A (n, m), X (m, k): a matrix product of 2nmk flops per evaluation."""
    A, M = (jnp.asarray(rng.standard_normal(s), dtype) for s in ((n, m), (n, k)))
    X = jnp.asarray(rng.standard_normal((m, k)), dtype)
    f = lambda X: jnp.sum((A @ X - M) ** 2)  # noqa: E731
    g = lambda X: 2 * A.T @ (A @ X - M)  # noqa: E731
    return f, g, X, A, M


def test_the_screen_runs_where_one_evaluation_is_costly():
    f, g, X, *_ = least_squares(260, 240, 150)  # rectangular: no structured family
    assert programs.flops(programs.trace(f, X)[0]) > SCREEN_FLOPS
    r = check_gradient(f, g, (X,))
    assert r.passed and r.budget["mode"] == "screen" and r.budget["flops"] > SCREEN_FLOPS
    assert r.points == 3 and "Screened" in r.message and len(r.taylor["slopes"]) == 1
    full = check_gradient(f, g, (X,), budget="full")
    assert full.passed and full.budget["mode"] == "full" and full.points == 9
    small_f, small_g, small_X, *_ = least_squares(9, 7, 5)
    small = check_gradient(small_f, small_g, (small_X,))
    assert small.budget == {"mode": "full", "flops": small.budget["flops"], "screened": False}
    assert small.points == 9


def test_a_wrong_gradient_found_by_the_screen_gets_the_full_audit():
    f, _, X, A, M = least_squares(250, 230, 140)
    r = check_gradient(f, lambda X: 2 * A.T @ (A @ X - M) * 1.5, (X,))
    assert not r.passed and r.diagnosis == "scale:1.5"
    assert r.budget["mode"] == "full" and r.budget["screened"] and r.points == 9


def test_every_family_is_still_tested_by_the_screen():
    """Square X: one point per family in the screen; a gradient wrong on diagonal X alone is
    found, and the full audit that follows says where it holds."""
    f, g, X, A, M = least_squares(300, 260, 260)

    def wrong_on_diagonal(X):
        off = jnp.sum(jnp.abs(X - jnp.diag(jnp.diag(X))))
        return g(X) + jnp.where(off == 0, 1.0, 0.0) * jnp.eye(X.shape[0], dtype=X.dtype)

    ok = check_gradient(f, g, (X,))
    assert ok.passed and ok.budget["mode"] == "screen" and ok.points == 3 + 4
    assert set(ok.families) == {"example", "perturbed", "random", "symmetric:X", "skew:X",
                                "psd:X", "diagonal:X"}
    r = check_gradient(f, wrong_on_diagonal, (X,))
    assert not r.passed and r.budget["screened"]
    assert "diagonal" in r.where_it_holds and r.failing_family == "diagonal:X"


@pytest.mark.parametrize("enable", [True, False])
def test_float32_screen_with_x64_on_and_off(enable):
    with x64(enable):
        f, g, X, A, M = least_squares(270, 250, 130, dtype=jnp.float32)
        r = check_gradient(f, g, (X,))
        assert r.passed and r.budget["mode"] == "screen" and r.dtype == "float32"
        bad = check_gradient(f, lambda X: -g(X), (X,))
        assert not bad.passed and bad.diagnosis == "sign" and bad.budget["screened"]


def test_budget_is_checked():
    f, g, X, *_ = least_squares(5, 4, 3)
    with pytest.raises(InputError, match="budget: expected one of"):
        check_gradient(f, g, (X,), budget="cheap")
