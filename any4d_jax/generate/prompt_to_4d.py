"""Prompt -> 4D: generate a video under a camera trajectory, then reconstruct it with the same cameras.

    trajectory (config.camera) -> generator.check (fails fast) -> generate -> generated.mp4, trajectory.json
    -> train (train_lib.train on the generated frames and their cameras) -> evaluate:
       metrics.json (reconstruction PSNR/SSIM on the generated frames; held-out PSNR/SSIM on a novel path
       where the generator knows the scene), reconstruction.mp4 (render | generated), novel.mp4 (render |
       ground truth when known), ply/frame_XXX.ply

The generator's `mask` means "valid" (see generate/base.py) while training reads `Frames.mask` as a
foreground mask, so the frames are reconstructed with mask=None; the valid mask is used only to report PSNR
over known pixels.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import evaluate, metrics
from any4d_jax import gaussians as gs
from any4d_jax import train as train_lib
from any4d_jax import trajectory as tj
from any4d_jax.data.frames import Frames
from any4d_jax.generate.base import Prompt, ground_truth, make_generator


def prompt_from_config(config: ml_collections.ConfigDict) -> Prompt:
    p = config.prompt
    return Prompt(text=p.text, negative_text=p.negative_text, image=p.image, depth=p.depth)


def trajectory_from_config(config: ml_collections.ConfigDict) -> tj.Trajectory:
    """The Trajectory that config.camera describes (a constructor name or a keyframe JSON file)."""
    c = config.camera
    name = c.trajectory
    if name.endswith(".json"):
        traj = tj.from_json(name, num_frames=c.num_frames)
        if (traj.width, traj.height) != (c.width, c.height):
            traj = traj.rescale(c.width, c.height, c.fit)
        return traj
    target = c.target if c.target is not None else (0.0, 0.0, c.radius)
    common = dict(num_frames=c.num_frames, width=c.width, height=c.height, fov_deg=c.fov_deg)
    if name == "orbit":
        return tj.orbit(
            **common, radius=c.radius, arc_deg=c.arc_deg, elevation_deg=c.elevation_deg, target=c.target
        )
    if name == "dolly":
        return tj.dolly(**common, distance=c.distance, target=target)
    if name == "pan":
        return tj.pan(**common, yaw_deg=c.arc_deg, pitch_deg=c.pitch_deg)
    if name == "spiral":
        return tj.spiral(
            **common,
            radius=c.radius,
            spiral_radius=c.spiral_radius,
            turns=c.turns,
            forward=c.distance,
            target=c.target,
        )
    if name == "static":
        return tj.static(**common, target=target)
    raise ValueError(
        f"camera.trajectory must be one of {sorted(tj.CONSTRUCTORS)} or a keyframe file ending in .json, "
        f"got {name!r}"
    )


@jax.jit
def _score_arrays(pred, gt, valid):
    return {
        "psnr": metrics.psnr(pred, gt),
        "ssim": metrics.ssim(pred, gt),
        "valid_psnr": metrics.masked_psnr(pred, gt, valid > 0.5),
    }


def _scores(pred, gt, valid=None) -> dict:
    """Per-frame PSNR / SSIM (and PSNR over valid pixels when a mask is given), one compiled program."""
    pred, gt = jnp.asarray(pred, jnp.float32), jnp.asarray(gt, jnp.float32)
    mask = jnp.ones(gt.shape[:-1], jnp.float32) if valid is None else jnp.asarray(valid, jnp.float32)
    out = {k: np.asarray(v, np.float64) for k, v in _score_arrays(pred, gt, mask).items()}
    if valid is None:
        del out["valid_psnr"]
    return out


def _side_by_side(a, b) -> np.ndarray:
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=2)


def generate_frames(config: ml_collections.ConfigDict, workdir: str | None = None):
    """(generator, prompt, trajectory, frames); writes generated.mp4 and trajectory.json into workdir."""
    prompt = prompt_from_config(config)
    traj = trajectory_from_config(config)
    gen = make_generator(config)  # validates the backend's settings (and a model folder) before loading
    gen.check(prompt, traj)
    frames = gen.generate(prompt, traj, jax.random.PRNGKey(config.seed))
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        traj.to_json(os.path.join(workdir, "trajectory.json"))
        evaluate.write_video(os.path.join(workdir, "generated.mp4"), np.asarray(frames.rgb), config.eval.fps)
        if frames.mask is not None:
            m = np.repeat(np.asarray(frames.mask)[..., None], 3, -1)
            evaluate.write_video(os.path.join(workdir, "generated_mask.mp4"), m, config.eval.fps)
    return gen, prompt, traj, frames


def prompt_to_4d(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole prompt -> 4D job (what `experiments.run` calls for data.source = "prompt")."""
    gen, prompt, traj, frames = generate_frames(config, workdir)
    if frames.depth is None:
        raise ValueError(f"generator {gen.name!r} gave no depth: reconstruction initialises from depth")
    state, setup = train_lib.train(config, frames.replace(mask=None), workdir)
    if config.train.stop_after >= 0 and int(state.step) < config.train.num_steps:
        return {"stopped_at": int(state.step)}
    summary = evaluate_generated(config, gen, prompt, traj, frames, state, setup, workdir)
    names = ["metrics.json", "generated.mp4", "reconstruction.mp4", "novel.mp4", "trajectory.json", "ply"]
    return {"summary": summary, "paths": {n.split(".")[0]: os.path.join(workdir, n) for n in names}}


def evaluate_generated(config, gen, prompt: Prompt, traj, frames: Frames, state, setup, workdir: str) -> dict:
    """Scores, videos and PLY of a reconstruction of generated frames (see the module docstring)."""
    fps = config.eval.fps
    times = np.asarray(frames.times)
    pred = evaluate.render_frames(state, setup, traj, times, "generated views")
    rec = _scores(pred, frames.rgb, frames.mask)
    evaluate.write_video(os.path.join(workdir, "reconstruction.mp4"), _side_by_side(pred, frames.rgb), fps)

    novel = tj.novel_view_path(
        traj, config.eval.novel_views, config.eval.novel_offset * config.camera.radius, config.camera.radius
    )
    novel_times = np.linspace(0.0, float(times[-1]), novel.num_frames)
    pred_novel = evaluate.render_frames(state, setup, novel, novel_times, "novel views")
    gt = ground_truth(gen, prompt, novel, novel_times)
    held = _scores(pred_novel, gt.rgb, gt.mask) if gt is not None else {}
    video = pred_novel if gt is None else _side_by_side(pred_novel, gt.rgb)
    evaluate.write_video(os.path.join(workdir, "novel.mp4"), video, fps)

    summary = {f"recon/{k}": float(np.mean(v)) for k, v in rec.items()}
    summary.update({f"heldout/{k}": float(np.mean(v)) for k, v in held.items()})
    result = {
        "summary": summary,
        "generator": gen.name,
        "per_frame": {
            "recon": [
                {"time": float(t), **{k: float(v[i]) for k, v in rec.items()}} for i, t in enumerate(times)
            ],
            "heldout": [
                {"time": float(t), **{k: float(v[i]) for k, v in held.items()}}
                for i, t in enumerate(novel_times)
            ]
            if held
            else [],
        },
        "num_gaussians": int(np.sum(np.asarray(state.active))),
    }
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    if config.eval.write_ply:
        ply_dir = os.path.join(workdir, "ply")
        os.makedirs(ply_dir, exist_ok=True)
        at = jax.jit(train_lib.splats_at, static_argnums=2)  # one program for every frame
        for t in range(len(times)):
            splats = at(state.params, state.active, setup, jnp.float32(t))
            gs.write_ply(os.path.join(ply_dir, f"frame_{t:03d}.ply"), splats, active=state.active)
    return summary
