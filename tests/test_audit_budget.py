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


@pytest.mark.parametrize("enable", [True, False])
def test_float32_screen_needs_no_float64_pass_and_says_so(enable):
    """Below float64 the screen compares with jax.grad in the working dtype: within 14 eps at
    every point implies the float64 criterion, and the report says that was the reference,
    with the example point judged against float64 too."""
    with x64(enable):
        f, g, X, A, M = least_squares(280, 250, 140, dtype=jnp.float32)
        r = check_gradient(f, g, (X,))
        eps = float(np.finfo(np.float32).eps)
        assert r.passed and r.budget["mode"] == "screen" and r.reference_dtype == "float32"
        assert r.tolerance == pytest.approx(14 * eps) and 0 <= r.max_rel_error <= r.tolerance
        p = r.precision
        assert p["implied"] and p["hand_rel_error"] == pytest.approx(r.max_rel_error)
        assert p["example_float64"]["rel_error"] <= p["example_float64"]["tolerance"]
        assert "bounds its error against the float64 truth" in r.message
        assert r.taylor["passed"] and r.kink and not r.kink["kink"]
        # a wrong factor of 1 + 1e-4 still fails, diagnosed by the full float64 audit
        bad = check_gradient(f, lambda X: g(X) * (1 + 1e-4), (X,))
        assert not bad.passed and bad.budget["screened"] and bad.reference_dtype == "float64"
        assert bad.diagnosis.startswith("scale")


def test_float32_screen_sends_an_error_below_float32s_resolution_to_the_full_audit():
    """A formula off by 3e-7 (below what float32 resolves: the screen's comparison passes it)
    is caught where its formula is evaluated in float64 at the example point; auto and full
    agree."""
    f, g, X, A, M = least_squares(280, 250, 140, dtype=jnp.float32)
    off = lambda X: g(X) * (1 + 3e-7)  # noqa: E731 - runs in float64 on float64 input
    auto = check_gradient(f, off, (X,))
    full = check_gradient(f, off, (X,), budget="full")
    assert not full.passed and not auto.passed and auto.budget["screened"]
    assert auto.diagnosis == full.diagnosis


def test_the_screen_line_matches_the_taylor_and_kink_tests():
    """lines.screen (Taylor and kink from one program) judges as lines.taylor and lines.kink."""
    from matgrad_jax.audit import lines, spec

    A = rng.standard_normal((7, 5))
    x = rng.standard_normal(5)
    f = lambda x: jnp.sum(jnp.tanh(A @ x) ** 2)  # noqa: E731
    S = spec.build(f, (x,), 0, None, None, False)
    v = (rng.standard_normal((1, 5)),)
    g = np.asarray(jax.grad(f)(jnp.asarray(x)))
    t, k = lines.screen(S, f, (x,), (g,), v)
    full = lines.taylor(S, f, (x,), (g,), v)
    assert not k["kink"] and t["linear_term"][0] < 1e-8 and full["linear_term"][0] < 1e-8
    assert abs(t["slopes"][0] - 2) < 0.2
    t_bad, _ = lines.screen(S, f, (x,), (g * 1.01,), v)
    assert t_bad["linear_term"][0] > 1e-3
    relu = lambda x: jnp.sum(jnp.abs(x))  # noqa: E731 - a kink at 0
    S0 = spec.build(relu, (np.zeros(5),), 0, None, None, False)
    _, k0 = lines.screen(S0, relu, (np.zeros(5),), (np.zeros(5),), v)
    assert k0["kink"] and lines.kink(S0, relu, (np.zeros(5),), v)["kink"]
    for eps in (np.finfo(np.float64).eps, np.finfo(np.float32).eps, 2.0 ** -7):
        hs, j = lines.screen_steps(float(eps))
        assert len(hs) == lines.SCREEN_STEPS and hs[0] <= 1 and hs[j + 1] == hs[j] / 4


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_the_screens_line_finds_a_wrong_autodiff_and_a_kink(dtype):
    """The screen's six values on one line: a jax.grad that disagrees with fun's own values
    (half the residual behind stop_gradient; the hand gradient agrees with it) fails its Taylor
    test, and a kink at the example (|X| at zero entries) its kink test; both go on to the
    full audit, which says so."""
    A, M = (jnp.asarray(rng.standard_normal(s), dtype) for s in ((260, 240), (260, 150)))
    X = jnp.asarray(rng.standard_normal((240, 150)), dtype)
    f = lambda X: jnp.sum((A @ X - M) * jax.lax.stop_gradient(A @ X - M))  # noqa: E731
    r = check_gradient(f, lambda X: A.T @ (A @ X - M), (X,))
    assert not r.passed and r.budget["screened"] and r.failed_checks == ("Taylor remainder",)
    assert all(abs(s - 1) < 0.1 for s in r.taylor["slopes"])  # a wrong linear term
    X0 = X.at[:, :3].set(0.0)
    f2 = lambda X: jnp.sum((A @ X - M) ** 2) + jnp.sum(jnp.abs(X))  # noqa: E731
    r2 = check_gradient(f2, lambda X: 2 * A.T @ (A @ X - M) + jnp.sign(X), (X0,))
    assert r2.diagnosis == "nondifferentiable" and r2.budget["screened"] and r2.kink["kink"]


def test_budget_is_checked():
    f, g, X, *_ = least_squares(5, 4, 3)
    with pytest.raises(InputError, match="budget: expected one of"):
        check_gradient(f, g, (X,), budget="cheap")


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_the_screens_reduced_comparison_equals_the_full_one(dtype):
    """What the screen reduces in the program (per point: finite flags, ‖P(r)‖ and each
    block's ‖P(h − r)‖ on its domain; the gradients whole at the example only) equals the
    host comparison of the whole arrays, for a wrong gradient on a symmetric, a skew and a
    rectangular general block, mapped and one point per call."""
    from matgrad_jax.audit import checks, points, spec, verdict

    r_ = np.random.default_rng(2)
    mk = lambda *s: (r_.standard_normal(s) + (1j * r_.standard_normal(s)  # noqa: E731
                     if np.issubdtype(dtype, np.complexfloating) else 0)).astype(dtype)
    Xs, Xk, Y, C = mk(5, 5), mk(4, 4), mk(6, 3), mk(5, 3)
    Xs = (Xs + Xs.T) / 2 if dtype != np.complex128 else Xs
    Xk = (Xk - Xk.T) / 2 if dtype != np.complex128 else Xk
    domains = {0: "symmetric", 1: "skew"} if dtype != np.complex128 else None

    def f(Xs, Xk, Y):
        return (jnp.sum(jnp.abs(Xs @ C - jnp.sin(Y[:5])) ** 2)
                + jnp.real(jnp.sum(Xk * Xk.T)) + jnp.sum(jnp.abs(Y) ** 4))

    def g(Xs, Xk, Y):  # wrong in every block, by different amounts
        return (Xs * 1.1, Xk.T * 2.5 + 0.3, Y * 0.9)

    with x64(True):
        S = spec.build(f, (Xs, Xk, Y), (0, 1, 2), None, domains, False)
        F = checks.Functions(S, f, g)
        P = points.build(S, np.random.default_rng(0), n_perturbed=2, n_random=2, n_family=1,
                         families=("symmetric", "skew", "psd", "diagonal"))
        hand, (vals, ref) = checks.evaluate("both", F, P, hi=False)
        full = verdict.Evaluation(spec=S, points=P, values=np.asarray(vals, np.float64),
                                  ref=ref, hand=hand, hand64=None, ref_work=None,
                                  work=np.dtype(np.real(Y).dtype), ref_dtype="float64",
                                  rtol=None, use_jax=True)
        full.compare()
        for each in (False, True):
            with pytest.MonkeyPatch.context() as mp:
                if each:
                    mp.setattr(programs, "POINT_FLOPS", 0.0)
                v, ref_finite, hand_finite, ref_sq, err_sq, h0, r0 = checks.evaluate(
                    "screen", F, P, hi=False)
            tol = 1e-10 if np.finfo(dtype).eps < 1e-10 else 1e-4  # two programs' rounding
            total = np.sqrt(ref_sq)
            np.testing.assert_allclose(total, full.total, rtol=tol)
            np.testing.assert_allclose(np.sqrt(err_sq) / total[:, None], full.err_work,
                                       rtol=tol)
            assert np.all(full.err_work > 1e-3) and np.all(ref_finite)
            assert hand_finite.shape == (P.count, 3) and np.all(hand_finite)
            np.testing.assert_allclose(v, vals, rtol=tol)
            for a, b in zip(h0 + r0, tuple(hand) + tuple(ref)):
                assert a.shape == (1,) + b.shape[1:]
                np.testing.assert_allclose(a[0], b[0], rtol=tol, atol=tol * np.abs(b[0]).max())
