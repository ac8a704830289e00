"""The ``matgrad`` command line: ``run``, ``audit``, ``example``, ``fit``, ``bench``.

One module a command: :mod:`~matgrad_jax.cli.audit`, :mod:`~matgrad_jax.cli.fit` (seed 1),
:mod:`~matgrad_jax.cli.model` (``fit --model``), :mod:`~matgrad_jax.cli.run` (``run``,
``example``, ``bench``); :mod:`~matgrad_jax.cli.parser` holds every flag.
"""

from __future__ import annotations

from .fit import _load_problem, read_named
from .parser import build_parser, main

__all__ = ["_load_problem", "build_parser", "main", "read_named"]
