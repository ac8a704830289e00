import json

import numpy as np
import pytest

from matgrad_jax.cli import main


def test_audit_cli_writes_reports_and_exits_1(tmp_path, capsys):
    code = main(["audit", "--filter", "gram/frobenius/", "--json", str(tmp_path / "a.json"),
                 "--markdown", str(tmp_path / "a.md")])
    assert code == 1  # the published Frobenius gradient fails
    out = capsys.readouterr().out
    assert "holds only for symmetric" in out
    data = json.loads((tmp_path / "a.json").read_text())
    assert {d["name"] for d in data} == {"gram/frobenius/published", "gram/frobenius/general"}
    assert "| derivation |" in (tmp_path / "a.md").read_text()
    assert main(["audit", "--filter", "gram/frobenius/general"]) == 0


def test_example_then_fit(tmp_path, capsys):
    data = tmp_path / "ex.npz"
    assert main(["example", "--out", str(data), "--n", "12", "--m", "8", "--k", "10",
                 "--q", "14"]) == 0
    out = tmp_path / "fit"
    assert main(["fit", str(data), "--out", str(out), "--method", "alternating"]) == 0
    sol = np.load(out / "solution.npz")
    assert sol["R"].shape == (12, 8) and np.iscomplexobj(sol["H"])
    hist = json.loads((out / "history.json").read_text())
    assert hist["converged"] and hist["method"] == "alternating"
    # an existing result is never overwritten without --force
    assert main(["fit", str(data), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["fit", str(data), "--out", str(out), "--method", "exact", "--force",
                 "--matmul-precision", "default"]) == 0
    assert json.loads((out / "history.json").read_text())["converged"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("W"), "missing array(s) W"),
    (lambda d: d.__setitem__("P", d["P"][:-1]), "P: expected shape (2m, k)"),
    (lambda d: d["Z"].__setitem__((0, 0), np.nan), "Z: holds 1 NaN"),
    (lambda d: d.__setitem__("A", d["A"] + 1j), "A: expected real data"),
])
def test_bad_input_exit_2_one_line(tmp_path, capsys, mutate, message):
    ex = tmp_path / "ex.npz"
    main(["example", "--out", str(ex), "--n", "6", "--m", "4", "--k", "5", "--q", "7"])
    d = dict(np.load(ex))
    mutate(d)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **d)
    out = tmp_path / "out"
    assert main(["fit", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_pickled_and_missing_files(tmp_path, capsys):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["fit", str(obj), "--out", str(tmp_path / "o")]) == 2
    assert "pickled" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o")]) == 2
    corrupt = tmp_path / "c.npz"
    corrupt.write_bytes(b"not a zip")
    assert main(["fit", str(corrupt), "--out", str(tmp_path / "o")]) == 2


def test_fit_remapped_names_start_and_plot(tmp_path):
    ex = tmp_path / "ex.npz"
    main(["example", "--out", str(ex), "--n", "6", "--m", "4", "--k", "5", "--q", "7"])
    d = dict(np.load(ex))
    d["Wmeas"] = d.pop("W")
    d["R0"] = d["R_true"]
    np.savez(tmp_path / "r.npz", **d)
    out = tmp_path / "o"
    assert main(["fit", str(tmp_path / "r.npz"), "--out", str(out), "--names", "W=Wmeas",
                 "--method", "cg"]) == 0
    assert (out / "convergence.png").stat().st_size > 0
    assert main(["fit", str(tmp_path / "r.npz"), "--out", str(tmp_path / "o2"),
                 "--names", "X=Wmeas"]) == 2


def _example(tmp_path, *extra):
    ex = tmp_path / "ex.npz"
    assert main(["example", "--out", str(ex), "--n", "6", "--m", "4", "--k", "5", "--q", "7",
                 *extra]) == 0
    return ex


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.__setitem__("Z", d["Z"][:, :-1]), "Z: expected shape (m, m)"),
    (lambda d: d.__setitem__("B", np.zeros((0, 5))), "B: "),
    (lambda d: d.__setitem__("A", np.zeros((0, 0))), "A: "),
])
def test_non_square_and_empty_arrays_exit_2(tmp_path, capsys, mutate, message):
    d = dict(np.load(_example(tmp_path)))
    mutate(d)
    np.savez(tmp_path / "bad.npz", **d)
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "bad.npz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_mat_files_v5_and_v73(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    h5py = pytest.importorskip("h5py")
    d = {k: v for k, v in np.load(_example(tmp_path)).items()}
    scipy_io.savemat(tmp_path / "v5.mat", d)
    # MATLAB -v7.3 is HDF5 with a 512-byte header and column-major (transposed) datasets.
    with h5py.File(tmp_path / "v73.mat", "w", userblock_size=512) as f:
        for k, v in d.items():
            f.create_dataset(k, data=v.T).attrs["MATLAB_class"] = np.bytes_("double")
    with open(tmp_path / "v73.mat", "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sun Nov 22 2026 HDF5")
    sols = []
    for name in ("v5.mat", "v73.mat"):
        out = tmp_path / name.replace(".", "_")
        assert main(["fit", str(tmp_path / name), "--out", str(out)]) == 0
        sols.append(np.load(out / "solution.npz")["H"])
    np.testing.assert_array_equal(sols[0], sols[1])


def test_checkpoint_refusals_and_mismatch(tmp_path, capsys):
    ex = _example(tmp_path)
    out = tmp_path / "o"
    assert main(["fit", str(ex), "--out", str(out), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not out.exists()
    from matgrad_jax import io
    from matgrad_jax.cli import _load_problem, build_parser
    from matgrad_jax.fit import fit_start

    # a checkpoint left by a killed run: made by hand here, from the real solver state
    args = build_parser().parse_args(["fit", str(ex), "--out", str(out)])
    problem, _, digest = _load_problem(args)
    z = np.zeros(problem.shape)
    state = fit_start(problem, (z, z), method="cg", max_iters=5000, tol=None)
    meta = dict(format=io.CHECKPOINT_FORMAT, method="cg", dtype="float64", max_iters=5000,
                tol=None, data_sha256=digest, iteration=0, seconds=0.0, times=[])
    io.save_tree(out / "checkpoint.npz", state, meta)
    assert main(["fit", str(ex), "--out", str(out), "--method", "cg"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["fit", str(ex), "--out", str(out), "--method", "lbfgs", "--resume"]) == 2
    assert "method='cg'" in capsys.readouterr().err
    d = dict(np.load(ex))
    d["W"] = d["W"] + 1.0
    np.savez(tmp_path / "other.npz", **d)
    assert main(["fit", str(tmp_path / "other.npz"), "--out", str(out), "--method", "cg",
                 "--resume"]) == 2
    assert "data_sha256" in capsys.readouterr().err
    # the run was started at the default precision: resuming at another one is refused
    assert main(["fit", str(ex), "--out", str(out), "--method", "cg", "--resume",
                 "--matmul-precision", "default"]) == 2
    assert "matmul_precision" in capsys.readouterr().err
    # a checkpoint of the dict-state format (1) is refused, its format named, never misread
    io.save_tree(out / "old.npz", state, {**meta, "format": "matgrad-checkpoint/1"})
    from matgrad_jax import InputError

    with pytest.raises(InputError, match="format='matgrad-checkpoint/1'"):
        io.load_tree(out / "old.npz", state, expect={"format": io.CHECKPOINT_FORMAT})
    (out / "old.npz").unlink()
    assert main(["fit", str(ex), "--out", str(out), "--method", "cg", "--resume"]) == 0
    assert not (out / "checkpoint.npz").exists()
    assert json.loads((out / "history.json").read_text())["resumed"]


def test_progress_bar_only_on_terminals():
    import io as _io

    from matgrad_jax.progress import FitProgress

    quiet = _io.StringIO()
    with FitProgress(100, "fit", stream=quiet) as bar:
        bar.update(50, 1.5, 0.1)
    assert quiet.getvalue() == ""
    loud = _io.StringIO()
    with FitProgress(100, "fit", stream=loud, enabled=True) as bar:
        bar.update(50, 1.5, 0.1)
    assert "50/100" in loud.getvalue() and "1.50000000e+00" in loud.getvalue()


@pytest.mark.parametrize("flags, message", [
    (["--tol", "-1"], "--tol: expected a finite number >= 0, got -1.0"),
    (["--tol", "nan"], "--tol: expected a finite number >= 0, got nan"),
    (["--max-iters", "0"], "--max-iters: expected a positive integer, got 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every: expected a positive integer, got 0"),
])
def test_bad_solver_flags_exit_2_one_line(tmp_path, capsys, flags, message):
    ex = _example(tmp_path)
    out = tmp_path / "o"
    assert main(["fit", str(ex), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
    assert not out.exists()


def test_missing_device_backend_exit_2_names_what_jax_has(tmp_path):
    """In a fresh process (the platform is chosen before JAX starts a backend): one line naming
    the backends this JAX has, not JAX's message about the last one it tried."""
    import subprocess
    import sys

    import jax

    if any(d.platform == "tpu" for d in jax.devices()):
        pytest.skip("a TPU is present")
    ex = _example(tmp_path)
    out = tmp_path / "o"
    run = subprocess.run([sys.executable, "-m", "matgrad_jax", "fit", str(ex), "--out", str(out),
                          "--device", "tpu"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device tpu: no such backend"), err
    assert "it has: " in err[0] and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["audit", "--filter", "nomatch"], "--filter 'nomatch': matches no derivation (names: "
                                       "channel/phi/published,"),
    (["example", "--k", "0"], "--k: expected a positive integer, got 0"),
    (["example", "--noise", "-1"], "--noise: expected a finite number >= 0, got -1.0"),
    (["example", "--p-condition", "nan"], "--p-condition: expected a finite number >= 1, got nan"),
])
def test_bad_audit_and_example_arguments_exit_2_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "e.npz"
    if argv[0] == "example":
        argv = [*argv, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert not out.exists()


def test_run_the_main_job(tmp_path, capsys):
    """`make run`'s first command: the audit of every derivation, then the demo fit."""
    assert main(["run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== Audit" in out and "== Demo fit" in out
    doc = json.loads((tmp_path / "run.json").read_text())
    verdicts = {r["derivation"]: r["verdict"] for r in doc["audit"]}
    assert verdicts["channel/phi/published"] == "fail"
    assert verdicts["channel/phi/corrected"] == "pass"
    assert verdicts["gram/frobenius/general"] == "pass"
    fits = {r["method"]: r for r in doc["fit"]}
    assert set(fits) == {"exact", "alternating", "cg", "lbfgs", "adam"}
    assert all(r["converged"] == "True" and abs(float(r["rel. gap"])) < 1e-8
               for r in fits.values())
    assert all(float(r["median ms"]) > 0 for r in fits.values())  # times are benchmarks' job


def test_non_finite_start_exit_2_one_line(tmp_path, capsys):
    ex = _example(tmp_path)
    d = dict(np.load(ex))
    d["R0"] = np.full_like(d["A"], np.nan)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **d)
    out = tmp_path / "o"
    assert main(["fit", str(bad), "--out", str(out), "--method", "alternating"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: R0: holds 24 NaN/Inf value(s); all data must be finite"]
    assert not out.exists()
