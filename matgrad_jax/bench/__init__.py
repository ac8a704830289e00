"""Benchmarks (``matgrad bench``; ``benchmarks/*.py`` are thin wrappers around these).

Each module's ``main(argv) -> dict`` prints a table and writes JSON (machine, CPU/GPU model, jax
version, dtype, sizes, medians, ratios) to ``benchmarks/results/``; :mod:`.plots` draws PNGs and
:mod:`.report` writes the docs' Performance tables from that JSON.
"""

from __future__ import annotations

import importlib

BENCHMARKS = {
    "gradient": "gradient",
    "solvers": "solvers",
    "spectral": "spectral",
    "batch": "batch",
    "audit": "audit_cost",
    "devices": "devices",
    "minimize": "minimize",
}


def load(name: str):
    return importlib.import_module(f"{__name__}.{BENCHMARKS[name]}")
