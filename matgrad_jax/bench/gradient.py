"""Seed-1 gradient cost: autodiff of the literal objective vs hand forms vs the GEMM floor.

``Problem.grad`` forms ``HG`` by the three-multiplication complex product (three ``n x m x m``
GEMMs, ``6nm²`` flops, see :func:`matgrad_jax.problems.channel.times_g`); the floor is the issue's
one real GEMM of ``8nm²`` flops, and the row "one real-form GEMM" is the gradient computed that
way. All variants are timed in interleaved rounds (medians of ``--repeats`` rounds).

Prints a table and writes benchmarks/results/gradient_<platform>_<dtype>.json. Usage:
    matgrad bench gradient [--dtype float32|float64] [--sizes 64,64,128,256 ...] [--quick]
    python benchmarks/bench_gradient.py ...   (the same)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from ..problems import channel
from .common import (
    add_run_options,
    interleaved_medians,
    machine,
    print_table,
    shape_of,
    write_result,
)


def bench(n, m, k, q, dtype, repeats):
    d = channel.make_data(n, m, k, q, seed=0, dtype=dtype)
    data = [d[x] for x in channel.DATA_NAMES]
    R, Q = d["R_true"], d["Q_true"]
    prob = channel.Problem(*data)
    stats = prob.stats
    X = jnp.concatenate([R, Q], axis=1)
    G = stats.G
    rows = {
        "jax.grad(literal)": (jax.jit(jax.grad(channel.objective, (0, 1))), (R, Q, *data)),
        "hand blocks (literal)": (jax.jit(channel.grad_blocks), (R, Q, *data)),
        "jax.grad(structured obj.)": (jax.jit(jax.grad(channel.objective_structured, (0, 1))),
                                      (R, Q, *data)),
        "Problem.grad (real layout)": (jax.jit(lambda s, R, Q:
                                               channel.structured_value_and_grad(s, R, Q)[1]),
                                       (stats, R, Q)),
        "structured, one real-form GEMM (8nm²)": (
            jax.jit(lambda s, R, Q, G: channel.structured_value_and_grad_4m(s, R, Q, G)[1]),
            (stats, R, Q, G)),
        "structured, complex layout": (jax.jit(channel.structured_grad_complex), (stats, R, Q)),
        "floor: one (n x 2m)(2m x 2m) GEMM": (jax.jit(lambda X, G: X @ G), (X, G)),
    }
    if n * m * max(k, q) > 2**31:  # the SVD route is hopeless at large sizes
        rows.pop("hand blocks (literal)")
    return interleaved_medians(rows, repeats)


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench gradient", description=__doc__)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--sizes", nargs="+", type=shape_of("n,m,k,q"), default=None)
    add_run_options(p, repeats=21)
    a = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(a.dtype)
    if a.quick:
        sizes = [(16, 12, 20, 24)]
    elif a.sizes:
        sizes = a.sizes
    else:
        sizes = [(64, 64, 128, 256), (256, 256, 512, 1024), (512, 512, 1024, 2048),
                 (512, 512, 1024, 512), (512, 512, 1024, 8192)]
    results = []
    for n, m, k, q in sizes:
        t = bench(n, m, k, q, dtype, a.repeats)
        floor = t["floor: one (n x 2m)(2m x 2m) GEMM"]
        lit = t["jax.grad(literal)"]
        print_table(f"(n, m, k, q) = ({n}, {m}, {k}, {q}), {a.dtype}",
                    ["variant", "median ms", "vs jax.grad(lit)", "vs floor"],
                    [[name, f"{1e3 * sec:.3f}", f"{lit / sec:.1f}x", f"{sec / floor:.2f}x"]
                     for name, sec in t.items()])
        gflops = 8 * n * m * m / floor / 1e9
        results.append({"n": n, "m": m, "k": k, "q": q, "median_s": t,
                        "speedup_structured_vs_literal_grad": lit
                        / t["Problem.grad (real layout)"],
                        "structured_over_floor": t["Problem.grad (real layout)"] / floor,
                        "floor_gflops": gflops})
    doc = {"benchmark": "gradient", "dtype": a.dtype, "machine": machine(),
           "repeats": a.repeats, "results": results}
    if not a.quick or a.out:
        write_result(doc, "gradient", a.out)
    return doc


if __name__ == "__main__":
    main()
