"""The compile options of vmapped solves of small problems: kept under this name for existing
imports; they live in :mod:`matgrad_jax.xla_cpu` with the rest of the XLA:CPU tuning."""

from __future__ import annotations

from .xla_cpu import BATCH_METHODS, BATCH_OPTIONS, batch_compiler_options

__all__ = ["BATCH_METHODS", "BATCH_OPTIONS", "batch_compiler_options"]
