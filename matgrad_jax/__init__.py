"""matgrad_jax: hand-derived matrix gradients beside jitted objectives; audit them; fit with them."""

from . import identities, problems
from ._checks import InputError
from .audit import GradientReport, check_gradient
from .registry import Derivation, derivations
from .solvers import SolveResult, alternating_minimize

__version__ = "0.1.0"

__all__ = [
    "Derivation",
    "GradientReport",
    "InputError",
    "SolveResult",
    "alternating_minimize",
    "check_gradient",
    "derivations",
    "identities",
    "problems",
    "__version__",
]
