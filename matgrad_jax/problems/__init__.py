"""One module per seed derivation: objectives, hand gradients, exact solvers, data generators."""

from . import channel, gram

__all__ = ["channel", "gram"]
