"""``notebooks/exploration.ipynb`` is committed without outputs and executes without a cell error.

The notebook is executed with nbclient in a kernel that runs THIS interpreter (a kernelspec written
to a temporary JUPYTER_PATH), so the test needs nothing beyond ``ipykernel`` in the venv: no
``ipykernel install`` step, no dependence on whatever ``python3`` kernel a machine has registered.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NB = REPO / "notebooks" / "exploration.ipynb"
BUDGET_S = 60  # the notebook's design target on 2 cores
LIMIT_S = 180  # what fails the test: generous, because CI runs other tests in parallel


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NB, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"cells {dirty} carry outputs or execution counts; strip them before committing"
    assert "widgets" not in nb.metadata


def test_notebook_uses_the_projects_own_functions():
    """The walk-through must call training_src, not a copy of its logic pasted into the notebook."""
    source = "\n".join(c.source for c in nbformat.read(NB, as_version=4).cells if c.cell_type == "code")
    for name in ("load_profile", "read_table", "resolve_file", "read_rul_file", "validate_readings", "fit_spec",
                 "transform(", "transform_asset", "rul_labels", "nasa_score", "build_datasets"):
        assert name in source, name
    for copied in ("def rul_labels", "def nasa_score", "def transform", "np.exp(d / 10"):
        assert copied not in source, copied


@pytest.mark.slow
def test_notebook_executes_without_errors(tmp_path, monkeypatch, data_dir):
    data_dir = data_dir.resolve()
    kernel_dir = tmp_path / "jupyter" / "kernels" / "predmaint-nbtest"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "predmaint test kernel", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PREDMAINT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # One OpenMP thread in the kernel: the suite runs on 2 cores with pytest-xdist, and k-means /
    # XGBoost threads fighting the other worker made the notebook 2-3x slower in measurements.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    nb = nbformat.read(NB, as_version=4)
    client = NotebookClient(nb, kernel_name="predmaint-nbtest", timeout=150, allow_errors=False,
                            resources={"metadata": {"path": str(NB.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    elapsed = time.perf_counter() - start

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.output_type == "stream")
    assert "SHA-256 check against the published values: ok" in text
    assert "100 engines, largest |single-asset - batch| feature difference" in text
    assert "engines in train & validation: 0" in text
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if o.output_type == "display_data" and "image/png" in o.get("data", {}))
    assert images >= 7, f"expected the plots to render, got {images} images"
    print(f"notebook executed in {elapsed:.1f} s (design budget {BUDGET_S} s)")
    assert elapsed < LIMIT_S
