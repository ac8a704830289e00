"""XLA compile options for programs that solve many small problems at once.

A vmapped solve of small problems (:func:`matgrad_jax.solve_batch`) is a program of dozens of
elementwise fusions over arrays like ``(4096, 8, 4)``: the written-out products of tiny matrices
(:func:`~matgrad_jax.linalg.matmul`), the unrolled sweep inverses and the stores between them. On
XLA:CPU those fusions ran faster through XLA's older elemental loop emitter than through its newer
MLIR fusion emitters (the default): 4096 seed-1 problems of ``(n, m, k, q) = (8, 4, 6, 10)``, in
interleaved runs in one process on this project's 2-core CPU (statistics and solve), with
bit-identical results:

=============  ===========================  ===========================
 method         float64                      float32
=============  ===========================  ===========================
 exact          1.33 -> 1.17 ms (1.14x)      1.42 -> 1.30 ms (1.09x)
 cg             5.5 -> 5.0 ms (1.10x)        4.5 -> 3.7 ms (1.23x)
=============  ===========================  ===========================

and 1.02-1.09x at ``(16, 8, 12, 20)``, 1.00x at ``(32, 16, 24, 40)``. The other solvers ran
slower with it (1024 problems of ``(8, 4, 6, 10)``, float64: alternating 0.96x, L-BFGS 0.91-0.96x,
Adam 0.68x), so only :data:`BATCH_METHODS` get it. :func:`matgrad_jax.solve_batch` compiles
those with :data:`BATCH_OPTIONS` where the installed jaxlib knows them
(:func:`batch_compiler_options`); other backends ignore ``xla_cpu_*`` options. Pass the same
options to your own ``jax.jit(jax.vmap(...), compiler_options=batch_compiler_options("exact"))``.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

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

