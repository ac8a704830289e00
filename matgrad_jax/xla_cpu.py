"""Every form the code takes for XLA:CPU's sake, in one place: the math calls these, and on
other backends (and, where it says so, outside ``vmap``) each is the plain operation.

- :func:`matmul`, :func:`vmapped_matmul`, :func:`sum_rows`, :func:`diagonal`: tiny products,
  row sums and diagonals written out elementwise, chosen from the static shapes (XLA:CPU runs a
  batched GEMM of tiny matrices one problem at a time, and hands small batched reductions to
  slow YNNPACK fusions);
- :func:`materialize`: values stored once instead of recomputed in every consumer;
- :func:`kernel_products`: ``K Kᵀ`` and ``W Kᵀ`` of a factored ``K = P Sᵀ``, routed by shape
  and batching;
- :func:`batch_compiler_options`: the compile options of vmapped solves of small problems;
- :func:`batched`: the operands of a ``custom_vmap`` rule, broadcast.

Why each exists and what it saved, measured, is in ``docs/performance/xla-cpu.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def batched(axis_size: int, in_batched, args):
    """``args`` (a pytree) with every leaf ``in_batched`` marks unbatched broadcast to a leading
    ``axis_size`` axis: the operands of a ``custom_vmap`` rule that batches them all."""
    return jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *x.shape)), args, in_batched)



SMALL_MATMUL = (16, 1024)
"""``matmul`` writes ``X @ Y`` out elementwise when the contraction has at most
``SMALL_MATMUL[0]`` terms and the output at most ``SMALL_MATMUL[1]`` entries."""


def writes_out(X: Array, Y: Array) -> bool:
    """Whether :func:`matmul` writes ``X @ Y`` out elementwise (from the static shapes)."""
    return not (X.shape[1] > SMALL_MATMUL[0] or X.shape[0] * Y.shape[1] > SMALL_MATMUL[1])


def matmul(X: Array, Y: Array) -> Array:
    """``X @ Y`` for 2-d ``X`` (``a x c``), ``Y`` (``c x d``); tiny ones as ``c`` broadcast
    multiply-adds.

    Under ``vmap``, XLA:CPU runs a batched GEMM of tiny matrices one problem at a time: for a
    batch of thousands of ``8 x 8`` problems that, not the arithmetic, is the cost. Written out,
    the product becomes one fused elementwise loop over the whole batch. XLA may fuse such a
    product into its consumer and recompute it there, so chains of them gain less.
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
    batched GEMMs of small matrices run at a fraction of the written-out speed, while for a
    single problem of that size the GEMM is the faster. Other platforms keep the batched dot.
    Differentiable (its tangents are plain products)."""
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
    it, to its YNNPACK fusions, which materialise broadcasts of the operands and ran several
    times slower than adds. For one problem the reduction is the faster.
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
    products written out by :func:`matmul` that is a product recomputed per output column.
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


@jax.custom_jvp
def kernel_products(P, S, Ws):
    """``(K Kᵀ, tuple(Wh Kᵀ for Wh in Ws))`` for ``K = P Sᵀ`` (``2m x q``), without forming K
    when ``q > k`` and K is not small: :math:`KK^T = P(S^TS)P^T`, :math:`WK^T = (WS)P^T`.

    Under ``vmap`` on XLA:CPU small problems always go through K, with every product written
    out (:func:`_through_k`): batched GEMMs of small matrices run at a fraction of that speed
    there, which outweighs the flops the ``SᵀS`` route saves. Differentiable (plain products in
    the tangents). Seed 1's statistics use it (``K = P Sᵀ``)."""
    return _kernel_products(P, S, tuple(Ws))


@kernel_products.defjvp
def _kernel_products_jvp(primals, tangents):
    (P, S, Ws), (dP, dS, dWs) = primals, tangents
    K = P @ S.T
    dK = dP @ S.T + P @ dS.T
    return kernel_products(P, S, Ws), (dK @ K.T + K @ dK.T,
                                       tuple(dW @ K.T + W @ dK.T for W, dW in zip(Ws, dWs)))


@jax.custom_batching.custom_vmap
def _kernel_products(P, S, Ws):
    return _by_shape(P, S, Ws)


@_kernel_products.def_vmap
def _kernel_products_vmap(axis_size, in_batched, P, S, Ws):
    P, S, Ws = batched(axis_size, tuple(in_batched), (P, S, Ws))
    (two_m, k), q = P.shape[1:], S.shape[1]
    small = max(k, q) <= BATCHED_WRITE_OUT[0] and max(
        two_m * q, two_m * two_m, *(W.shape[1] * two_m for W in Ws)) <= BATCHED_WRITE_OUT[1]
    by_shape = jax.vmap(_by_shape)
    if small:
        out = jax.lax.platform_dependent(P, S, Ws, cpu=jax.vmap(_through_k), default=by_shape)
    else:
        out = by_shape(P, S, Ws)
    return out, (True, (True,) * len(Ws))


def _by_shape(P, S, Ws):
    """Through ``SᵀS`` (GEMMs) when ``q > k`` and K is not small, else :func:`_through_k`."""
    k, q = P.shape[1], S.shape[0]
    if q > k and P.shape[0] * q > SMALL_MATMUL[1]:
        return P @ (S.T @ S) @ P.T, tuple((W @ S) @ P.T for W in Ws)
    return _through_k(P, S, Ws)


def _through_k(P, S, Ws):
    """K stored as its transpose ``Kᵀ = S Pᵀ`` (:func:`materialize`; XLA would recompute its
    sums per output column), so that both products read rows of it, each written out under vmap
    (:func:`vmapped_matmul`) and stored for its consumers."""
    (Kt,) = materialize(vmapped_matmul(S, P.T))
    (KKt,) = materialize(vmapped_matmul(Kt.T, Kt))
    return KKt, materialize(*(vmapped_matmul(W, Kt) for W in Ws))


# --------------------------------------------------------------------------------------------
# Compile options of vmapped solves of small problems
# --------------------------------------------------------------------------------------------

BATCH_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
"""XLA debug options for vmapped solves of small problems (see the module's docstring)."""

BATCH_METHODS = ("exact", "cg")
"""The methods of :func:`matgrad_jax.fit` whose vmapped solves ran faster with them."""


def batch_compiler_options(method: str = "exact") -> dict[str, object]:
    """:data:`BATCH_OPTIONS` for a method in :data:`BATCH_METHODS` if this jaxlib's XLA knows
    them, else ``{}`` (a new dict each call).

    Probed once by compiling a one-line program with them (this starts the default backend, so
    it is not done at import): XLA may drop the older emitter one day, and an unknown option
    fails every compilation with "No such compile option"."""
    if method not in BATCH_METHODS:
        return {}
    return dict(BATCH_OPTIONS) if _known(tuple(BATCH_OPTIONS.items())) else {}


@functools.cache
def _known(options: tuple) -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(
            np.zeros(2, np.float32)).compile()
    except RuntimeError:  # jax.errors.JaxRuntimeError; XlaRuntimeError in older jaxlibs
        return False
    return True



# A user's function with its small matrix products batched well
# --------------------------------------------------------------------------------------------

def small_products(fun: Callable) -> Callable:
    """``fun`` with each of its 2-d matrix products (``dot_general`` with one contraction and
    no batch dimensions, at the top level of its program) a product that, for one problem,
    is the same ``dot_general`` and, under ``vmap`` on XLA:CPU, is written out like
    :func:`vmapped_matmul` where it is small (:data:`BATCHED_WRITE_OUT`).

    The solvers run a user's objective and gradient through this: a batch of thousands of
    small problems under ``vmap`` then fuses where XLA:CPU would run one tiny GEMM per problem.
    Everything else in ``fun`` is bound as traced; outside ``vmap`` its program is ``fun``'s.
    """
    @functools.wraps(fun)
    def wrapped(*args):
        try:
            closed, shape = jax.make_jaxpr(fun, return_shape=True)(*args)
            if any(_rewrites(e) for e in closed.jaxpr.eqns):
                out = _evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args))
                return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
        except Exception:  # noqa: BLE001 - fun as written: its own errors say what failed
            pass
        return fun(*args)

    return wrapped


def _rewrites(eqn) -> bool:
    if eqn.primitive is not jax.lax.dot_general_p:
        return False
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = (v.aval for v in eqn.invars)
    if lb or rb or len(lc) != 1 or lhs.ndim != 2 or rhs.ndim != 2:
        return False
    if not (jnp.issubdtype(lhs.dtype, jnp.floating) and lhs.dtype == rhs.dtype):
        return False
    a, d = lhs.shape[1 - lc[0]], rhs.shape[1 - rc[0]]
    return lhs.shape[lc[0]] <= BATCHED_WRITE_OUT[0] and a * d <= BATCHED_WRITE_OUT[1]


def _evaluate(jaxpr, consts, args):
    from jax.extend.core import Literal

    env = {}
    read = lambda v: v.val if isinstance(v, Literal) else env[v]
    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if _rewrites(eqn):
            try:
                key = tuple(sorted(eqn.params.items()))
                hash(key)
            except TypeError:
                key = None
            outs = [_small_dot(key)(*ins)] if key is not None else None
        else:
            outs = None
        if outs is None:
            params, subfuns = eqn.primitive.get_bind_params(eqn.params), ()
            if isinstance(params, tuple):  # older JAX: (subfuns, params)
                subfuns, params = params
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*subfuns, *ins, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


@functools.lru_cache(maxsize=256)
def _small_dot(key):
    params = dict(key)
    (lc, rc), _ = params["dimension_numbers"]
    plain = lambda lhs, rhs: jax.lax.dot_general_p.bind(lhs, rhs, **params)

    @jax.custom_jvp
    def dot(lhs, rhs):
        return batched_dot(lhs, rhs)

    @dot.defjvp
    def _dot_jvp(primals, tangents):
        (lhs, rhs), (dl, dr) = primals, tangents
        return dot(lhs, rhs), plain(dl, rhs) + plain(lhs, dr)

    @jax.custom_batching.custom_vmap
    def batched_dot(lhs, rhs):
        return plain(lhs, rhs)

    @batched_dot.def_vmap
    def _batched_dot_vmap(axis_size, in_batched, lhs, rhs):
        lhs, rhs = batched(axis_size, tuple(in_batched), (lhs, rhs))

        def written(lhs, rhs):
            X = lhs if lc == (1,) else jnp.swapaxes(lhs, 1, 2)
            Y = rhs if rc == (0,) else jnp.swapaxes(rhs, 1, 2)
            out = jax.vmap(_written_out)(X, Y)
            return out.astype(params.get("preferred_element_type") or out.dtype)

        return jax.lax.platform_dependent(lhs, rhs, cpu=written, default=jax.vmap(plain)), True

    return dot
