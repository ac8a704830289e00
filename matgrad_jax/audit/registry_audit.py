"""Audit every registered derivation."""

from __future__ import annotations

from ..registry import Derivation, derivations
from .check import check_gradient
from .report import GradientReport


def audit_derivation(d: Derivation, *, seed: int = 0, **options) -> GradientReport:
    """:func:`check_gradient` on one registered derivation at its example arguments."""
    return check_gradient(d.objective, d.gradient, d.example_args(seed), argnums=d.argnums,
                          arg_names=d.arg_names, seed=seed, name=d.name, source=d.source,
                          **{"domains": d.domains, **options})


def audit_all(pattern: str | None = None, **options) -> list[GradientReport]:
    return [audit_derivation(d, **options) for d in derivations(pattern)]
