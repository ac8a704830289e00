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


@dataclass
class GradientReport:
    """What :func:`matgrad_jax.check_gradient` found.

    Attributes:
      passed: True when every check agreed within tolerance at every differentiable point.
      verdict: ``pass``, ``fail``, ``nondifferentiable`` or ``error``.
      max_rel_error: largest block error relative to the reference gradient's norm.
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
      points / skipped: points compared / skipped because ``fun`` was not finite there.
      reference: ``jax.grad`` or ``taylor-only`` (``fun`` not differentiable by JAX).
      message: one-paragraph summary for a person.
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
        head = f"### Gradient audit{': ' + self.name if self.name else ''}\n\n"
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
            f"| reference | {self.reference} |",
        ]
        if self.source:
            lines.append(f"| source | {self.source} |")
        block_lines = ["", "| block | max rel. error | diagnosis | where |", "|---|---|---|---|"]
        for name, b in self.blocks.items():
            block_lines.append(f"| {name} | {_fmt(b.get('max_rel_error'))} | "
                               f"{b.get('diagnosis') or 'ok'} | {b.get('location') or ''} |")
        return head + "\n".join(lines + block_lines) + f"\n\n{self.message}\n"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.message


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
