"""Benchmarks are not tests: these only check that each script runs at tiny sizes and writes
its JSON, and that plots and the docs' performance tables are generated from that JSON."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from matgrad_jax.bench import BENCHMARKS, load
from matgrad_jax.bench.report import BEGIN, END, update_readme

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    for name in BENCHMARKS:
        doc = load(name).main(["--quick", "--out", str(out / f"{name}.json")])
        assert doc["machine"]["jax"] and doc["results"]
    return out


def test_each_benchmark_writes_json(results):
    docs = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    assert set(docs) == set(BENCHMARKS)
    assert docs["gradient"]["results"][0]["median_s"]["jax.grad(literal)"] > 0
    assert docs["solvers"]["results"][0]["methods"]["exact"]["best_gap"] < 1e-12
    assert docs["spectral"]["results"][0]["variants"]["hand, full SVD"]["rel_error"] == 0
    batch = docs["batch"]["results"][0]
    assert batch["max_abs_diff"] < 1e-10
    assert batch["batch_cold_s"] > 0 and batch["cold_throughput_ratio"] > 0
    assert docs["audit"]["results"][0]["passed"]
    cold = docs["audit"]["cold"][0]
    assert cold["check_gradient"]["passed"] and cold["check_gradient"]["cold_s"] > 0
    assert cold["check_grads"]["cold_s"] > 0 and cold["ratio"] > 0
    assert cold["check_gradient"]["warm_s"] > 0 and cold["warm_ratio"] > 0
    assert cold["reaudit_over_warm"] > 0 and cold["memory_ratio"] > 0
    mini = docs["minimize"]["results"][0]
    assert mini["variants"]["minimize, verify='always'"]["rel_gap"] < 1e-6
    assert mini["verify_overhead"] > -1
    gap = mini["time_to_gap"]
    assert gap["optax L-BFGS loop (stops at the gap)"]["reached"]
    assert gap["minimize (default)"]["reached"] and gap["minimize (default)"]["ratio"] > 0
    assert [r["devices"] for r in docs["devices"]["results"]] == [1, 2]


def test_batch_of_a_users_model(tmp_path):
    from matgrad_jax.bench import batch
    from matgrad_jax.bench.report import batch_model_section

    doc = batch.main(["--model", "mf", "--quick", "--out", str(tmp_path / "mf.json")])
    assert [r["method"] for r in doc["results"]] == [
        "minimize (default)", "minimize, method='lbfgs' (optax)", "ALS + balance_factors"]
    for r in doc["results"]:
        assert r["ratio"] > 0 and r["converged"] == 1.0 and r["max_abs_diff"] < 1e-8
    assert "jit(vmap(minimize))" in batch_model_section([doc])


def test_devices_rounds_combine():
    from matgrad_jax.bench.devices import _over_rounds
    from matgrad_jax.bench.report import devices_section

    runs = [{"devices": 2, "platform": "cpu", "median_s": t} for t in (0.3, 0.1, 0.2)]
    row = _over_rounds(runs)
    assert (row["median_s"], row["best_s"], row["rounds_s"]) == (0.2, 0.1, [0.3, 0.1, 0.2])
    assert "hung" not in row
    hung = _over_rounds([runs[0], {"devices": 2, "platform": "cpu", "median_s": None,
                                   "hung": True}])
    assert hung["median_s"] is None and hung["hung"] and hung["rounds_s"] == [0.3, None]
    doc = {"batch": 8, "size": [8, 4, 6, 10], "platform": "cpu", "rounds": 3,
           "machine": {"platform": "cpu", "cpu": "x", "cores": 2, "jax": "0", "date": "d"},
           "results": [{**row, "method": "exact", "problems_per_s": 40.0,
                        "speedup_vs_first": 1.0},
                       {**hung, "method": "exact", "problems_per_s": None,
                        "speedup_vs_first": None}]}
    text = devices_section([doc])
    assert "3 rounds of one fresh process each" in text
    assert "| exact | 2 | 200 | 40 | 1.00× |" in text and "hung (no result in 90 s)" in text


def test_plots_and_readme_section_from_json(results, tmp_path):
    pytest.importorskip("matplotlib")
    from matgrad_jax.bench.plots import plot_all

    assert len(plot_all(results)) >= 5
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{BEGIN}\nPLACEHOLDER-TEXT\n{END}\ntail\n")
    assert update_readme(readme, results)
    text = readme.read_text()
    assert "PLACEHOLDER-TEXT" not in text and "Problem.grad" in text and text.endswith("tail\n")
    assert "Batches" in text and "cold ms" in text and "spectral" in text


_RUN_SCRIPTS = r"""
import contextlib, io, json, runpy, sys
out, target, paths = {}, sys.argv[1], sys.argv[2:]
for path in paths:
    sys.argv = [path, "--help"]
    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text):
            runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out[path] = [code, text.getvalue()]
with open(target, "w") as fh:  # a file of its own, not the shared stdout
    json.dump(out, fh)
"""


def test_wrapper_scripts_and_cli_help(tmp_path):
    """Each ``benchmarks/bench_*.py`` runs as a script (``--help``), all in one fresh process
    (as a script each: ``__main__``, its own ``sys.path`` line), without the package on the path
    beforehand."""
    paths = [str(p) for p in sorted((ROOT / "benchmarks").glob("bench_*.py"))]
    assert paths
    out = tmp_path / "help.json"
    proc = subprocess.run([sys.executable, "-c", _RUN_SCRIPTS, str(out), *paths],
                          capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = json.loads(out.read_text())
    assert sorted(done) == paths
    for path, (code, text) in done.items():
        assert code == 0 and "usage" in text, (path, code, text[-500:])


def test_gpu_suite_script_parses_and_names_existing_scripts():
    script = ROOT / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    for name in set(re.findall(r"benchmarks/(bench_\w+\.py)", script.read_text())):
        assert (ROOT / "benchmarks" / name).is_file(), name


def test_committed_results_render():
    """Every committed JSON (CPU and GPU runs) goes through the tables' generator."""
    from matgrad_jax.bench.report import render

    results = ROOT / "benchmarks" / "results"
    text = render(results)
    docs = [json.loads(p.read_text()) for p in results.glob("*.json")]
    if any(d["machine"].get("platform") == "gpu" and d.get("dtype") == "float32" for d in docs):
        assert "NVIDIA" in text and "precision" in text


def test_batch_runs_in_fresh_processes_and_reports_the_median(tmp_path):
    import statistics

    from matgrad_jax.bench import batch
    from matgrad_jax.bench.report import batch_section

    out = tmp_path / "batch.json"
    doc = batch.main(["--quick", "--processes", "2", "--methods", "exact", "--out", str(out)])
    assert json.loads(out.read_text()) == doc
    (r,) = doc["results"]
    assert doc["processes"] == 2 and len(r["processes"]) == 2
    ratios = [p["throughput_ratio"] for p in r["processes"]]
    assert r["throughput_ratio"] == pytest.approx(statistics.median(ratios))
    assert r["throughput_ratio_min"] == min(ratios) and r["throughput_ratio_max"] == max(ratios)
    assert r["batch_s"] == pytest.approx(statistics.median(p["batch_s"] for p in r["processes"]))
    assert r["max_abs_diff"] < 1e-10
    # the fast states: each process's fastest round of each path, their ratio, its median
    for p in r["processes"]:
        assert p["rounds"] == len(p["round_ms"]["batch"]) == len(p["round_ms"]["loop"]) >= 1
        assert p["batch_fast_s"] <= p["batch_s"] * (1 + 1e-9) + 1e-6
        assert p["fast_throughput_ratio"] == pytest.approx(p["loop_fast_s"] / p["batch_fast_s"])
    fast = [p["fast_throughput_ratio"] for p in r["processes"]]
    assert r["fast_throughput_ratio"] == pytest.approx(statistics.median(fast))
    assert (r["fast_throughput_ratio_min"], r["fast_throughput_ratio_max"]) == (min(fast),
                                                                                max(fast))
    text = batch_section([doc])
    assert "median" in text and "2 fresh processes" in text and "| range |" in text
    assert "| fast ratio |" in text and "the fastest of its rounds" in text
    with pytest.raises(SystemExit):
        batch.main(["--quick", "--processes", "0"])


def test_solvers_documents_of_several_processes_combine(results):
    import copy

    from matgrad_jax.bench import solvers
    from matgrad_jax.bench.report import solvers_section

    doc = json.loads((results / "solvers.json").read_text())
    ex = doc["results"][0]["methods"]["exact"]["time_to_target_s"]
    docs = []
    for scale in (1.0, 4.0, 2.0):  # three "processes": the alternating method 1x, 4x, 2x slower
        d = copy.deepcopy(doc)
        r = d["results"][0]
        r["methods"]["alternating_seed"]["time_to_target_s"] = 100 * ex * scale
        r["exact_speedup_vs_alternating"] = 100 * scale
        r["exact_speedup_vs_preconditioned_alternating"] = None  # not reached in one process
        docs.append(d)
    combined = solvers.combine(docs)
    assert combined["processes"] == 3 and "3 fresh processes" in combined["timing"]
    r = combined["results"][0]
    assert r["methods"]["exact"]["time_to_target_s"] == ex
    assert r["methods"]["alternating_seed"]["time_to_target_s"] == pytest.approx(200 * ex)
    assert r["methods"]["alternating_seed"]["time_to_target_s_per_process"] == \
        pytest.approx([100 * ex, 400 * ex, 200 * ex])
    assert r["methods"]["alternating_seed"]["repeats"] == \
        3 * doc["results"][0]["methods"]["alternating_seed"]["repeats"]
    assert r["exact_speedup_vs_alternating"] == pytest.approx(200)
    assert (r["exact_speedup_vs_alternating_min"], r["exact_speedup_vs_alternating_max"]) == \
        pytest.approx((100, 400))
    assert r["exact_speedup_vs_preconditioned_alternating"] is None
    text = solvers_section([combined])
    assert "200× ✓" in text and "3 fresh processes, range 100–400×" in text


@pytest.mark.parametrize("name, argv, message", [
    ("batch", ["--batch", "0"], "argument --batch: expected a positive integer, got 0"),
    ("batch", ["--size", "8,4,6"],
     "argument --size: expected 4 comma-separated positive integers (n,m,k,q), got '8,4,6'"),
    ("batch", ["--methods", "newton"], "argument --methods: invalid choice: 'newton'"),
    ("batch", ["--seconds", "-2"], "argument --seconds: expected a finite number >= 0, got -2.0"),
    ("solvers", ["--conditions", "0.5"], "--conditions: expected comma-separated numbers >= 1"),
    ("gradient", ["--sizes", "64,64,x,256"], "argument --sizes: expected a positive integer, "
                                             "got 'x'"),
    ("spectral", ["--rank", "0"], "argument --rank: expected a positive integer, got 0"),
    ("devices", ["--devices", "0"], "argument --devices: expected a positive integer, got 0"),
    ("devices", ["--rounds", "0"], "argument --rounds: expected a positive integer, got 0"),
    ("audit_cost", ["--repeats", "-1"], "argument --repeats: expected a positive integer"),
])
def test_bad_arguments_are_refused_before_anything_runs(name, argv, message, capsys):
    import importlib

    module = importlib.import_module(f"matgrad_jax.bench.{name}")
    with pytest.raises(SystemExit) as info:
        module.main([*argv, "--quick"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_docs_performance_page_holds_the_generated_tables():
    """The committed page is what ``matgrad bench report`` makes of the committed JSON."""
    from matgrad_jax.bench.report import BEGIN, END, PERFORMANCE_PAGE, render

    text = (ROOT / PERFORMANCE_PAGE).read_text()
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section.strip() == render(ROOT / "benchmarks" / "results").strip()
