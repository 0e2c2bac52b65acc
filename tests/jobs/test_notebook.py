"""notebooks/explore.ipynb is small, stored without outputs, and runs headless (nbclient) on a tiny config."""

import json
import os

import nbformat
import pytest
from conftest import _FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "notebooks", "explore.ipynb")
TINY = {
    "data.num_frames": 3,
    "data.width": 32,
    "data.height": 24,
    "data.num_background": 300,
    "data.num_per_object": 60,
    "data.eval_azimuths_deg": [10.0],  # held-out frames of the training shapes: one render compile
    "model.capacity": 600,
    "model.sh_degree": 0,
    "model.init_stride": 2,
    "model.init_stride_static": 4,
    "motion.num_generator_channels": 1,
    "motion.num_learnable_bases": 2,
    "motion.num_time_coeffs": 2,
    "motion.canonical_frame": 0,  # seed 0 then draws frames 1, 1, 1: every step moves the trajectories
    "train.num_steps": 3,
    "train.densify_from": 100,
    "train.checkpoint_every": 3,
    "train.time_ramp_steps": 0,
}


def test_notebook_is_small_and_stripped():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert os.path.getsize(NOTEBOOK) < 20_000
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip the outputs before committing"


def test_notebook_runs_headless(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    workdir = tmp_path / "run"
    monkeypatch.setenv("ANY4D_CONFIG", os.path.join(ROOT, "configs", "synthetic.py"))
    monkeypatch.setenv("ANY4D_WORKDIR", str(workdir))
    monkeypatch.setenv("ANY4D_OVERRIDES", json.dumps(TINY))
    fast = [f"--{k}={str(v).lower()}" for k, v in _FAST_COMPILE.items()]
    monkeypatch.setenv("XLA_FLAGS", " ".join([os.environ.get("XLA_FLAGS", ""), *fast]).strip())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()  # raises CellExecutionError (with the traceback) if any cell fails
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    images = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert "training 3 steps first" in text and "step 3," in text
    assert len(images) == 3  # the frame, the gradient, the time sweep
    grad_line = next(line for line in text.splitlines() if line.startswith("Gaussian "))
    assert float(grad_line.split("|dL/dw_i| = ")[1].split(",")[0]) > 0.0
    assert os.path.isdir(workdir / "checkpoints" / "3")
