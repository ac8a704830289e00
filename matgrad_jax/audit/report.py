"""The audit's verdict as data: :class:`GradientReport`, JSON-able and rendered as Markdown."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:.2e}"
    return str(x)


@dataclass(repr=False)
class GradientReport:
    """What :func:`matgrad_jax.check_gradient` found.

    Attributes:
      passed: True when every check agreed within tolerance at every tested point (and at
        least one point was tested).
      verdict: ``pass``, ``fail``, ``nondifferentiable``, ``untested`` or ``error``.
      max_rel_error: the block error (relative to the reference gradient's norm) at the point
        that came closest to, or went furthest past, its tolerance; ``tolerance`` is that
        point's tolerance (tolerances below float64 are set per point, see
        :mod:`matgrad_jax.audit.verdict`).
      diagnosis: ``None`` when passed, else a label from
        :data:`matgrad_jax.audit.diagnosis.VOCABULARY` (``sign``, ``scale:0.5``, ``transpose``, …).
      tolerance: the relative tolerance used (from the dtype and the reference's own rounding).
      blocks: per differentiated argument: error, diagnosis, location, wrong entries.
      failing_arguments: names of the wrong blocks.
      where_it_holds: domain of validity over the input families, e.g.
        ``"holds only for symmetric Q"``.
      failing_family / failing_point: where the worst failure was seen.
      families: max relative error per ``"family:argument"``.
      forward: forward-mode (jvp) cross-check.
      taylor: Taylor-remainder slopes (2 for a right gradient, 1 for a wrong one).
      kink: one-sided derivative test at the example point.
      points / skipped: points compared / skipped because ``fun`` or ``jax.grad`` was not
        finite there; ``statuses`` counts every point's status.
      reference: ``jax.grad`` or ``taylor-only`` (``fun`` not differentiable by JAX: finite
        differences and the Taylor remainder decide);
        ``reference_dtype`` the dtype it was computed in (float64 whenever JAX can).
      precision: below float64, the hand gradient's and jax.grad's own errors in that dtype.
      failed_checks: which checks failed.
      budget: how much was run: ``mode`` ``"full"`` (every point and direction asked for) or
        ``"screen"`` (a costly function: fewer of each, see :func:`~matgrad_jax.
        check_gradient`'s ``budget``), ``flops`` (the estimated work of one evaluation of
        ``fun``) and ``screened`` (a screen found something, so this is the full audit that
        followed it).
      message: one-paragraph summary for a person; its first line is the verdict.
    """

    passed: bool
    verdict: str
    max_rel_error: float
    diagnosis: str | None
    tolerance: float
    dtype: str
    arguments: tuple[str, ...]
    blocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failing_arguments: tuple[str, ...] = ()
    where_it_holds: str = "all tested inputs"
    failing_family: str | None = None
    failing_point: int | None = None
    families: dict[str, float] = field(default_factory=dict)
    forward: dict[str, Any] = field(default_factory=dict)
    taylor: dict[str, Any] = field(default_factory=dict)
    kink: dict[str, Any] = field(default_factory=dict)
    points: int = 0
    skipped: int = 0
    reference: str = "jax.grad"
    seconds: float = 0.0
    message: str = ""
    name: str | None = None
    source: str | None = None
    reference_dtype: str = "float64"
    statuses: dict[str, int] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)
    failed_checks: tuple[str, ...] = ()
    kind: str = "gradient"
    budget: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        head = (f"{type(self).__name__}({self.name + ': ' if self.name else ''}{self.verdict}"
                f", diagnosis={self.diagnosis!r}, max_rel_error={_fmt(self.max_rel_error)}, "
                f"tolerance={_fmt(self.tolerance)}, points={self.points})")
        return head + "\n  " + _wrap(self.message, "  ")

    def headline(self) -> str:
        """The verdict in one line (for a test summary)."""
        text = self.message.split(": where it holds")[0]
        return (f"{self.name + ': ' if self.name else ''}{text}")[:300]

    def consistency_problems(self) -> list[str]:
        """Ways in which the report contradicts itself (empty for every report we produce)."""
        from .diagnosis import is_valid_label

        out = []
        if self.passed != (self.verdict == "pass"):
            out.append(f"passed={self.passed} with verdict {self.verdict!r}")
        if self.passed and (self.diagnosis is not None or self.failing_arguments):
            out.append("passed with a diagnosis or failing blocks")
        if self.passed and self.points == 0:
            out.append("passed on zero points")
        if not self.passed and self.diagnosis is None:
            out.append("not passed without a diagnosis")
        if not is_valid_label(self.diagnosis):
            out.append(f"diagnosis {self.diagnosis!r} not in the vocabulary")
        if self.passed and any(w in self.where_it_holds for w in ("fails", "holds only")):
            out.append(f"passed, yet where it holds = {self.where_it_holds!r}")
        if self.verdict == "fail" and self.where_it_holds.startswith("all tested inputs"):
            out.append("failed, yet holds on all tested inputs")
        if self.verdict == "untested" and self.points:
            out.append("untested with points compared")
        first = self.message.split(":")[0].split(" ")[0]
        expect = {"pass": "pass", "fail": "FAIL", "untested": "UNTESTED",
                  "nondifferentiable": "NONDIFFERENTIABLE", "error": "FAIL"}[self.verdict]
        if first != expect:
            out.append(f"message starts {first!r}, verdict {self.verdict!r}")
        if "fails on every tested input" in self.where_it_holds and self.statuses.get("ok"):
            out.append("'fails on every tested input' while some point passed")
        if set(self.failing_arguments) - set(self.blocks):
            out.append("a failing block that is not in blocks")
        if self.passed and math.isfinite(self.max_rel_error) and \
                self.max_rel_error > self.tolerance:
            out.append("passed with max_rel_error above tolerance")
        if self.verdict == "fail" and self.failed_checks == ("autodiff comparison",) and \
                math.isfinite(self.max_rel_error) and self.max_rel_error <= self.tolerance:
            out.append("failed the comparison with max_rel_error within tolerance")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN becomes ``None``)."""
        return _jsonable(asdict(self))

    def summary_row(self) -> dict[str, str]:
        return {
            "derivation": self.name or "",
            "verdict": self.verdict,
            "max error": _fmt(self.max_rel_error),
            "diagnosis": self.diagnosis or "",
            "blocks": ", ".join(self.failing_arguments) or "",
            "where it holds": self.where_it_holds,
            "source": self.source or "",
        }

    def to_markdown(self) -> str:
        head = (f"### {self.kind.capitalize()} audit"
                f"{': ' + self.name if self.name else ''}\n\n")
        lines = [
            "| field | value |", "|---|---|",
            f"| verdict | **{self.verdict}** |",
            f"| diagnosis | {self.diagnosis or '—'} |",
            f"| max relative error | {_fmt(self.max_rel_error)} (tolerance {_fmt(self.tolerance)},"
            f" {self.dtype}) |",
            f"| wrong blocks | {', '.join(self.failing_arguments) or '—'} |",
            f"| where it holds | {self.where_it_holds} |",
            f"| forward mode (jvp) | {_fmt(self.forward.get('max_rel_error'))} |",
            f"| Taylor slopes | {', '.join(_fmt_slope(s) for s in self.taylor.get('slopes', []))}"
            " |",
            f"| kink at the example point | {'yes' if self.kink.get('kink') else 'no'} |",
            f"| points | {self.points} compared, {self.skipped} skipped (non-finite) |",
            f"| reference | {self.reference} in {self.reference_dtype} |",
        ]
        if self.precision:
            lines.append(f"| in {self.precision['dtype']} | hand gradient's own error "
                         f"{_fmt(self.precision['hand_rel_error'])}, jax.grad's "
                         f"{_fmt(self.precision['reference_rel_error'])} |")
        if self.source:
            lines.append(f"| source | {self.source} |")
        block_lines = ["", "| block | max rel. error | diagnosis | where |", "|---|---|---|---|"]
        for name, b in self.blocks.items():
            block_lines.append(f"| {name} | {_fmt(b.get('max_rel_error'))} | "
                               f"{b.get('diagnosis') or 'ok'} | {b.get('location') or ''} |")
        return head + "\n".join(lines + block_lines) + f"\n\n{self.message}\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        import html

        color = "#1a7f37" if self.passed else "#cf222e"
        rows = [("verdict", f"<b style='color:{color}'>{html.escape(self.verdict)}</b>"),
                ("diagnosis", html.escape(self.diagnosis or "—")),
                ("max relative error", f"{_fmt(self.max_rel_error)} (tolerance "
                 f"{_fmt(self.tolerance)}, {html.escape(self.dtype)})"),
                ("wrong blocks", html.escape(", ".join(self.failing_arguments) or "—")),
                ("where it holds", html.escape(self.where_it_holds)),
                ("points", f"{self.points} compared, {self.skipped} skipped"),
                ("reference", html.escape(f"{self.reference} in {self.reference_dtype}"))]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>"
                       f"{v}</td></tr>" for k, v in rows)
        blocks = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{_fmt(b.get('max_rel_error'))}</td>"
            f"<td>{html.escape(b.get('diagnosis') or 'ok')}</td>"
            f"<td>{html.escape(b.get('location') or '')}</td></tr>"
            for n, b in self.blocks.items())
        title = html.escape(f"{self.kind.capitalize()} audit"
                            + (f": {self.name}" if self.name else ""))
        return (f"<div><h4>{title}</h4><table>{body}</table>"
                f"<table><tr><th>block</th><th>max rel. error</th><th>diagnosis</th>"
                f"<th>where</th></tr>{blocks}</table><p>{html.escape(self.message)}</p></div>")

    def plot(self, ax: Any = None) -> Any:
        """The Taylor remainders against h with slope-1 and slope-2 guides, and the error by
        family against the tolerance. Needs matplotlib; returns the figure."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("GradientReport.plot needs matplotlib: pip install "
                              "'matgrad-jax[plot]'") from None
        if ax is None:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        else:
            a1, a2 = ax
            fig = a1.figure
        hs = self.taylor.get("hs")
        if hs:
            import numpy as np

            hs = np.asarray(hs)
            for c, rem in enumerate(self.taylor["remainders"]):
                a1.loglog(hs, np.maximum(rem, 1e-300), "o-", ms=3, label=f"direction {c}")
            top = max(max(r) for r in self.taylor["remainders"]) or 1.0
            a1.loglog(hs, top * hs / hs[0], "k--", lw=0.8, label="slope 1")
            a1.loglog(hs, top * (hs / hs[0]) ** 2, "k:", lw=0.8, label="slope 2")
            a1.set_ylim(bottom=max(1e-18, min(min(r) for r in self.taylor["remainders"])
                                   if self.taylor["remainders"] else 1e-18))
            a1.legend(fontsize=7)
        a1.set(xlabel="h", ylabel="|f(x+hv) - f(x) - h<g, v>|", title="Taylor remainder")
        if self.families:
            names = list(self.families)
            vals = [max(v, 1e-18) for v in self.families.values()]
            a2.bar(range(len(names)), vals, color=["#cf222e" if v > self.tolerance else
                                                   "#1a7f37" for v in vals])
            a2.axhline(self.tolerance, color="k", ls="--", lw=0.8, label="tolerance")
            a2.set_yscale("log")
            a2.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
            a2.legend(fontsize=7)
        a2.set(ylabel="max relative error", title="error by family")
        fig.suptitle(self.headline()[:100], fontsize=9)
        fig.tight_layout()
        return fig

    def __str__(self) -> str:
        return self.message


def _wrap(text: str, indent: str, width: int = 96) -> str:
    import textwrap

    return ("\n" + indent).join(textwrap.wrap(text, width - len(indent))[:6])


def _fmt_slope(s) -> str:
    return "n/a" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s:.2f}"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def markdown_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table from a list of same-keyed dicts."""
    if not rows:
        return ""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |" for r in rows]
    return "\n".join(out)


def text_table(rows: list[dict[str, str]], widths: dict[str, int] | None = None) -> str:
    """A plain fixed-width table for terminals."""
    if not rows:
        return ""
    keys = list(rows[0])
    widths = widths or {}
    w = {k: min(widths.get(k, 60), max(len(k), *(len(str(r[k])) for r in rows))) for k in keys}
    cut = lambda s, n: s if len(s) <= n else s[: n - 1] + "…"
    line = lambda r: "  ".join(cut(str(r[k]), w[k]).ljust(w[k]) for k in keys)
    return "\n".join([line({k: k for k in keys}), "  ".join("-" * w[k] for k in keys)]
                     + [line(r) for r in rows])
