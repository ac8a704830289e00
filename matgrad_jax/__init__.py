"""matgrad_jax: hand-derived matrix gradients beside jitted objectives; audit; fit with them."""

from . import identities, problems
from ._checks import InputError
from .audit import GradientReport, check_gradient, check_hessian
from .fit import fit
from .minimize import GradientMismatch, MinimizeResult, minimize
from .registry import Derivation, derivation, derivations, register, unregister
from .scale import solve_batch, solve_rows
from .solvers import SolveResult, alternating_minimize

__version__ = "0.1.0"

__all__ = [
    "Derivation",
    "GradientReport",
    "GradientMismatch",
    "InputError",
    "MinimizeResult",
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
