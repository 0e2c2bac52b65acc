"""Held-out evaluation of the synthetic scene: render its held-out cameras at every time, score them, and
write what a person can look at.

Outputs in the workdir: metrics.json (per-frame and mean PSNR/SSIM, masked variants over the foreground mask,
training-view PSNR), heldout.mp4 (prediction | ground truth, one clip per held-out camera), novel_orbit.mp4
(a camera orbiting the scene while time runs), ply/frame_XXX.ply (the Gaussians at every frame, 3DGS layout).
Every file is written atomically; metrics.json is strict JSON (files.write_json: a PSNR of +inf, identical
images, is written as null). A held-out frame whose mask covers no pixel has null masked scores, is left out
of the masked means and is counted (``empty_mask_frames``).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from any4d_jax import files
from any4d_jax.data.frames import Frames
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import empty_mask_frames, mean_scores, per_frame_rows, score_frames
from any4d_jax.geometry.cameras import Camera
from any4d_jax.io import ply, video
from any4d_jax.model.gaussians import ModelSpec

OUTPUTS = {
    "metrics": "metrics.json",
    "heldout_video": "heldout.mp4",
    "novel_video": "novel_orbit.mp4",
    "ply": "ply",
}


def evaluate(
    state,
    spec: ModelSpec,
    train: Frames,
    held_out: Frames,
    novel: Camera,
    workdir: str,
    fps: int = 12,
    write_ply: bool = True,
    extra: dict | None = None,
    extra_summary: dict | None = None,
) -> dict:
    """Score held-out and training views; write metrics.json, videos and per-frame PLY; return the summary.

    state: anything with params (ModelParams) and active. The output files are named in OUTPUTS. `train`
    carries the cameras the model was fitted with (the refined ones under train.camera_refine). extra:
    further sections of metrics.json (e.g. "cameras": the camera refinement's report); extra_summary: further
    entries of the summary (e.g. track_eval.headline's tracking scores).
    """
    os.makedirs(workdir, exist_ok=True)
    pred_eval = render_frames(state, spec, held_out.cameras, held_out.times, "eval views")
    pred_train = render_frames(state, spec, train.cameras, train.times, "train views")
    ev = score_frames(pred_eval, held_out.rgb, held_out.mask)
    tr = score_frames(pred_train, train.rgb)
    empty = np.zeros(held_out.num_frames, bool) if held_out.mask is None else empty_mask_frames(held_out.mask)
    summary = {**mean_scores(ev, "eval", scored=~empty), **mean_scores(tr, "train"), **(extra_summary or {})}
    result = {
        "summary": summary,
        "per_frame": {
            "eval": per_frame_rows(ev, camera_time=[float(t) for t in np.asarray(held_out.times)]),
            "train": per_frame_rows(tr, time=[float(t) for t in np.asarray(train.times)]),
        },
        "num_gaussians": int(jnp.sum(state.active)),
        "empty_mask_frames": int(empty.sum()),
        **(extra or {}),
    }
    files.write_json(os.path.join(workdir, OUTPUTS["metrics"]), result)

    side = video.side_by_side(pred_eval, held_out.rgb)
    video.write_video(os.path.join(workdir, OUTPUTS["heldout_video"]), side, fps)
    num_t = train.num_times
    orbit_times = np.linspace(0, num_t - 1, novel.viewmat.shape[0])
    orbit = render_frames(state, spec, novel, orbit_times, "novel orbit")
    video.write_video(os.path.join(workdir, OUTPUTS["novel_video"]), orbit, fps)
    if write_ply:
        ply.write_sequence(
            os.path.join(workdir, OUTPUTS["ply"]), state.params, state.active, spec.motion, num_t
        )
    return summary
