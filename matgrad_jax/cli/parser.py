"""The ``matgrad`` parser: every command, flag and help text."""

from __future__ import annotations

import argparse

from .audit import cmd_audit
from .fit import cmd_fit
from .run import cmd_bench, cmd_example, cmd_run

DESCRIPTION = "The matgrad command line: run, audit, example, fit, bench."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matgrad", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="audit every derivation and run a demo fit (built-in data)")
    r.add_argument("--out", default=None, help="folder for run.json")
    r.set_defaults(func=cmd_run)
    a = sub.add_parser("audit", help="audit registered derivations and derivation chains line "
                       "by line (the seeds', or those a file or module registers); exit 1 if "
                       "any fails")
    a.add_argument("targets", nargs="*", metavar="TARGET",
                   help="a Python file (derivs.py) or importable module (pkg.derivs) that "
                        "registers derivations or chains when imported; only theirs are "
                        "audited")
    a.add_argument("--builtin", action="store_true",
                   help="with TARGETs: audit the seeds' derivations too")
    a.add_argument("--filter", default=None, help="only derivations whose name contains this")
    a.add_argument("--json", default=None, help="write the full reports as JSON")
    a.add_argument("--markdown", default=None, help="write the table and reports as Markdown")
    a.add_argument("--no-fail", action="store_true", help="exit 0 even when some fail")
    a.set_defaults(func=cmd_audit)
    e = sub.add_parser("example", help="write a built-in example problem (A, B, Z, P, S, W)")
    e.add_argument("--out", required=True)
    e.add_argument("--n", type=int, default=96)
    e.add_argument("--m", type=int, default=64)
    e.add_argument("--k", type=int, default=128)
    e.add_argument("--q", type=int, default=256)
    e.add_argument("--noise", type=float, default=0.01)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--p-condition", type=float, default=1.0,
                   help="spread of P's column scales (1: well conditioned)")
    e.add_argument("--force", action="store_true")
    e.set_defaults(func=cmd_example)
    f = sub.add_parser("fit", help="fit H_R, H_I to a data file, or a registered model "
                       "(--model)")
    f.add_argument("data")
    f.add_argument("--out", required=True)
    f.add_argument("--method", default=None,
                   choices=["exact", "auto", "alternating", "lbfgs", "lbfgs_backtracking", "adam",
                            "cg"],
                   help="seed 1: exact (default), alternating, lbfgs, adam, cg; with --model: "
                        "auto (default: L-BFGS with backtracking), alternating, lbfgs, "
                        "lbfgs_backtracking, adam, cg")
    f.add_argument("--model", default=None, metavar="TARGET:NAME",
                   help="fit the derivation NAME that the file or module TARGET registers "
                        "(DATA: its other arguments by name, starting values <arg>0)")
    f.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    f.add_argument("--max-iters", type=int, default=5000)
    f.add_argument("--ridge", type=float, default=0.0,
                   help="add ridge·(‖R‖² + ‖Q‖²): needed where G = K_c K_cᴴ is singular "
                        "(k or q below m)")
    f.add_argument("--tol", type=float, default=None)
    f.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "default"],
                   help="precision of the fit's float32 matrix products (default: highest; "
                        "'default' is XLA's, TF32 on NVIDIA GPUs: faster, but float32 fits "
                        "then stall near a relative gap of 1e-2)")
    f.add_argument("--device", default=None, choices=["cpu", "gpu", "cuda", "tpu"],
                   help="XLA platform (default: JAX's choice)")
    f.add_argument("--names", nargs="*", metavar="NAME=FILE_NAME",
                   help="read array NAME (A, B, Z, P, S, W, R0, Q0) from FILE_NAME in DATA")
    f.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="save the solver state to DIR/checkpoint.npz every N iterations")
    f.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.npz (same data and options)")
    f.add_argument("--force", action="store_true",
                   help="overwrite an existing result or discard an existing checkpoint")
    f.add_argument("--max-array-mib", type=float, default=4096, metavar="MIB",
                   help="refuse any array of DATA that takes more than MIB mebibytes once read "
                        "(default 4096; a small compressed file can inflate to gigabytes)")
    f.set_defaults(func=cmd_fit)
    b = sub.add_parser("bench", help="benchmarks: gradient, solvers, spectral, batch, audit, "
                       "devices, all, plots, report",
                       description="matgrad bench NAME [options of that benchmark]; "
                       "e.g. matgrad bench spectral --sizes 256 512 or matgrad bench gradient "
                       "--help. 'all' runs every benchmark at its default sizes, 'plots' draws "
                       "PNGs and 'report' rewrites docs/performance/index.md's tables from "
                       "benchmarks/results/*.json.")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    """Run ``matgrad`` with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)
