import importlib.util
from pathlib import Path


def test_gradient_benchmark_runs_at_tiny_size(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gradient.py"
    spec = importlib.util.spec_from_file_location("bench_gradient", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = mod.main(["--quick", "--repeats", "1", "--dtype", "float64",
                    "--out", str(tmp_path / "g.json")])
    assert (tmp_path / "g.json").exists()
    assert doc["results"][0]["median_s"]["jax.grad(literal)"] > 0
