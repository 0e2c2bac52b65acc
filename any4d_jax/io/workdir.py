"""A run's folder: what a training run writes next to its checkpoints, and how later commands read it back.

    <workdir>/config.json          the experiment config (check_workdir refuses a folder holding another one)
    <workdir>/train_cameras.npz    the training cameras and times (the exporter's and viewer's input)
    <workdir>/checkpoints/<step>/  orbax checkpoints of the TrainState
    <workdir>/train_metrics.jsonl  one JSON line per log step (MetricsWriter); train_curves.png (plot_curves)

scene_from_workdir(workdir) turns a finished run into an `.a4d` Scene (io/a4d.py).
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from any4d_jax.geometry import cameras
from any4d_jax.io import a4d
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams

CONFIG = "config.json"
TRAIN_CAMERAS = "train_cameras.npz"
CHECKPOINTS = "checkpoints"
TRAIN_METRICS = "train_metrics.jsonl"
TRAIN_CURVES = "train_curves.png"

# Config keys that may change between runs sharing a workdir (run control, not the experiment).
_RUN_CONTROL = {"resume"}
_TRAIN_RUN_CONTROL = {"stop_after"}


def _experiment(d: dict) -> dict:
    train = {k: v for k, v in d.get("train", {}).items() if k not in _TRAIN_RUN_CONTROL}
    return {k: v for k, v in {**d, "train": train}.items() if k not in _RUN_CONTROL}


def check_workdir(config: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
    """Refuse a workdir that holds another experiment (config.json differs beyond run-control keys); with
    `write`, create the folder and record this config. Jobs call it with write=False before loading or
    generating anything (a run that fails its checks writes nothing), and training calls it again with
    write=True before its first file."""
    path = os.path.join(workdir, CONFIG)
    mine = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        if _experiment(theirs) != _experiment(mine):
            raise ValueError(
                f"workdir {workdir} holds a run with another config ({path}); use another --workdir"
            )
    if write:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(mine, f, indent=2, sort_keys=True)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG)
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def checkpoint_manager(workdir: str, keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, CHECKPOINTS)),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create),
    )


def restore(mgr: ocp.CheckpointManager, target, step: int | None = None):
    """The checkpoint at `step` (default the latest) restored into the structure and types of `target`."""
    step = mgr.latest_step() if step is None else int(step)
    if step is None:
        raise FileNotFoundError(f"{mgr.directory} holds no checkpoint; train first")
    return mgr.restore(step, args=ocp.args.StandardRestore(target))


def restore_latest(mgr: ocp.CheckpointManager, state):
    """The latest checkpoint restored into `state`'s structure, or `state` itself when there is none."""
    if mgr.latest_step() is None:
        return state
    state = restore(mgr, state)
    tqdm.write(f"resumed from step {int(np.max(np.asarray(state.step)))} ({mgr.directory})")
    return state


def write_train_cameras(workdir: str, cams, times, num_frames: int) -> str:
    """Save the training cameras next to the checkpoints (what the exporter and viewer draw as frusta)."""
    path = os.path.join(workdir, TRAIN_CAMERAS)
    np.savez(
        path,
        viewmat=np.asarray(cams.viewmat, np.float32),
        K=np.asarray(cams.K, np.float32),
        width=int(cams.width),
        height=int(cams.height),
        times=np.asarray(times, np.float32),
        num_frames=int(num_frames),
    )
    return path


def scene_from_workdir(workdir: str, step: int | None = None) -> a4d.Scene:
    """The scene of a training run's workdir (config.json, train_cameras.npz, a checkpoint) as an a4d.Scene.

    step: the checkpoint to export (default the latest). The basis mask comes from the checkpoint itself.
    """
    paths = {k: os.path.join(workdir, k) for k in (CONFIG, TRAIN_CAMERAS, CHECKPOINTS)}
    for path in paths.values():
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing: export needs a workdir written by experiments.run (train it first; "
                f"runs from before the .a4d exporter lack train_cameras.npz: train them again)"
            )
    config = read_config(workdir)
    cam = np.load(paths[TRAIN_CAMERAS])
    mc = motion.motion_config(config, int(cam["num_frames"]))
    mgr = checkpoint_manager(workdir, create=False)
    step = mgr.latest_step() if step is None else int(step)
    if step is None:
        raise FileNotFoundError(f"{paths[CHECKPOINTS]} holds no checkpoint; train first")
    # Without a target orbax gives nested dicts; only params and active are read (not the optimizer state).
    ckpt = mgr.restore(step, args=ocp.args.StandardRestore())
    params = ModelParams.from_tree(ckpt["params"])
    cams = cameras.make_camera(cam["viewmat"], cam["K"], int(cam["width"]), int(cam["height"]))
    fps = config.eval.fps if "eval" in config and "fps" in config.eval else 12
    return a4d.scene_from_params(
        params, ckpt["active"], mc, config.render.background, cams, cam["times"], fps
    )


class MetricsWriter:
    """Appends one JSON object per log step to a .jsonl file: {"step": n, name: value, ...}.

    A resumed run first drops the lines past its restored step, so the file reads as one run.
    """

    def __init__(self, path: str, start: int = 0):
        self.path = path
        if os.path.exists(path):
            keep = [r for r in read_metrics(path) if r.get("step", 0) <= start]
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)

    def write(self, step: int, values: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **values}, allow_nan=True) + "\n")


def read_metrics(path: str) -> list[dict]:
    """The rows of a train_metrics.jsonl (a torn last line, from a crash mid-write, is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def plot_curves(metrics_path: str, png_path: str) -> str | None:
    """train_curves.png: total loss (log scale), its parts, PSNR and Gaussians in use against the step.

    Returns the path, or None when there is nothing to plot. Needs matplotlib (a core dependency).
    """
    rows = read_metrics(metrics_path) if os.path.exists(metrics_path) else []
    if not rows:
        return None
    # Heavy, so imported only when a run ends. A bare Figure (no pyplot) draws off-screen without touching
    # matplotlib's global backend: a notebook that trains keeps showing its own figures inline.
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in rows])

    def series(key):
        return np.array([np.mean(r[key]) if key in r else np.nan for r in rows], np.float64)

    parts = sorted({k for r in rows for k in r if k.startswith("loss/")})
    fig = Figure(figsize=(13, 3.6), dpi=100)
    axes = fig.subplots(1, 3)
    axes[0].semilogy(steps, series("loss"), label="total", color="black")
    for k in parts:
        axes[0].semilogy(steps, np.abs(series(k)), label=k.split("/", 1)[1], alpha=0.8)
    axes[0].set_title("loss")
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, series("psnr"))
    axes[1].set_title("training-view PSNR (dB)")
    axes[2].plot(steps, series("gaussians"))
    axes[2].set_title("Gaussians in use")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path
