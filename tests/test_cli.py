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
