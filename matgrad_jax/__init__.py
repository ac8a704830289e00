"""matgrad_jax: hand-derived matrix gradients beside jitted objectives; audit; fit with them.

The names below load with the first use of each (PEP 562), so ``from matgrad_jax import
check_gradient`` imports the audit alone, not the solvers, the registry and the seed problems;
``import matgrad_jax as mg`` then ``mg.minimize`` loads the solvers when it is first used.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from . import _lazy
from ._checks import InputError

__version__ = "0.1.0"

_WHERE = {
    "Chain": ".registry", "Derivation": ".registry", "chains": ".registry",
    "derivation": ".registry", "derivations": ".registry", "register": ".registry",
    "register_chain": ".registry", "unregister": ".registry", "unregister_chain": ".registry",
    "DerivationReport": ".audit.derivation_report", "LineResult": ".audit.derivation_report",
    "GradientReport": ".audit.report", "check_gradient": ".audit.check",
    "check_hessian": ".audit.hessian", "check_derivation": ".audit.derivation",
    "check_derivation_latex": ".audit.latex",
    "Step": ".audit.steps", "from_gradient": ".audit.steps", "step": ".audit.steps",
    "fit": ".fit", "GradientMismatch": ".minimize", "MinimizeResult": ".minimize",
    "minimize": ".minimize", "Model": ".model", "solve_batch": ".scale", "solve_rows": ".scale",
    "SolveResult": ".solvers", "alternating_minimize": ".solvers",
}
"""Where each public name lives (loaded on first use)."""


def __getattr__(name: str):
    return _lazy.attribute(__name__, _WHERE, name, globals())


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``minimize`` (or ``fit``), which
    Python records as an attribute of the package, leaves the function of that name to be
    what ``matgrad_jax.minimize`` is, as it was when the package imported everything at once
    (the module is ``sys.modules["matgrad_jax.minimize"]``)."""

    def __setattr__(self, name, value):
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from . import identities, problems
    from .audit.check import check_gradient
    from .audit.derivation import check_derivation
    from .audit.derivation_report import DerivationReport, LineResult
    from .audit.hessian import check_hessian
    from .audit.latex import check_derivation_latex
    from .audit.report import GradientReport
    from .audit.steps import Step, from_gradient, step
    from .fit import fit
    from .minimize import GradientMismatch, MinimizeResult, minimize
    from .model import Model
    from .registry import (
        Chain,
        Derivation,
        chains,
        derivation,
        derivations,
        register,
        register_chain,
        unregister,
        unregister_chain,
    )
    from .scale import solve_batch, solve_rows
    from .solvers import SolveResult, alternating_minimize

__all__ = [
    "Chain",
    "Derivation",
    "DerivationReport",
    "LineResult",
    "Step",
    "chains",
    "check_derivation",
    "check_derivation_latex",
    "from_gradient",
    "register_chain",
    "step",
    "unregister_chain",
    "GradientReport",
    "GradientMismatch",
    "InputError",
    "MinimizeResult",
    "Model",
    "SolveResult",
    "alternating_minimize",
    "check_gradient",
    "check_hessian",
    "derivation",
    "derivations",
    "register",
    "unregister",
    "fit",
    "identities",
    "minimize",
    "problems",
    "solve_batch",
    "solve_rows",
    "__version__",
]
