"""Audit every registered derivation (and its Hessian product, where it has one)."""

from __future__ import annotations

from ..registry import Derivation, derivations
from .check import check_gradient
from .hessian import check_hessian
from .report import GradientReport


def audit_derivation(d: Derivation, *, seed: int = 0, **options) -> GradientReport:
    """:func:`check_gradient` on one registered derivation at its example arguments."""
    return check_gradient(d.objective, d.gradient, d.example_args(seed), argnums=d.argnums,
                          arg_names=d.arg_names, seed=seed, name=d.name, source=d.source,
                          **{"domains": d.domains, **options})


def audit_hessian(d: Derivation, *, seed: int = 0, **options) -> GradientReport:
    """:func:`check_hessian` on a derivation's Hessian product (``d.hvp``)."""
    return check_hessian(d.objective, d.hvp, d.example_args(seed), argnums=d.argnums,
                         arg_names=d.arg_names, seed=seed, name=f"{d.name}/hvp",
                         source=d.source + " (Hessian product)",
                         **{"domains": d.domains, **options})


def audit_all(pattern: str | None = None, *, names=None, **options) -> list[GradientReport]:
    """Every derivation whose name contains ``pattern`` (and is in ``names``, when given), and
    the Hessian products they carry."""
    out = []
    for d in derivations(pattern):
        if names is not None and d.name not in names:
            continue
        out.append(audit_derivation(d, **options))
        if d.hvp is not None:
            out.append(audit_hessian(d, **options))
    return out
