"""The DyCheck iPhone job (configs/iphone.py): load a scene folder, train, score under the published protocol.

Every check of the scene folder happens in data.load, before training; LPIPS weights are looked up first too,
so a missing file is reported before hours of training, not after.
"""

from __future__ import annotations

import os

import ml_collections

from any4d_jax import data
from any4d_jax.evaluation import dycheck, track_eval
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.train import loop


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Load the scene, train, evaluate under the protocol; returns the summary and the output paths."""
    workdir_lib.prepare(config, workdir)  # every workdir check before anything is built
    ds = data.load(config)
    scene, protocol = ds.source
    weights, status = dycheck.load_lpips(config)
    cams = scene.train.cameras
    print(
        f"[iphone] scene {scene.name}: {scene.train.num_frames} train / {len(scene.val_names)} val frames at "
        f"{scene.factor}x ({cams.width}x{cams.height}), protocol {protocol.name}",
        flush=True,
    )
    print(f"[iphone] {status}", flush=True)
    if scene.name not in protocol.scenes:
        print(
            f"[iphone] note: {scene.name!r} is not one of the {protocol.name} protocol's scenes", flush=True
        )
    if scene.val is None:
        print("[iphone] note: splits/val.json is empty: only training views will be scored", flush=True)

    state, setup = loop.train(config, ds.train, workdir, extra_points=ds.extra_points)
    if (early := loop.stopped_early(config, state)) is not None:
        return early
    extra = {}
    if ds.eval_tracks is not None:  # DyCheck's keypoints: PCK-T (and TAP-Vid scores) of keypoint transfer
        extra["tracking"] = track_eval.evaluate(
            state, setup.model, ds.train, ds.eval_tracks, workdir, fps=config.eval.fps
        )
        print(f"[iphone] keypoint transfer PCK-T {extra['tracking']['2d']['pck_t']:.3f}", flush=True)
    summary = dycheck.evaluate_scene(
        state,
        setup.model,
        scene,
        workdir,
        protocol,
        lpips_weights=weights,
        lpips_status=status,
        fps=config.eval.fps,
        write_video=config.eval.write_video,
        train_stride=config.eval.train_stride,
        extra=extra,
        extra_summary=track_eval.headline(extra["tracking"]) if "tracking" in extra else None,
    )
    paths = {
        "metrics": os.path.join(workdir, "metrics.json"),
        "checkpoints": os.path.join(workdir, workdir_lib.CHECKPOINTS),
        "train_metrics": os.path.join(workdir, workdir_lib.TRAIN_METRICS),
    }
    if config.eval.write_video and scene.val is not None:
        paths["val_video"] = os.path.join(workdir, "val.mp4")
    if "tracking" in extra:
        paths["tracks_video"] = os.path.join(workdir, track_eval.VIDEO)
    return {"summary": summary, "paths": paths, "protocol": protocol.name, "factor": scene.factor}
