"""What is wrong: sign, scale, transpose, which block, which entries, on which inputs.

Vocabulary of :attr:`GradientReport.diagnosis` (``None`` when the gradient passed):

============================ ===============================================================
``sign``                     hand = −reference
``scale:<c>``                hand = c · reference for one constant c (e.g. ``scale:0.5``)
``transpose``                hand = referenceᵀ (``transpose+sign``, ``transpose+scale:<c>``)
``conjugate``                complex argument: hand = conj(reference)
``nondifferentiable``        the point is a kink: one-sided directional derivatives differ
``shape``                    the hand gradient has the wrong structure or shapes
``error``                    the hand gradient raised
``mismatch``                 anything else (see ``location`` and ``where_it_holds``)
============================ ===============================================================
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

VOCABULARY = ("sign", "scale:<c>", "transpose", "transpose+sign", "transpose+scale:<c>",
              "conjugate", "nondifferentiable", "shape", "error", "mismatch")


def nice_number(c: float) -> str:
    """``0.5``, ``2``, ``-4``, ``0.3333``: a simple fraction where c is one, else 4 digits."""
    frac = Fraction(c).limit_denominator(16)
    if abs(float(frac) - c) <= 1e-6 * max(1.0, abs(c)) and frac.denominator in (1, 2, 4, 8):
        value = float(frac)
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return f"{c:.6g}"


def _fit(hand, ref):
    """Best c in hand ≈ c·ref (least squares over all points) and the relative residual."""
    den = np.vdot(ref, ref).real
    if den == 0:
        return float("nan"), float("inf")
    c = float(np.vdot(ref, hand).real / den)
    res = np.linalg.norm(hand - c * ref) / max(np.linalg.norm(hand), np.linalg.norm(ref))
    return c, float(res)


def classify(hand: np.ndarray, ref: np.ndarray, tol: float) -> str:
    """Label the relation between stacked hand and reference gradients ``(points, *shape)``."""
    fit_tol = max(10 * tol, 1e-9)
    c, res = _fit(hand.ravel(), ref.ravel())
    if res < fit_tol:
        if abs(c + 1) < fit_tol:
            return "sign"
        return f"scale:{nice_number(c)}"
    if hand.ndim == 3 and hand.shape[1] == hand.shape[2]:
        ct, rest = _fit(hand.ravel(), np.swapaxes(ref, 1, 2).ravel())
        if rest < fit_tol:
            if abs(ct - 1) < fit_tol:
                return "transpose"
            if abs(ct + 1) < fit_tol:
                return "transpose+sign"
            return f"transpose+scale:{nice_number(ct)}"
    if np.iscomplexobj(ref):
        cc, resc = _fit(hand.ravel(), np.conj(ref).ravel())
        if resc < fit_tol and abs(cc - 1) < fit_tol:
            return "conjugate"
    return "mismatch"


def locate(hand: np.ndarray, ref: np.ndarray, tol: float, max_entries: int = 12):
    """Where the error sits: a short phrase, the wrong entries, and the relative error map.

    The map is the mean absolute error over the failing points, relative to the reference's RMS.
    """
    err = np.mean(np.abs(hand - ref), axis=0)
    rms = np.sqrt(np.mean(np.abs(ref) ** 2)) or 1.0
    emap = err / rms
    bad = emap > 10 * tol
    idx = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)]
    total = bad.size
    if not bad.any():
        return "no single entry stands out", [], emap
    if bad.all():
        return "all entries", idx[:max_entries], emap
    if bad.ndim == 2:
        n0, n1 = bad.shape
        if n0 == n1:
            diag = np.eye(n0, dtype=bool)
            if (bad == diag).all():
                return "the diagonal only", idx[:max_entries], emap
            if (bad == ~diag).all():
                return "the off-diagonal entries only", idx[:max_entries], emap
        rows, cols = np.flatnonzero(bad.any(1)), np.flatnonzero(bad.any(0))
        if bad[rows].all():
            return f"rows {_list(rows)} (all columns)", idx[:max_entries], emap
        if bad[:, cols].all():
            return f"columns {_list(cols)} (all rows)", idx[:max_entries], emap
    shown = ", ".join(str(i) for i in idx[:4])
    return f"{len(idx)} of {total} entries, e.g. {shown}", idx[:max_entries], emap


def _list(ix, limit=8):
    items = [str(int(i)) for i in ix[:limit]]
    return "[" + ", ".join(items) + (", ..." if len(ix) > limit else "") + "]"


def where_it_holds(generic_ok: bool, family_ok: dict[tuple[str, str], bool]) -> str:
    """Domain of validity from per-(argument, family) results, e.g. "holds only for symmetric Q"."""
    if generic_ok and all(family_ok.values()):
        return "all tested inputs"
    by_arg: dict[str, dict[str, bool]] = {}
    for (arg, fam), ok in family_ok.items():
        by_arg.setdefault(arg, {})[fam] = ok
    phrases = []
    for arg, fams in by_arg.items():
        good = [f for f, ok in fams.items() if ok]
        bad = [f for f, ok in fams.items() if not ok]
        if not generic_ok and good:
            phrases.append(f"holds only for {'/'.join(good)} {arg}")
        elif generic_ok and bad:
            phrases.append(f"fails for {'/'.join(bad)} {arg}")
    if phrases:
        return "; ".join(phrases)
    return "fails on every tested input" if not generic_ok else "all tested inputs"
