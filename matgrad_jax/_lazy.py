"""Names of a package loaded on first use (PEP 562 ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


def attribute(package: str, where: Mapping[str, str], name: str, namespace: dict):
    """``package``'s attribute ``name``: from the module ``where[name]`` (``".module"``, or
    ``".module:attribute"`` where the name differs there), else the submodule ``name``; kept in
    ``namespace`` (the package's globals) so it is looked up once. An unknown name raises
    ``AttributeError``, as a missing attribute does."""
    if name in where:
        module, _, attr = where[name].partition(":")
        value = getattr(importlib.import_module(module, package), attr or name)
    else:
        try:
            value = importlib.import_module(f".{name}", package)
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    namespace[name] = value
    return value
