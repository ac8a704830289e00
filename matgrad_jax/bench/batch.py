"""Many small seed-1 problems: one vmapped solve vs a Python loop of single jitted solves.

Both paths compile once, with the same options (``xla_cpu.batch_compiler_options``, as
:func:`matgrad_jax.solve_batch` does; the JSON records them), and start from the raw arrays
(statistics and solve in one jitted function), so the difference is what batching buys: one
dispatch and wide kernels instead of one dispatch per problem. The loop is timed over
``--loop-sample`` problems and scaled to the batch (its cost per problem is constant). For
``exact`` a second loop calls the public single-problem ``channel.solve_exact`` on NumPy arrays
(validation included), as code without vmap would. Throughputs are steady rates: the loop's over
hundreds of calls, the vmapped solve's over a burst of calls; a single vmapped call straight after
the loop ("cold") is timed and reported too.

Each process times both paths in interleaved rounds for at least ``--seconds`` per method. On
this project's 2-core VM each path switches between two speeds for seconds at a time: the loop
between about 13 µs a call (Python's dispatch on one core, XLA's execution on the other) and 23 µs
(both on one core: the speed it has under ``taskset -c 0``), the vmapped solve between about 1.1
and 2.5 ms. So besides the median ratio the JSON gives the ratio of the two *fast states* (each
path's fastest round; each round is itself hundreds of calls, or the median of a burst), which
does not depend on how often the VM slowed either, and every round's times (``round_ms``). (A
10th percentile missed the loop's fast state in runs where the VM let it run there in under a
tenth of the rounds.)

The whole comparison runs in ``--processes`` fresh processes (5 by default, one after another),
and the JSON reports the median of their per-process ratios with the range (the loop's cost per
call differed between short runs of the same code by up to 2.5x, 54-137 ms for 4096 calls; pyperf
spawns worker processes for the same reason). Usage:
    matgrad bench batch [--batch 4096] [--size 8,4,6,10] [--methods exact cg] [--processes 5]
                        [--seconds 4] [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..fit import METHODS, fit_stepper
from ..problems import channel
from ..solvers.stepper import run
from ..xla_cpu import batch_compiler_options
from .common import (
    add_run_options,
    in_fresh_processes,
    machine,
    median_of,
    nonnegative_float,
    positive_int,
    print_table,
    process_count,
    shape_of,
    timed_burst,
    wall_times,
    write_result,
)


def _solver(method, max_iters):
    def one(A, B, Z, P, S, W):
        problem = channel.Problem.from_stats(channel.channel_statistics(A, B, Z, P, S, W))
        z = jnp.zeros_like(A)
        return run(fit_stepper(problem, (z, z), method=method, max_iters=max_iters)).params
    return one


def make_batch(b, size, dtype, seed=0):
    n, m, k, q = size
    keys = np.arange(b) + seed
    make = jax.jit(jax.vmap(lambda s: channel.data._make_data(n, m, k, q, 0.01, s, jnp.dtype(dtype),
                                                         1.0)))
    d = make(jnp.asarray(keys))
    return [d[name] for name in channel.DATA_NAMES]


def bench_method(method, arrays, loop_sample, repeats, max_iters, seconds=0.0):
    one = _solver(method, max_iters)
    # both compiled with the library's small-problem options (as solve_batch is): the ratio is
    # what batching buys, not what the options do
    options = batch_compiler_options(method)
    batched = jax.jit(jax.vmap(one), compiler_options=options)
    single = jax.jit(one, compiler_options=options)
    b = arrays[0].shape[0]
    per = [[np.asarray(a[i]) for a in arrays] for i in range(min(loop_sample, b))]
    per = [[jnp.asarray(x) for x in p] for p in per]  # on the device, as a user's loop would be
    jax.block_until_ready(batched(*arrays))
    jax.block_until_ready(single(*per[0]))

    def loop():
        out = None
        for p in per:
            out = single(*p)
        return out

    # Interleaved rounds: this machine's speed drifts by up to 2x over minutes, and the ratio
    # must come from the same moments. Each round times the loop, then one batched call straight
    # after it ("cold": XLA's thread pool waking up and caches refilling after the loop, up to 2x
    # here), then a burst of batched calls (see common.timed_burst). Throughput is the steady
    # rate, the burst's, as the loop's is (hundreds of calls back to back); the cold call is kept
    # in the results. Rounds go on for at least `seconds`, and each path's fastest round is its
    # fast state (see the module's docstring).
    t_b, t_c, t_l = [], [], []
    start = time.perf_counter()
    while len(t_b) < repeats or time.perf_counter() - start < seconds:
        t_l += wall_times(loop, (), 1)
        t_c += wall_times(batched, arrays, 1)
        t_b.append(timed_burst(batched, arrays, t_b[-1] if t_b else t_c[-1]))
    scale = b / len(per)
    t_batch = float(np.median(t_b))
    t_cold = float(np.median(t_c))
    t_loop = float(np.median(t_l)) * scale
    fast_batch = min(t_b)
    fast_loop = min(t_l) * scale
    api = None
    if method == "exact":
        # what a user without vmap writes: the public single-problem solve, NumPy in, per problem
        host = [[np.asarray(a[i]) for a in arrays] for i in range(min(128, b))]
        channel.solve_exact(*host[0])
        t0 = time.perf_counter()
        for p in host:
            out = channel.solve_exact(*p)
        jax.block_until_ready(out)
        api = (time.perf_counter() - t0) * b / len(host)
    R_b = np.asarray(batched(*arrays)[0][: len(per)])
    R_l = np.stack([np.asarray(single(*p)[0]) for p in per])
    return {"batch_s": t_batch, "loop_s": t_loop, "loop_measured_on": len(per),
            "throughput_ratio": t_loop / t_batch,
            "batch_cold_s": t_cold, "cold_throughput_ratio": t_loop / t_cold,
            "rounds": len(t_b), "batch_fast_s": fast_batch,
            "loop_fast_s": fast_loop, "fast_throughput_ratio": fast_loop / fast_batch,
            "round_ms": {"batch": [round(1e3 * t, 3) for t in t_b],
                         "loop": [round(1e3 * t * scale, 1) for t in t_l]},
            "api_loop_s": api, "api_throughput_ratio": None if api is None else api / t_batch,
            "problems_per_s_batch": b / t_batch, "problems_per_s_loop": b / t_loop,
            "max_abs_diff": float(np.max(np.abs(R_b - R_l)))}


_PER_PROCESS = ("batch_s", "loop_s", "throughput_ratio", "batch_cold_s", "cold_throughput_ratio",
                "api_loop_s", "api_throughput_ratio", "batch_fast_s", "loop_fast_s",
                "fast_throughput_ratio")


def combine(docs: list[dict]) -> dict:
    """One result from the documents of several processes: per method, the medians of the
    per-process times and ratios (each ratio is the loop and the batch of one process, timed in
    its interleaved rounds), the ratios' range, and every process's numbers."""
    first = docs[0]
    results = []
    for i, r0 in enumerate(first["results"]):
        rs = [d["results"][i] for d in docs]
        out = {"method": r0["method"], "loop_measured_on": r0["loop_measured_on"]}
        out.update({key: median_of([r[key] for r in rs]) for key in _PER_PROCESS})
        ratios = [r["throughput_ratio"] for r in rs]
        fast = [r["fast_throughput_ratio"] for r in rs]
        out.update(throughput_ratio_min=min(ratios), throughput_ratio_max=max(ratios),
                   fast_throughput_ratio_min=min(fast), fast_throughput_ratio_max=max(fast),
                   rounds=sum(r["rounds"] for r in rs),
                   problems_per_s_batch=first["batch"] / out["batch_s"],
                   problems_per_s_loop=first["batch"] / out["loop_s"],
                   max_abs_diff=max(r["max_abs_diff"] for r in rs),
                   processes=[{key: r[key] for key in (*_PER_PROCESS, "rounds", "round_ms")}
                              for r in rs])
        results.append(out)
    return {**first, "processes": len(docs), "results": results}


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench batch", description=__doc__)
    p.add_argument("--batch", type=positive_int, default=4096)
    p.add_argument("--size", type=shape_of("n,m,k,q"), default="8,4,6,10")
    p.add_argument("--methods", nargs="+", default=["exact", "cg"], choices=METHODS)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--loop-sample", type=positive_int, default=512)
    p.add_argument("--max-iters", type=positive_int, default=200)
    p.add_argument("--seconds", type=nonnegative_float, default=4.0,
                   help="time each method for at least this long per process, in rounds "
                        "(default 4; 0 with --quick)")
    p.add_argument("--model", choices=["mf"], default=None,
                   help="a batch of a user's model instead: 'mf', factorisations of "
                        "--model-size through jit(vmap(minimize))")
    p.add_argument("--model-size", type=shape_of("n,m,r"), default="8,6,2")
    add_run_options(p, repeats=7, processes=5)
    a = p.parse_args(argv)
    if a.model:
        from . import batch_model

        jax.config.update("jax_enable_x64", True)
        doc = batch_model.run(16 if a.quick else a.batch, a.model_size, a.dtype,
                              min(a.loop_sample, 8 if a.quick else a.batch),
                              1 if a.quick else a.repeats)
        batch_model.table(doc)
        if not a.quick or a.out:
            write_result(doc, f"batch_{a.model}", a.out)
        return doc
    count = process_count(p, a)
    b = 32 if a.quick else a.batch
    size = a.size
    if count > 1:
        doc = combine(in_fresh_processes("batch", argv, count))
        title = f", median of {count} processes"
    else:
        jax.config.update("jax_enable_x64", True)
        arrays = make_batch(b, size, a.dtype)
        results = []
        for method in a.methods:
            r = bench_method(method, arrays, min(a.loop_sample, 8 if a.quick else b),
                             1 if a.quick else a.repeats, a.max_iters,
                             0.0 if a.quick else a.seconds)
            results.append({"method": method, **r})
        doc = {"benchmark": "batch", "dtype": a.dtype, "batch": b, "size": list(size),
               "machine": machine(), "processes": 1, "results": results,
               "compiler_options": {m: batch_compiler_options(m) for m in a.methods}}
        title = ""
    results = doc["results"]
    print_table(f"{b} problems of (n, m, k, q) = {size}, {a.dtype}{title}",
                ["method", "vmapped ms", "(cold)", "jitted loop ms", "ratio",
                 *(["(range)"] if count > 1 else []), "fast: vmapped", "loop", "ratio",
                 *(["(range)"] if count > 1 else []), "(cold)",
                 "solve_exact loop ms", "ratio", "problems/s (vmap)"],
                [[r["method"], f"{1e3 * r['batch_s']:.2f}", f"{1e3 * r['batch_cold_s']:.2f}",
                  f"{1e3 * r['loop_s']:.1f}", f"{r['throughput_ratio']:.0f}x",
                  *([f"{r['throughput_ratio_min']:.0f}-{r['throughput_ratio_max']:.0f}x"]
                    if count > 1 else []),
                  f"{1e3 * r['batch_fast_s']:.2f}", f"{1e3 * r['loop_fast_s']:.1f}",
                  f"{r['fast_throughput_ratio']:.0f}x",
                  *([f"{r['fast_throughput_ratio_min']:.0f}"
                     f"-{r['fast_throughput_ratio_max']:.0f}x"] if count > 1 else []),
                  f"{r['cold_throughput_ratio']:.0f}x",
                  "—" if r["api_loop_s"] is None else f"{1e3 * r['api_loop_s']:.0f}",
                  "—" if r["api_loop_s"] is None else f"{r['api_throughput_ratio']:.0f}x",
                  f"{r['problems_per_s_batch']:.0f}"] for r in results])
    if not a.quick or a.out:
        write_result(doc, "batch", a.out)
    return doc


if __name__ == "__main__":
    main()
