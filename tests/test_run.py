"""The main entry point: runs on a tiny config and writes its outputs; unknown config keys fail loudly."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "--config=configs/synthetic.py",
            f"--workdir={tmp_path}",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_main_job_writes_images_and_stats(tmp_path):
    import imageio.v3 as iio

    r = _run(
        [
            "--config.scene.num_gaussians=400",
            "--config.render.width=40",
            "--config.render.height=24",
            "--config.camera.num_views=2",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    img = iio.imread(tmp_path / "orbit.png")
    assert img.shape == (24, 80, 3)
    assert img.std() > 10  # something was drawn, not a flat background
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["num_gaussians"] == 400 and len(stats["views"]) == 2
    assert np.all([v["num_visible"] > 0 for v in stats["views"]])


def test_unknown_config_key_fails_loudly(tmp_path):
    r = _run(["--config.render.widht=40"], tmp_path)
    assert r.returncode != 0
    assert "widht" in r.stderr
