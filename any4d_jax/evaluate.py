"""Evaluation: render held-out cameras at every time, score them, and write what a person can look at.

Outputs in the workdir: metrics.json (per-frame and mean PSNR/SSIM, masked variants over the foreground mask,
training-view PSNR), heldout.mp4 (prediction | ground truth, one clip per held-out camera), novel_orbit.mp4
(a camera orbiting the scene while time runs), ply/frame_XXX.ply (the Gaussians at every frame, 3DGS layout).
"""

from __future__ import annotations

import functools
import json
import os

import imageio.v2 as iio2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from any4d_jax import gaussians as gs
from any4d_jax import metrics
from any4d_jax.cameras import Camera
from any4d_jax.data.frames import Frames
from any4d_jax.render import render


@functools.partial(jax.jit, static_argnames=("setup", "width", "height"))
def _render_one(params, active, setup, viewmat, K, t, width, height):
    from any4d_jax.train import splats_at  # avoid an import cycle (train imports nothing from here)

    cam = Camera(viewmat=viewmat, K=K, width=width, height=height)
    out = render(splats_at(params, active, setup, t), cam, jnp.asarray(setup.background), setup.render)
    return jnp.clip(out.rgb, 0.0, 1.0), out.stats["dropped_pairs"]


def render_frames(state, setup, cams: Camera, times, desc: str = "render") -> np.ndarray:
    """(F, H, W, 3) renders of camera i at time times[i] (one compiled program for all frames)."""
    out = []
    for i in tqdm(range(len(times)), desc=desc, unit="frame", leave=False):
        rgb, _ = _render_one(
            state.params,
            state.active,
            setup,
            cams.viewmat[i],
            cams.K[i],
            jnp.float32(times[i]),
            cams.width,
            cams.height,
        )
        out.append(np.asarray(rgb))
    return np.stack(out)


def _scores(pred, gt, mask):
    pred, gt = jnp.asarray(pred), jnp.asarray(gt)
    s = {"psnr": metrics.psnr(pred, gt), "ssim": metrics.ssim(pred, gt)}
    if mask is not None:
        m = jnp.asarray(mask) > 0.5
        s["masked_psnr"] = metrics.masked_psnr(pred, gt, m)
        s["masked_ssim"] = metrics.masked_ssim(pred, gt, m)
    return {k: np.asarray(v, np.float64) for k, v in s.items()}


def _to_u8(x):
    return (np.clip(np.asarray(x), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_video(path: str, frames: np.ndarray, fps: int) -> None:
    """(F, H, W, 3) float in [0, 1] -> H.264 mp4 (even sizes padded)."""
    f = _to_u8(frames)
    pad_h, pad_w = f.shape[1] % 2, f.shape[2] % 2
    if pad_h or pad_w:
        f = np.pad(f, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    iio2.mimwrite(path, list(f), fps=fps, macro_block_size=1)


def evaluate(
    state,
    setup,
    train: Frames,
    held_out: Frames,
    novel: Camera,
    workdir: str,
    fps: int = 12,
    write_ply: bool = True,
) -> dict:
    """Score held-out and training views; write metrics.json, videos and per-frame PLY; return the summary."""
    os.makedirs(workdir, exist_ok=True)
    pred_eval = render_frames(state, setup, held_out.cameras, np.asarray(held_out.times), "eval views")
    pred_train = render_frames(state, setup, train.cameras, np.asarray(train.times), "train views")
    ev = _scores(pred_eval, held_out.rgb, held_out.mask)
    tr = _scores(pred_train, train.rgb, None)
    summary = {f"eval/{k}": float(np.mean(v)) for k, v in ev.items()}
    summary.update({f"train/{k}": float(np.mean(v)) for k, v in tr.items()})
    result = {
        "summary": summary,
        "per_frame": {
            "eval": [
                {"camera_time": float(t), **{k: float(v[i]) for k, v in ev.items()}}
                for i, t in enumerate(np.asarray(held_out.times))
            ],
            "train": [
                {"time": float(t), **{k: float(v[i]) for k, v in tr.items()}}
                for i, t in enumerate(np.asarray(train.times))
            ],
        },
        "num_gaussians": int(jnp.sum(state.active)),
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)

    side = np.concatenate([pred_eval, np.asarray(held_out.rgb)], axis=2)
    write_video(os.path.join(workdir, "heldout.mp4"), side, fps)
    num_t = int(np.max(np.asarray(train.times))) + 1
    orbit_times = np.linspace(0, num_t - 1, novel.viewmat.shape[0])
    write_video(
        os.path.join(workdir, "novel_orbit.mp4"),
        render_frames(state, setup, novel, orbit_times, "novel orbit"),
        fps,
    )
    if write_ply:
        ply_dir = os.path.join(workdir, "ply")
        os.makedirs(ply_dir, exist_ok=True)
        from any4d_jax.train import splats_at

        for t in range(num_t):
            gs.write_ply(
                os.path.join(ply_dir, f"frame_{t:03d}.ply"),
                splats_at(state.params, state.active, setup, float(t)),
                active=state.active,
            )
    return summary
