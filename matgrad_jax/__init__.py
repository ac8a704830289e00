"""matgrad_jax: hand-derived matrix gradients beside jitted objectives; audit; fit with them."""

from . import identities, problems
from ._checks import InputError
from .audit import GradientReport, check_gradient, check_hessian
from .audit.derivation import check_derivation
from .audit.derivation_report import DerivationReport, LineResult
from .audit.latex import check_derivation_latex
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

__version__ = "0.1.0"

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
