"""Smoke test of benchmarks/gpu.py's rasterizer row on a tiny scene, in this process (no subprocesses).

The full script (`python -m benchmarks.gpu --small`) runs every row in its own process and takes minutes on a
CPU; this checks the pieces one row is made of: the scene file, the eager sizing render, the jitted timing
of our renderer, gsplat's column (n/a without CUDA, or a PSNR against ours), and the table.
"""

import numpy as np
import pytest

from benchmarks import gpu

BOTH = ("xla", "pallas")


@pytest.mark.slow  # ~40 s of CPU time: an eager render and two compiles
def test_raster_row_on_a_tiny_scene(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu.RASTER_SMALL, "A", (300, 48, 48, 0.05))
    scene = str(tmp_path / "A.npz")
    desc = gpu.build_scene("A", True, scene)
    assert desc == {"scene": "A", "gaussians": 300, "image": "48x48"}

    size = gpu.worker_size({"scene_path": scene})
    assert size["num_pairs"] > 0 and size["dropped_pairs"] == 0
    budget = gpu.pair_budget(size["num_pairs"])
    assert budget >= 1.25 * size["num_pairs"] and budget & (budget - 1) == 0

    spec = {"scene_path": scene, "reps": 1, "max_pairs": budget, "small": True}
    ours = {
        b: gpu.worker_ours({**spec, "backend": b, "image_path": str(tmp_path / f"{b}.npy")}) for b in BOTH
    }
    for row in ours.values():
        assert row["dropped_pairs"] == 0 and row["num_pairs"] == size["num_pairs"]
        assert min(row[k] for k in ("fwd_ms", "fwd_bwd_ms", "project_ms", "project_bin_ms")) > 0  # timed
    image = np.load(tmp_path / "xla.npy")
    assert image.shape == (48, 48, 3) and np.all(np.isfinite(image))
    assert gpu.psnr(np.load(tmp_path / "pallas.npy"), image) > 60.0  # the two backends agree
    # Without --small a CPU does not time the interpreted kernels (they would take hours at full size).
    assert "n/a" in gpu.worker_ours({**spec, "small": False, "backend": "pallas", "image_path": "-"})["na"]

    gs = gpu.worker_gsplat({**spec, "image_path": str(tmp_path / "gsplat.npy")})
    if "na" in gs:  # no CUDA here: the column says why, the row still prints
        assert gs["na"].startswith("n/a (")
        q = {}
    else:
        q = {"xla vs gsplat": gpu.psnr(image, np.load(tmp_path / "gsplat.npy"))}
        assert q["xla vs gsplat"] > 30.0, f"ours and gsplat disagree: {q}"
    row = {**desc, "size": size, "budget": budget, "ours": ours, "gsplat": gs, "psnr": q}
    table = gpu.raster_table([row])
    assert table.count("\n") == 2 and "| A | 300 | 48x48 |" in table
    assert "fwd+bwd ms xla / pallas / gsplat" in table
    stages = gpu.stage_table([row])
    assert stages.count("\n") == 3 and "| A | pallas |" in stages


def test_rows_parse_and_failures_render_as_cells():
    assert gpu.parse_rows("raster,train") == ["A", "B", "C", "M", "train"]
    assert gpu.parse_rows("C,A,C") == ["C", "A"]
    failed = {"scene": "M", "gaussians": 1, "image": "1x1", "size": {}, "budget": None, "psnr": None}
    ours = {"xla": {"error": "rc -9: killed"}, "pallas": {"na": "n/a (interpreted)"}}
    table = gpu.raster_table([{**failed, "ours": ours, "gsplat": {"na": "n/a (x)"}}])
    assert "failed: rc -9: killed / n/a (interpreted) / n/a (x)" in table
    assert "failed: boom" in gpu.train_table([{"error": "boom", "render_backend": "xla"}])
    sweep = gpu.sweep_table([{"scene": "A", "setting": "pallas chunk_size=8", "na": "n/a (interpreted)"}])
    assert "| A | pallas chunk_size=8 | n/a (interpreted) |" in sweep
