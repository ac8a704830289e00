"""Solvers: block-coordinate descent (the seed's method), baselines, batches."""

from .alternating import alternating_minimize
from .baselines import adam, conjugate_gradient, lbfgs, optax_minimize
from .block_steps import balance_factors
from .linesearch import armijo_backtracking, exact_step_length
from .result import REASONS, History, SolveResult

__all__ = ["REASONS", "History", "SolveResult", "adam", "alternating_minimize",
           "balance_factors",
           "armijo_backtracking", "conjugate_gradient", "exact_step_length", "lbfgs",
           "optax_minimize"]
