"""The teaching notebooks: kept in git without outputs, and each one runs headless at smoke size.

The notebooks run in a fresh ipykernel under this Python, in a temporary working directory (so their
runs/ and the small data set they make land there, not in the repo); they share it in file order, so
03 reuses the data set and the SFT run that 02 made (run alone, it makes them itself)."""

import sys

import nbformat
import pytest

from notebooks import run as nbrun

NAMES = ["01_haiku_from_scratch", "02_watch_sft", "03_spin_vs_tspin"]


def test_the_three_notebooks_are_there():
    assert [p.stem for p in nbrun.NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", nbrun.NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {i} has outputs: run `python -m notebooks.run --strip`")
        assert "execution" not in cell.metadata, f"{path.name} cell {i} keeps execution timestamps"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert first.source.startswith("SMOKE = True")


def test_the_size_switch_is_injected_after_the_parameter_cell():
    nb = nbformat.read(nbrun.NOTEBOOKS[0], as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nbrun.inject(nb, smoke=False)
    assert nb.cells[i + 1].source.endswith("SMOKE = False")
    assert nb.cells[i + 1].metadata["tags"] == ["injected-parameters"]
    nbformat.validate(nb)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


def test_the_kernel_runs_this_python(workdir):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.getcwd())")]
    nbrun.execute(nb, smoke=None, cwd=workdir, timeout=120)
    assert nb.cells[0].outputs[0]["text"].split("\n")[:2] == [sys.executable, str(workdir)]


@pytest.mark.slow
@pytest.mark.parametrize("path", nbrun.NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_size(path, workdir):
    # raises nbclient's CellExecutionError, with the cell and its traceback, if any cell fails
    nbrun.execute(path, smoke=True, cwd=workdir, out=workdir / "executed" / path.name, timeout=600)
