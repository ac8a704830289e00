"""PNG plots and the docs' performance tables from benchmarks/results/*.json."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from matgrad_jax.bench.plots import plot_all  # noqa: E402
from matgrad_jax.bench.report import update_readme  # noqa: E402

if __name__ == "__main__":
    for path in plot_all():
        print(f"wrote {path}")
    page = ROOT / "docs" / "performance" / "index.md"
    print(f"{page} updated" if update_readme(page) else f"{page} unchanged")
