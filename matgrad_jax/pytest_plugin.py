"""pytest plugin (entry point ``pytest11``): ``pytest --matgrad`` collects one test per
derivation the user registered, and a ``gradient_audit`` fixture audits and asserts.

* ``pytest --matgrad``: after your test modules are imported (they register derivations with
  :func:`matgrad_jax.register` or ``@matgrad_jax.derivation``) and after each
  ``--matgrad-target TARGET`` (a file or module) is, every registered derivation becomes an item
  ``matgrad::<name>`` that fails with its audit report, and every registered derivation chain
  (:func:`matgrad_jax.register_chain`) an item ``matgrad::chain:<name>`` that fails with the
  first wrong line; the seeds' own only with ``--matgrad-builtin``.
* ``gradient_audit(fun, grad_fun, args, **options)``: :func:`matgrad_jax.testing.assert_gradient`.

Nothing is imported (not even JAX) unless ``--matgrad`` is given or the fixture is used.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("matgrad", "matgrad_jax: audit registered derivations")
    group.addoption("--matgrad", action="store_true", default=False,
                    help="collect one test per registered derivation (matgrad_jax)")
    group.addoption("--matgrad-target", action="append", default=[], metavar="TARGET",
                    help="a Python file or module that registers derivations (repeatable)")
    group.addoption("--matgrad-builtin", action="store_true", default=False,
                    help="with --matgrad: the seeds' built-in derivations too")


class ChainFailure(AssertionError):
    """A chain with a wrong (or untested) line; its message is the line-by-line report."""


class _RegisteredItem(pytest.Item):
    """An item for one registered entry; a failure shows our report, not a traceback."""

    label = ""

    def repr_failure(self, excinfo, style=None):
        from matgrad_jax.testing import GradientAssertionError

        if isinstance(excinfo.value, (GradientAssertionError, ChainFailure)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"matgrad: {self.label}"


class DerivationItem(_RegisteredItem):
    """One registered derivation, audited (and its Hessian product, when it has one)."""

    def __init__(self, *, derivation, **kwargs):
        super().__init__(**kwargs)
        self.derivation = derivation
        self.label = derivation.name

    def runtest(self):
        from matgrad_jax.audit import audit_derivation
        from matgrad_jax.audit.registry_audit import audit_hessian
        from matgrad_jax.testing import GradientAssertionError

        report = audit_derivation(self.derivation)
        if not report.passed:
            raise GradientAssertionError(report)
        if self.derivation.hvp is not None:
            hess = audit_hessian(self.derivation)
            if not hess.passed:
                raise GradientAssertionError(hess)


class ChainItem(_RegisteredItem):
    """One registered derivation chain, checked line by line."""

    def __init__(self, *, chain, **kwargs):
        super().__init__(**kwargs)
        self.chain = chain
        self.label = f"chain {chain.name}"

    def runtest(self):
        report = self.chain.check()
        if not report.passed:
            raise ChainFailure(f"{report.headline()}\n\n{report.to_markdown()}")


class DerivationCollector(pytest.Collector):
    def collect(self):
        return []


def pytest_collection_modifyitems(session, config, items):
    if not config.getoption("matgrad"):
        return
    from matgrad_jax._checks import InputError
    from matgrad_jax.registry import chains, derivations, load_targets

    try:
        load_targets(config.getoption("matgrad_target"))
    except InputError as exc:
        raise pytest.UsageError(f"--matgrad-target {exc}") from None
    builtin = config.getoption("matgrad_builtin")
    chosen = [d for d in derivations() if builtin or not d.builtin]
    chosen_chains = [c for c in chains() if builtin or not c.builtin]
    if not chosen and not chosen_chains:
        return
    parent = DerivationCollector.from_parent(session, name="matgrad")
    for d in chosen:
        items.append(DerivationItem.from_parent(parent, name=d.name, derivation=d))
    for c in chosen_chains:
        items.append(ChainItem.from_parent(parent, name=f"chain:{c.name}", chain=c))


@pytest.fixture
def gradient_audit():
    """``gradient_audit(fun, grad_fun, args, **options)`` audits and asserts
    (:func:`matgrad_jax.testing.assert_gradient`); returns the report when it passed."""
    from matgrad_jax.testing import assert_gradient

    return assert_gradient
