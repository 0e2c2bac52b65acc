"""The main entry point: a tiny end-to-end run writes every output; unknown config keys fail loudly."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np

from any4d_jax.io import a4d, ply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.data.num_frames=4",
    "--config.data.width=32",
    "--config.data.height=24",
    "--config.data.num_background=300",
    "--config.data.num_per_object=60",
    "--config.model.capacity=1200",
    "--config.model.sh_degree=0",
    "--config.motion.num_time_coeffs=3",
    "--config.train.num_steps=8",
    "--config.train.densify_from=4",
    "--config.train.densify_until=4",
    "--config.train.densify_every=4",
    "--config.train.checkpoint_every=4",
    "--config.eval.novel_views=3",
    "--config.eval.num_tracks=24",
]


def _run(args, workdir):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "--config=configs/synthetic.py",
            f"--workdir={workdir}",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_main_job_writes_metrics_videos_ply_and_checkpoints(tmp_path):
    r = _run(TINY, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"eval/psnr", "eval/ssim", "eval/masked_psnr", "train/psnr"} <= set(m["summary"])
    assert len(m["per_frame"]["eval"]) == 8 and len(m["per_frame"]["train"]) == 4
    assert 5.0 < m["summary"]["eval/psnr"] < 60.0
    # Tracking of the scene's ground-truth evaluation tracks, in metres, in the summary and its own section.
    assert {"tracking/epe_3d", "tracking/delta_3d_5cm", "tracking/pck_t"} <= set(m["summary"])
    assert m["tracking"]["3d"]["units"] == "metres" and m["tracking"]["2d"]["num_tracks"] > 0
    names = ("heldout.mp4", "novel_orbit.mp4", "tracks.mp4", "ply/frame_000.ply", "ply/frame_003.ply")
    for name in (*names, "config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]
    assert "| eval/psnr |" in r.stdout
    # The training log reached the disk, and the console is not flooded by library INFO lines (absl's
    # "I1126 09:24:25.8 ..." prefix; orbax logs every save through absl).
    rows = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 8
    assert {"loss", "psnr", "gaussians", "dropped_pairs", "step_time_s"} <= set(rows[-1])
    assert (tmp_path / "train_curves.png").stat().st_size > 5000
    info = [line for line in r.stderr.splitlines() if re.match(r"^I\d{4} ", line)]
    assert not info, info[:5]

    # experiments.export packs the run into one .a4d whose motion reproduces the per-frame PLY sequence.
    out = tmp_path / "scene.a4d"
    cmd = [sys.executable, "-m", "experiments.export", f"--workdir={tmp_path}", "--precision=float32"]
    e = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert e.returncode == 0, e.stderr[-3000:]
    assert "per-frame PLY sequence (4 files" in e.stdout
    scene = a4d.read_a4d(out)
    assert scene.meta["num_frames"] == 4 and scene.camera_viewmats.shape == (4, 4, 4)
    for t in (0, 3):
        g = ply.read_ply(tmp_path / "ply" / f"frame_{t:03d}.ply")
        np.testing.assert_allclose(scene.splats_at(float(t)).means, g.means, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scene.opacities, jax.nn.sigmoid(g.opacity_logits), rtol=1e-4, atol=1e-6)


def test_unknown_config_key_fails_loudly(tmp_path):
    r = _run(["--config.train.num_stpes=40"], tmp_path)
    assert r.returncode != 0
    assert "num_stpes" in r.stderr
