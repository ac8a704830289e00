"""Audit hand-derived gradients and Hessian products: :func:`check_gradient`,
:func:`check_hessian` and the registry-wide :func:`audit_all`."""

from .check import check_gradient, default_tolerance
from .diagnosis import VOCABULARY
from .domains import KINDS as DOMAINS
from .hessian import check_hessian
from .registry_audit import audit_all, audit_derivation
from .report import GradientReport, markdown_table, text_table

__all__ = ["DOMAINS", "VOCABULARY", "GradientReport", "audit_all", "audit_derivation",
           "check_gradient", "check_hessian", "default_tolerance", "markdown_table",
           "text_table"]
