"""Linear-algebra helpers: the top singular pair of a matrix given only its products, and an
inverse of Hermitian positive definite matrices that is safe under ``vmap`` on XLA:CPU.

On XLA:CPU a transposed matrix-vector product inside a loop ran ~45x slower than the same
product written as a row vector times the matrix (``shared/PERF-NOTES.md``), so every product here
is ``X @ v`` or ``w @ X``; callers pass ``matvec(v) = X v`` and ``rmatvec(w) = w X = Xᵀ w``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


class SingularPair(NamedTuple):
    sigma: Array  # the largest singular value
    u: Array  # left singular vector,  X v = sigma u
    v: Array  # right singular vector, Xᵀ u = sigma v


def lanczos_top_singular(matvec: Callable[[Array], Array], rmatvec: Callable[[Array], Array],
                         v0: Array, steps: int = 32) -> SingularPair:
    r"""Top singular triple of ``X`` by Lanczos on :math:`X^TX` with full reorthogonalisation.

    Args:
      matvec: ``v -> X v``.
      rmatvec: ``w -> Xᵀ w`` (write it as ``w @ X``).
      v0: start vector (warm-start with the previous ``v`` inside an optimiser loop).
      steps: Krylov dimension; the error in ``sigma`` falls like the Chebyshev bound in the gap
        ``sigma_1² - sigma_2²``.

    Returns:
      :class:`SingularPair`. Jit- and vmap-able; the loop is a ``lax.fori_loop``.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    eps = jnp.finfo(dtype).eps
    V = jnp.zeros((steps + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros(steps, dtype)
    beta = jnp.zeros(steps, dtype)

    def body(j, carry):
        V, alpha, beta, scale, alive = carry
        v = V[j]
        w = rmatvec(matvec(v))
        a = jnp.dot(w, v)
        scale = jnp.maximum(scale, jnp.abs(a))
        # Two passes of classical Gram-Schmidt against the whole basis (rows past j are zero).
        w = w - (V @ w) @ V
        w = w - (V @ w) @ V
        b = jnp.linalg.norm(w)
        # An invariant subspace was found: stop growing the basis (the rest of T stays zero).
        alive = alive & (b > 64 * eps * jnp.sqrt(n) * scale)
        V = V.at[j + 1].set(jnp.where(alive, w / jnp.where(alive, b, 1), 0))
        return V, alpha.at[j].set(a), beta.at[j].set(jnp.where(alive, b, 0)), scale, alive

    init = (V, alpha, beta, jnp.zeros((), dtype), jnp.array(True))
    V, alpha, beta, _, _ = jax.lax.fori_loop(0, steps, body, init)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, Y = jnp.linalg.eigh(T)
    v = Y[:, -1] @ V[:steps]
    v = v / jnp.linalg.norm(v)
    xv = matvec(v)
    sigma = jnp.linalg.norm(xv)
    u = xv / jnp.where(sigma > 0, sigma, 1)
    return SingularPair(sigma, u, v)


def top_singular_svd(X: Array) -> SingularPair:
    """Top singular triple from a full SVD (the reference)."""
    u, s, vt = jnp.linalg.svd(X, full_matrices=False)
    return SingularPair(s[0], u[:, 0], vt[0])


# --------------------------------------------------------------------------------------------
# Inverse of Hermitian positive definite matrices, vmap-safe on XLA:CPU
# --------------------------------------------------------------------------------------------


def sweep_inverse(M: Array) -> Array:
    r"""Inverse of Hermitian positive definite matrices ``M`` (``(..., d, d)``) by the sweep
    operator (Gauss-Jordan without pivoting, stable on HPD input like Cholesky).

    For each pivot ``k`` in turn: :math:`m_{kk} \to -1/m_{kk}`, row and column ``k`` divided by
    :math:`m_{kk}`, the rest :math:`m_{ij} - m_{ik}m_{kj}/m_{kk}`; after all ``d`` pivots the
    matrix holds :math:`-M^{-1}`. No LAPACK call. A singular ``M`` gives non-finite entries.

    Up to ``SMALL_MATMUL[0]`` pivots (the matrices of vmapped small problems) the steps are
    unrolled (the masks are constants), complex ``M`` is swept in real arithmetic (the pivots
    of an HPD matrix are real; the imaginary part of the diagonal is taken as zero), and each
    step is stored before the next (:func:`_store`). Against a ``fori_loop`` of complex updates
    (kept for larger ``d``), in which XLA:CPU copied the loop state every step and ran complex
    arithmetic slowly, that took 4096 complex ``4 x 4`` inverses from about 1.05 to 0.64 ms.
    """
    d = M.shape[-1]
    if d > SMALL_MATMUL[0]:
        return _sweep_loop(M)
    if jnp.iscomplexobj(M):
        Vr, Vi = _sweep_unrolled(M.real, M.imag)
        return jax.lax.complex(Vr, Vi)
    return _sweep_unrolled(M, None)[0]


def _sweep_unrolled(Mr, Mi):
    """The unrolled sweep of ``Mr + i Mi`` (``Mi`` None: real); returns the inverse's real and
    imaginary parts (None for real input)."""
    d = Mr.shape[-1]
    lead = (1,) * (Mr.ndim - 2)  # explicit ranks: callers may run with rank promotion "raise"
    # the input is stored too: every entry of the first step reads row and column k, so a fused
    # producer (the exact solve's capacitance: products of the data) would be recomputed d-fold
    parts = _store(Mr) if Mi is None else _store(Mr, Mi)
    for k in range(d):
        is_row = (np.arange(d) == k).reshape(*lead, d, 1)
        Mr = parts[0]
        inv = 1 / Mr[..., k, k][..., None, None]
        cr, rr = Mr[..., :, k:k + 1], Mr[..., k:k + 1, :]
        if Mi is None:
            new = (_swept(Mr, k, is_row, inv, cr * rr, -inv),)
        else:
            Mi = parts[1]
            ci, ri = Mi[..., :, k:k + 1], Mi[..., k:k + 1, :]
            new = (_swept(Mr, k, is_row, inv, cr * rr - ci * ri, -inv),
                   _swept(Mi, k, is_row, inv, cr * ri + ci * rr, 0 * inv))
        # the last step stores the inverse itself (a negation after it was stored separately)
        parts = _store(*new) if k < d - 1 else _store(*(-x for x in new))
    return parts[0], (None if Mi is None else parts[1])


def _swept(M, k, is_row, inv, outer, diag):
    """One sweep step on one (real) part: the rest ``M - outer * inv``, row and column ``k``
    times ``inv = 1/m_kk``, ``diag`` at ``(k, k)``. Each entry is computed as the sweep defines
    it (no cancellation; ``is_row`` is the constant mask of row ``k``)."""
    is_col = jnp.swapaxes(is_row, -1, -2)
    row, col = M[..., k:k + 1, :], M[..., :, k:k + 1]
    return jnp.where(is_row & is_col, diag, jnp.where(
        is_row, row * inv, jnp.where(is_col, col * inv, M - outer * inv)))


def _sweep_loop(M: Array) -> Array:
    """The sweep as a ``fori_loop`` of ``d`` masked updates (one fused update per pivot)."""
    d = M.shape[-1]
    idx = jnp.arange(d)

    def sweep(k, M):
        row = jax.lax.dynamic_index_in_dim(M, k, axis=M.ndim - 2, keepdims=False)  # (..., d)
        col = jax.lax.dynamic_index_in_dim(M, k, axis=M.ndim - 1, keepdims=False)  # (..., d)
        inv = 1 / jax.lax.dynamic_index_in_dim(row, k, axis=row.ndim - 1, keepdims=True)
        r, c = row * inv, col * inv
        is_row = (idx == k)[:, None]
        is_col = (idx == k)[None, :]
        rest = M - col[..., :, None] * r[..., None, :]
        return jnp.where(is_row & is_col, -inv[..., None], jnp.where(
            is_row, r[..., None, :], jnp.where(is_col, c[..., :, None], rest)))

    return -jax.lax.fori_loop(0, d, sweep, M)


def batched(axis_size: int, in_batched, args):
    """``args`` (a pytree) with every leaf ``in_batched`` marks unbatched broadcast to a leading
    ``axis_size`` axis: the operands of a ``custom_vmap`` rule that batches them all."""
    return jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *x.shape)), args, in_batched)


@jax.custom_batching.custom_vmap
def _hpd_inverse(M: Array) -> Array:
    chol = jnp.linalg.cholesky(M)
    return jax.scipy.linalg.cho_solve((chol, True), jnp.eye(M.shape[-1], dtype=M.dtype))


@_hpd_inverse.def_vmap
def _hpd_inverse_vmap(axis_size, in_batched, M):
    (batched,) = in_batched
    if not batched:
        return _hpd_inverse(M), False
    return sweep_inverse(M), True


@jax.custom_jvp
def hpd_inverse(M: Array) -> Array:
    r"""Inverse of one Hermitian (real: symmetric) positive definite matrix ``M`` (``d x d``).

    Alone it is LAPACK's Cholesky and two triangular solves. Under ``vmap`` it switches to
    :func:`sweep_inverse`, which uses no LAPACK: jaxlib 0.10's batched LAPACK kernels split the
    batch over XLA:CPU's intra-op thread pool and block a pool thread waiting for the pieces,
    so as many concurrent batched calls as the pool has threads (two forced host devices on two
    cores, or independent calls run side by side) wait on each other forever. (jax 0.11.2
    builds without that parallel path.) For the small matrices of a batch the sweep is also no
    slower. Differentiable: :math:`d(M^{-1}) = -M^{-1}\,dM\,M^{-1}`.
    """
    return _hpd_inverse(M)


@hpd_inverse.defjvp
def _hpd_inverse_jvp(primals, tangents):
    (M,), (dM,) = primals, tangents
    Minv = hpd_inverse(M)
    return Minv, -Minv @ dM @ Minv


@jax.custom_batching.custom_vmap
def hpd_solve(M: Array, b: Array) -> Array:
    """``M⁻¹ b`` for one Hermitian positive definite ``M`` (``d x d``) and ``b`` (``d``): a
    Cholesky solve alone, ``sweep_inverse(M) @ b`` under ``vmap`` (see :func:`hpd_inverse`).
    Not differentiable (use ``hpd_inverse(M) @ b`` for that)."""
    chol = jnp.linalg.cholesky(M)
    return jax.scipy.linalg.cho_solve((chol, True), b)


@hpd_solve.def_vmap
def _hpd_solve_vmap(axis_size, in_batched, M, b):
    M_batched, b_batched = in_batched
    b = batched(axis_size, b_batched, b)
    if not M_batched:
        chol = jnp.linalg.cholesky(M)
        return jax.scipy.linalg.cho_solve((chol, True), b.T).T, True
    # by matmul: written out for tiny d (a batched matrix-vector dot of tiny matrices runs one
    # problem at a time on XLA:CPU and pulls the producers of b into its kernel), a dot above
    return jax.vmap(lambda Mi, bi: matmul(Mi, bi[:, None])[:, 0])(sweep_inverse(M), b), True


SMALL_MATMUL = (16, 1024)
"""``matmul`` writes ``X @ Y`` out elementwise when the contraction has at most
``SMALL_MATMUL[0]`` terms and the output at most ``SMALL_MATMUL[1]`` entries."""


def writes_out(X: Array, Y: Array) -> bool:
    """Whether :func:`matmul` writes ``X @ Y`` out elementwise (from the static shapes)."""
    return not (X.shape[1] > SMALL_MATMUL[0] or X.shape[0] * Y.shape[1] > SMALL_MATMUL[1])


def matmul(X: Array, Y: Array) -> Array:
    """``X @ Y`` for 2-d ``X`` (``a x c``), ``Y`` (``c x d``); tiny ones as ``c`` broadcast
    multiply-adds.

    Under ``vmap``, XLA:CPU runs a batched GEMM of tiny matrices one problem at a time (about
    0.1 µs each, whatever the size): for a batch of thousands of ``8 x 8`` problems that, not
    the arithmetic, is the cost. Written out, the product becomes one fused elementwise loop over
    the whole batch (the Woodbury factors of 4096 ``(8, 4)`` problems: 3.0 -> 0.8 ms). XLA may
    fuse such a product into its consumer and recompute it there, so chains of them gain less.
    The choice is made from the static shapes, so large products (every gradient of a
    real-sized problem) stay GEMMs.
    """
    if not writes_out(X, Y):
        return X @ Y
    return _written_out(X, Y)


BATCHED_WRITE_OUT = (64, 4096)
"""Under ``vmap`` on XLA:CPU :func:`vmapped_matmul` writes ``X @ Y`` out when the contraction has
at most ``BATCHED_WRITE_OUT[0]`` terms and the output at most ``BATCHED_WRITE_OUT[1]`` entries."""


@jax.custom_jvp
def vmapped_matmul(X: Array, Y: Array) -> Array:
    """``X @ Y`` (2-d), a GEMM for one problem; under ``vmap`` on XLA:CPU, for small matrices
    (:data:`BATCHED_WRITE_OUT`), written out as broadcast multiply-adds like :func:`matmul`.

    Unlike :func:`matmul` the choice depends on batching, not only on the shapes: XLA:CPU's
    batched GEMMs of small matrices run at a fraction of the written-out speed (4096 ``K Kᵀ``
    and ``W Kᵀ`` of ``(16, 8, 12, 20)`` problems: 5.7 ms as batched dots, 3.8 ms written out),
    while for a single problem of that size the GEMM is the faster, by up to 3x at a contraction
    of 40-64. Other platforms keep the batched dot. Differentiable (its tangents are plain
    products)."""
    return _vmapped_matmul(X, Y)


@vmapped_matmul.defjvp
def _vmapped_matmul_jvp(primals, tangents):
    (X, Y), (dX, dY) = primals, tangents
    return vmapped_matmul(X, Y), dX @ Y + X @ dY


@jax.custom_batching.custom_vmap
def _vmapped_matmul(X, Y):
    return X @ Y


@_vmapped_matmul.def_vmap
def _vmapped_matmul_vmap(axis_size, in_batched, X, Y):
    X, Y = batched(axis_size, tuple(in_batched), (X, Y))
    (a, c), d = X.shape[1:], Y.shape[-1]
    if c > BATCHED_WRITE_OUT[0] or a * d > BATCHED_WRITE_OUT[1]:
        return jnp.matmul(X, Y), True
    return jax.lax.platform_dependent(X, Y, cpu=jax.vmap(_written_out), default=jnp.matmul), True


def _written_out(X, Y):
    """``X @ Y`` as ``c`` broadcast multiply-adds (``c``: the contraction)."""
    acc = X[:, 0:1] * Y[0:1, :]
    for i in range(1, X.shape[1]):
        acc = acc + X[:, i:i + 1] * Y[i:i + 1, :]
    return acc


def diagonal(X: Array) -> Array:
    """``jnp.diagonal(X)`` of a square 2-d ``X``; up to ``SMALL_MATMUL[0]`` rows as static slices.

    Under ``vmap`` ``jnp.diagonal`` is a gather, which XLA:CPU laid out batch-minor (a strided
    read for every consumer); slices fuse into their consumers."""
    if X.shape[0] > SMALL_MATMUL[0]:
        return jnp.diagonal(X)
    return jnp.stack([X[i, i] for i in range(X.shape[0])])


@jax.custom_jvp
def sum_rows(X: Array) -> Array:
    """``X.sum(axis=0)`` for 2-d ``X``: a reduction for one problem; under ``vmap`` on XLA:CPU,
    for at most ``BATCHED_WRITE_OUT[0]`` rows, written out as adds.

    Under ``vmap`` XLA:CPU hands a reduction of small rows, with the elementwise code that feeds
    it, to its YNNPACK fusions, which materialise broadcasts of the operands and ran the
    exact solve's ``Re<c_j, x_j>`` of 4096 ``(8, 4)`` problems several times slower than adds
    (of ``(32, 16)`` problems: about 20x slower). For one problem the reduction is the faster:
    written out, the gradient of one ``(64, 64, 128, 256)`` problem took 1.35x as long.
    Differentiable (its tangent is a plain sum).
    """
    return _sum_rows(X)


@sum_rows.defjvp
def _sum_rows_jvp(primals, tangents):
    return sum_rows(*primals), jnp.sum(tangents[0], axis=0)


@jax.custom_batching.custom_vmap
def _sum_rows(X):
    return jnp.sum(X, axis=0)


@_sum_rows.def_vmap
def _sum_rows_vmap(axis_size, in_batched, X):
    reduce = lambda Xs: jnp.sum(Xs, axis=1)  # noqa: E731
    if X.shape[1] > BATCHED_WRITE_OUT[0]:
        return reduce(X), True
    return jax.lax.platform_dependent(X, cpu=jax.vmap(_rows_written_out), default=reduce), True


def _rows_written_out(X):
    acc = X[0]
    for i in range(1, X.shape[0]):
        acc = acc + X[i]
    return acc


@jax.custom_jvp
def materialize(*xs: Array) -> tuple[Array, ...]:
    r"""``xs`` unchanged, computed once under ``vmap`` on XLA:CPU instead of inside their consumers.

    XLA fuses cheap elementwise producers into every consumer, recomputing them there. For
    products written out by :func:`matmul` that is a product recomputed per output column: a
    written-out ``K = P Sᵀ`` feeding the written-out ``K Kᵀ`` and ``W Kᵀ`` made those two run
    at a third of the speed of the same products on a stored ``K``.
    ``jax.lax.optimization_barrier`` does not stop it on XLA:CPU (the barrier is removed before
    fusion). So under ``vmap`` on the CPU the values pass through a ``while`` loop of one trip
    that XLA cannot count (in which one element of each is multiplied by 1): a loop's result is
    always stored. Outside ``vmap``, and on other platforms, it is the identity.
    Differentiable (the tangent passes through).
    """
    return _materialize(*xs)


@materialize.defjvp
def _materialize_jvp(primals, tangents):
    return materialize(*primals), tuple(tangents)


@jax.custom_batching.custom_vmap
def _materialize(*xs):
    return tuple(xs)


@_materialize.def_vmap
def _materialize_vmap(axis_size, in_batched, *xs):
    xs = batched(axis_size, tuple(in_batched), xs)
    return _store(*xs), (True,) * len(xs)


def _store(*xs):
    """``xs`` stored (not fused into their consumers) on XLA:CPU, whatever the batching; the
    identity elsewhere. See :func:`materialize`."""
    return tuple(jax.lax.platform_dependent(*xs, cpu=_stored, default=lambda *ys: tuple(ys)))


def _stored(*xs):
    if any(x.size == 0 for x in xs):
        return xs
    first = xs[0].reshape(-1)[0]
    trips = jnp.where(jnp.isnan(first), 0, 1).astype(jnp.int32)  # 1 (or 0): XLA can't tell

    def body(carry):
        i, ys = carry
        # every value changes in XLA's eyes (an unchanged one would be forwarded past the
        # loop), by a factor that is exactly 1
        return i + 1, tuple(y.at[(0,) * y.ndim].multiply((1 + i).astype(y.dtype)) for y in ys)

    return jax.lax.while_loop(lambda c: c[0] < trips, body, (jnp.int32(0), xs))[1]
