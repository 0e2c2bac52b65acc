"""The synthetic job: the embedded procedural scene -> training -> held-out evaluation
(configs/synthetic.py)."""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import numpy as np

from any4d_jax import data
from any4d_jax.data import synthetic
from any4d_jax.evaluation import heldout, track_eval
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import camera_refine
from any4d_jax.train import loop


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train on the scene's training frames, score its held-out views; returns the summary and paths."""
    workdir_lib.prepare(config, workdir)  # every workdir check before anything is built
    ds = data.load(config)
    state, setup = loop.train(config, ds.train, workdir)
    if (early := loop.stopped_early(config, state)) is not None:
        return early
    novel = synthetic.novel_orbit(ds.source, config.eval.novel_views, config.eval.novel_arc_deg)
    train, extra = refined_train(ds, state, setup)
    if ds.eval_tracks is not None:
        extra["tracking"] = tracking_scores(config, ds, state, setup, train, workdir)
    summary = heldout.evaluate(
        state,
        setup.model,
        train,
        ds.held_out,
        novel,
        workdir,
        fps=config.eval.fps,
        write_ply=config.eval.write_ply,
        extra=extra,
        extra_summary=track_eval.headline(extra["tracking"]) if "tracking" in extra else None,
    )
    if "cameras" in extra:
        cams = extra["cameras"]
        summary = {**summary, **{f"cameras/{k}": v for k, v in cams.items() if k.endswith("_mean")}}
    paths = {k: os.path.join(workdir, v) for k, v in heldout.OUTPUTS.items()}
    if "tracking" in extra:
        paths["tracks_video"] = os.path.join(workdir, track_eval.VIDEO)
    paths["checkpoints"] = os.path.join(workdir, workdir_lib.CHECKPOINTS)
    paths["train_metrics"] = os.path.join(workdir, workdir_lib.TRAIN_METRICS)
    return {"summary": summary, "paths": paths, "setup": dataclasses.asdict(setup.model.motion)}


def refined_train(ds: data.Dataset, state, setup) -> tuple:
    """(training Frames with the cameras the model was fitted with, {"cameras": report} or {}).

    Under train.camera_refine the training views are scored with their refined cameras, and the report says
    how far they moved and, when the data's cameras were perturbed on purpose (data.camera_noise_*), how far
    the commanded and the refined cameras are from the true ones (model/camera_refine.report)."""
    deltas = state.params.camera
    if deltas is None and ds.true_cameras is None:
        return ds.train, {}
    cams = camera_refine.refined_cameras(ds.train.cameras, deltas, setup.camera_scale, setup.camera_gauge)
    true = None if ds.true_cameras is None else ds.true_cameras.viewmat
    size = getattr(ds.source, "radius", 1.0)
    rep = camera_refine.report(ds.train.cameras.viewmat, cams.viewmat, true, size)
    return ds.train.replace(cameras=cams), {"cameras": rep}


def tracking_scores(config, ds: data.Dataset, state, setup, train, workdir: str) -> dict:
    """3D and 2D tracking of the scene's ground-truth evaluation tracks (evaluation/track_eval.py), with
    tracks.mp4: true (green) and predicted (red) points over the first held-out camera's video."""
    t = train.num_frames
    view = (
        np.asarray(ds.held_out.rgb[:t]),
        ds.held_out.cameras.replace(viewmat=ds.held_out.cameras.viewmat[:t], K=ds.held_out.cameras.K[:t]),
    )
    return track_eval.evaluate(
        state, setup.model, train, ds.eval_tracks, workdir, ds.metres_per_unit, view, config.eval.fps
    )
