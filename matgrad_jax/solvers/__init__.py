"""Solvers: block-coordinate descent (the seed's method), baselines, batches.

Block-coordinate descent is a direction (:mod:`.descents`) × a step search (:mod:`.linesearch`);
every solver's state is a NamedTuple (:mod:`.state`) and its answer a :class:`SolveResult`
(:mod:`.result`, with the one termination rule and result builder)."""

from .alternating import alternating_minimize
from .backtracking_lbfgs import lbfgs_backtracking
from .baselines import adam, conjugate_gradient, lbfgs, optax_minimize
from .block_steps import balance_factors
from .descents import BlockNewton, PreconditionedGradient, block_step
from .linesearch import (
    BacktrackingStep,
    CurvatureStep,
    UnitStep,
    armijo_backtracking,
    exact_step_length,
)
from .result import REASONS, History, SolveResult
from .state import BlockDescentState, CGState, ExactState, LBFGSState, OptaxState

__all__ = ["REASONS", "BacktrackingStep", "BlockDescentState", "BlockNewton", "CGState",
           "CurvatureStep", "ExactState", "History", "LBFGSState", "OptaxState",
           "PreconditionedGradient",
           "SolveResult", "UnitStep", "adam", "alternating_minimize", "armijo_backtracking",
           "balance_factors", "block_step", "conjugate_gradient", "exact_step_length", "lbfgs",
           "lbfgs_backtracking", "optax_minimize"]
