"""The documentation's benchmark tables, generated from ``benchmarks/results/*.json``.

``matgrad bench report [PAGE]`` (default ``docs/performance/index.md``) rewrites the text between
``<!-- bench:begin -->`` and ``<!-- bench:end -->``; nothing in it is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import default_results_dir
from .solvers import LABELS

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PERFORMANCE_PAGE = Path("docs") / "performance" / "index.md"
"""The page whose marked section :func:`update_readme` rewrites by default (from the repo root)."""


def _machine(doc, fit: bool = False) -> str:
    """The machine in words; on a GPU also the matrix-product precision (``fit``: the fitting
    code's, :data:`matgrad_jax.precision.FIT_PRECISION`, else the caller's)."""
    m = doc.get("machine", {})
    dev = m.get("device", "?")
    where = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores" if m.get("platform") == "cpu" \
        else dev
    if m.get("platform") != "cpu" and doc.get("dtype") == "float32":
        p = m.get("fit_matmul_precision", m.get("matmul_precision")) if fit \
            else m.get("matmul_precision")
        where += f", products at {p or 'XLA default (TF32 for float32)'} precision"
    return f"{where}; jax {m.get('jax', '?')}; {m.get('date', '')}".rstrip("; ")


def _note(doc) -> str:
    return f" Note: {doc['note']}." if doc.get("note") else ""


def _table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _ms(s, missing="not reached"):
    if s is None:
        return missing
    return f"{1e3 * s:.3g}" if s < 1 else f"{1e3 * s:.0f}"


def _is_cpu(doc) -> bool:
    return doc.get("machine", {}).get("platform", "cpu") == "cpu"


def _ok(value, target, higher=True, doc=None) -> str:
    """✓/✗ against a target; nothing for a GPU run of a target set for the 2-core CPU."""
    if doc is not None and not _is_cpu(doc):
        return ""
    if value is None:
        return "✗"
    return "✓" if (value >= target if higher else value <= target) else "✗"


def gradient_section(docs) -> str:
    parts = ["### Seed-1 gradient: hand-structured vs `jax.grad`\n",
             "`Problem.grad` forms the complex product `HG` by the three-multiplication trick "
             "(three real n×m×m GEMMs, 6nm² flops, `channel.times_g`); \"8nm² form\" is the same "
             "gradient through one real-form (n×2m)(2m×2m) GEMM, and the floor is that GEMM "
             "alone, as the issue defines it. All variants of a size are timed in interleaved "
             "rounds.\n"]
    for doc in docs:
        if not any("structured, one real-form GEMM (8nm²)" in r["median_s"]
                   for r in doc["results"]):
            parts.append(f"{doc['machine']['platform'].upper()} {doc['dtype']}: measured before "
                         "the three-multiplication product; its **Problem.grad** column is the "
                         "8nm² form.\n")
        rows = []
        for r in doc["results"]:
            t = r["median_s"]
            rows.append([f"({r['n']}, {r['m']}, {r['k']}, {r['q']})",
                         _ms(t["jax.grad(literal)"]), _ms(t.get("hand blocks (literal)"), "—"),
                         _ms(t["jax.grad(structured obj.)"]), _ms(t["Problem.grad (real layout)"]),
                         _ms(t.get("structured, one real-form GEMM (8nm²)"), "—"),
                         _ms(t["floor: one (n x 2m)(2m x 2m) GEMM"]),
                         f"{r['speedup_structured_vs_literal_grad']:.1f}×",
                         f"{r['structured_over_floor']:.2f}×"])
        parts.append(f"{doc['machine']['platform'].upper()} {doc['dtype']} ({_machine(doc)}); "
                     "median ms:\n")
        parts.append(_table(["(n, m, k, q)", "jax.grad(literal)", "hand literal",
                             "jax.grad(structured)", "**Problem.grad**", "8nm² form", "GEMM floor",
                             "speed-up", "vs floor"], rows) + "\n")
        if not _is_cpu(doc):
            big = max(doc["results"], key=lambda r: (r["n"] * r["m"] ** 2, r["q"]))
            share = 1 / big["structured_over_floor"]
            parts.append(f"At ({big['n']}, {big['m']}, {big['k']}, {big['q']}) `Problem.grad` "
                         f"runs at {min(share, 1):.0%} of the floor GEMM's throughput "
                         f"{_ok(share, 0.5)} (target ≥ 50% of the GPU's GEMM throughput).\n")
    return "\n".join(parts)


def _statistics_note(r) -> str:
    """The one-time statistics cost of a solver case, when its JSON has it."""
    if not r.get("statistics_s"):
        return ""
    without = (f" ({_ms(r['statistics_no_reference_s'])} ms without the reference point, which "
               "exact and CG do not use)" if r.get("statistics_no_reference_s") else "")
    return (". Every time below starts from the statistics (G, Y, the data's Gram products and "
            f"the value's reference point), computed once per data set in "
            f"{_ms(r['statistics_s'])} ms{without}.")


def solvers_section(docs) -> str:
    parts = ["### Seed-1 solvers: time to the target gap\n"]
    for doc in docs:
        for r in doc["results"]:
            ex = r["methods"]["exact"]["time_to_target_s"]
            rows = [[LABELS.get(m, v.get("label", m)),
                     "—" if v["iterations_to_target"] is None else v["iterations_to_target"],
                     _ms(v["time_to_target_s"]),
                     "—" if v["time_to_target_s"] is None else f"{v['time_to_target_s'] / ex:.0f}×",
                     f"{v['best_gap']:.1e}"] for m, v in r["methods"].items()]
            ratio = r["exact_speedup_vs_alternating"]
            procs = doc.get("processes", 1)
            spread = (f"; median of the ratios of {procs} fresh processes, range "
                      f"{r['exact_speedup_vs_alternating_min']:.0f}–"
                      f"{r['exact_speedup_vs_alternating_max']:.0f}×"
                      if procs > 1 and ratio is not None else "")
            parts.append(f"(n, m, k, q) = {tuple(r['size'])}, {doc['dtype']}, P column scales "
                         f"over {r['p_condition']:g}×, gap {r['target_gap']:g} "
                         f"({_machine(doc, fit=True)}). Exact vs the seed's alternating method: "
                         + ("the alternating method never reaches the gap" if ratio is None else
                            f"{ratio:.0f}× {_ok(ratio, 100)} (target ≥ 100×{spread})"
                            if r["target_gap"] <= 1e-10 and _is_cpu(doc) else
                            f"{ratio:.0f}× (the ≥ 100× target is for the 2-core CPU{spread})"
                            if r["target_gap"] <= 1e-10 else
                            f"{ratio:.0f}× (the ≥ 100× target is for float64 to 1e-10{spread})")
                         + _statistics_note(r) + _note(doc) + "\n")
            parts.append(_table(["method", "iterations", "ms", "× exact", "best gap"], rows)
                         + "\n")
    return "\n".join(parts)


def spectral_section(docs) -> str:
    parts = ["### Seed-2 spectral-norm gradient\n"]
    for doc in docs:
        rows = []
        for r in doc["results"]:
            v = r["variants"]
            names = list(v)
            rows.append([r["n"], *(f"{_ms(v[k]['median_s'])} ({v[k]['rel_error']:.0e})"
                                   for k in names),
                         f"{r.get('speedup_lanczos_vs_jax_grad', 0):.0f}×"])
        parts.append(f"{doc['dtype']}, r = {doc['results'][0]['r']} ({_machine(doc)}); "
                     "median ms (relative error against the full-SVD hand gradient). The last "
                     "column is the fastest Lanczos variant right to 1e-10 against `jax.grad` "
                     "(target ≥ 10× at n = 2048):\n")
        parts.append(_table(["n", *names, "Lanczos vs jax.grad"], rows) + "\n")
    return "\n".join(parts)


def batch_section(docs) -> str:
    parts = ["### Batches: one vmapped solve vs a Python loop\n"]
    for doc in docs:
        cold = any("batch_cold_s" in r for r in doc["results"])
        fast = all("fast_throughput_ratio" in r for r in doc["results"])
        procs = doc.get("processes", 1)

        def ratio(r, key, marked, doc=doc):
            text = f"{r[key]:.0f}×"
            return f"{text} {_ok(r[key], 50, doc=doc)}".rstrip() if marked else text

        def spread(r, key, procs=procs):
            return [f"{r[key + '_min']:.0f}–{r[key + '_max']:.0f}×"] if procs > 1 else []

        rows = [[r["method"], _ms(r["batch_s"]),
                 *([_ms(r.get("batch_cold_s"), "—")] if cold else []), _ms(r["loop_s"]),
                 ratio(r, "throughput_ratio", not fast), *spread(r, "throughput_ratio"),
                 *([_ms(r["batch_fast_s"]), _ms(r["loop_fast_s"]),
                    ratio(r, "fast_throughput_ratio", True),
                    *spread(r, "fast_throughput_ratio")] if fast else []),
                 *([f"{r['cold_throughput_ratio']:.0f}×"] if cold else []),
                 "—" if r.get("api_loop_s") is None else _ms(r["api_loop_s"]),
                 "—" if r.get("api_loop_s") is None else
                 (f"{r['api_throughput_ratio']:.0f}× "
                  f"{_ok(r['api_throughput_ratio'], 50, doc=doc)}").rstrip()]
                for r in doc["results"]]
        parts.append(f"{doc['batch']} problems of (n, m, k, q) = {tuple(doc['size'])}, "
                     f"{doc['dtype']} ({_machine(doc, fit=True)}); target ≥ 50×"
                     + ("" if _is_cpu(doc) else " (set for the 2-core CPU)") + ". The jitted loop "
                     "calls "
                     "one compiled single-problem solve on device arrays (the best a loop can "
                     "do); the `solve_exact` loop calls the public single-problem function on "
                     "NumPy arrays"
                     + (". Both throughputs are steady rates (the loop's over hundreds of calls, "
                        "the vmapped solve's over a burst of calls); \"cold\" is one vmapped "
                        "call straight after the loop, as a lone call would run"
                        if cold else "")
                     + (". Below float64 the exact solve takes one refinement step (its default)"
                        if doc["dtype"] != "float64" else "")
                     + (f". Times and ratios are medians over {procs} fresh processes run one "
                        "after another (each ratio from one process's interleaved rounds); the "
                        "range is the lowest and highest process's ratio"
                        if procs > 1 else "")
                     + (f". Each process timed each path in {_rounds(doc)} rounds; on this VM "
                        "both switch between two speeds for seconds at a time (the loop "
                        "between about 13 and 23 µs a call, as its dispatch and execution share "
                        "two cores or one), so the median ratio depends on how often either "
                        "was slowed. The \"fast\" columns compare each path at its best "
                        "(the fastest of its rounds): the target is marked on that ratio"
                        if fast else "") + "." + _note(doc) + "\n")
        parts.append(_table(["method", "vmapped ms", *(["cold ms"] if cold else []),
                             "jitted loop ms", "ratio", *(["range"] if procs > 1 else []),
                             *(["fast: vmapped ms", "fast: loop ms", "fast ratio",
                                *(["range"] if procs > 1 else [])] if fast else []),
                             *(["cold ratio"] if cold else []),
                             "solve_exact loop ms", "ratio"], rows) + "\n")
    return "\n".join(parts)


def _rounds(doc) -> str:
    """The rounds per process of a batch run, as a range over methods and processes."""
    counts = [p["rounds"] for r in doc["results"] for p in r.get("processes", [r])]
    return f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"


def audit_section(docs) -> str:
    parts = ["### Audit cost\n"]
    for doc in docs:
        rows = [[r["dtype"], r["n"], r["points"], r.get("matmul_precision", "—"),
                 f"{r['cold_s']:.2f}", f"{r['warm_s']:.2f}", f"{r['max_rel_error']:.1e}",
                 "pass" if r["passed"] else "FAIL"] for r in doc["results"]]
        parts.append(f"`check_gradient` of ‖BBᵀ − Q‖_F² at n = r = {doc['results'][0]['n']} "
                     f"({_machine(doc)}):\n")
        parts.append(_table(["dtype", "n", "points", "matmul precision", "cold s", "warm s",
                             "max rel. error", "verdict"], rows) + "\n")
        if doc.get("cold") and "warm_ratio" in doc["cold"][0]:
            parts.append("Beside `jax.test_util.check_grads` (one point, one direction, "
                         "order 1, reverse mode) on the same hand gradient of ‖AX − M‖², in "
                         f"fresh processes (median of {doc.get('fresh_processes', 3)}, the two "
                         "tools alternating): cold (import included), warm (the same "
                         "function again), re-audit (a redefined function, as a notebook cell "
                         "run again; its ratio is to check_grads' warm time) and the highest "
                         "peak memory of the processes. Targets: cold ≤ 1.5×, warm ≤ 5×, "
                         "memory ≤ 2×, re-audit ≤ 1.3× a warm audit.\n")
            parts.append(_table(
                ["n", "dtype", "cold s (ours / theirs)", "ratio", "warm ms", "ratio",
                 "re-audit ms", "ratio", "re-audit / warm", "MiB", "ratio", "verdicts"],
                [[r["n"], r["dtype"], f"{r['check_gradient']['cold_s']:.2f} / "
                  f"{r['check_grads']['cold_s']:.2f}", f"{r['ratio']:.2f}×",
                  f"{1e3 * r['check_gradient']['warm_s']:.0f} / "
                  f"{1e3 * r['check_grads']['warm_s']:.0f}", f"{r['warm_ratio']:.1f}×",
                  f"{1e3 * r['check_gradient']['reaudit_s']:.0f}", f"{r['reaudit_ratio']:.1f}×",
                  f"{r['reaudit_over_warm']:.2f}",
                  f"{r['check_gradient']['peak_mib']:.0f} / {r['check_grads']['peak_mib']:.0f}",
                  f"{r['memory_ratio']:.2f}×",
                  ("pass" if r["check_gradient"]["passed"] else "FAIL") + " / "
                  + ("pass" if r["check_grads"]["passed"] else "FAIL")] for r in doc["cold"]])
                + "\n")
        elif doc.get("cold"):
            parts.append("Cold time to a verdict in a fresh process (import included) beside "
                         "`jax.test_util.check_grads` on the same hand gradient of ‖AX − M‖² "
                         "(median of 3 processes; peak memory of the process):\n")
            parts.append(_table(
                ["n", "dtype", "check_gradient s", "check_grads s", "ratio",
                 "check_gradient MiB", "check_grads MiB", "verdicts"],
                [[r["n"], r["dtype"], f"{r['check_gradient']['cold_s']:.2f}",
                  f"{r['check_grads']['cold_s']:.2f}", f"{r['ratio']:.2f}×",
                  f"{r['check_gradient']['peak_mib']:.0f}", f"{r['check_grads']['peak_mib']:.0f}",
                  ("pass" if r["check_gradient"]["passed"] else "FAIL") + " / "
                  + ("pass" if r["check_grads"]["passed"] else "FAIL")] for r in doc["cold"]])
                + "\n")
    return "\n".join(parts)


def devices_section(docs) -> str:
    parts = ["### `solve_batch` throughput against device count\n"]
    for doc in docs:
        rows = [[r["method"], r["devices"],
                 "hung (no result in 90 s)" if r.get("hung") else _ms(r["median_s"]),
                 "—" if not r.get("problems_per_s") else f"{r['problems_per_s']:.0f}",
                 "—" if not r.get("speedup_vs_first") else f"{r['speedup_vs_first']:.2f}×"]
                for r in doc["results"]]
        note = f" {doc['note']}." if doc.get("note") else ""
        if doc.get("rounds", 1) > 1:
            note += (f" The counts ran in turn, {doc['rounds']} rounds of one fresh process each;"
                     " times are the medians over the rounds.")
        parts.append(f"{doc['batch']} problems of {tuple(doc['size'])}, {doc['platform']} "
                     f"({_machine(doc)}).{note}\n")
        parts.append(_table(["method", "devices", "ms", "problems/s", "speed-up"], rows) + "\n")
    return "\n".join(parts)


def minimize_section(docs) -> str:
    parts = []
    for doc in docs:
        for r in doc["results"]:
            if not r.get("time_to_gap"):
                continue
            if not parts:
                parts.append("### A user's factorisation: time to the gap\n")
            rows = [[k, f"{1e3 * v['median_s']:.1f}", v["iterations"], f"{v['rel_gap']:.1e}",
                     "yes" if v["reached"] else "no", f"{v['ratio']:.2f}×"]
                    for k, v in r["time_to_gap"].items()]
            parts.append(f"‖X − UVᵀ‖² + λ(‖U‖² + ‖V‖²) at (n, m, r) = {tuple(r['size'])}, "
                         f"float64, to a {r['gap']:.0e} relative gap ({_machine(doc)}); warm "
                         "calls, `minimize` as a user calls it (`verify=\"start\"`, no jit "
                         "around it). Target: the default within 1.5× the optax loop.\n")
            parts.append(_table(["method", "median ms", "iterations", "rel. gap", "reached",
                                 "× optax loop"], rows) + "\n")
    parts.append("### Verified minimisation: what `verify=\"always\"` costs\n")
    for doc in docs:
        for r in doc["results"]:
            rows = [[k, f"{1e3 * v['median_s']:.1f}", v["iterations"], f"{v['rel_gap']:.1e}"]
                    for k, v in r["variants"].items()]
            mark = "✓" if r["verify_overhead"] <= r["target_overhead"] else "✗"
            parts.append(f"The factorisation at (n, m, r) = {tuple(r['size'])}, float64, checked "
                         f"every {doc['verify_every']} iterations ({_machine(doc)}): "
                         f"`verify=\"always\"` costs {100 * r['verify_overhead']:+.1f}% over "
                         f"`\"off\"` {mark} (target ≤ +10%).\n")
            parts.append(_table(["variant", "median ms", "iterations", "rel. gap"], rows) + "\n")
    return "\n".join(parts)


def batch_model_section(docs) -> str:
    parts = ["### Batches of a user's model: `jit(vmap(minimize))` vs a loop\n"]
    for doc in docs:
        rows = [[r["method"], f"{1e3 * r['batch_s']:.1f}", f"{1e3 * r['loop_s']:.1f}",
                 f"{r['ratio']:.2f}×", f"{r['iterations_median']:.0f} / {r['iterations_max']}",
                 f"{100 * r['converged']:.0f}%"] for r in doc["results"]]
        parts.append(f"{doc['batch']} factorisations of (n, m, r) = {tuple(doc['size'])}, "
                     f"{doc['dtype']} ({_machine(doc)}); the loop of one jitted solve is timed "
                     f"over {doc['loop_measured_on']} problems and scaled. Target: ≥ 5×.\n")
        parts.append(_table(["method", "vmapped ms", "loop ms", "ratio",
                             "iterations (median / max)", "converged"], rows) + "\n")
    return "\n".join(parts)


SECTIONS = {"gradient": gradient_section, "solvers": solvers_section,
            "spectral": spectral_section, "batch": batch_section, "audit": audit_section,
            "devices": devices_section, "minimize": minimize_section,
            "batch_model": batch_model_section}


def render(results_dir=None) -> str:
    results_dir = Path(results_dir or default_results_dir())
    by_kind: dict[str, list] = {}
    for path in sorted(results_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        by_kind.setdefault(doc.get("benchmark"), []).append(doc)
    body = ["Generated by `matgrad bench report` from `benchmarks/results/*.json` "
            "(`make bench` re-runs everything). Medians of warm runs; each ratio compares "
            "times taken side by side in one process. Where a table says so (the CPU solver "
            "and batch runs), the benchmark ran in several fresh processes and reports the "
            "median of their ratios with the range: on the 2-core CPU a loop of small "
            "compiled calls costs up to 2.5× more at one moment than at another, for seconds "
            "at a time, so one short run is one draw.\n"]
    for kind, fn in SECTIONS.items():
        if kind in by_kind:
            body.append(fn(by_kind[kind]))
    return "\n".join(body)


def update_readme(readme: str | Path, results_dir=None) -> bool:
    """Replace the marked section of the page ``readme`` (the docs' Performance page, or any
    Markdown file with the markers); True when the file changed."""
    from ..io import atomic_write_text

    readme = Path(readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: no {BEGIN} … {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(results_dir)}\n{END}{tail}"
    if new != text:
        atomic_write_text(readme, new)
    return new != text
