"""What every command shares: the float64 switch and the one-line error."""

from __future__ import annotations

import sys


def _x64(dtype: str = "float64"):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
