"""Run :func:`~matgrad_jax.solve_batch` across processes (hosts) with ``jax.distributed``.

On a cluster, start one process per host (or per GPU) with the same arguments and its own
``--process-id``::

    python -m matgrad_jax.multihost --coordinator HOST0:1234 --num-processes 2 --process-id 0
    python -m matgrad_jax.multihost --coordinator HOST0:1234 --num-processes 2 --process-id 1

(on SLURM, Open MPI or Cloud TPU, ``jax.distributed.initialize()`` without arguments finds these
itself). Every process builds the same batch; ``solve_batch`` places it on the global mesh, each
process copying only its own shards to its own devices; each device solves its slice with no
communication, and ``process_allgather`` brings the answer back to every process. Each process
checks its own shards against single-problem solves; process 0 writes a JSON summary
(``--out``) and, with ``--report-dir``, every process writes its own ``process-<id>.json`` there.
Results travel through files, never through stdout, where the distributed runtime's threads
also print.

On one machine, for a demonstration or a test: ``--local-devices 2`` gives each process two CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count``) and the coordinator is
``127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m matgrad_jax.multihost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coordinator", required=True, help="HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, required=True)
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--local-devices", type=int, default=None,
                   help="CPU only: number of host devices this process exposes")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--method", default="exact")
    p.add_argument("--out", default=None, help="process 0 writes a JSON summary here")
    p.add_argument("--report-dir", default=None,
                   help="each process writes its own summary to DIR/process-<id>.json")
    args = p.parse_args(argv)
    if args.local_devices:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.local_devices}")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    import numpy as np
    from jax.experimental import multihost_utils

    from .fit import fit
    from .problems import channel
    from .scale import solve_batch

    # The same data in every process (same seeds); in real use each host may read it from disk.
    ds = [channel.make_data(9, 5, 6, 8, noise=0.01, seed=s) for s in range(args.batch)]
    data = {k: np.stack([np.asarray(d[k]) for d in ds]) for k in channel.DATA_NAMES}
    t0 = time.perf_counter()
    R, Q = solve_batch(data, method=args.method, max_iters=2000)
    R.block_until_ready()
    seconds = time.perf_counter() - t0

    # This process's shards against single-problem solves of the same problems.
    local_err = 0.0
    local_problems = []
    for shard in R.addressable_shards:
        start = shard.index[0].start or 0
        for j in range(shard.data.shape[0]):
            i = start + j
            d = ds[i]
            ref = fit(channel.Problem(*(d[k] for k in channel.DATA_NAMES)), method=args.method,
                      max_iters=2000)
            local_err = max(local_err, float(np.max(np.abs(np.asarray(shard.data[j])
                                                           - np.asarray(ref.params[0])))))
            local_problems.append(i)
    full = np.asarray(multihost_utils.process_allgather(R, tiled=True))
    errs = multihost_utils.process_allgather(np.array([local_err]))
    model = _users_model(args.batch, multihost_utils)
    summary = {
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "sharding": str(R.sharding.spec),
        "fully_addressable": bool(R.is_fully_addressable),
        "gathered_shape": list(full.shape),
        "max_error_vs_single": float(np.max(errs)),
        "local_problems": sorted(local_problems),
        "seconds": seconds,
        "model": model,
    }
    from .io import atomic_write_json

    report = {"process": jax.process_index(), **summary}
    print(json.dumps(report))
    if args.report_dir:
        atomic_write_json(os.path.join(args.report_dir, f"process-{jax.process_index()}.json"),
                          report)
    if args.out and jax.process_index() == 0:
        atomic_write_json(args.out, summary)
    jax.distributed.shutdown()
    return 0


def _users_model(batch: int, multihost_utils) -> dict:
    """A user's model across the processes too: ``matgrad_jax.examples``' factorisation (X as
    data, U and V fitted), each process's shards against single ``minimize`` solves."""
    import jax
    import numpy as np

    from . import examples
    from .minimize import minimize
    from .scale import solve_batch

    rng = np.random.default_rng(0)
    X, U0, V0 = (rng.standard_normal((batch, *s)) for s in ((8, 6), (8, 2), (6, 2)))
    U, V = solve_batch({"X": X}, model="examples/mf/right", init={"U": U0, "V": V0})
    one = jax.jit(lambda x, u, v: minimize(lambda U, V: examples.mf_objective(U, V, x), (u, v),
                                           grad=lambda U, V: examples.mf_gradient(U, V, x),
                                           verify="off").params[0])
    err, mine = 0.0, []
    for shard in U.addressable_shards:
        start = shard.index[0].start or 0
        for j in range(shard.data.shape[0]):
            i = start + j
            ref = one(X[i], U0[i], V0[i])
            err = max(err, float(np.max(np.abs(np.asarray(shard.data[j]) - np.asarray(ref)))))
            mine.append(i)
    errs = multihost_utils.process_allgather(np.array([err]))
    full = np.asarray(multihost_utils.process_allgather(U, tiled=True))
    return {"gathered_shape": list(full.shape), "max_error_vs_single": float(np.max(errs)),
            "local_problems": sorted(mine), "fully_addressable": bool(U.is_fully_addressable)}


if __name__ == "__main__":
    sys.exit(main())
