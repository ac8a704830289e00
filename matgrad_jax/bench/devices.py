"""Throughput of :func:`~matgrad_jax.solve_batch` against the number of devices.

Each device count runs in a fresh process (the count is fixed when JAX starts): on CPU with
``--xla_force_host_platform_device_count=D`` (the devices then share this machine's cores, so the
curve flattens at the core count), on GPU with the first D GPUs. The counts run in turn for
``--rounds`` rounds, and each count's time is the median of its rounds' medians. Usage:
    matgrad bench devices [--devices 1 2 4] [--batch 4096] [--size 16,8,12,20] [--rounds 3]
                          [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from ..fit import METHODS
from .common import add_run_options, machine, positive_int, print_table, shape_of, write_result

_WORKER = r"""
import json, sys, time
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
from matgrad_jax import solve_batch
from matgrad_jax.bench.batch import make_batch
from matgrad_jax.problems import channel
from matgrad_jax.scale import device_mesh
b, size, method, repeats, d = json.loads(sys.argv[1])
out = sys.argv[2]
devices = jax.devices()[:d]
arrays = dict(zip(channel.DATA_NAMES, (np.asarray(a) for a in make_batch(b, tuple(size),
                                                                          "float64"))))
mesh = device_mesh(devices=devices)
jax.block_until_ready(solve_batch(arrays, method=method, mesh=mesh))
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(solve_batch(arrays, method=method, mesh=mesh))
    times.append(time.perf_counter() - t0)
with open(out, "w") as fh:  # a file of its own: the runtime may write to stdout too
    json.dump({"devices": len(devices), "platform": devices[0].platform,
               "median_s": float(np.median(times))}, fh)
"""


def run_one(d, b, size, method, repeats, platform, timeout=90):
    env = dict(os.environ)
    if platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={d}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        try:
            proc = subprocess.run([sys.executable, "-c", _WORKER,
                                   json.dumps([b, size, method, repeats, d]), out],
                                  env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            # XLA:CPU with several forced host devices sometimes never returns from a large
            # batched program (jaxlib 0.10.2); record it instead of waiting forever.
            print(f"  {d} device(s), {method}: no result within {timeout} s (hung)", flush=True)
            return {"devices": d, "platform": platform, "median_s": None, "hung": True}
        if proc.returncode != 0:
            raise RuntimeError(f"device count {d}: {proc.stderr.strip().splitlines()[-1]}")
        with open(out) as fh:
            return json.load(fh)


def _over_rounds(runs: list[dict]) -> dict:
    """One device count's rounds: the median of their medians (None if any hung), the fastest
    and every round's."""
    times = [r["median_s"] for r in runs]
    if any(t is None for t in times):
        return {**runs[0], "median_s": None, "hung": True, "rounds_s": times}
    return {**runs[0], "median_s": float(np.median(times)), "best_s": min(times),
            "rounds_s": times}


def main(argv=None):
    p = argparse.ArgumentParser(prog="matgrad bench devices", description=__doc__)
    p.add_argument("--devices", nargs="+", type=positive_int, default=[1, 2, 4])
    p.add_argument("--batch", type=positive_int, default=4096)
    p.add_argument("--size", type=shape_of("n,m,k,q"), default="16,8,12,20")
    p.add_argument("--methods", nargs="+", default=["exact", "cg"], choices=METHODS)
    p.add_argument("--platform", default=None, help="cpu (forced host devices) or gpu")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="run the device counts this many times, in turn (default 3; 1 with "
                        "--quick); each count's time is the median over its rounds")
    add_run_options(p, repeats=21)
    a = p.parse_args(argv)
    info = machine()
    platform = a.platform or info["platform"]
    b = 64 if a.quick else a.batch
    size = list(a.size)
    devices = [1, 2] if a.quick else a.devices
    results = []
    for method in a.methods[:1] if a.quick else a.methods:
        # the counts in turn, round after round: this VM's speed drifts for seconds at a time
        # (see bench.batch), and one process per count gave exact on one device 12-18 ms in
        # runs a minute apart
        runs = [[run_one(d, b, size, method, 1 if a.quick else a.repeats, platform)
                 for d in devices] for _ in range(1 if a.quick else a.rounds)]
        rows = [_over_rounds([run[i] for run in runs]) for i in range(len(devices))]
        base = rows[0]["median_s"]
        for r in rows:
            ok = r["median_s"] is not None and base is not None
            r.update(method=method,
                     problems_per_s=b / r["median_s"] if r["median_s"] else None,
                     speedup_vs_first=base / r["median_s"] if ok else None)
        results += rows
    print_table(f"solve_batch: {b} problems of (n, m, k, q) = {tuple(size)}, float64, "
                f"{platform}", ["method", "devices", "median ms", "problems/s", "speed-up"],
                [[r["method"], r["devices"],
                  "hung" if r["median_s"] is None else f"{1e3 * r['median_s']:.1f}",
                  "—" if r["problems_per_s"] is None else f"{r['problems_per_s']:.0f}",
                  "—" if r["speedup_vs_first"] is None else f"{r['speedup_vs_first']:.2f}x"]
                 for r in results])
    doc = {"benchmark": "devices", "platform": platform, "batch": b, "size": size,
           "rounds": len(runs),
           "machine": {**info, "platform": platform}, "results": results,
           "note": "forced host devices share the machine's cores" if platform == "cpu" else ""}
    if not a.quick or a.out:
        write_result(doc, "devices", a.out)
    return doc


if __name__ == "__main__":
    main()
