"""A live progress line for long fits: rich when installed, a plain ``\\r`` line otherwise,
nothing when the stream is not a terminal (logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time


class FitProgress:
    """``update(k, value, grad_norm)`` from the host loop between chunks; a context manager.

    The solver calls back once per chunk and chunks last about a quarter of a second, so the
    display is refreshed at a bounded rate whatever the iteration speed.
    """

    def __init__(self, total: int, label: str, stream=None, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = isatty if enabled is None else enabled
        self.total, self.label = total, label
        self._rich = self._task = None
        self._t0 = time.perf_counter()

    def __enter__(self):
        if not self.enabled:
            return self
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            return self
        console = Console(file=self.stream, force_terminal=True)
        self._rich = Progress(TextColumn("{task.description}"), BarColumn(),
                              MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                              TimeElapsedColumn(), console=console, transient=False)
        self._rich.__enter__()
        self._task = self._rich.add_task(self.label, total=self.total, status="")
        return self

    def update(self, k: int, value: float, grad_norm: float) -> None:
        if not self.enabled:
            return
        status = f"φ = {value:.8e}  ‖∇φ‖ = {grad_norm:.2e}"
        if self._rich is not None:
            self._rich.update(self._task, completed=k, status=status)
        else:
            dt = time.perf_counter() - self._t0
            self.stream.write(f"\r{self.label}: {k}/{self.total}  {status}  {dt:.1f} s")
            self.stream.flush()

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.__exit__(*exc)
        elif self.enabled:
            self.stream.write("\n")
        return False
