"""The synthetic job: the embedded procedural scene -> training -> held-out evaluation
(configs/synthetic.py)."""

from __future__ import annotations

import dataclasses
import os

import ml_collections

from any4d_jax import data
from any4d_jax.data import synthetic
from any4d_jax.evaluation import heldout
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.train import loop


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train on the scene's training frames, score its held-out views; returns the summary and paths."""
    workdir_lib.prepare(config, workdir)  # every workdir check before anything is built
    ds = data.load(config)
    state, setup = loop.train(config, ds.train, workdir)
    if (early := loop.stopped_early(config, state)) is not None:
        return early
    novel = synthetic.novel_orbit(ds.source, config.eval.novel_views, config.eval.novel_arc_deg)
    summary = heldout.evaluate(
        state,
        setup.model,
        ds.train,
        ds.held_out,
        novel,
        workdir,
        fps=config.eval.fps,
        write_ply=config.eval.write_ply,
    )
    paths = {k: os.path.join(workdir, v) for k, v in heldout.OUTPUTS.items()}
    paths["checkpoints"] = os.path.join(workdir, workdir_lib.CHECKPOINTS)
    paths["train_metrics"] = os.path.join(workdir, workdir_lib.TRAIN_METRICS)
    return {"summary": summary, "paths": paths, "setup": dataclasses.asdict(setup.model.motion)}
