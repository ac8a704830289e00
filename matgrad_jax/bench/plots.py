"""PNG plots from the JSON in ``benchmarks/results`` (needs matplotlib)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..io import atomic_write_bytes
from .common import default_results_dir


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_all(results_dir: str | Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir or default_results_dir())
    written = []
    for path in sorted(results_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        kind, mach = doc.get("benchmark"), doc.get("machine", {})
        where = f"{mach.get('device', '?')}, jax {mach.get('jax', '?')}"
        fig, ax = plt.subplots(figsize=(6.5, 4))
        if kind == "gradient":
            rows = [r for r in doc["results"] if r["q"] == 2 * r["k"] or r["k"] == 2 * r["n"]]
            rows = rows or doc["results"]
            xs = [r["n"] for r in rows]
            for name in rows[-1]["median_s"]:
                ys = [r["median_s"].get(name) for r in rows]
                ax.loglog(xs, [1e3 * y if y else float("nan") for y in ys], "o-", label=name)
            ax.set_xlabel("n = m (k = 2n, q = 4n)")
            ax.set_ylabel("median ms")
        elif kind == "spectral":
            xs = [r["n"] for r in doc["results"]]
            for name in doc["results"][0]["variants"]:
                ax.loglog(xs, [1e3 * r["variants"][name]["median_s"] for r in doc["results"]],
                          "o-", label=name)
            ax.set_xlabel("n")
            ax.set_ylabel("median ms")
        elif kind == "solvers":
            labels, vals = [], []
            for r in doc["results"]:
                for m, v in r["methods"].items():
                    labels.append(f"{m}\nP {r['p_condition']:g}")
                    vals.append(1e3 * v["time_to_target_s"] if v["time_to_target_s"] else 0)
            ax.bar(range(len(vals)), vals)
            ax.set_xticks(range(len(vals)), labels, fontsize=6, rotation=60)
            ax.set_yscale("log")
            ax.set_ylabel(f"ms to gap {doc['results'][0]['target_gap']:g} (0: not reached)")
        elif kind == "devices":
            for m in sorted({r["method"] for r in doc["results"]}):
                rs = [r for r in doc["results"] if r["method"] == m and r.get("problems_per_s")]
                ax.plot([r["devices"] for r in rs], [r["problems_per_s"] for r in rs], "o-",
                        label=m)
            ax.set_xlabel("devices")
            ax.set_ylabel("problems / s")
        elif kind == "batch":
            rs = doc["results"]
            ax.bar([f"{r['method']} vmap" for r in rs] + [f"{r['method']} loop" for r in rs],
                   [r["problems_per_s_batch"] for r in rs] + [r["problems_per_s_loop"]
                                                               for r in rs])
            ax.set_yscale("log")
            ax.set_ylabel("problems / s")
        else:
            plt.close(fig)
            continue
        ax.set_title(f"{path.stem} ({where})", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        written.append(_save(fig, path.with_suffix(".png")))
        plt.close(fig)
    return written
