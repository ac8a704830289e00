"""One module per seed derivation: objectives, hand gradients, exact solvers, data generators;
:mod:`~matgrad_jax.problems.seeds` registers them; :mod:`~matgrad_jax.problems.examples` holds
two users' derivations (a matrix factorisation, a Gaussian likelihood in an SPD matrix)."""

from . import channel, gram
from .seeds import register_builtins

__all__ = ["channel", "gram", "register_builtins"]
