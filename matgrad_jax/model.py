"""``Model``: a user's objective and hand gradient as something to fit, batch and shard.

A model splits an objective's arguments into **parameters** (the differentiated ones, fitted)
and **data** (the others, given). It holds the objective ``value(*args)``, the hand gradient
``grad(*args)`` (w.r.t. the parameters, in ``argnums`` order), and optionally a hand Hessian
product and a closed-form solve. :meth:`Model.from_derivation` builds one from a registered
derivation (:func:`matgrad_jax.register`), so what ``matgrad audit`` checks is what
``solve_batch(data, model=...)`` and ``matgrad fit --model`` fit.

Data are validated once, at the boundary (:meth:`Model.prepare`): every data argument present,
real floating point and finite, the same leading batch size throughout when stacked; nothing is
checked again inside the jitted solvers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import InputError
from ._typing import Array, ArrayLike


@dataclass(frozen=True, eq=False)
class Model:
    """An objective whose differentiated arguments are fitted and whose others are data.

    Attributes:
      name: the model's name (a registered derivation's name, for one built from it).
      value: ``value(*args) -> real scalar``, all arguments in order.
      grad: ``grad(*args)`` -> the gradient w.r.t. ``args[argnums]``: one array for one
        parameter, a tuple in ``argnums`` order for several; None: ``jax.grad`` of ``value``.
      argnums: the positions of the parameters among the arguments.
      arg_names: every argument's name, in order (data are passed by these names).
      hvp: optional ``hvp(*args, v)``, the Hessian w.r.t. the parameters applied to ``v``.
      exact: optional closed-form solve, ``exact(**data) -> parameters`` (a tuple in argnums
        order), used by ``method="exact"``.
      domains: the arguments' domains for the start audit (see
        :func:`~matgrad_jax.check_gradient`).
      source: where the model comes from.
      solver_options: what fitting it needs, per method: ``{"alternating": {"block_step":
        "newton", "balance": solvers.balance_factors}}`` declares that the blocks are quadratic
        one at a time (ALS) and that the factors are balanced between sweeps. Used wherever
        that method runs the model (:meth:`fit`, ``solve_batch(model=...)``, ``matgrad fit
        --model``); options a caller passes take precedence.
      rows: ``{argument name: axis}``: the objective is a sum over rows along those axes, each
        row of one named argument meeting only the same row of the others (and the unnamed
        arguments, shared by all rows), e.g. ``{"X": 0, "U": 0}`` for ``‖X − UVᵀ‖² +
        λ(‖U‖² + ‖V‖²)``. :func:`~matgrad_jax.solve_rows` shards those axes over the devices;
        None: the model declares no such rows.
      defaults: ``{data argument name: value}`` used where the data leave that argument out;
        None: the defaults of ``value``'s signature (``lam=0.05`` in ``def f(U, V, X,
        lam=0.05)`` makes ``lam`` optional data). Not batched: a default is shared by every
        problem of a batch.
    """

    name: str
    value: Callable
    grad: Callable | None
    argnums: tuple[int, ...]
    arg_names: tuple[str, ...]
    hvp: Callable | None = None
    exact: Callable | None = None
    domains: Mapping | None = field(default=None)
    source: str = ""
    solver_options: Mapping | None = field(default=None)
    rows: Mapping | None = field(default=None)
    defaults: Mapping | None = field(default=None)

    def __post_init__(self):
        if not callable(self.value):
            raise InputError(f"value: expected a callable, got {type(self.value).__name__}")
        if self.grad is not None and not callable(self.grad):
            raise InputError(f"grad: expected a callable or None, got {type(self.grad).__name__}")
        n = len(self.arg_names)
        if not self.argnums or any(not 0 <= i < n for i in self.argnums):
            raise InputError(f"argnums: expected positions among the {n} arguments "
                             f"{self.arg_names}, got {self.argnums}")
        if len(set(self.arg_names)) != n or not all(self.arg_names):
            raise InputError(f"arg_names: expected distinct names, got {self.arg_names}")
        from .registry import _rows, _solver_options

        object.__setattr__(self, "solver_options", _solver_options(self.name,
                                                                   self.solver_options))
        object.__setattr__(self, "rows", _rows(self.name, self.rows, self.arg_names))
        object.__setattr__(self, "defaults", _data_defaults(self))

    @classmethod
    def from_derivation(cls, derivation: Any) -> Model:
        """The model of a registered derivation: a :class:`~matgrad_jax.Derivation`, or its
        name in :func:`~matgrad_jax.derivations`."""
        from .registry import Derivation, derivations

        if isinstance(derivation, str):
            found = [d for d in derivations(builtin=None) if d.name == derivation]
            if not found and derivation.startswith("examples/"):
                from . import examples  # noqa: F401  (registers the users' examples)

                found = [d for d in derivations(builtin=None) if d.name == derivation]
            if not found:
                names = ", ".join(d.name for d in derivations(builtin=None)) or "none"
                raise InputError(f"model: no derivation named {derivation!r} is registered "
                                 f"(registered: {names})")
            derivation = found[0]
        if not isinstance(derivation, Derivation):
            raise InputError(f"model: expected a Model, a Derivation or a registered "
                             f"derivation's name, got {type(derivation).__name__}")
        names = tuple(derivation.arg_names)
        if not names:
            raise InputError(f"model {derivation.name!r}: its objective's arguments have no "
                             "names (a *args function?); register it with arg_names=...")
        argnums = derivation.argnums
        argnums = argnums if isinstance(argnums, tuple) else (argnums,)
        argnums = tuple(names.index(a) if isinstance(a, str) else int(a) for a in argnums)
        return cls(derivation.name, derivation.objective, derivation.gradient, argnums, names,
                   hvp=derivation.hvp, domains=derivation.domains, source=derivation.source,
                   solver_options=derivation.solver_options, rows=derivation.rows)

    def method_options(self, method: str, options: Mapping | None = None) -> dict:
        """The options ``method`` runs this model with: what the model declares for it
        (:attr:`solver_options`; ``"auto"`` is the method it picks), then ``options``."""
        from .minimize import AUTO_METHOD

        chosen = AUTO_METHOD if method == "auto" else method
        declared = dict((self.solver_options or {}).get(chosen, {}))
        return {**declared, **dict(options or {})}

    # -- names ---------------------------------------------------------------------------------

    @property
    def param_names(self) -> tuple[str, ...]:
        """The differentiated arguments' names, in ``argnums`` order."""
        return tuple(self.arg_names[i] for i in self.argnums)

    @property
    def data_names(self) -> tuple[str, ...]:
        """The other arguments' names, in order."""
        return tuple(n for i, n in enumerate(self.arg_names) if i not in self.argnums)

    # -- the objective of one data set -----------------------------------------------------------

    def args(self, params: tuple, data: Mapping) -> tuple:
        """All arguments in order, from the parameters (argnums order) and the data by name."""
        by_pos = dict(zip(self.argnums, params))
        return tuple(by_pos[i] if i in by_pos else data[n] if n in data else self.defaults[n]
                     for i, n in enumerate(self.arg_names))

    def objective(self, data: Mapping) -> Callable:
        """``f(*params)``: the objective with the data fixed."""
        return lambda *params: self.value(*self.args(params, data))

    def gradient(self, data: Mapping) -> Callable | None:
        """``g(*params)`` -> a tuple of gradients (one per parameter), or None."""
        if self.grad is None:
            return None

        def g(*params):
            out = self.grad(*self.args(params, data))
            return tuple(out) if len(self.argnums) > 1 else (out,)

        return g

    def audit(self, data: Mapping, params: tuple) -> Any:
        """:func:`~matgrad_jax.check_gradient` of the hand gradient at one data set and point
        (the model's domains; no family sweep: the point is the user's)."""
        from .audit import check_gradient

        nb = len(self.argnums)
        return check_gradient(self.value, self.grad, self.args(tuple(params), data),
                              argnums=self.argnums if nb > 1 else self.argnums[0],
                              arg_names=self.arg_names, domains=self.domains, n_family=0,
                              name=self.name)

    def fit(self, data: Mapping | None, init: Any = None, *, method: str = "auto",
            verify: str = "start", **options: Any) -> Any:
        """Fit one data set: :func:`~matgrad_jax.minimize` of :meth:`objective` with the hand
        gradient (audited at ``init`` first, unless ``verify="off"``), or the closed-form solve
        for ``method="exact"``. ``init``: a dict by :attr:`param_names` or a tuple in argnums
        order. Returns a :class:`~matgrad_jax.MinimizeResult` (the exact solve: the tuple of
        parameters)."""
        from .minimize import minimize

        if method == "exact":
            if self.exact is None:
                raise InputError(f"method: 'exact' needs a closed-form solve, and model "
                                 f"{self.name!r} has none")
            arrays, _, _ = self.prepare(data)
            out = self.exact(**to_device(arrays, float_dtype_of(arrays, None)))
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
        arrays, blocks, _ = self.prepare(data, init=init)
        if blocks is None:
            raise InputError(f"init: method {method!r} needs starting values "
                             f"{', '.join(self.param_names)}")
        dt = float_dtype_of(arrays, blocks)
        d = to_device(arrays, dt)
        x0 = tuple(jnp.asarray(b, dt) for b in blocks)
        return minimize(self.objective(d), x0, grad=self.gradient(d), method=method,
                        verify=verify, domains=_param_domains(self),
                        **self.method_options(method, options))

    # -- the boundary ----------------------------------------------------------------------------

    def prepare(self, data: Mapping | None, *, stacked: bool = False,
                init: Any = None) -> tuple[dict[str, np.ndarray], tuple | None, int | None]:
        """Check ``data`` (and ``init``) once, on the host.

        Args:
          data: the data arguments by name (every one of :attr:`data_names` that has no
            default in :attr:`defaults`; extra keys are an error, so a misspelt name is not
            silently ignored).
          stacked: every array has a leading batch axis of one common size.
          init: starting parameters: a dict by :attr:`param_names`, or a tuple in argnums
            order (stacked like the data); None where the model has a closed-form solve.

        Returns:
          ``(data, init, batch)``: NumPy arrays by name, the start as a tuple (or None), and the
          batch size (None unless ``stacked``).
        """
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise InputError(f"data: expected a dict of arrays named by {self.data_names}, "
                             f"got {type(data).__name__}")
        missing = [n for n in self.data_names if n not in data and n not in self.defaults]
        extra = sorted(set(map(str, data)) - set(self.data_names))
        if missing:
            raise InputError(f"data: missing array(s) {', '.join(missing)} for model "
                             f"{self.name!r} (it takes data {', '.join(self.data_names)}; "
                             f"found: {', '.join(sorted(map(str, data))) or 'none'})")
        if extra:
            raise InputError(f"data: unexpected array(s) {', '.join(extra)} for model "
                             f"{self.name!r} (its data are {', '.join(self.data_names) or 'none'};"
                             f" its parameters {', '.join(self.param_names)} go in init)")
        arrays = {n: _real(n, data[n]) for n in self.data_names if n in data}
        blocks = None
        if init is not None:
            if isinstance(init, Mapping):
                missing = [n for n in self.param_names if n not in init]
                extra = sorted(set(map(str, init)) - set(self.param_names))
                if missing or extra:
                    raise InputError(f"init: expected arrays named {', '.join(self.param_names)}"
                                     f" (the parameters of {self.name!r}); got "
                                     f"{', '.join(sorted(map(str, init))) or 'none'}")
                blocks = tuple(init[n] for n in self.param_names)
            elif isinstance(init, (tuple, list)) and len(init) == len(self.argnums):
                blocks = tuple(init)
            elif len(self.argnums) == 1 and hasattr(init, "shape"):
                blocks = (init,)
            else:
                raise InputError(f"init: expected a dict of arrays named "
                                 f"{', '.join(self.param_names)}, got {type(init).__name__}")
            blocks = tuple(_real(f"init[{n!r}]", b) for n, b in zip(self.param_names, blocks))
        batch = None
        if stacked:
            sizes = {n: a.shape[0] if a.ndim else None
                     for n, a in {**arrays, **dict(zip(self.param_names, blocks or ()))}.items()}
            if not sizes:
                raise InputError("data and init are both empty: nothing says how many problems "
                                 "there are")
            flat = [n for n, s in sizes.items() if s is None]
            if flat:
                raise InputError(f"{flat[0]}: expected a leading batch axis, got a scalar")
            first, batch = next(iter(sizes.items()))
            for n, s in sizes.items():
                if s != batch:
                    raise InputError(f"{n}: expected a leading batch axis of {batch} (as "
                                     f"{first}), got {s}")
            if batch == 0:
                raise InputError(f"{first}: the batch is empty")
        if blocks is None and self.exact is None:
            raise InputError(f"init: model {self.name!r} has no closed-form solve, so it needs "
                             f"starting values {', '.join(self.param_names)}")
        return arrays, blocks, batch


def _data_defaults(model: Model) -> dict:
    """The data arguments' defaults: ``model.defaults`` checked, or ``value``'s signature."""
    import inspect

    data = set(model.data_names)
    if model.defaults is not None:
        if not isinstance(model.defaults, Mapping):
            raise InputError(f"defaults: expected a dict of data arguments' values, got "
                             f"{type(model.defaults).__name__}")
        unknown = sorted(set(map(str, model.defaults)) - data)
        if unknown:
            raise InputError(f"defaults: {', '.join(unknown)} are not data arguments of "
                             f"{model.name!r} (its data are {', '.join(model.data_names)})")
        return dict(model.defaults)
    try:
        params = inspect.signature(model.value).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params
            if p.name in data and p.default is not inspect.Parameter.empty}


def _param_domains(model: Model) -> dict | None:
    """The model's domains re-keyed for minimize (its blocks are the parameters, in order)."""
    if not model.domains:
        return None
    out = {}
    for key, kind in model.domains.items():
        pos = model.arg_names.index(key) if isinstance(key, str) else int(key)
        if pos in model.argnums:
            out[model.argnums.index(pos)] = kind
    return out or None


def _real(name: str, x: ArrayLike) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating)
                                 or np.issubdtype(a.dtype, np.integer)
                                 or np.issubdtype(a.dtype, np.bool_)):
        raise InputError(f"{name}: expected a real array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError(f"{name}: holds {int((~np.isfinite(a)).sum())} NaN/Inf value(s); data "
                         "and starting values must be finite")
    if a.size == 0:
        raise InputError(f"{name}: is empty (shape {a.shape})")
    return a


def as_model(model: Any) -> Model:
    """A :class:`Model` from a model, a :class:`~matgrad_jax.Derivation` or a registered
    derivation's name."""
    return model if isinstance(model, Model) else Model.from_derivation(model)


def to_device(arrays: Mapping[str, np.ndarray], dtype: Any) -> dict[str, Array]:
    """Float arrays cast to ``dtype`` (integer data kept), as JAX arrays."""
    return {n: jnp.asarray(a, dtype if np.issubdtype(a.dtype, np.floating) else None)
            for n, a in arrays.items()}


def float_dtype_of(arrays: Mapping[str, np.ndarray], blocks: tuple | None) -> Any:
    """The widest float dtype among the data and starting values (JAX's default float when
    there is none), narrowed to float32 where x64 is off."""
    floats = [a.dtype for a in list(arrays.values()) + list(blocks or ())
              if np.issubdtype(a.dtype, np.floating)]
    dt = np.result_type(*floats) if floats else jnp.zeros(()).dtype
    if dt == np.float64 and not jax.config.jax_enable_x64:
        dt = np.dtype(np.float32)
    return np.dtype(dt)
