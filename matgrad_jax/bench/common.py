"""Shared benchmark plumbing: timing, the machine record, tables, JSON results."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from ..precision import FIT_PRECISION


def default_results_dir() -> Path:
    """``benchmarks/results`` of the source tree when run from it, else ``./benchmark-results``."""
    repo = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    return repo if repo.parent.is_dir() else Path("benchmark-results")


def median_time(fn, *args, repeats: int = 7, budget_s: float | None = None) -> float:
    """Median wall time of ``fn(*args)`` after one warm-up (compile) call, outputs blocked on.

    ``budget_s``: fewer repeats (at least 1) when one call would push the total past it.
    """
    (first,) = wall_times(fn, args, 1)
    if budget_s is not None:
        repeats = max(1, min(repeats, int(budget_s // max(first, 1e-9))))
    return statistics.median(wall_times(fn, args, repeats))


def wall_times(fn, args, n: int) -> list[float]:
    """Wall times of ``n`` calls of ``fn(*args)``, each blocked on its outputs."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


def _argument(text: str, convert, valid, expected: str):
    """``convert(text)`` if it parses and is ``valid``, else an argparse error naming
    ``expected`` and what was given."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch, a size, a count of repeats)."""
    return _argument(text, int, lambda v: v >= 1, "a positive integer")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (a duration in seconds)."""
    return _argument(text, float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def shape_of(names: str):
    """argparse type for sizes such as ``"8,4,6,10"`` named ``names`` (``"n,m,k,q"``): a tuple
    of positive integers, one per name."""
    count = len(names.split(","))

    def parse(text: str) -> tuple[int, ...]:
        parts = text.split(",")
        if len(parts) != count:
            raise argparse.ArgumentTypeError(
                f"expected {count} comma-separated positive integers ({names}), got {text!r}")
        return tuple(positive_int(v) for v in parts)

    parse.__name__ = f"({names})"  # argparse names the type in its message
    return parse


def add_run_options(p, repeats: int, processes: int | None = None) -> None:
    """The options every benchmark takes: ``--repeats``, ``--quick`` (tiny sizes, the smoke
    test) and ``--out`` (the JSON path; default ``benchmarks/results/<name>_<platform>…``); with
    ``processes``, also ``--processes N``: run in N fresh processes and report medians (see
    :func:`in_fresh_processes`; ``processes`` without ``--quick``, 1 with it)."""
    p.add_argument("--repeats", type=positive_int, default=repeats)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default=None)
    if processes is not None:
        p.add_argument("--processes", type=int, default=None,
                       help=f"fresh processes to run the benchmark in, one after another; times "
                            f"and ratios are their medians (default {processes}; 1 with --quick)")
        p.set_defaults(processes_default=processes)


def timed_burst(fn, args, last: float | None, burst_s: float = 0.05) -> float:
    """One sample of ``fn(*args)``'s wall time: a single call when it is long (or ``last`` is
    None), else the median of a burst of calls lasting about ``burst_s`` (at most 50). A short
    call straight after a long one measures caches refilling and the thread pool waking up
    (up to 2x here), not the function."""
    n = 1 if last is None else max(1, min(50, int(burst_s / max(last, 1e-9))))
    return statistics.median(wall_times(fn, args, n))


def interleaved_medians(fns: dict, repeats: int = 7) -> dict:
    """Median wall time of each ``fn(*args)`` in ``fns = {name: (fn, args)}``, timed in rounds
    (every function once per round, after one warm-up call each; short ones as bursts, see
    :func:`timed_burst`), so drifts in the machine's speed hit all of them alike and their
    ratios hold."""
    for fn, args in fns.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (fn, args) in fns.items():
            last = times[name][-1] if times[name] else None
            times[name].append(timed_burst(fn, args, last))
    return {name: statistics.median(t) for name, t in times.items()}


def machine() -> dict:
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {"platform": dev.platform, "device": dev.device_kind, "device_count": len(jax.devices()),
            "cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            # None: XLA's default, which on NVIDIA GPUs runs float32 products on TF32 tensor cores
            "matmul_precision": jax.config.jax_default_matmul_precision,
            # what the fitting code (statistics, exact solve, solvers) traces its products at
            "fit_matmul_precision": FIT_PRECISION,
            "date": time.strftime("%Y-%m-%d")}


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))))


def write_result(doc: dict, name: str, out: str | os.PathLike | None = None) -> Path:
    """Atomically write ``doc`` to ``out`` or ``<results>/<name>_<platform>[_<dtype>].json``."""
    from ..io import atomic_write_json

    if out is None:
        plat = doc["machine"]["platform"]
        suffix = f"_{doc['dtype']}" if "dtype" in doc else ""
        out = default_results_dir() / f"{name}_{plat}{suffix}.json"
    atomic_write_json(out, doc)
    print(f"\nwrote {out}")
    return Path(out)


def fmt_ms(seconds) -> str:
    return "—" if seconds is None else f"{1e3 * seconds:.3f}"


def process_count(p, a) -> int:
    """``--processes`` as given, else the benchmark's default (1 with ``--quick``)."""
    count = a.processes if a.processes is not None else (1 if a.quick else a.processes_default)
    if count < 1:
        p.error(f"--processes: expected a count >= 1, got {count}")
    return count


def in_fresh_processes(name: str, argv: list[str] | None, count: int) -> list[dict]:
    """The documents of ``count`` runs of ``matgrad bench <name> *argv`` (``argv``: the
    benchmark's own arguments, ``sys.argv[1:]`` if None), each in a fresh process, one after
    another. Each child gets ``--processes 1 --out <temporary file>`` after them (argparse keeps
    an option's last value).

    On this project's 2-core CPU the cost per call of a loop of small compiled calls differed
    between runs of the same code by up to 2.5x (4096 calls: 54 to 137 ms). Timed in one process
    for longer, the loop switches between about 13 and 23 µs a call for seconds at a time, so a
    short run in one process is one draw; the benchmarks that rest on such ratios report the
    median over processes (pyperf spawns worker processes for the same reason)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    root = Path(__file__).resolve().parents[2]  # the package's parent: importable in the child
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    docs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            print(f"\n--- process {i + 1} of {count} ---", flush=True)
            out = Path(tmp) / f"{i}.json"
            code = subprocess.call([sys.executable, "-m", "matgrad_jax", "bench", name, *argv,
                                    "--processes", "1", "--out", str(out)], env=env)
            if code:
                raise RuntimeError(f"bench {name}: process {i + 1} of {count} exited with {code}")
            docs.append(json.loads(out.read_text()))
    return docs


def median_of(values):
    """Median of the values that are not None (None if none is)."""
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None
