"""The fitting code traces its matrix products at 'highest' precision (true float32 products on
GPUs, where XLA's default is TF32), and the audit too; low-level kernels follow the caller.

On the CPU the precision changes no number, so these tests read the lowered programs: every
``dot_general`` must carry the precision asked for."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from matgrad_jax import check_gradient
from matgrad_jax.fit import METHODS, fit_problem, fit_start
from matgrad_jax.precision import FIT_PRECISION, products
from matgrad_jax.problems import channel, gram
from matgrad_jax.scale import solve_batch

DOT = re.compile(r"stablehlo\.dot_general[^\n]*")


def _dot_precisions(lowered) -> list[str]:
    """The precision attribute of every dot_general in a lowered program."""
    dots = DOT.findall(lowered.as_text())
    assert dots, "the program has no matrix product"
    return [m.group(1) if (m := re.search(r"precision = \[(\w+)", d)) else "DEFAULT"
            for d in dots]


@pytest.fixture(scope="module")
def data32():
    # n != m != k != q; m > 16, so the products are GEMMs (below that linalg.matmul writes
    # tiny ones out as multiply-adds, which have no precision to check)
    d = channel.make_data(40, 20, 24, 44, seed=3, dtype=jnp.float32)
    return [d[x] for x in channel.DATA_NAMES]


def test_fit_precision_is_highest():
    assert FIT_PRECISION == "highest"


@pytest.mark.parametrize("method", METHODS)
def test_every_solver_product_is_highest(data32, method):
    problem = channel.Problem(*data32)
    z = jnp.zeros(problem.shape, problem.dtype)
    lowered = fit_problem.lower(problem, (z, z), method=method, max_iters=5)
    assert set(_dot_precisions(lowered)) == {"HIGHEST"}
    start = fit_start.lower(problem, (z, z), method=method, max_iters=5)
    assert set(_dot_precisions(start)) == {"HIGHEST"}


@pytest.mark.parametrize("method", ["exact", "alternating"])
def test_matmul_precision_none_keeps_the_callers_setting(data32, method):
    problem = channel.Problem(*data32)
    z = jnp.zeros(problem.shape, problem.dtype)
    default = _dot_precisions(fit_problem.lower(problem, (z, z), method=method, max_iters=5,
                                                matmul_precision=None))
    assert "DEFAULT" in default and "HIGHEST" not in default
    with products("high"):
        high = _dot_precisions(fit_problem.lower(problem, (z, z), method=method, max_iters=5,
                                                 matmul_precision=None))
    assert set(high) == {"HIGH"}


def test_statistics_value_and_exact_solve_are_highest(data32):
    highest = {"HIGHEST"}
    assert set(_dot_precisions(channel.statistics._statistics_jit.lower(*data32, 0.0))) == highest
    problem = channel.Problem(*data32)
    R = jnp.ones(problem.shape, problem.dtype)
    assert set(_dot_precisions(channel.problem._value_and_grad_jit.lower(problem, R, R))) == highest
    assert set(_dot_precisions(channel.problem._grad_jit.lower(problem, R, R))) == highest
    assert set(_dot_precisions(channel.operator._solve_exact_jit.lower(problem.stats))) == highest


def test_low_level_kernels_follow_the_caller(data32):
    stats = channel.channel_statistics(*data32)
    R = jnp.ones(stats.A.shape, stats.A.dtype)
    fn = jax.jit(channel.structured_value_and_grad)
    assert set(_dot_precisions(fn.lower(stats, R, R))) == {"DEFAULT"}


def test_solve_batch_takes_matmul_precision(data32):
    batch = {k: np.stack([np.asarray(a)] * 3) for k, a in zip(channel.DATA_NAMES, data32)}
    a = solve_batch(batch, method="exact")
    b = solve_batch(batch, method="exact", matmul_precision=None)
    for x, y in zip(a, b):  # the CPU computes both alike
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_audit_traces_at_highest_unless_told():
    B, Q = gram.make_data(7, 5, family="generic", seed=0, dtype=jnp.float32)
    seen = []

    def grad(B, Q):
        seen.append(jax.config.jax_default_matmul_precision)
        return gram.frobenius_squared_grad_general(B, Q)

    report = check_gradient(gram.frobenius_squared, grad, (B, Q), argnums=0, kinks=False)
    assert report.passed and seen and set(seen) == {"highest"}
    seen.clear()
    report = check_gradient(gram.frobenius_squared, grad, (B, Q), argnums=0, kinks=False,
                            matmul_precision=None)
    assert report.passed and seen and set(seen) == {None}


def test_unknown_precision_is_one_clear_error(data32):
    from matgrad_jax._checks import InputError
    from matgrad_jax.fit import fit

    problem = channel.Problem(*data32)
    with pytest.raises(InputError, match=r"^matmul_precision: expected None or one of .*'fast'"):
        fit(problem, method="exact", matmul_precision="fast")
    B, Q = gram.make_data(7, 5, family="generic", seed=0, dtype=jnp.float32)
    with pytest.raises(InputError, match="matmul_precision"):
        check_gradient(gram.frobenius_squared, gram.frobenius_squared_grad_general, (B, Q),
                       matmul_precision="fast")
