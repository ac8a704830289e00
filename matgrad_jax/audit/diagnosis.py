"""What is wrong: sign, scale, transpose, which block, which entries, on which inputs.

Vocabulary of :attr:`GradientReport.diagnosis` (``None`` when the gradient passed):

============================ ===============================================================
``sign``                     hand = −reference
``scale:<c>``                hand = c · reference for one constant c (e.g. ``scale:0.5``)
``transpose``                hand = referenceᵀ (``transpose+sign``, ``transpose+scale:<c>``)
``conjugate``                complex argument: hand = conj(reference)
``symmetric-convention``     on a symmetric/spd domain: hand = G + Gᵀ − G∘I of the Frobenius
                             gradient G = sym(∇f), the gradient of another inner product
``nonfinite``                the hand gradient is NaN/Inf where ``fun`` and jax.grad are finite
``nondifferentiable``        the point is a kink: one-sided directional derivatives differ
``untested``                 no point where ``fun`` and its reference gradient are finite
``shape``                    the hand gradient has the wrong structure or shapes
``error``                    the hand gradient raised
``mismatch``                 anything else (see ``location`` and ``where_it_holds``)
============================ ===============================================================
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

VOCABULARY = ("sign", "scale:<c>", "transpose", "transpose+sign", "transpose+scale:<c>",
              "conjugate", "symmetric-convention", "nonfinite", "nondifferentiable", "untested",
              "shape", "error", "mismatch")

SYMMETRIC_CONVENTION = (
    "the hand gradient is G + Gᵀ − G∘I of the Frobenius gradient G: the 'symmetric gradient' of "
    "the inner product over independent entries Σ_{i≤j} A_ij B_ij, not of the Frobenius inner "
    "product tr(AᵀB); on symmetric matrices the Frobenius gradient is sym(G) (Srinivasan & "
    "Panda, arXiv:1911.06491)")


def is_valid_label(label: str | None) -> bool:
    if label is None:
        return True
    for v in VOCABULARY:
        if v.endswith("<c>") and label.startswith(v[:-3]):
            return True
    return label in VOCABULARY


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


def classify(hand: np.ndarray, ref: np.ndarray, tol: float, domain: str = "general") -> str:
    """Label the relation between stacked hand and reference gradients ``(points, *shape)``,
    both already projected onto ``domain``."""
    fit_tol = max(10 * tol, 1e-9)
    if not np.all(np.isfinite(hand)):
        return "nonfinite"
    c, res = _fit(hand.ravel(), ref.ravel())
    if res < fit_tol:
        if abs(c + 1) < fit_tol:
            return "sign"
        return f"scale:{nice_number(c)}"
    if domain in ("symmetric", "spd") and hand.ndim == 3:
        eye = np.eye(hand.shape[-1], dtype=bool)
        conv = 2 * ref - ref * eye
        cs, ress = _fit(hand.ravel(), conv.ravel())
        if ress < fit_tol and abs(cs - 1) < fit_tol:
            return "symmetric-convention"
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


def where_it_holds(status: np.ndarray, labels: np.ndarray, generic: np.ndarray,
                   family_keys, skip_reason: str, singular: dict[str, bool]) -> str:
    """Domain of validity from per-point statuses (``ok``, ``fail``, ``nonfinite``,
    ``skipped``), e.g. "holds only for symmetric Q". Families whose points were all skipped are
    named as untested, never counted as holding; a hand gradient that is not finite only on a
    structured (measure-zero) family is a caveat, not a failure."""
    from .compare import failing
    from .compare import tested as tested_points

    tested = tested_points(status, generic)
    bad = failing(status, generic)
    n_gen = int((tested & generic).sum())
    gen_bad = int((bad & generic).sum())
    holds, fails, untested, caveats = [], [], [], []
    by_arg: dict[str, list[str]] = {}
    for arg, fam in family_keys:
        sel = labels == f"{fam}:{arg}"
        n_t, n_b = int((tested & sel).sum()), int((bad & sel).sum())
        n_nf = int(((status == "nonfinite") & sel).sum())
        if n_nf:
            note = ", singular there" if singular.get(f"{fam}:{arg}") else ""
            caveats.append(f"not finite on {fam} {arg} ({n_nf} of {int(sel.sum())} points"
                           f"{note})")
        if n_t == 0:
            if not n_nf:
                untested.append(f"{fam} {arg} ({int(sel.sum())} points, all skipped: "
                                f"{skip_reason})")
            continue
        by_arg.setdefault(arg, [])
        (fails if n_b else holds).append((arg, fam))
    gen_skipped = int((generic & (status == "skipped")).sum())
    if n_gen == 0:
        untested.append(f"generic inputs ({int(generic.sum())} points, "
                        f"{gen_skipped} skipped: {skip_reason})")

    def join(pairs):
        out: dict[str, list[str]] = {}
        for arg, fam in pairs:
            out.setdefault(arg, []).append(fam)
        return "; ".join(f"{'/'.join(fams)} {arg}" for arg, fams in out.items())

    if not tested.any():
        return "untested: no point where fun and its reference gradient are finite"
    if n_gen and gen_bad == n_gen:
        phrase = (f"holds only for {join(holds)}" if holds else "fails on every tested input")
    elif gen_bad:
        ex_ok = bool(np.any((labels == "example") & (status == "ok")))
        phrase = (f"fails at {gen_bad} of {n_gen} generic points"
                  + (" (holds at the example point)" if ex_ok else ""))
        if fails:
            phrase += f"; fails for {join(fails)}"
    elif fails:
        phrase = f"fails for {join(fails)}"
    elif caveats:
        phrase = "holds on generic inputs"
    else:
        phrase = "all tested inputs"
    extra = caveats + ([f"untested: {', '.join(untested)}"] if untested else [])
    return "; ".join([phrase] + extra)
