"""Prompt -> 4D: generate a video under a camera trajectory, then reconstruct it with the same cameras.

    check the workdir -> trajectory (config.camera) -> generator.check (fails fast) -> generate
    -> generated.mp4, generated_mask.mp4, trajectory.json
    -> train (train/loop.py on the generated frames and their cameras) -> evaluate:
       metrics.json (reconstruction PSNR/SSIM on the generated frames; held-out PSNR/SSIM on a novel path
       where the generator knows the scene), reconstruction.mp4 (render | generated), novel.mp4 (render |
       ground truth when known), ply/frame_XXX.ply

The generator's `mask` means "valid" (see generate/base.py) while training reads `Frames.mask` as a
foreground mask, so the frames are reconstructed with mask=None; the valid mask is used only to report PSNR
over known pixels (valid_psnr).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from any4d_jax import files, generate
from any4d_jax.data.frames import Frames
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import empty_mask_frames, mean_scores, per_frame_rows, score_frames
from any4d_jax.generate import Generated
from any4d_jax.geometry import trajectory as tj
from any4d_jax.io import ply, video
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model.gaussians import ModelSpec
from any4d_jax.train import loop

OUTPUTS = ["metrics.json", "generated.mp4", "reconstruction.mp4", "novel.mp4", "trajectory.json", "ply"]


def _valid_scores(pred, gt, valid=None) -> dict:
    """psnr, ssim and (with a valid mask) valid_psnr per frame."""
    s = score_frames(pred, gt, valid)
    s.pop("masked_ssim", None)
    if "masked_psnr" in s:
        s["valid_psnr"] = s.pop("masked_psnr")
    return s


def _scored(valid) -> np.ndarray | None:
    """(F,) bool: the frames whose valid mask covers a pixel (valid_psnr is NaN on the others)."""
    return None if valid is None else ~empty_mask_frames(valid)


def save_generated(g: Generated, workdir: str, fps: int) -> None:
    """trajectory.json, generated.mp4 and (when the generator gives one) generated_mask.mp4."""
    os.makedirs(workdir, exist_ok=True)
    g.trajectory.to_json(os.path.join(workdir, "trajectory.json"))
    video.write_video(os.path.join(workdir, "generated.mp4"), np.asarray(g.frames.rgb), fps)
    if g.frames.mask is not None:
        m = np.repeat(np.asarray(g.frames.mask)[..., None], 3, -1)
        video.write_video(os.path.join(workdir, "generated_mask.mp4"), m, fps)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole prompt -> 4D job (what `experiments.run` calls for data.source = "prompt")."""
    workdir_lib.prepare(config, workdir)  # every workdir check before anything is built
    g = generate.load(config)
    if g.frames.depth is None:
        raise ValueError(
            f"generator {g.generator.name!r} gave no depth: reconstruction initialises from depth"
        )
    save_generated(g, workdir, config.eval.fps)
    state, setup = loop.train(config, g.frames.replace(mask=None), workdir)
    if (early := loop.stopped_early(config, state)) is not None:
        return early
    summary = evaluate_generated(config, g, state, setup.model, workdir)
    return {"summary": summary, "paths": {n.split(".")[0]: os.path.join(workdir, n) for n in OUTPUTS}}


def evaluate_generated(config, g: Generated, state, spec: ModelSpec, workdir: str) -> dict:
    """Scores, videos and PLY of a reconstruction of generated frames (see the module docstring)."""
    fps = config.eval.fps
    frames: Frames = g.frames
    times = np.asarray(frames.times)
    pred = render_frames(state, spec, g.trajectory, times, "generated views")
    rec = _valid_scores(pred, frames.rgb, frames.mask)
    video.write_video(os.path.join(workdir, "reconstruction.mp4"), video.side_by_side(pred, frames.rgb), fps)

    novel = tj.novel_view_path(
        g.trajectory,
        config.eval.novel_views,
        config.eval.novel_offset * config.camera.radius,
        config.camera.radius,
    )
    novel_times = np.linspace(0.0, float(times[-1]), novel.num_frames)
    pred_novel = render_frames(state, spec, novel, novel_times, "novel views")
    gt = generate.ground_truth(g.generator, g.prompt, novel, novel_times)
    held = _valid_scores(pred_novel, gt.rgb, gt.mask) if gt is not None else {}
    clip = pred_novel if gt is None else video.side_by_side(pred_novel, gt.rgb)
    video.write_video(os.path.join(workdir, "novel.mp4"), clip, fps)

    summary = {
        **mean_scores(rec, "recon", scored=_scored(frames.mask)),
        **mean_scores(held, "heldout", scored=_scored(gt.mask) if gt is not None else None),
    }
    result = {
        "summary": summary,
        "generator": g.generator.name,
        "per_frame": {
            "recon": per_frame_rows(rec, time=[float(t) for t in times]),
            "heldout": per_frame_rows(held, time=[float(t) for t in novel_times]) if held else [],
        },
        "num_gaussians": int(np.sum(np.asarray(state.active))),
    }
    files.write_json(os.path.join(workdir, "metrics.json"), result)
    if config.eval.write_ply:
        ply.write_sequence(os.path.join(workdir, "ply"), state.params, state.active, spec.motion, len(times))
    return summary
