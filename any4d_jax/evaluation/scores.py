"""Per-frame image scores: the one scorer of the synthetic held-out views, the DyCheck protocol, the prompt
job and the ablation.

    score_frames(pred, gt, mask=None, lpips_weights=None) -> {name: (F,) float64}
        psnr, ssim                      every pixel
        masked_psnr, masked_ssim        over mask (DyCheck's definitions; metrics.py), when a mask is given
        lpips, masked_lpips             AlexNet/VGG LPIPS (lpips.py), when weights are given
    empty_mask_frames(mask)             (F,) bool: frames whose mask covers no pixel
    quantize(x)                         8-bit levels by truncation, as DyCheck's to_quantized_float32
    mean_scores(scores, prefix, scored) {prefix/name: mean}, masked scores over the scored frames only
    per_frame_rows(scores, **columns)   one dict per frame

A frame whose mask covers no pixel has no masked score: its masked_* entries are NaN (DyCheck's formulas would
give masked PSNR +inf and masked SSIM exactly 1, a perfect score for a frame where nothing was compared), and
callers leave it out of the means (`mean_scores(..., scored=~empty_mask_frames(mask))`) and count it. JSON
writers (files.write_json) turn the NaN into null.

Frames are scored one at a time by one compiled program per image size (memory stays one frame's worth).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.evaluation import lpips as lpips_lib
from any4d_jax.evaluation import metrics


def quantize(x) -> np.ndarray:
    """Images in [0, 1] truncated to 8-bit levels (float32), as DyCheck's ``to_quantized_float32``, i.e.
    ``(clip(x, 0, 1) * 255).astype(uint8) / 255``: 0.5 -> 127 / 255 and 0.999 -> 254 / 255 (not rounded).
    Shape of Motion scores PNGs saved as (x * 255).astype(uint8) (flow3d/validator.py): the same truncation.
    NaN becomes 0 (numpy leaves that cast undefined)."""
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0)
    return (np.clip(x, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8).astype(np.float32) / np.float32(255.0)


def empty_mask_frames(mask) -> np.ndarray:
    """(F,) bool: the frames of mask (F, H, W) (or (F, H, W, 1)) that cover no pixel (no value > 0.5, the
    threshold score_frames uses)."""
    m = np.asarray(mask) > 0.5
    return ~m.reshape(m.shape[0], -1).any(axis=1)


@jax.jit
def _pixel_scores(pred, gt, mask):
    """pred, gt: (1, H, W, 3); mask: (1, H, W). The four pixel metrics of one frame, each (1,)."""
    return {
        "psnr": metrics.psnr(pred, gt),
        "ssim": metrics.ssim(pred, gt),
        "masked_psnr": metrics.masked_psnr(pred, gt, mask),
        "masked_ssim": metrics.masked_ssim(pred, gt, mask),
    }


@jax.jit
def _lpips_scores(weights, pred, gt, mask):
    """Unmasked and masked spatial LPIPS of one frame, each (1,), from one batched network pass."""
    m = jnp.concatenate([jnp.ones_like(mask), mask])
    s = lpips_lib.masked_lpips(weights, jnp.concatenate([pred, pred]), jnp.concatenate([gt, gt]), m)
    return {"lpips": s[:1], "masked_lpips": s[1:]}


def score_frames(pred, gt, mask=None, lpips_weights=None) -> dict:
    """Per-frame scores of pred vs gt: (F, H, W, 3) in [0, 1]; mask: optional (F, H, W) in {0, 1}.

    Returns {name: (F,) float64} (see the module docstring; the masked_* entries only with a mask, NaN for a
    frame whose mask covers no pixel).
    """
    pred, gt = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
    masked = mask is not None
    mask = (
        np.ones(pred.shape[:-1], np.float32) if mask is None else (np.asarray(mask) > 0.5).astype(np.float32)
    )
    if pred.shape != gt.shape or pred.ndim != 4 or mask.shape != pred.shape[:3]:
        raise ValueError(f"score_frames: pred {pred.shape}, gt {gt.shape}, mask {mask.shape} do not match")
    rows = []
    for i in range(pred.shape[0]):
        args = (pred[i : i + 1], gt[i : i + 1], mask[i : i + 1])
        s = _pixel_scores(*args)
        if lpips_weights is not None:
            s.update(_lpips_scores(lpips_weights, *args))
        rows.append({k: float(v[0]) for k, v in s.items()})
    names = [k for k in (rows[0] if rows else {}) if masked or not k.startswith("masked_")]
    out = {k: np.array([r[k] for r in rows], np.float64) for k in names}
    empty = empty_mask_frames(mask) if masked else np.zeros(pred.shape[0], bool)
    for k in out:
        if k.startswith("masked_"):
            out[k][empty] = np.nan  # nothing covered: no score (not DyCheck's +inf / 1.0)
    return out


def mean_scores(scores: dict, prefix: str, scored=None) -> dict:
    """{prefix/name: mean over frames} of score_frames' output. scored: optional (F,) bool, the frames the
    masked_* (and valid_*) means are taken over (the others had an empty mask); NaN when it selects none."""
    out = {}
    for k, v in scores.items():
        v = np.asarray(v, np.float64)
        if scored is not None and k.startswith(("masked_", "valid_")):
            v = v[np.asarray(scored, bool)]
        out[f"{prefix}/{k}"] = float(np.mean(v)) if v.size else float("nan")
    return out


def per_frame_rows(scores: dict, **columns) -> list[dict]:
    """One dict per frame: the given columns (sequences of length F) then every score."""
    num = len(next(iter(scores.values()))) if scores else 0
    return [
        {**{c: v[i] for c, v in columns.items()}, **{k: float(s[i]) for k, s in scores.items()}}
        for i in range(num)
    ]
