"""Where the audit looks: the example point, perturbations of it, fresh draws and structured
families, each drawn on its argument's domain (:mod:`~matgrad_jax.audit.domains`).

Points are drawn on the host with NumPy's ``Generator`` and stacked along a leading axis for the
varied leaves only; fixed leaves (data, integer arguments) enter every point unchanged, unstacked
(``vmap`` with ``in_axes=None``), so every comparison is one ``vmap``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import domains as dom
from .spec import Spec

GENERIC = ("example", "perturbed", "random")
PARALLEL_DRAW = 1 << 20
"""From this many drawn entries on, the groups of points are drawn side by side on a few
threads (NumPy's generators release the GIL: a million normals take ~15 ms on one core of
the 2-core development machine)."""

_POOL = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                   thread_name_prefix="matgrad-draw")
    return _POOL


def _forget_pool():  # a forked child has none of the parent's threads: it starts its own pool
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


@dataclass
class Points:
    stacked: dict[int, np.ndarray]  # leaf index -> (count, *shape), varied leaves only
    labels: np.ndarray  # (count,) str
    family_keys: list[tuple[str, str]]  # (leaf name, family)

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def generic(self) -> np.ndarray:
        return np.isin(self.labels, GENERIC)

    def leaves(self, spec: Spec, p: int) -> tuple:
        """The leaves of point ``p`` (numpy for varied leaves, the example's for fixed)."""
        return tuple(self.stacked[i][p] if i in self.stacked else np.asarray(x)
                     for i, x in enumerate(spec.leaves))


def square(x: np.ndarray) -> bool:
    return x.ndim == 2 and x.shape[0] == x.shape[1] and x.shape[0] > 1


def build(spec: Spec, rng, *, n_perturbed, n_random, n_family, families) -> Points:
    host = [np.asarray(x) for x in spec.leaves]
    varied = spec.varied
    # the groups in draw order: (label, count, {leaf: how it is drawn}), each written straight
    # into its rows of one array per varied leaf (no per-group arrays stacked afterwards)
    groups = [("example", 1, {i: None for i in varied})]
    if n_perturbed:
        groups.append(("perturbed", n_perturbed, {
            i: (dom.perturb, (host[i], spec.domains[i], n_perturbed)) for i in varied}))
    if n_random:
        groups.append(("random", n_random, {
            i: (dom.draw, (host[i], spec.domains[i], n_random)) for i in varied}))
    family_keys = []
    if n_family:
        for i in varied:
            if not square(host[i]):
                continue
            for fam in dom.FAMILIES_IN.get(spec.domains[i], ()):
                if fam not in families:
                    continue
                groups.append((f"{fam}:{spec.leaf_names[i]}", n_family, {
                    j: (dom.draw, (host[j], dom.family_kind(spec.domains[j], fam) if j == i
                                   else spec.domains[j], n_family)) for j in varied}))
                family_keys.append((spec.leaf_names[i], fam))
    total = sum(c for _, c, _ in groups)
    stacked = {i: np.empty((total,) + host[i].shape, host[i].dtype) for i in varied}
    scales = {i: dom.scale_of(host[i]) for i in varied}
    rows, labels, row = [], [], 0
    for label, count, _ in groups:
        rows.append((row, count))
        labels += [label] * count
        row += count
    # each group draws from its own generator (seeded from ``rng``), so the points are the
    # same whether the groups are drawn one after another or side by side
    seeds = rng.integers(0, np.iinfo(np.int64).max, size=len(groups))

    def fill(k):
        (start, count), (_, _, how) = rows[k], groups[k]
        g = np.random.default_rng(seeds[k])
        for i, plan in how.items():
            into = stacked[i][start:start + count]
            if plan is None:
                into[0] = host[i]
            else:
                fn, args = plan
                fn(g, *args, into=into, scale=scales[i])

    size = sum(c * host[i].size for _, c, how in groups for i in how)
    if size >= PARALLEL_DRAW and len(groups) > 1:
        list(_pool().map(fill, range(len(groups))))
    else:
        for k in range(len(groups)):
            fill(k)
    return Points(stacked, np.asarray(labels), family_keys)


def directions(rng, spec: Spec, at: tuple, count: int) -> tuple[np.ndarray, ...]:
    """``count`` random tangents for the differentiated leaves at the point ``at``."""
    return tuple(dom.tangents(rng, np.asarray(at[i]), spec.domains[i], count) for i in spec.diff)
