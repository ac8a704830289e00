"""From what the checks found to one report: per-point tolerances, statuses (``ok``, ``fail``,
``nonfinite``, ``skipped``, ``kink``), per-block diagnoses, the domain of validity, and a message
that agrees with all of them.

Tolerances. In float64 a point passes when the hand gradient's error relative to the reference
norm is at most ``rtol`` (default 8·sqrt(eps) = 1.2e-7). Below float64 the reference is float64,
and ``e_ref``, ``jax.grad``'s own relative error in the working dtype at the point, measures the
function's conditioning there. The hand gradient's formula is evaluated in float64 when it runs
there and judged against ``max(8 sqrt(eps64), 16 e_ref eps64/eps)``: its rounding in the working
dtype is no finding, so a right float32, float16 or bfloat16 gradient passes, and a wrong factor
of 1 + 1e-4 fails in any of them. A hand gradient that does not run in float64 is judged as given
against ``max(32 eps, 16 e_ref)``, what the dtype resolves at the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checks, compare, diagnosis, lines, points
from . import domains as dom
from .compare import TOL_DIRECTIONAL, TOL_EPS, TOL_REF  # noqa: F401  (re-exported)
from .report import GradientReport
from .spec import Spec


def _sq(x) -> float:
    """``‖x‖²`` of one point's block, summed in float64 whatever ``x``'s precision (no float64
    copy of a float32 block)."""
    x = np.asarray(x).reshape(-1)
    if np.iscomplexobj(x):
        return _sq(x.real) + _sq(x.imag)
    if x.dtype == np.float64:
        return float(np.dot(x, x))
    return float(np.einsum("i,i->", x, x, dtype=np.float64))


def relative_errors(ref_sq, *err_sq):
    """From squared norms per point (``ref_sq``, ``‖P(r)‖²``) and per point and block
    (each of ``err_sq``, ``‖P(h_b − r_b)‖²``): ``(total, [errors])``, ``total = ‖P(r)‖`` (1
    where it is 0) and each block's error relative to it."""
    total = np.sqrt(np.asarray(ref_sq, np.float64))
    total = np.where(total > 0, total, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        return total, [np.sqrt(np.asarray(e, np.float64)) / total[:, None] for e in err_sq]


def _minus(h, r):
    """``h − r`` of one point's block in the finer of their precisions (float64 where either
    is); a bfloat16/float16 operand is taken to float64 first."""
    h, r = np.asarray(h), np.asarray(r)
    if any(np.dtype(x.dtype).itemsize < 4 and not np.iscomplexobj(x) for x in (h, r)):
        return checks.up(h) - checks.up(r)
    return h - r


def _finite_rows(g, n) -> np.ndarray:
    """Whether each point's values of ``g`` (points along the leading axis) are all finite, in
    ``g``'s own dtype (no float64 copy)."""
    return np.all(np.isfinite(np.asarray(g)).reshape(n, -1), axis=1)


def _norms(blocks, n):
    """Per-point 2-norms over blocks (no temporaries the size of a block)."""
    total = 0.0
    for b in blocks:
        flat = checks.up(b).reshape(n, -1)  # float64 sums (no copy when it already is)
        if np.iscomplexobj(flat):
            total = total + np.einsum("ij,ij->i", flat.real, flat.real) + np.einsum(
                "ij,ij->i", flat.imag, flat.imag)
        else:
            total = total + np.einsum("ij,ij->i", flat, flat)
    return np.sqrt(total)


@dataclass
class Evaluation:
    spec: Spec
    points: points.Points
    values: np.ndarray
    ref: tuple | None
    hand: tuple
    hand64: tuple | None
    ref_work: tuple | None
    work: np.dtype
    ref_dtype: str
    rtol: float | None
    use_jax: bool
    status: np.ndarray = None
    err: np.ndarray = None  # (points, blocks), the judged error
    err_work: np.ndarray = None
    tol: np.ndarray = None  # (points,)
    total: np.ndarray = None
    fd: dict = field(default_factory=dict)
    implied: bool = False  # the screen below float64: ref in the working dtype (TOL_IMPLIED)
    example64: dict | None = None  # the screen's float64 check of the example point

    # -- comparison ----------------------------------------------------------------------------
    def _proj(self, blocks):
        return [dom.project(self.spec.domains[i], checks.up(b))
                for b, i in zip(blocks, self.spec.diff)]

    @property
    def proj_ref(self):
        """The reference projected on the domains, in float64 (for diagnoses: computed when
        asked, never kept)."""
        return self._proj(self.ref)

    @property
    def proj_hand(self):
        """The hand gradient that was judged (its float64 formula where that was), projected."""
        return self._proj(self.hand64 if self.use64 else self.hand)

    def _errors(self, hands):
        """Per point, in float64 and one point at a time (no temporaries the size of all the
        points): the projected reference's norm ``total`` (n,) and, for each of ``hands``, the
        relative error ``‖P(h_b) − P(r_b)‖ / total`` per block (n, blocks)."""
        n, S = self.points.count, self.spec
        ref_sq = np.zeros(n)
        err_sq = [np.zeros((n, len(S.diff))) for _ in hands]
        kinds = [S.domains[i] for i in S.diff]
        with np.errstate(invalid="ignore", over="ignore"):
            for p in range(n):
                ref_sq[p] = sum(_sq(dom.project(k, r[p])) for r, k in zip(self.ref, kinds))
                for e, H in zip(err_sq, hands):
                    for b, (h, r, k) in enumerate(zip(H, self.ref, kinds)):
                        # P(h) − P(r) = P(h − r): one difference, in the finer of the two dtypes
                        e[p, b] = _sq(dom.project(k, _minus(h[p], r[p])))
        return relative_errors(ref_sq, *err_sq)

    def compare(self):
        n, S = self.points.count, self.spec
        finite = np.isfinite(self.values)
        self.hand_finite = [_finite_rows(g, n) for g in self.hand]
        if self.hand64 is not None:  # the formula's float64 values count too
            self.hand_finite = [a & _finite_rows(g, n)
                                for a, g in zip(self.hand_finite, self.hand64)]
        hand_ok = np.logical_and.reduce(self.hand_finite) if self.hand_finite else np.ones(n, bool)
        self.low = compare.is_low(self.work)
        self.use64 = False
        if self.ref is None:  # finite differences decide (see finite_differences)
            self.status = compare.point_status(finite, hand_ok, np.ones(n, bool))
            self.err = np.zeros((n, len(S.diff)))
            self.err_work = self.err
            self.tol = np.full(n, float(self.rtol) if self.rtol else self._fd_tol())
            self.total = _norms([checks.up(g) for g in self.hand], n)
            return
        for g in self.ref:
            finite &= _finite_rows(g, n)
        hands = [self.hand] + ([self.hand64] if self.hand64 is not None else [])
        total, errs = self._errors(hands)
        self.judge(finite, self.hand_finite, total, errs[0],
                   errs[1] if self.hand64 is not None else None)

    def judge(self, finite, hand_finite, total, err_work, err64=None):
        """Statuses, errors and tolerances from what the comparison reduced the points to:
        ``finite`` (the value and ``jax.grad``, per point), ``hand_finite`` (per block, per
        point), ``total`` (``‖P(r)‖``, per point) and the relative errors per point and block
        of the hand gradient as given (``err_work``) and of its float64 formula (``err64``).
        Below float64 against a float64 reference, ``ref_work`` and ``ref`` at every point
        give ``jax.grad``'s own error (the tolerance's ``e_ref``)."""
        n = self.points.count
        self.hand_finite = list(hand_finite)
        hand_ok = np.logical_and.reduce(self.hand_finite) if self.hand_finite else np.ones(n, bool)
        self.low = compare.is_low(self.work)
        self.use64 = False
        self.err_work = err_work
        ref64 = self.ref_dtype == "float64"
        e_ref = None
        if self.implied:  # the screen: d <= TOL_IMPLIED eps implies the float64 criterion
            tol = compare.point_tolerance(n, rtol=None, work=self.work, formula64=False,
                                          implied=True)
            self.err, self.err_work, self.tol, self.total = err_work, err_work, tol, total
            judged = np.where(np.isfinite(err_work), err_work, np.inf)
            self.status = compare.point_status(finite, hand_ok, np.all(judged <= tol[:, None],
                                                                       axis=1))
            return
        if self.rtol is None and self.low and ref64:
            e_ref = np.zeros(n)
            if self.ref_work is not None:
                with np.errstate(invalid="ignore", over="ignore"):
                    e_ref = _norms([checks.up(a) - r0 for a, r0 in
                                    zip(self.ref_work, [checks.up(r) for r in self.ref])],
                                   n) / total
                e_ref = np.where(np.isfinite(e_ref), e_ref, 0.0)
            self.reference_error = e_ref
        # the formula in float64 where it ran there (with rtol given, or below float64 against
        # a float64 reference); as given otherwise
        formula64 = err64 is not None and (self.rtol is not None or (self.low and ref64))
        err = err64 if formula64 else err_work
        tol = compare.point_tolerance(n, rtol=self.rtol, work=self.work, formula64=formula64,
                                      e_ref=e_ref, ref64=ref64)
        self.err, self.tol, self.total = err, tol, total
        judged = np.where(np.isfinite(err), err, np.inf)
        ok = np.all(judged <= tol[:, None], axis=1)
        self.status = compare.point_status(finite, hand_ok, ok)
        self.use64 = err is not err_work

    def _fd_tol(self):
        return max(8 * np.sqrt(np.finfo(self.work).eps), 1e-6)

    @property
    def example_tested(self) -> bool:
        return self.status[0] in ("ok", "fail")

    def mark_kink(self):
        self.status[0] = "kink"

    @property
    def tested(self) -> np.ndarray:
        return compare.tested(self.status, self.points.generic)

    def _grad_at(self, p):
        src = self.hand64 if self.use64 else self.hand
        return tuple(np.asarray(g[p]) for g in src)

    # -- forward mode -----------------------------------------------------------------------------
    def forward(self, fun, rng, n_directions, max_points: int = 3) -> dict:
        S, P = self.spec, self.points
        cand = [p for p in np.flatnonzero(P.generic)
                if self.status[p] in ("ok", "fail")][:max_points]
        if not cand or self.ref is None:
            return {}
        n_entries = sum(int(self.spec.leaves[i].size) for i in S.diff)
        worst_h, worst_r, worst_ratio = 0.0, 0.0, 0.0
        try:
            ats = [P.leaves(S, p) for p in cand]
            all_dirs = [points.directions(rng, S, at, n_directions) for at in ats]
            jvps = checks.forward(S, fun, ats, all_dirs)
            for p, dirs, jvp in zip(cand, all_dirs, jvps):
                hand_dd = checks.real_inner(self._grad_at(p), dirs)
                ref_dd = checks.real_inner([np.asarray(r[p]) for r in self.ref], dirs)
                vn = np.sqrt(sum(np.sum(np.abs(checks.up(d)) ** 2,
                                        axis=tuple(range(1, np.ndim(d)))) for d in dirs))
                size = np.maximum(self.total[p] * vn / np.sqrt(n_entries), 1e-300)
                eh = float(np.max(np.abs(hand_dd - jvp) / size))
                er = float(np.max(np.abs(ref_dd - jvp) / size))
                worst_h, worst_r = max(worst_h, eh), max(worst_r, er)
                worst_ratio = max(worst_ratio, eh / self.tol[p], er / self.tol[p])
        except Exception:  # noqa: BLE001 - jvp unavailable (e.g. a custom_vjp-only rule)
            return {}
        return {"max_rel_error": worst_h, "reference_rel_error": worst_r, "points": len(cand),
                "directions": n_directions, "passed": bool(worst_ratio <= TOL_DIRECTIONAL)}

    # -- finite differences (no autodiff reference) ----------------------------------------------
    def finite_differences(self, fun, rng):
        S, P = self.spec, self.points
        ok = [p for p in range(P.count) if self.status[p] == "ok"]
        firsts = [next(p for p in ok if P.labels[p] == lab) for lab in dict.fromkeys(
            P.labels[ok].tolist())]  # one point of every family first, then the others
        cand = (firsts + [p for p in ok if p not in firsts])[:max(5, len(firsts))]
        n_entries = sum(int(self.spec.leaves[i].size) for i in S.diff)
        for p in cand:
            at = P.leaves(S, p)
            dirs = points.directions(rng, S, at, 3)
            fd, bound = lines.finite_difference(S, fun, at, dirs)
            g = tuple(np.asarray(h[p]) for h in self.hand)
            dd = checks.real_inner(g, dirs)
            vn = np.sqrt(sum(np.sum(np.abs(checks.up(d)) ** 2, axis=tuple(range(1, np.ndim(d))))
                             for d in dirs))
            size = np.maximum(self.total[p] * vn / np.sqrt(n_entries), 1e-300)
            e = np.abs(dd - fd) / size
            excess = np.maximum(np.abs(dd - fd) - bound, 0) / size
            self.err[p, :] = float(np.max(e))
            if np.max(excess) > TOL_DIRECTIONAL * self.tol[p]:
                self.status[p] = "fail"
            self.fd.setdefault("hand", []).append(dd)
            self.fd.setdefault("fd", []).append(fd)
        # points the finite differences did not reach were not tested (and are no finding)
        for p in range(P.count):
            if p not in cand and self.status[p] == "ok":
                self.status[p] = "unreached"

    # -- Taylor -----------------------------------------------------------------------------------
    def taylor(self, fun, rng, n_directions) -> dict:
        if self.status[0] not in ("ok", "fail"):
            return {}
        S, P = self.spec, self.points
        at = P.leaves(S, 0)
        dirs = points.directions(rng, S, at, n_directions)
        try:
            t = lines.taylor(S, fun, at, self._grad_at(0), dirs)
        except Exception:  # noqa: BLE001 - fun cannot be evaluated along the line
            return {}
        return self.taylor_judged(t)

    def taylor_judged(self, t) -> dict:
        """The Taylor test's findings from :func:`.lines.remainder`'s (or the screen's
        :func:`.lines.central`'s) output, judged against this point's tolerance."""
        thr = TOL_DIRECTIONAL * self.tol[0]
        lin, unc = t["linear_term"], t["uncertainty"]
        passed = bool(np.all(lin <= thr + unc))
        return {"slopes": t["slopes"], "hs": t["hs"].tolist(),
                "remainders": t["remainders"].tolist(), "linear_term": lin.tolist(),
                "uncertainty": unc.tolist(), "threshold": float(thr), "passed": passed}


def _singular(ev: Evaluation, label: str) -> bool:
    fam, _, leaf = label.partition(":")
    S = ev.spec
    if leaf not in S.leaf_names:
        return False
    i = S.leaf_names.index(leaf)
    sel = (ev.points.labels == label) & (ev.status == "nonfinite")
    if i not in ev.points.stacked or not sel.any():
        return False
    x = checks.up(ev.points.stacked[i][sel])
    try:
        return bool(np.all(np.linalg.cond(x) > 1 / np.finfo(ev.work).eps))
    except np.linalg.LinAlgError:
        return True


def assemble(ev: Evaluation, forward, taylor_info, kink_info, base) -> GradientReport:
    S, P = ev.spec, ev.points
    status, labels, generic = ev.status, P.labels, P.generic
    tested = ev.tested
    counted_bad = compare.failing(status, generic)
    report = GradientReport(True, "pass", float("nan"), None, float(ev.tol[0]),
                            dtype=str(ev.work), points=int(tested.sum()),
                            skipped=int((status == "skipped").sum()),
                            forward=forward, taylor=taylor_info, kink=kink_info,
                            reference="jax.grad" if ev.use_jax else "taylor-only",
                            **base)
    report.reference_dtype = ev.ref_dtype
    report.statuses = {s: int((status == s).sum()) for s in
                       ("ok", "fail", "nonfinite", "skipped", "kink", "unreached")
                       if (status == s).any()}
    if tested.any():
        judged = np.where(np.isfinite(ev.err), ev.err, np.inf)
        ratio = np.where(tested, np.max(judged, axis=1) / ev.tol, -np.inf)
        worst = int(np.argmax(ratio))
        report.max_rel_error = float(np.max(judged[worst]))
        report.tolerance = float(ev.tol[worst])
        if ev.status[worst] == "nonfinite":
            report.max_rel_error = float("inf")
        report.families = {str(lab): float(np.max(judged[(labels == lab) & tested]))
                           for lab in np.unique(labels) if ((labels == lab) & tested).any()}
        if counted_bad.any():
            report.failing_family, report.failing_point = str(labels[worst]), worst
    if ev.implied:
        report.precision = {
            "dtype": str(ev.work), "reference_dtype": ev.ref_dtype,
            "formula_in_float64": ev.example64 is not None,
            "hand_rel_error": float(np.nanmax(np.where(tested[:, None], ev.err_work, 0))),
            "reference_rel_error": float("nan"), "implied": True,
            **({"example_float64": ev.example64} if ev.example64 else {}),
        }
    elif ev.low and ev.ref is not None:
        report.precision = {
            "dtype": str(ev.work), "reference_dtype": ev.ref_dtype,
            "formula_in_float64": ev.hand64 is not None,
            "hand_rel_error": float(np.nanmax(np.where(tested[:, None], ev.err_work, 0))),
            "reference_rel_error": float(np.max(getattr(ev, "reference_error", [0.0]))),
        }
    singular = {lab: _singular(ev, lab) for lab in np.unique(labels)
                if ((labels == lab) & (status == "nonfinite")).any()}
    skip_reason = "fun not finite" if ev.ref is None else "fun or jax.grad not finite"
    report.where_it_holds = diagnosis.where_it_holds(status, labels, generic, P.family_keys,
                                                     skip_reason, singular)

    # per block
    if ev.ref is not None and counted_bad.any():
        proj_hand, proj_ref = ev.proj_hand, ev.proj_ref
    for b, (leaf, bname) in enumerate(zip(S.diff, S.block_names)):
        nonfin_b = ~ev.hand_finite[b]
        bad = counted_bad & ((ev.err[:, b] > ev.tol) | nonfin_b | ~np.isfinite(ev.err[:, b]))
        errs_b = ev.err[:, b][tested & ~nonfin_b]
        entry = {"max_rel_error": float(np.max(errs_b)) if errs_b.size else float("nan"),
                 "diagnosis": None}
        if nonfin_b[bad].any():
            k = int((bad & nonfin_b).sum())
            entry["diagnosis"] = "nonfinite"
            entry["max_rel_error"] = float("inf")
            entry["location"] = (f"not finite at {k} of {int(tested.sum())} tested points "
                                 f"where fun and jax.grad are finite (e.g. #"
                                 f"{int(np.flatnonzero(bad & nonfin_b)[0])}, "
                                 f"{labels[np.flatnonzero(bad & nonfin_b)[0]]})")
        elif bad.any() and ev.ref is not None:
            sel = bad & generic if (bad & generic).any() else bad
            h, r = proj_hand[b][sel], proj_ref[b][sel]
            tol = float(np.max(ev.tol[sel]))
            entry["diagnosis"] = diagnosis.classify(h, r, tol, S.domains[leaf])
            where, entries, emap = diagnosis.locate(h, r, tol)
            entry.update(location=where, entries=entries)
            if emap.size <= 400:
                entry["error_map"] = emap
        elif bad.any():
            dd, fd = np.concatenate(ev.fd["hand"]), np.concatenate(ev.fd["fd"])
            entry["diagnosis"] = diagnosis.classify(dd[None], fd[None], float(ev.tol[0]))
        report.blocks[bname] = entry
    report.failing_arguments = tuple(n for n, e in report.blocks.items() if e["diagnosis"])

    # verdict
    failed = []
    if counted_bad.any():
        failed.append("autodiff comparison" if ev.ref is not None else "finite differences")
    if forward and not forward["passed"]:
        failed.append("forward mode")
    if taylor_info and not taylor_info["passed"]:
        failed.append("Taylor remainder")
    if not tested.any() and not kink_info.get("kink"):
        report.passed, report.verdict, report.diagnosis = False, "untested", "untested"
    elif kink_info.get("kink"):
        report.passed, report.verdict = False, "nondifferentiable"
        report.diagnosis = "nondifferentiable"
    elif failed:
        report.passed, report.verdict = False, "fail"
        found = {e["diagnosis"] for e in report.blocks.values() if e["diagnosis"]}
        report.diagnosis = found.pop() if len(found) == 1 else "mismatch"
        if not counted_bad.any():  # every point agreed with jax.grad; the reference did not
            report.where_it_holds = (
                "agrees with jax.grad at every tested input, but jax.grad disagrees with "
                + ("fun's own values (Taylor remainder)" if "Taylor remainder" in failed else
                   "forward mode (jax.jvp)") + ": check fun's custom derivative rules")
    report.failed_checks = tuple(failed)
    report.message = _message(report, ev)
    return report


def _message(r: GradientReport, ev: Evaluation) -> str:
    prec = ""
    if r.precision.get("implied"):
        p = r.precision
        e64 = p.get("example_float64")
        prec = (f" In {p['dtype']} the hand gradient is within {p['hand_rel_error']:.1e} of "
                f"jax.grad in {p['dtype']} at every point, which bounds its error against the "
                f"float64 truth within what {p['dtype']} resolves (32 eps, or 16 times jax.grad's "
                f"own {p['dtype']} error)"
                + (f"; at the example its formula in float64 is within {e64['rel_error']:.1e} of "
                   f"jax.grad in float64 (tolerance {e64['tolerance']:.1e})." if e64 else "."))
    elif r.precision:
        p = r.precision
        prec = (f" In {p['dtype']} the hand gradient's own error is {p['hand_rel_error']:.1e} "
                f"(jax.grad's {p['reference_rel_error']:.1e}); "
                + ("its formula was also evaluated in float64." if p["formula_in_float64"]
                   else "it does not run in float64, so it is judged as given."))
    if r.verdict == "untested":
        return (f"UNTESTED: no point where fun and its reference gradient are finite "
                f"({ev.points.count} points, all skipped); nothing was compared, so nothing "
                "passed.")
    if r.verdict == "nondifferentiable":
        return (f"NONDIFFERENTIABLE at the example point: one-sided directional derivatives "
                f"differ (relative gap {r.kink['max_relative_gap']:.2g}); no gradient exists "
                f"there, so the hand gradient is not judged at it. Elsewhere: max relative error "
                f"{r.max_rel_error:.2e} ({r.where_it_holds}).")
    if r.passed:
        slopes = [round(s, 2) for s in r.taylor.get("slopes", []) if np.isfinite(s)]
        taylor = (f", Taylor slopes {slopes}" if slopes and min(slopes) >= 1.7 else
                  f", Taylor linear term {max(r.taylor['linear_term']):.1e} within the "
                  "gradient's rounding" if r.taylor.get("linear_term") else "")
        return (f"pass: max relative error {r.max_rel_error:.2e} <= {r.tolerance:.1e} over "
                f"{r.points} points ({r.reference}, in {r.reference_dtype})" + taylor
                + (f"; {r.where_it_holds}" if r.where_it_holds != "all tested inputs" else "")
                + "." + prec)
    parts = [f"FAIL ({', '.join(r.failed_checks)}): diagnosis {r.diagnosis}"]
    for name in r.failing_arguments:
        b = r.blocks[name]
        text = (diagnosis.SYMMETRIC_CONVENTION if b["diagnosis"] == "symmetric-convention"
                else b["diagnosis"])
        parts.append(f"{name}: {text} (max rel. error {b['max_rel_error']:.2e}"
                     + (f", {b['location']}" if b.get("location") else "") + ")")
    ok = [n for n in r.arguments if n not in r.failing_arguments]
    if ok and r.failing_arguments:
        parts.append("correct: " + ", ".join(ok))
    parts.append(f"where it holds: {r.where_it_holds}")
    if r.failing_family:
        parts.append(f"worst point: #{r.failing_point} ({r.failing_family})")
    return "; ".join(parts) + "." + prec


STRICT = False
"""Raise on an inconsistent report (the test suite sets it); otherwise warn."""


def finish(report):
    """The last step of every audit: the report (a :class:`GradientReport` or a
    ``DerivationReport``) checked for self-consistency."""
    problems = report.consistency_problems()
    if problems:  # a bug of ours, never the user's: say so rather than hide a contradiction
        text = (f"matgrad_jax: inconsistent {report.kind} report ({'; '.join(problems)}): "
                f"{report.message}")
        if STRICT:
            raise AssertionError(text)
        import warnings

        warnings.warn(text, RuntimeWarning, stacklevel=3)
    return report
