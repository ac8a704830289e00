"""The notebooks are stored without outputs and run top to bottom, in fresh kernels, at small
sizes (MATGRAD_QUICK=1), with no error cell."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_derivations_audited", "02_fitting", "03_scale"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {i} has stored outputs: clear them before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_without_errors(path, monkeypatch):
    monkeypatch.setenv("MATGRAD_QUICK", "1")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("MATGRAD_SUITE_XLA_FLAGS", ""))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first error cell
    if os.environ.get("MATGRAD_KEEP_EXECUTED"):
        nbformat.write(nb, Path(os.environ["MATGRAD_KEEP_EXECUTED"]) / path.name)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    # the pictures are there
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no plot"
    assert os.environ["MATGRAD_QUICK"] == "1"
