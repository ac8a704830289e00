"""The registry of derivations: every (objective, hand gradient) pair with its source.

:func:`register` (or the :func:`derivation` decorator) adds one; the two seed problems register
themselves through the same call. The audit, the CLI (``matgrad audit FILE.py``), the pytest
plugin (``pytest --matgrad``) and the notebooks iterate :func:`derivations`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._checks import InputError
from ._typing import ArgNums, ExampleArgs

if TYPE_CHECKING:
    from .audit.derivation_report import DerivationReport


@dataclass(frozen=True)
class Derivation:
    """One hand-derived gradient beside its objective.

    Attributes:
      name: e.g. ``"channel/phi/published"`` or a user's ``"mf/right"``.
      objective: ``fun(*args) -> scalar``.
      gradient: ``grad(*args)`` -> the gradient w.r.t. ``args[argnums]`` (a tuple when argnums is).
      argnums: which arguments the gradient is taken with respect to.
      arg_names: the arguments' names, in order.
      source: where the formula comes from (a seed file and the equation, a paper, a notebook).
      published: True for a transcription of a published formula (mistakes included).
      example_args: ``example_args(seed=0) -> args`` (at rectangular shapes, ideally).
      notes: what is known about the variant.
      domains: the arguments' domains for the audit (see :func:`~matgrad_jax.check_gradient`).
      hvp: ``hvp(*args, v)``, a hand Hessian-vector product, audited by
        :func:`~matgrad_jax.check_hessian` (None: none given).
      builtin: True for the seeds' derivations that ship with matgrad_jax.
      chain: the name of the registered chain (:func:`register_chain`) that derives this
        gradient line by line, if any; ``matgrad audit`` shows its first wrong line.
      solver_options: per method, the options fitting it needs (see :class:`~matgrad_jax.Model`).
      rows: ``{argument name: axis}``, the arguments whose ``axis`` indexes rows that the
        objective treats independently (see :class:`~matgrad_jax.Model`); None: none declared.
    """

    name: str
    objective: Callable
    gradient: Callable
    argnums: int | tuple[int, ...]
    arg_names: tuple[str, ...]
    source: str
    published: bool
    example_args: Callable[..., tuple]
    notes: str = ""
    formula: str = field(default="", compare=False)
    domains: dict | None = field(default=None, compare=False)
    hvp: Callable | None = field(default=None, compare=False)
    builtin: bool = field(default=False, compare=False)
    chain: str | None = field(default=None, compare=False)
    solver_options: dict | None = field(default=None, compare=False)
    rows: dict | None = field(default=None, compare=False)


_REGISTRY: dict[str, Derivation] = {}
_NAME = re.compile(r"^[A-Za-z0-9_.:\-/]+$")


def _check_new_name(name, registry: dict, what: str, replace: bool) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"name: expected a non-empty name of letters, digits and _ . : - /, "
                         f"got {name!r}")
    if name in registry and not replace:
        raise InputError(f"name: a {what} {name!r} is registered already; pass replace=True "
                         "to replace it")


def _signature_names(objective, arg_names) -> tuple[str, ...]:
    if arg_names is not None:
        return tuple(arg_names)
    try:
        return tuple(p.name for p in inspect.signature(objective).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        return ()


def _example_callable(name: str, example_args) -> Callable[..., tuple]:
    if callable(example_args):
        return example_args
    if isinstance(example_args, (tuple, list)):
        args = tuple(example_args)
        return lambda seed=0: args
    raise InputError(f"example_args of {name!r}: expected a tuple of arguments or a callable "
                     f"example_args(seed) -> tuple, got {type(example_args).__name__}")


def _solver_options(name: str, options: Mapping | None) -> dict | None:
    """``{method: {option: value}}``, checked: known methods, mappings of named options."""
    if options is None:
        return None
    from .minimize import METHODS

    if not isinstance(options, Mapping):
        raise InputError(f"solver_options of {name!r}: expected a mapping from a method to its "
                         f"options, got {type(options).__name__}")
    out = {}
    for method, opts in options.items():
        if method not in METHODS or method == "auto":
            raise InputError(f"solver_options of {name!r}: {method!r} is not a method (one of "
                             f"{tuple(m for m in METHODS if m != 'auto')})")
        if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
            raise InputError(f"solver_options[{method!r}] of {name!r}: expected a mapping of "
                             f"option names to values, got {opts!r}")
        out[method] = dict(opts)
    return out


def _rows(name: str, rows: Mapping | None, arg_names: Sequence[str]) -> dict | None:
    """``{argument name: axis}``, checked: named arguments, non-negative integer axes."""
    if rows is None:
        return None
    if not isinstance(rows, Mapping) or not rows:
        raise InputError(f"rows of {name!r}: expected a non-empty mapping from argument names "
                         f"to axes, got {rows!r}")
    out = {}
    for arg, axis in rows.items():
        if arg not in arg_names:
            raise InputError(f"rows of {name!r}: {arg!r} names no argument of the objective "
                             f"({', '.join(arg_names)})")
        if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
            raise InputError(f"rows[{arg!r}] of {name!r}: expected an axis (an integer >= 0), "
                             f"got {axis!r}")
        out[arg] = axis
    return out


def register(name: str, objective: Callable, gradient: Callable, *, argnums: ArgNums,
             example_args: ExampleArgs, arg_names: Sequence[str] | None = None,
             domains: Mapping | None = None, source: str = "", published: bool = False,
             hvp: Callable | None = None, notes: str = "", formula: str = "",
             replace: bool = False, builtin: bool = False, chain: str | None = None,
             solver_options: Mapping | None = None,
             rows: Mapping[str, int] | None = None) -> Derivation:
    """Register a hand-derived ``gradient`` of ``objective`` under ``name``.

    Args:
      name: a unique name (letters, digits and ``_ . : - /``), e.g. ``"mf/right"``.
      objective: ``objective(*args) -> real scalar``.
      gradient: ``gradient(*args)`` -> the gradient w.r.t. ``args[argnums]``.
      argnums: an index, a name, or a tuple of them.
      example_args: the arguments to audit at: a tuple, or ``example_args(seed) -> tuple``.
      arg_names: default: ``objective``'s parameter names.
      domains: the arguments' domains (see :func:`~matgrad_jax.check_gradient`).
      source: where the derivation comes from (a paper, a seed file and line).
      published: True for a formula transcribed as published (a failure is then expected).
      hvp: an optional hand Hessian product ``hvp(*args, v)``, audited by
        :func:`~matgrad_jax.check_hessian`.
      notes: free text shown with the derivation.
      formula: the formula as text, for the report.
      builtin: True for the package's own (seed) derivations.
      chain: the name of the registered chain (line-by-line derivation) it comes from.
      solver_options: what fitting the model needs per method, e.g. ``{"alternating":
        {"block_step": "newton", "balance": solvers.balance_factors}}`` for a factorisation
        (see :class:`~matgrad_jax.Model`).
      rows: ``{argument name: axis}`` where the objective is a sum over rows along those axes,
        each row of every named argument touching only that row of the others (plus the
        unnamed arguments, shared): ``{"X": 0, "U": 0}`` for ``‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²)``.
        :func:`~matgrad_jax.solve_rows` spreads those rows over the devices.
      replace: replace an existing derivation of that name (else :class:`InputError`).

    Returns:
      The :class:`Derivation`.
    """
    _check_new_name(name, _REGISTRY, "derivation", replace)
    for what, fn in (("objective", objective), ("gradient", gradient)):
        if not callable(fn):
            raise InputError(f"{what} of {name!r}: expected a callable, got "
                             f"{type(fn).__name__}")
    if hvp is not None and not callable(hvp):
        raise InputError(f"hvp of {name!r}: expected a callable or None")
    arg_names = _signature_names(objective, arg_names)
    names = arg_names

    def index(a):
        if isinstance(a, str):
            if a not in names:
                raise InputError(f"argnums of {name!r}: {a!r} names no argument of the "
                                 f"objective ({', '.join(names)})")
            return names.index(a)
        return a

    argnums = (tuple(index(a) for a in argnums) if isinstance(argnums, (tuple, list))
               else index(argnums))
    d = Derivation(name=name, objective=objective, gradient=gradient, argnums=argnums,
                   arg_names=arg_names, source=source, published=bool(published),
                   example_args=_example_callable(name, example_args), notes=notes,
                   formula=formula, domains=dict(domains) if domains else None, hvp=hvp,
                   builtin=builtin, chain=chain,
                   solver_options=_solver_options(name, solver_options),
                   rows=_rows(name, rows, arg_names))
    _REGISTRY[name] = d
    return d


def derivation(*, name: str, argnums: ArgNums, example_args: ExampleArgs, objective: Callable,
               **options: Any) -> Callable[[Callable], Callable]:
    """Decorator form of :func:`register`, applied to the gradient function::

        @matgrad_jax.derivation(name="mf/right", objective=mf, argnums=(0, 1),
                                example_args=(U, V, X))
        def mf_grad(U, V, X): ...

    Returns the gradient function unchanged.
    """
    def wrap(gradient):
        register(name, objective, gradient, argnums=argnums, example_args=example_args,
                 **options)
        return gradient
    return wrap


def unregister(name: str) -> None:
    """Remove a derivation (a user's re-run notebook cell may also ``register(replace=True)``)."""
    _REGISTRY.pop(name, None)


def derivations(pattern: str | None = None, *, builtin: bool | None = None
                ) -> tuple[Derivation, ...]:
    """All registered derivations (built-ins first, then the user's, in registration order),
    or those whose name contains ``pattern``; ``builtin=True/False`` keeps only the seeds' or
    only the user's."""
    return _select(_REGISTRY, pattern, builtin)


def _select(registry: dict, pattern, builtin) -> tuple:
    return tuple(x for x in registry.values()
                 if (builtin is None or x.builtin == builtin)
                 and (pattern is None or pattern in x.name))


def load_targets(targets: Sequence[str]) -> list[str]:
    """Import each target, a Python file (``path/derivs.py``) or an importable module
    (``pkg.derivs``), and return the names of the derivations they registered (a target
    re-registering a name counts it). One :class:`InputError` for a target that does not exist
    or fails to import, with the import error's last line."""
    import importlib
    import importlib.util
    import sys
    import traceback
    from pathlib import Path

    found: list[str] = []
    for target in targets:
        before = {k: id(v) for k, v in _REGISTRY.items()}
        path = Path(target)
        try:
            if target.endswith(".py") or path.is_file():
                if not path.is_file():
                    raise InputError(f"{target}: no such file")
                mod_name = f"matgrad_target_{abs(hash(str(path.resolve())))}"
                spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                sys.path.insert(0, str(path.resolve().parent))
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(mod_name, None)  # no half-run module left behind
                    raise
                finally:
                    sys.path.remove(str(path.resolve().parent))
            else:
                importlib.import_module(target)
        except InputError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the user's module: report, do not crash
            if isinstance(exc, KeyboardInterrupt):
                raise
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            raise InputError(f"{target}: cannot import: {last}") from None
        found += [k for k, v in _REGISTRY.items() if before.get(k) != id(v) and k not in found]
    return found


# ---- derivation chains: a derivation line by line ----------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A hand derivation line by line (:func:`~matgrad_jax.check_derivation`'s steps) beside its
    objective, with its source.

    Attributes:
      name: e.g. ``"channel/phi"`` or a user's ``"mf/chain"``.
      objective: ``objective(*args) -> scalar`` φ.
      steps: the lines (:class:`~matgrad_jax.audit.steps.Step`), each with its text and source.
      argnums, arg_names, domains, example_args, source, notes, builtin: as in
        :class:`Derivation`.
    """

    name: str
    objective: Callable
    steps: tuple
    argnums: int | tuple[int, ...]
    arg_names: tuple[str, ...]
    example_args: Callable[..., tuple]
    source: str = ""
    domains: dict | None = field(default=None, compare=False)
    notes: str = ""
    builtin: bool = field(default=False, compare=False)

    def check(self, seed: int = 0, **options: Any) -> DerivationReport:
        """Audit every line (:func:`~matgrad_jax.check_derivation`) at the example arguments
        ``example_args(seed)``; options as there. Returns a ``DerivationReport``."""
        from .audit.derivation import check_derivation

        return check_derivation(self.objective, self.steps, self.example_args(seed),
                                argnums=self.argnums, arg_names=self.arg_names,
                                domains=self.domains, seed=seed, name=self.name,
                                source=self.source, **options)


_CHAINS: dict[str, Chain] = {}


def register_chain(name: str, objective: Callable, steps: Sequence, *, argnums: ArgNums,
                   example_args: ExampleArgs, arg_names: Sequence[str] | None = None,
                   domains: Mapping | None = None, source: str = "", notes: str = "",
                   replace: bool = False, builtin: bool = False) -> Chain:
    """Register a derivation's lines under ``name`` (``matgrad audit`` and :func:`chains` list
    it). ``steps`` as in :func:`~matgrad_jax.check_derivation`; the rest as in
    :func:`register`."""
    from .audit.steps import normalize

    _check_new_name(name, _CHAINS, "chain", replace)
    if not callable(objective):
        raise InputError(f"objective of {name!r}: expected a callable, got "
                         f"{type(objective).__name__}")
    arg_names = _signature_names(objective, arg_names)
    c = Chain(name=name, objective=objective, steps=normalize(steps),
              argnums=tuple(argnums) if isinstance(argnums, list) else argnums,
              arg_names=tuple(arg_names), example_args=_example_callable(name, example_args),
              source=source, domains=dict(domains) if domains else None, notes=notes,
              builtin=builtin)
    _CHAINS[name] = c
    return c


def unregister_chain(name: str) -> None:
    """Remove a chain."""
    _CHAINS.pop(name, None)


def chains(pattern: str | None = None, *, builtin: bool | None = None) -> tuple[Chain, ...]:
    """All registered derivation chains (the seeds' first), or those whose name contains
    ``pattern``; ``builtin=True/False`` keeps only the seeds' or only the user's."""
    return _select(_CHAINS, pattern, builtin)


from .problems import register_builtins  # noqa: E402  (the seeds, through register())
from .problems.chains import register_chains  # noqa: E402

register_builtins(register)
register_chains(register_chain)
