"""Audit hand-derived gradients and Hessian products: :func:`check_gradient`,
:func:`check_hessian`,
a derivation line by line with :func:`check_derivation`, and the registry-wide :func:`audit_all`
and :func:`audit_chains`."""

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
