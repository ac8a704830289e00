"""Where a derivation's line is wrong, explained: a sign, a factor, a transposition, the terms
or blocks that are off, or the family of inputs on which it holds (see
:mod:`~matgrad_jax.audit.derivation`)."""

from __future__ import annotations

import numpy as np

from . import checks, diagnosis
from . import domains as dom
from . import steps as st
from .derivation_lines import (
    _stated_gradient,
)


def _gradient_diagnosis(result, line, S, P, gproj) -> None:
    """For a wrong gradient line the audit's block diagnosis (``transpose``, ``scale:<c>``,
    ``symmetric-convention``, …) of the stated gradient against ``jax.grad``, block by block."""
    covered = st.wrt_blocks(line.wrt, S, "") if line.wrt else tuple(range(len(S.diff)))
    try:
        got = checks.batched(_stated_gradient(line, S, covered), S, P, hi=True)
    except Exception:  # noqa: BLE001 - it ran in the line's own check; nothing more to say
        return
    sel = P.generic if P.generic.any() else np.ones(P.count, bool)
    found = []
    for g, k in zip(got, covered):
        leaf = S.diff[k]
        H = dom.project(S.domains[leaf], checks.up(g))[sel]
        R = gproj[k][sel]
        scale = float(np.sqrt(np.mean(np.abs(R) ** 2))) or 1.0
        if np.max(np.abs(H - R)) <= 1e-7 * scale:
            continue
        found.append((S.block_names[k], diagnosis.classify(H, R, 1e-7, S.domains[leaf])))
    labels = {lab for _, lab in found}
    if len(labels) == 1 and "mismatch" not in labels:
        label = labels.pop()
        names = ", ".join(n for n, _ in found)
        what = (diagnosis.SYMMETRIC_CONVENTION if label == "symmetric-convention" else
                f"the stated gradient is {label} of jax.grad's")
        result.diagnosis = label
        result.explanation = f"block {names}: {what}" + (
            f"; {result.where_it_holds}" if result.where_it_holds.startswith("holds only")
            else "")


def _diagnose(result, d, r, size, prefer, bad, i, zeros, evaluate, tol, value):
    sel = prefer if prefer.any() else bad
    t_ = float(np.max(tol[sel]))
    fit_tol = max(10 * t_, 1e-9)
    norm = size[sel]
    terms = d[:, sel] / norm
    y = r[sel] / norm
    terms, y = terms.reshape(len(d), -1), y.ravel()
    total = terms.sum(axis=0)
    names = result.terms or ("the line",)

    def fit(target, basis):
        den = float(basis @ basis)
        if den == 0:
            return float("nan"), float("inf")
        c = float(basis @ target / den)
        res = float(np.linalg.norm(target - c * basis)
                    / max(np.linalg.norm(target), np.linalg.norm(basis), 1e-300))
        return c, res

    found = None
    c, res = fit(y, total)
    if res < fit_tol:
        found = (("sign", None, "the whole line has the wrong sign") if abs(c + 1) < fit_tol else
                 (f"scale:{diagnosis.nice_number(c)}", None,
                  f"the true differential is {diagnosis.nice_number(c)} × this line"))
    if found is None and len(d) > 1:
        for j in range(len(d)):
            rest = y - (total - terms[j])
            cj, rj = fit(rest, terms[j])
            if rj < fit_tol or np.linalg.norm(rest) <= fit_tol * np.linalg.norm(y):
                nm = names[j]
                if np.linalg.norm(rest) <= fit_tol * np.linalg.norm(y):
                    found = ("term-absent", nm, f"the term {nm} does not belong: without it "
                                                "the line holds")
                elif abs(cj + 1) < fit_tol:
                    found = ("term-sign", nm, f"the sign of the term {nm} is wrong: with "
                                              f"{nm} negated the line holds")
                else:
                    found = (f"term-scale:{diagnosis.nice_number(cj)}", nm,
                             f"the term {nm} is off by a factor: {diagnosis.nice_number(cj)} × "
                             f"{nm} makes the line hold")
                break
    if found is None and not value:
        try:
            dT = evaluate(i, zeros, True)[0]
        except Exception:  # noqa: BLE001
            dT = None
        if dT is not None and not np.array_equal(dT, d):
            tT = (dT[:, sel] / size[sel]).reshape(len(d), -1)
            cands = [(None, tT.sum(axis=0))] + (
                [(j, total - terms[j] + tT[j]) for j in range(len(d))] if len(d) > 1 else [])
            for j, alt in cands:
                if np.linalg.norm(y - alt) <= fit_tol * max(np.linalg.norm(y), 1e-300):
                    found = (("transpose", None, "the line holds with its matrix transposed")
                             if j is None else
                             ("term-transpose", names[j], f"the term {names[j]} is transposed: "
                                                          "it holds with that term's matrix "
                                                          "transposed"))
                    break
    if found is None and result.where_it_holds.startswith("holds only for"):
        found = ("family", None, result.where_it_holds)
    if found is None:
        found = ("mismatch", None, "differs from the true differential by more than a sign, a "
                                   "factor or a transposition of one term ("
                                   f"{result.where_it_holds})")
    result.diagnosis, result.term, result.explanation = found
    if found[0] != "family" and result.where_it_holds.startswith("holds only for"):
        result.explanation += f"; {result.where_it_holds}"
