"""Type aliases of the public signatures (shapes are stated in the docstrings)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.typing import ArrayLike, DTypeLike

Array = jax.Array
PyTree = Any
"""A pytree of arrays: an array, or tuples, lists, dicts and NamedTuples of them."""
ArgNums = int | str | tuple[int | str, ...]
"""Which arguments are differentiated: an index, a parameter name, or a tuple of them."""
ExampleArgs = tuple | Callable[[int], tuple]
"""Example arguments: a tuple, or ``example_args(seed) -> tuple``."""



def is_optax_transformation(x) -> bool:
    """Whether ``x`` is an ``optax.GradientTransformation``, without importing optax (which
    costs a tenth of a second at start-up): an object of optax's exists only once optax is."""
    import sys

    optax = sys.modules.get("optax")
    return optax is not None and isinstance(x, optax.GradientTransformation)


__all__ = ["ArgNums", "Array", "ArrayLike", "DTypeLike", "ExampleArgs", "PyTree",
           "is_optax_transformation"]
