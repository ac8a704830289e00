"""Audit hand-derived gradients and Hessian products: :func:`check_gradient`,
:func:`check_hessian`,
a derivation line by line with :func:`check_derivation`, and the registry-wide :func:`audit_all`
and :func:`audit_chains`. The names load with the first use of each (PEP 562): the gradient
audit does not import the derivation, Hessian and registry machinery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy

_WHERE = {
    "check_gradient": ".check", "default_tolerance": ".check",
    "check_derivation": ".derivation", "DerivationReport": ".derivation_report",
    "VOCABULARY": ".diagnosis", "DOMAINS": ".domains:KINDS", "check_hessian": ".hessian",
    "audit_all": ".registry_audit", "audit_chains": ".registry_audit",
    "audit_derivation": ".registry_audit", "chain_row": ".registry_audit",
    "GradientReport": ".report", "markdown_table": ".report", "text_table": ".report",
}


def __getattr__(name: str):
    return _lazy.attribute(__name__, _WHERE, name, globals())


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .check import check_gradient, default_tolerance
    from .derivation import check_derivation
    from .derivation_report import DerivationReport
    from .diagnosis import VOCABULARY
    from .domains import KINDS as DOMAINS
    from .hessian import check_hessian
    from .registry_audit import audit_all, audit_chains, audit_derivation, chain_row
    from .report import GradientReport, markdown_table, text_table

__all__ = ["DOMAINS", "VOCABULARY", "DerivationReport", "GradientReport", "audit_all",
           "audit_chains", "audit_derivation", "chain_row", "check_derivation", "check_gradient",
           "check_hessian", "default_tolerance", "markdown_table",
           "text_table"]
