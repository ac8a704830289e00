"""What the gradient and Hessian audits judge alike: a point's tolerance from its dtype and
conditioning, its status, and which points count as tested or as failing.

:func:`~matgrad_jax.check_gradient` (through :mod:`.verdict`) and
:func:`~matgrad_jax.check_hessian` both compare a hand result with an autodiff reference at
every point of :mod:`.points`, then call these; the rule is written once (see :mod:`.verdict`'s
docstring for why it is what it is).
"""

from __future__ import annotations

import numpy as np

TOL_EPS = 32  # a dtype's own bound: 32 eps ...
TOL_REF = 16  # ... or 16 times jax.grad's error in that dtype at the point
TOL_DIRECTIONAL = 5  # forward mode and Taylor: one random direction's error is ~|N(0,1)| x
TOL_IMPLIED = 14
"""Below float64, a hand gradient within ``14 eps`` of ``jax.grad`` computed in the same dtype
passes the float64 criterion without a float64 evaluation: with ``d = ‖h − r‖/‖r‖`` and
``e_ref = ‖r − r64‖/‖r64‖``, ``‖h − r64‖/‖r64‖ <= d (1 + e_ref) + e_ref``, which is at most
``max(TOL_EPS eps, TOL_REF e_ref)`` for ``d <= 14 eps`` (if ``e_ref <= 16 eps``: at most
``14 eps (1 + 16 eps) + 16 eps <= 32 eps`` for every eps up to bfloat16's; otherwise at most
``14 eps (1 + e_ref) + e_ref < 16 e_ref``). The audit's screen uses it (:func:`point_tolerance`,
``implied=True``); anything else goes on to the float64 comparison."""

EPS64 = float(np.finfo(np.float64).eps)
TOL64 = 8 * np.sqrt(EPS64)
"""The float64 tolerance, 8·sqrt(eps) = 1.2e-7."""


def is_low(work) -> bool:
    """True for a working dtype below float64."""
    return float(np.finfo(work).eps) > EPS64


def point_tolerance(n: int, *, rtol, work, formula64: bool, e_ref=None,
                    ref64: bool = True, implied: bool = False) -> np.ndarray:
    """Each point's tolerance on the relative error.

    ``rtol`` when given; in float64 :data:`TOL64`. Below float64: with no float64 reference
    (``ref64=False``) the dtype's own ``8 sqrt(eps)``; the hand formula evaluated in float64
    (``formula64``) within ``max(TOL64, TOL_REF · e_ref · eps64/eps)``; as given within
    ``max(TOL_EPS · eps, TOL_REF · e_ref)``, where ``e_ref`` is the reference's own relative
    error in the working dtype at each point (zeros when unknown). ``implied``: the
    reference is ``jax.grad`` in the working dtype and the bound :data:`TOL_IMPLIED` eps that
    implies the float64 criterion.
    """
    if rtol is not None:
        return np.full(n, float(rtol))
    if not is_low(work):
        return np.full(n, TOL64)
    eps_w = float(np.finfo(work).eps)
    if implied:
        return np.full(n, TOL_IMPLIED * eps_w)
    if not ref64:
        return np.full(n, 8 * np.sqrt(eps_w))
    e_ref = np.zeros(n) if e_ref is None else e_ref
    if formula64:
        return np.maximum(TOL64, TOL_REF * e_ref * EPS64 / eps_w)
    return np.maximum(TOL_EPS * eps_w, TOL_REF * e_ref)


def point_status(finite: np.ndarray, hand_ok: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``skipped`` where the function or its reference is not finite, ``nonfinite`` where the
    hand result is not, else ``ok`` or ``fail``."""
    return np.where(~finite, "skipped", np.where(~hand_ok, "nonfinite",
                                                 np.where(ok, "ok", "fail")))


def tested(status: np.ndarray, generic: np.ndarray) -> np.ndarray:
    """The points that count as tested: compared (ok or fail), and generic points where the
    hand result alone is not finite (a finding there, not a skip)."""
    return np.isin(status, ("ok", "fail")) | (generic & (status == "nonfinite"))


def failing(status: np.ndarray, generic: np.ndarray) -> np.ndarray:
    """The tested points that count against the hand result."""
    return (status == "fail") | (generic & (status == "nonfinite"))


__all__ = ["TOL64", "TOL_DIRECTIONAL", "TOL_EPS", "TOL_IMPLIED", "TOL_REF", "failing", "is_low",
           "point_status", "point_tolerance", "tested"]
