"""Audit hand-derived gradients: :func:`check_gradient` and the registry-wide :func:`audit_all`."""

from .check import check_gradient, default_tolerance
from .diagnosis import VOCABULARY
from .registry_audit import audit_all, audit_derivation
from .report import GradientReport, markdown_table, text_table

__all__ = ["VOCABULARY", "GradientReport", "audit_all", "audit_derivation", "check_gradient",
           "default_tolerance", "markdown_table", "text_table"]
