"""What :func:`~matgrad_jax.check_derivation` found, line by line: :class:`DerivationReport`."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from .report import _fmt, _jsonable


@dataclass
class LineResult:
    """One line of a derivation and its verdict.

    Attributes:
      index: the line's position in ``steps`` (0-based; shown 1-based).
      text: the line as written.
      passed: the line agrees with ``jax.jvp(fun)`` (``fun`` itself for a value line) at every
        tested point and tangent where its conditions hold, and at least one was tested.
      verdict: ``pass``, ``fail``, ``untested`` or ``error`` (the line raised or returned the
        wrong shape).
      follows: the line agrees with the line before (``None``: first line, a value line after a
        differential or the other way round, or conditions that leave no common tangent).
      error / tolerance: the largest error relative to the size of a directional derivative
        (``‖∇φ‖‖v‖/√N``; ``|φ|`` for a value line) at the point closest to or furthest past its
        tolerance, and that tolerance.
      error_prev: the same for the comparison with the line before.
      conditions: the conditions it was tested under (``symmetric Q``, ``dQ = 0``).
      where_it_holds: over the input families, e.g. ``"holds only for symmetric Q"``.
      diagnosis: for a line where an error enters (wrong, and not following from a wrong line
        before it): ``sign``, ``scale:<c>``, ``transpose``, ``term-sign``, ``term-scale:<c>``,
        ``term-absent``, ``term-transpose``, ``family`` or ``mismatch``; for a line stating a
        gradient, the audit's block label where one fits (``symmetric-convention``,
        ``transpose``, ...; see :mod:`~matgrad_jax.audit.diagnosis`); ``term`` names the term.
      explanation: the diagnosis in a sentence.
      terms: the names of the line's terms (when it returned them).
      statuses: points per status (``ok``, ``fail``, ``nonfinite``, ``skipped``).
      points: points tested (each with ``directions`` tangents).
      source: where the line comes from.
    """

    index: int
    text: str
    passed: bool
    verdict: str
    states: str = "differential"
    follows: bool | None = None
    error: float = float("nan")
    tolerance: float = float("nan")
    error_prev: float = float("nan")
    conditions: tuple[str, ...] = ()
    where_it_holds: str = ""
    diagnosis: str | None = None
    term: str | None = None
    explanation: str = ""
    terms: tuple[str, ...] = ()
    statuses: dict[str, int] = field(default_factory=dict)
    points: int = 0
    source: str = ""
    message: str = ""

    @property
    def mark(self) -> str:
        return "✓" if self.passed else ("✗" if self.verdict in ("fail", "error") else "?")


@dataclass(repr=False)
class DerivationReport:
    """The verdict on every line of a derivation.

    Attributes:
      passed: every line passed.
      first_wrong: the index of the first line that fails or raises (None when none does).
      lines: one :class:`LineResult` per step, in order.
      verdict: ``pass``, ``fail`` or ``untested`` (no line failed, but some was not tested).
      message: a paragraph for a person; its first sentence is the verdict.
      unparsed: from :func:`~matgrad_jax.audit.latex.check_derivation_latex`, the lines not
        read as steps (identities, definitions outside the dialect), as ``(text, reason)``.
    """

    lines: list[LineResult]
    passed: bool
    first_wrong: int | None
    verdict: str
    message: str = ""
    name: str | None = None
    source: str | None = None
    dtype: str = ""
    reference: str = "jax.jvp in float64"
    directions: int = 0
    seconds: float = 0.0
    kind: str = "derivation"
    unparsed: list = field(default_factory=list)

    def headline(self) -> str:
        if self.first_wrong is None:
            return (f"{self.verdict.upper()}: all {len(self.lines)} lines hold"
                    if self.passed else f"{self.verdict.upper()}: no line failed, but "
                    f"{sum(not ln.passed for ln in self.lines)} could not be tested")
        ln = self.lines[self.first_wrong]
        why = f": {ln.explanation}" if ln.explanation else ""
        return f"FAIL: the first wrong line is line {ln.index + 1}, {ln.text!r}{why}"

    def __repr__(self) -> str:
        return (f"DerivationReport({self.name or 'derivation'}: {self.verdict}, "
                f"first_wrong={self.first_wrong}, {len(self.lines)} lines)")

    def __str__(self) -> str:
        return self.to_markdown()

    def consistency_problems(self) -> list[str]:
        out = []
        if self.passed != (bool(self.lines) and all(ln.passed for ln in self.lines)):
            out.append("passed disagrees with the lines")
        wrong = [ln.index for ln in self.lines if ln.verdict in ("fail", "error")]
        if self.first_wrong != (wrong[0] if wrong else None):
            out.append("first_wrong is not the first failing line")
        for ln in self.lines:
            if ln.passed and (ln.verdict != "pass" or ln.points == 0):
                out.append(f"line {ln.index + 1} passed on {ln.points} points ({ln.verdict})")
            if not ln.passed and ln.verdict == "pass":
                out.append(f"line {ln.index + 1}: verdict pass but not passed")
        if self.passed and self.verdict != "pass":
            out.append("passed with a verdict other than pass")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN becomes ``None``)."""
        return _jsonable(asdict(self))

    def summary(self) -> str:
        """The first wrong line in a few words (for tables): ``"5: ∂φ/∂Q = 2(BD − F)"``."""
        if self.first_wrong is None:
            return "none" if self.passed else "none failed (some untested)"
        ln = self.lines[self.first_wrong]
        return f"{ln.index + 1}: {ln.text}"

    def to_markdown(self) -> str:
        head = f"### Derivation{': ' + self.name if self.name else ''}\n\n"
        rows = ["| # |  | line | vs jax.jvp | vs line before | holds under | note |",
                "|---|---|---|---|---|---|---|"]
        for ln in self.lines:
            prev = ("—" if ln.follows is None else ("✓" if ln.follows else "✗")
                    + f" {_fmt(ln.error_prev)}")
            note = ln.explanation or ("" if ln.passed else ln.message)
            if ln.where_it_holds and ln.where_it_holds != "all tested inputs" and not ln.passed:
                note = note or ln.where_it_holds
            cells = [str(ln.index + 1), ln.mark, _cell(ln.text),
                     f"{_fmt(ln.error)} (tol {_fmt(ln.tolerance)})", prev,
                     _cell(", ".join(ln.conditions)) or "—", _cell(note)]
            rows.append("| " + " | ".join(cells) + " |")
        foot = f"\n\n{self.message}\n"
        if self.source:
            foot += f"\nSource: {self.source}\n"
        return head + "\n".join(rows) + foot

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        rows = []
        for ln in self.lines:
            color = "#1a7f37" if ln.passed else "#cf222e"
            prev = "—" if ln.follows is None else ("✓" if ln.follows else "✗")
            rows.append(
                f"<tr><td>{ln.index + 1}</td><td style='color:{color}'><b>{ln.mark}</b></td>"
                f"<td style='text-align:left'><code>{html.escape(ln.text)}</code></td>"
                f"<td>{_fmt(ln.error)}</td><td>{prev}</td>"
                f"<td>{html.escape(', '.join(ln.conditions))}</td>"
                f"<td style='text-align:left'>{html.escape(ln.explanation or '')}</td></tr>")
        title = html.escape("Derivation" + (f": {self.name}" if self.name else ""))
        return (f"<div><h4>{title}</h4><table><tr><th>#</th><th></th><th>line</th>"
                f"<th>vs jax.jvp</th><th>vs line before</th><th>holds under</th><th>note</th>"
                f"</tr>{''.join(rows)}</table><p>{html.escape(self.message)}</p></div>")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
