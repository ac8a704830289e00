"""Audit every registered derivation (and its Hessian product, where it has one), and every
registered derivation chain line by line."""

from __future__ import annotations

from .._checks import InputError
from ..registry import Derivation, chains, derivations
from .check import check_gradient
from .derivation_report import DerivationReport
from .hessian import check_hessian
from .report import GradientReport


def audit_derivation(d: Derivation, *, seed: int = 0, **options) -> GradientReport:
    """:func:`check_gradient` on one registered derivation at its example arguments; a
    mistake in the registration (``example_args`` returning a dict, say) raises
    :class:`~matgrad_jax.InputError` naming the derivation."""
    try:
        return check_gradient(d.objective, d.gradient, d.example_args(seed), argnums=d.argnums,
                              arg_names=d.arg_names, seed=seed, name=d.name, source=d.source,
                              **{"domains": d.domains, **options})
    except InputError as exc:
        raise InputError(f"{d.name}: {exc}") from None


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


def audit_chains(pattern: str | None = None, *, names=None, **options
                 ) -> list[DerivationReport]:
    """``chain.check()`` for every registered chain whose name contains ``pattern`` (and is in
    ``names``, when given)."""
    return [c.check(**options) for c in chains(pattern)
            if names is None or c.name in names]


def first_wrong_line(report: DerivationReport | None) -> str:
    """The table cell for a derivation's chain: ``"8: ∂φ/∂Q = 2(BD−F)"``, ``"none"``, or
    ``"—"`` (no chain)."""
    if report is None:
        return "—"
    return report.summary()


def chain_row(r: DerivationReport) -> dict[str, str]:
    """One row of the chains' table."""
    wrong = r.lines[r.first_wrong] if r.first_wrong is not None else None
    return {"chain": r.name or "", "verdict": r.verdict,
            "lines": f"{sum(ln.passed for ln in r.lines)}/{len(r.lines)} hold",
            "first wrong line": first_wrong_line(r),
            "what is wrong there": (wrong.explanation or wrong.message) if wrong else "",
            "source": r.source or ""}
