"""Where the audit looks: the example point, generic perturbations, fresh draws, input families.

Points are drawn on the host with NumPy's ``Generator`` (no compilation; the draws are cheap next
to the gradients) and handed to JAX stacked along a leading axis, so every comparison is one
``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("symmetric", "skew", "psd", "diagonal", "generic")
"""Input families for square arguments; ``generic`` is a plain Gaussian draw."""


def is_float(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.inexact)


def scale_of(x: np.ndarray) -> float:
    """Root-mean-square size of an example argument (1 where it is all zeros)."""
    rms = float(np.sqrt(np.mean(np.abs(x) ** 2))) if x.size else 0.0
    return rms if rms > 0 else 1.0


def normal_like(rng: np.random.Generator, like: np.ndarray, size=()) -> np.ndarray:
    shape = tuple(size) + like.shape
    real = np.float32 if like.dtype in (np.float32, np.complex64) else np.float64
    if np.iscomplexobj(like):
        z = (rng.standard_normal(shape, real) + 1j * rng.standard_normal(shape, real)) / np.sqrt(2)
    else:
        z = rng.standard_normal(shape, real)
    return z.astype(like.dtype, copy=False)


def family_draw(rng, like: np.ndarray, family: str, count: int) -> np.ndarray:
    """``count`` draws shaped like ``like`` from ``family``, at the size of ``like``."""
    g = normal_like(rng, like, (count,)) * scale_of(like)
    if family == "generic" or like.ndim != 2 or like.shape[0] != like.shape[1]:
        return g
    gt = np.swapaxes(g, -1, -2)
    if family == "symmetric":
        return (g + gt) / 2
    if family == "skew":
        return (g - gt) / 2
    if family == "psd":
        return g @ np.conj(gt) / (like.shape[0] * scale_of(like))
    if family == "diagonal":
        return g * np.eye(like.shape[0], dtype=like.dtype)
    raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")


def perturbed_points(rng, args, count: int, relative: float = 0.1):
    """``count`` generic (structure-breaking) Gaussian perturbations of every float argument."""
    return tuple(
        a[None] + relative * scale_of(a) * normal_like(rng, a, (count,)) if is_float(a)
        else np.repeat(a[None], count, axis=0)
        for a in args
    )


def family_points(rng, args, count: int, family: str = "generic", which: int = -1):
    """``count`` fresh draws: argument ``which`` from ``family``, every other float one generic."""
    return tuple(
        family_draw(rng, a, family if i == which else "generic", count) if is_float(a)
        else np.repeat(a[None], count, axis=0)
        for i, a in enumerate(args)
    )


def random_directions(rng, args, argnums, count):
    """``count`` random tangents for the differentiated blocks, each at the size of its block."""
    return tuple(jnp.asarray(normal_like(rng, np.asarray(args[i]), (count,))
                             * scale_of(np.asarray(args[i]))) for i in argnums)


def stack_points(groups, like):
    """Concatenate point groups along the batch axis, as JAX arrays of the example's dtypes."""
    return tuple(jnp.asarray(np.concatenate(parts, axis=0).astype(a.dtype))
                 for parts, a in zip(zip(*groups), like))


def expand(args):
    """The single point ``args`` as a stack of one."""
    return tuple(np.asarray(a)[None] for a in args)


def square_float_args(args, argnames) -> list[tuple[int, str]]:
    return [
        (i, name)
        for i, (a, name) in enumerate(zip(args, argnames))
        if is_float(a) and np.ndim(a) == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1
    ]


def as_jax(points):
    return jax.tree_util.tree_map(jnp.asarray, points)
