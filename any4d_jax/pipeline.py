"""The main job: data -> training -> evaluation, as `python -m experiments.run` runs it."""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import cameras, evaluate
from any4d_jax import train as train_lib
from any4d_jax.data import synthetic


def synthetic_config(config: ml_collections.ConfigDict) -> synthetic.SyntheticConfig:
    d = config.data
    return synthetic.SyntheticConfig(
        num_frames=d.num_frames,
        width=d.width,
        height=d.height,
        fov_deg=d.fov_deg,
        seed=config.seed,
        num_background=d.num_background,
        num_per_object=d.num_per_object,
        train_arc_deg=d.train_arc_deg,
        eval_azimuths_deg=tuple(d.eval_azimuths_deg),
        background=tuple(config.render.background),
        spin_deg=d.spin_deg,
        bounces=d.bounces,
    )


def novel_orbit(sc: synthetic.SyntheticConfig, num: int, arc_deg: float) -> cameras.Camera:
    """A camera sweeping a wider arc than training, at a different height, while time runs."""
    az = np.linspace(-0.5 * arc_deg, 0.5 * arc_deg, num)
    el = sc.elevation_deg + 8.0 * np.sin(np.linspace(0, np.pi, num))
    eyes = synthetic._eye(az, el, sc.radius) + synthetic.LOOK_AT
    vms = cameras.look_at(jnp.asarray(eyes), jnp.broadcast_to(jnp.asarray(synthetic.LOOK_AT), eyes.shape))
    K = jnp.broadcast_to(cameras.from_fov(sc.width, sc.height, sc.fov_deg), (num, 3, 3))
    return cameras.make_camera(vms, K, sc.width, sc.height)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run the whole job; returns the summary metrics and the output paths."""
    if config.data.source == "iphone":  # a DyCheck iPhone scene folder, evaluated under its protocol
        from any4d_jax import dycheck_eval

        return dycheck_eval.train_and_evaluate(config, workdir)
    if config.data.source == "prompt":  # generate a video under the trajectory, reconstruct with its cameras
        from any4d_jax.generate import prompt_to_4d

        return prompt_to_4d.prompt_to_4d(config, workdir)
    if config.data.source != "synthetic":
        raise ValueError(f"data.source {config.data.source!r} is not available yet (only 'synthetic')")
    sc = synthetic_config(config)
    _, train_frames, eval_frames = synthetic.make_dataset(sc)
    state, setup = train_lib.train(config, train_frames, workdir)
    if config.train.stop_after >= 0 and int(state.step) < config.train.num_steps:
        return {"stopped_at": int(state.step)}
    novel = novel_orbit(sc, config.eval.novel_views, config.eval.novel_arc_deg)
    summary = evaluate.evaluate(
        state,
        setup,
        train_frames,
        eval_frames,
        novel,
        workdir,
        fps=config.eval.fps,
        write_ply=config.eval.write_ply,
    )
    paths = {
        k: os.path.join(workdir, v)
        for k, v in [
            ("metrics", "metrics.json"),
            ("heldout_video", "heldout.mp4"),
            ("novel_video", "novel_orbit.mp4"),
            ("ply", "ply"),
            ("checkpoints", "checkpoints"),
        ]
    }
    return {"summary": summary, "paths": paths, "setup": dataclasses.asdict(setup.motion)}
