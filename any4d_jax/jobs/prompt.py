"""Prompt -> 4D: generate a video under a camera trajectory, then reconstruct it with the same cameras.

    check the workdir -> trajectory (config.camera) -> generator.check (fails fast) -> generate
    -> trajectory.json, generated.npz (first: the frames and their cameras), generated.mp4, generated_mask.mp4
    -> train (train/loop.py on the generated frames and their cameras) -> evaluate:
       metrics.json (reconstruction PSNR/SSIM on the generated frames; held-out PSNR/SSIM on a novel path
       where the generator knows the scene), reconstruction.mp4 (render | generated), novel.mp4 (render |
       ground truth when known), ply/frame_XXX.ply

The generator's `mask` means "valid" (see generate/base.py) while training reads `Frames.mask` as a
foreground mask, so the frames are reconstructed with mask=None; the valid mask is used only to report PSNR
over known pixels (valid_psnr).

Rerun without regenerating: generated.npz holds the frames exactly as training reads them (rgb quantised to
uint8 once, for the first run too), so a rerun in the same workdir with config.resume (the default; the
workdir already refuses another config) loads generated.npz and trajectory.json instead of generating, says
so in one line, and trains on bit-identical frames and cameras (resuming from the latest checkpoint). A
damaged generated.npz, or one that disagrees with trajectory.json or with the cameras the config describes,
is refused with one line (delete it to generate again): regenerating silently could cost hours of GPU time
and give another video than the checkpoints were trained on.

Devices: generation and training run under `jax.default_device` of the backend's `jax_device` (a diffusers
generator on cuda:K with CUDA jax: JAX's GPU K), so torch's frames and JAX's training share one GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import files, generate
from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError, MissingInput
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import empty_mask_frames, mean_scores, per_frame_rows, score_frames
from any4d_jax.generate import Generated
from any4d_jax.generate import base as generate_base
from any4d_jax.geometry import trajectory as tj
from any4d_jax.io import ply, video
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import camera_refine
from any4d_jax.model.gaussians import ModelSpec
from any4d_jax.train import loop

GENERATED = "generated.npz"
TRAJECTORY = "trajectory.json"
OUTPUTS = [
    "metrics.json",
    "generated.npz",
    "generated.mp4",
    "reconstruction.mp4",
    "novel.mp4",
    "trajectory.json",
    "ply",
]


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


def frames_to_arrays(frames: Frames) -> dict[str, np.ndarray]:
    """What generated.npz holds (numpy; F frames of H x W):

    rgb (F, H, W, 3) uint8 (round(255 rgb)); depth (F, H, W) float32; mask (F, H, W) float16 (valid, absent
    when the generator gives none); times (F,) float32; viewmat (F, 4, 4) and K (F, 3, 3) float32 (the
    cameras the frames were generated under); size (2,) int64 = (width, height).
    """
    cams = frames.cameras
    out = {
        "rgb": np.round(np.clip(np.asarray(frames.rgb, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8),
        "depth": np.asarray(frames.depth, np.float32),
        "times": np.asarray(frames.times, np.float32),
        "viewmat": np.asarray(cams.viewmat, np.float32),
        "K": np.asarray(cams.K, np.float32),
        "size": np.asarray([cams.width, cams.height], np.int64),
    }
    if frames.mask is not None:
        out["mask"] = np.asarray(frames.mask, np.float16)
    return out


def frames_from_arrays(arrays: dict[str, np.ndarray], trajectory: tj.Trajectory) -> Frames:
    """The Frames of `frames_to_arrays` output (rgb back to float32 in [0, 1]) seen by `trajectory`."""
    mask = arrays.get("mask")
    return Frames(
        rgb=jnp.asarray(arrays["rgb"].astype(np.float32) / np.float32(255.0)),
        cameras=trajectory,
        times=jnp.asarray(arrays["times"], jnp.float32),
        depth=jnp.asarray(arrays["depth"], jnp.float32),
        mask=None if mask is None else jnp.asarray(mask, jnp.float32),
    )


def save_generated(g: Generated, workdir: str, fps: int) -> Generated:
    """trajectory.json and generated.npz first (atomically: the work of the generator is on disk before
    anything else can fail), then generated.mp4 and (when the generator gives one) generated_mask.mp4.

    Returns `g` with the frames as saved (rgb quantised to uint8), which is what training must read so that a
    rerun from generated.npz trains on the same frames."""
    os.makedirs(workdir, exist_ok=True)
    arrays = frames_to_arrays(g.frames)
    g.trajectory.to_json(os.path.join(workdir, TRAJECTORY))
    with files.atomic_write(os.path.join(workdir, GENERATED)) as f:
        np.savez(f, **arrays)
    g = dataclasses.replace(g, frames=frames_from_arrays(arrays, g.trajectory))
    write_generated_videos(g, workdir, fps)
    return g


def write_generated_videos(g: Generated, workdir: str, fps: int) -> None:
    """generated.mp4 and (when the frames have a valid mask) generated_mask.mp4."""
    video.write_video(os.path.join(workdir, "generated.mp4"), np.asarray(g.frames.rgb), fps)
    if g.frames.mask is not None:
        m = np.repeat(np.asarray(g.frames.mask)[..., None], 3, -1)
        video.write_video(os.path.join(workdir, "generated_mask.mp4"), m, fps)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of generated.npz (no pickles), checked against `frames_to_arrays`; one-line InputError."""
    again = f"delete {path} to generate again"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise InputError(f"{path}: not a readable generated.npz ({why}); {again}") from None
    need = {"rgb", "depth", "times", "viewmat", "K", "size"}
    if missing := sorted(need - set(arrays)):
        raise InputError(f"{path}: missing array(s) {missing}; {again}")
    rgb, size = arrays["rgb"], arrays["size"]
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3 or size.shape != (2,):
        raise InputError(f"{path}: rgb must be (F, H, W, 3) uint8, got {rgb.shape} {rgb.dtype}; {again}")
    f, h, w, _ = rgb.shape
    shapes = {"depth": (f, h, w), "times": (f,), "viewmat": (f, 4, 4), "K": (f, 3, 3), "mask": (f, h, w)}
    for k, shape in shapes.items():
        a = arrays.get(k)
        if a is None and k == "mask":
            continue
        if a.shape != shape or not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
            raise InputError(
                f"{path}: '{k}' must be finite floats of shape {shape} (rgb is {rgb.shape}), got "
                f"{a.shape} {a.dtype}; {again}"
            )
    if tuple(int(v) for v in size) != (w, h):
        raise InputError(f"{path}: size {size.tolist()} is not the frames' {w} x {h}; {again}")
    return arrays


def _same_cameras(a: tj.Trajectory, viewmat: np.ndarray, K: np.ndarray, atol: float) -> bool:
    return (
        a.num_frames == viewmat.shape[0]
        and np.allclose(np.asarray(a.viewmat), viewmat, atol=atol)
        and np.allclose(np.asarray(a.K), K, rtol=1e-5, atol=atol)
    )


def load_generated(config: ml_collections.ConfigDict, workdir: str) -> Generated | None:
    """The clip a previous run of this config generated in `workdir` (generated.npz + trajectory.json), or
    None when there is none or config.resume is False (then the job generates). Refuses (one-line InputError)
    a damaged generated.npz, or one whose cameras are not trajectory.json's or the config's."""
    path = os.path.join(workdir, GENERATED)
    if not config.resume or not os.path.exists(path):
        return None
    again = f"delete {path} to generate again"
    arrays = _read_npz(path)
    viewmat, K = arrays["viewmat"], arrays["K"]
    width, height = (int(v) for v in arrays["size"])
    traj_path = os.path.join(workdir, TRAJECTORY)
    if not os.path.isfile(traj_path):
        raise MissingInput(f"{traj_path}: missing next to {path}; {again}")
    saved = tj.from_json(traj_path)
    if (saved.width, saved.height) != (width, height) or not _same_cameras(saved, viewmat, K, 1e-4):
        raise InputError(f"{path}: its cameras are not those of {traj_path}; {again}")
    wanted = generate.trajectory_from_config(config)
    if (wanted.width, wanted.height) != (width, height) or not _same_cameras(wanted, viewmat, K, 1e-5):
        raise InputError(
            f"{path}: generated under other cameras than config.camera describes now ({wanted.num_frames} "
            f"frames of {wanted.width} x {wanted.height} here, {viewmat.shape[0]} of {width} x {height} "
            f"there); {again}"
        )
    trajectory = wanted.replace(viewmat=jnp.asarray(viewmat), K=jnp.asarray(K))  # exactly the saved cameras
    print(f"{path}: reusing the {viewmat.shape[0]} generated frames and {TRAJECTORY} ({again})", flush=True)
    prompt = generate.prompt_from_config(config)
    generator = generate_base.for_saved_frames(config, prompt, trajectory)
    return Generated(generator, prompt, trajectory, frames_from_arrays(arrays, trajectory))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole prompt -> 4D job (what `experiments.run` calls for data.source = "prompt")."""
    workdir_lib.prepare(config, workdir)  # every workdir check before anything is built
    device = generate_base.jax_device(config)  # a GPU generator's device: JAX trains there too
    with contextlib.nullcontext() if device is None else jax.default_device(device):
        g = load_generated(config, workdir)
        if g is None:
            g = generate.load(config)
            if g.frames.depth is None:
                raise ValueError(
                    f"generator {g.generator.name!r} gave no depth: reconstruction initialises from depth"
                )
            g = save_generated(g, workdir, config.eval.fps)
        elif not os.path.exists(os.path.join(workdir, "generated.mp4")):
            write_generated_videos(g, workdir, config.eval.fps)
        state, setup = loop.train(config, g.frames.replace(mask=None), workdir)
        if (early := loop.stopped_early(config, state)) is not None:
            return early
        summary = evaluate_generated(config, g, state, setup.model, workdir, setup.camera_scale)
    paths = {n.split(".")[0]: os.path.join(workdir, n) for n in OUTPUTS}
    return {"summary": summary, "paths": {**paths, "generated_frames": os.path.join(workdir, GENERATED)}}


def evaluate_generated(
    config, g: Generated, state, spec: ModelSpec, workdir: str, camera_scale: float = 1.0
) -> dict:
    """Scores, videos and PLY of a reconstruction of generated frames (see the module docstring).

    Under train.camera_refine the generated views are rendered from their refined cameras (camera_scale: the
    corrections' unit, Setup.camera_scale), and metrics.json says how far each moved ("cameras")."""
    fps = config.eval.fps
    frames: Frames = g.frames
    times = np.asarray(frames.times)
    cams = camera_refine.refined_cameras(g.trajectory, state.params.camera, camera_scale)
    pred = render_frames(state, spec, cams, times, "generated views")
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
    if state.params.camera is not None:
        result["cameras"] = camera_refine.report(
            g.trajectory.viewmat, cams.viewmat, size=float(config.camera.radius)
        )
    files.write_json(os.path.join(workdir, "metrics.json"), result)
    if config.eval.write_ply:
        ply.write_sequence(os.path.join(workdir, "ply"), state.params, state.active, spec.motion, len(times))
    return summary
