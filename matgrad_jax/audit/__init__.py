"""Audit hand-derived gradients and Hessian products: :func:`check_gradient`,
:func:`check_hessian`,
a derivation line by line with :func:`check_derivation`, and the registry-wide :func:`audit_all`
and :func:`audit_chains`. The names load with the first use of each (PEP 562): the gradient
audit does not import the derivation, Hessian and registry machinery."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "check_gradient": ".check", "default_tolerance": ".check",
    "check_derivation": ".derivation", "DerivationReport": ".derivation_report",
    "VOCABULARY": ".diagnosis", "check_hessian": ".hessian",
    "audit_all": ".registry_audit", "audit_chains": ".registry_audit",
    "audit_derivation": ".registry_audit", "chain_row": ".registry_audit",
    "GradientReport": ".report", "markdown_table": ".report", "text_table": ".report",
}


def __getattr__(name: str):
    if name == "DOMAINS":
        from .domains import KINDS as value
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


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
