"""Helpers for users' own test suites."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._typing import ArgNums
from .audit import GradientReport, check_gradient


class GradientAssertionError(AssertionError):
    """Raised by :func:`assert_gradient`; ``.report`` holds the :class:`GradientReport`. Its
    message starts with the one-line verdict, so pytest's summary line says what failed."""

    def __init__(self, report: GradientReport):
        super().__init__(report.headline() + "\n\n" + report.to_markdown())
        self.report = report


def assert_gradient(fun: Callable, grad_fun: Callable, args: Sequence, *, argnums: ArgNums = 0,
                    **options: Any) -> GradientReport:
    """:func:`matgrad_jax.check_gradient`, raising :class:`GradientAssertionError` unless it passed.

    Returns the report when it passed.
    """
    report = check_gradient(fun, grad_fun, args, argnums=argnums, **options)
    if not report.passed:
        raise GradientAssertionError(report)
    return report
