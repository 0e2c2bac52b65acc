"""A run's folder: what a training run writes next to its checkpoints, and how later commands read it back.

    <workdir>/config.json          the experiment config (check_workdir refuses a folder holding another one)
    <workdir>/train_cameras.npz    the training cameras and times (the exporter's and viewer's input)
    <workdir>/checkpoints/<step>/  orbax checkpoints of the TrainState
    <workdir>/train_metrics.jsonl  one JSON line per log step (MetricsWriter); train_curves.png (plot_curves)

Every file here is written atomically (files.py), every read of one is checked (one-line InputError), and
a checkpoint is restored only when every float in it is finite: a damaged or non-finite latest checkpoint
falls back to the one before it, with a warning, and is moved to `checkpoints.damaged/`.

    prepare(config, workdir)        before any data is built: config compatible, folder writable
    check_workdir(config, workdir)  the config check, and (write=True) recording config.json
    restore_latest / restore        checkpoint restore with the fallback above
    scene_from_workdir(workdir)     a finished run as an `.a4d` Scene (io/a4d.py)
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput
from any4d_jax.geometry import cameras
from any4d_jax.io import a4d
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams

CONFIG = "config.json"
TRAIN_CAMERAS = "train_cameras.npz"
CHECKPOINTS = "checkpoints"
DAMAGED = "checkpoints.damaged"
TRAIN_METRICS = "train_metrics.jsonl"
TRAIN_CURVES = "train_curves.png"

# Config keys that may change between runs sharing a workdir: run control, which no trained value depends on.
_RUN_CONTROL = {"resume"}
_TRAIN_RUN_CONTROL = {"stop_after", "log_every", "checkpoint_every", "keep_checkpoints"}


def _experiment(d: dict) -> dict:
    train = {k: v for k, v in d.get("train", {}).items() if k not in _TRAIN_RUN_CONTROL}
    return {k: v for k, v in {**d, "train": train}.items() if k not in _RUN_CONTROL}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _differences(theirs: dict, mine: dict, limit: int = 3) -> str:
    a, b = _flat(_experiment(theirs)), _flat(_experiment(mine))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))
    shown = ", ".join(
        f"{k}: {a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} here" for k in keys[:limit]
    )
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def read_config_json(workdir: str) -> dict:
    """<workdir>/config.json as a dict (InputError naming it when it is damaged)."""
    path = os.path.join(workdir, CONFIG)
    d = files.read_json(path, what="the run's config")
    if not isinstance(d, dict):
        raise InputError(f"{path}: the run's config is not a JSON object; this workdir cannot be reused")
    return d


def check_workdir(config: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
    """Refuse (InputError) a workdir that holds another experiment: config.json differs beyond the run-control
    keys (resume, train.stop_after/log_every/checkpoint_every/keep_checkpoints), or is damaged. With `write`,
    record this config (atomically). Jobs call `prepare` before loading or generating anything (a run that
    fails its checks writes nothing); training calls this with write=True before its first file."""
    path = os.path.join(workdir, CONFIG)
    mine = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        theirs = read_config_json(workdir)
        if _experiment(theirs) != _experiment(mine):
            raise InputError(
                f"{workdir} holds a run with another config ({_differences(theirs, mine)}); "
                f"use another --workdir"
            )
    if write:
        os.makedirs(workdir, exist_ok=True)
        files.write_json(path, mine, sort_keys=True)


def prepare(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Every workdir check, before data is built or a model loaded: the folder holds no other experiment
    and can be written (created when missing). Writes nothing into an existing folder."""
    check_workdir(config, workdir, write=False)
    files.check_writable(workdir)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(read_config_json(workdir))


def checkpoint_manager(workdir: str, keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, CHECKPOINTS)),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create),
    )


def all_finite(tree) -> bool:
    """Whether every float in a pytree (arrays or numbers) is finite."""
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            return False
    return True


def _move_aside(mgr: ocp.CheckpointManager, step: int) -> str:
    """Move checkpoint `step` out of the manager's folder, into <workdir>/checkpoints.damaged/<step>."""
    src = os.path.join(str(mgr.directory), str(step))
    dst_dir = os.path.join(os.path.dirname(str(mgr.directory)), DAMAGED)
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, str(step))
    k = 1
    while os.path.exists(dst):
        dst, k = os.path.join(dst_dir, f"{step}.{k}"), k + 1
    os.replace(src, dst)
    mgr.reload()
    return dst


def _try_restore(mgr: ocp.CheckpointManager, step: int, target):
    """(restored, None) or (None, why it cannot be used)."""
    try:
        if target is None:  # onto this process' first device, whatever mesh wrote it (orbax would refuse
            # a checkpoint of a multi-device run with "Topology mismatch")
            meta = ocp.StandardCheckpointer().metadata(mgr.directory / str(step) / "default")
            one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree_util.tree_map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta.item_metadata.tree
            )
        restored = mgr.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        return None, " ".join(str(e).split())[:200] or type(e).__name__
    if not all_finite(restored):
        return None, "it holds non-finite values"
    return restored, None


def _steps_text(mgr: ocp.CheckpointManager) -> str:
    steps = sorted(mgr.all_steps())
    return ", ".join(map(str, steps)) if steps else "none"


def restore(mgr: ocp.CheckpointManager, target, step: int | None = None, fallback: bool = True):
    """The checkpoint at `step` restored into the structure and types of `target` (None: nested dicts).

    step None: the latest usable one. A checkpoint that fails to restore or holds non-finite values is
    skipped with a warning (fallback, only for step None) and moved to checkpoints.damaged/ so the run can
    save that step again. InputError when `step` does not exist (naming the ones that do) or none is usable.
    """
    if step is not None:
        step = int(step)
        if step not in mgr.all_steps():
            raise InputError(
                f"{mgr.directory}: no checkpoint at step {step}; the steps there are {_steps_text(mgr)}"
            )
        restored, why = _try_restore(mgr, step, target)
        if why is not None:
            raise InputError(f"{mgr.directory}/{step}: checkpoint cannot be used ({why})")
        return restored
    steps = sorted(mgr.all_steps(), reverse=True)
    if not steps:
        raise MissingInput(f"{mgr.directory} holds no checkpoint; train first (python -m experiments.run)")
    tried = []
    for s in steps:
        restored, why = _try_restore(mgr, s, target)
        if why is None:
            for bad in tried:
                moved = _move_aside(mgr, bad)
                tqdm.write(f"warning: checkpoint {bad} was unusable; moved it to {moved}")
            return restored
        tqdm.write(
            f"warning: checkpoint {s} in {mgr.directory} cannot be used ({why}); trying the one before"
        )
        tried.append(s)
        if not fallback:
            break
    raise InputError(
        f"{mgr.directory}: no usable checkpoint (steps {', '.join(map(str, tried))} are damaged or "
        f"non-finite); move the folder away to start over"
    )


def restore_latest(mgr: ocp.CheckpointManager, state):
    """The latest usable checkpoint restored into `state`'s structure (see `restore`), or `state` itself
    when there is none."""
    if mgr.latest_step() is None:
        return state
    state = restore(mgr, state)
    tqdm.write(f"resumed from step {int(np.max(np.asarray(state.step)))} ({mgr.directory})")
    return state


def write_train_cameras(
    workdir: str, cams, times, num_frames: int, canonical_frame: int | None = None
) -> str:
    """Save the training cameras next to the checkpoints (what the exporter and viewer draw as frusta), and
    the canonical frame the run resolved (motion.canonical_frame = -1 depends on the data: its tracks, the
    camera refinement), which the exporter cannot re-derive from config.json alone."""
    path = os.path.join(workdir, TRAIN_CAMERAS)
    extra = {} if canonical_frame is None else {"canonical_frame": int(canonical_frame)}
    with files.atomic_write(path, "wb") as f:
        np.savez(
            f,
            viewmat=np.asarray(cams.viewmat, np.float32),
            K=np.asarray(cams.K, np.float32),
            width=int(cams.width),
            height=int(cams.height),
            times=np.asarray(times, np.float32),
            num_frames=int(num_frames),
            **extra,
        )
    return path


def read_train_cameras(workdir: str) -> dict:
    """train_cameras.npz as numpy arrays, checked (InputError naming the file when damaged)."""
    path = os.path.join(workdir, TRAIN_CAMERAS)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: training cameras cannot be read ({' '.join(str(e).split())})") from None
    need = {"viewmat": 3, "K": 3, "width": 0, "height": 0, "times": 1, "num_frames": 0}
    for k, nd in need.items():
        if k not in d or d[k].ndim != nd or not np.all(np.isfinite(d[k])):
            raise InputError(
                f"{path}: training cameras lack a finite {nd}-d array {k!r}; train the run again"
            )
    n = d["viewmat"].shape[0]
    if d["viewmat"].shape[1:] != (4, 4) or d["K"].shape != (n, 3, 3) or d["times"].shape != (n,):
        raise InputError(f"{path}: training camera arrays have inconsistent shapes; train the run again")
    if min(int(d["width"]), int(d["height"]), int(d["num_frames"])) < 1:
        raise InputError(f"{path}: training cameras have a non-positive width, height or frame count")
    return d


def scene_from_workdir(workdir: str, step: int | None = None) -> a4d.Scene:
    """The scene of a training run's workdir (config.json, train_cameras.npz, a checkpoint) as an a4d.Scene.

    step: the checkpoint to export (default the latest). The basis mask comes from the checkpoint itself.
    """
    paths = {k: os.path.join(workdir, k) for k in (CONFIG, TRAIN_CAMERAS, CHECKPOINTS)}
    for path in paths.values():
        if not os.path.exists(path):
            raise MissingInput(
                f"{path} is missing: export needs a workdir written by experiments.run (train it first; "
                f"runs from before the .a4d exporter lack train_cameras.npz: train them again)"
            )
    config = read_config(workdir)
    cam = read_train_cameras(workdir)
    mc = motion.motion_config(config, int(cam["num_frames"]))
    if "canonical_frame" in cam:  # the one training resolved (older runs: config.json's)
        mc = dataclasses.replace(mc, canonical_frame=int(cam["canonical_frame"]))
    mgr = checkpoint_manager(workdir, create=False)
    # Without a target orbax gives nested dicts; only params and active are read (not the optimizer state).
    ckpt = restore(mgr, None, step)
    try:
        params = ModelParams.from_tree(ckpt["params"])
        active = ckpt["active"]
    except (KeyError, TypeError) as e:
        raise InputError(
            f"{mgr.directory}: the checkpoint lacks {e}; it was not written by this version"
        ) from None
    used = int(np.max(np.asarray(ckpt["step"])))
    cams = cameras.make_camera(cam["viewmat"], cam["K"], int(cam["width"]), int(cam["height"]))
    fps = config.eval.fps if "eval" in config and "fps" in config.eval else 12
    scene = a4d.scene_from_params(params, active, mc, config.render.background, cams, cam["times"], fps)
    scene.meta["source"] = source_of(workdir, used)
    return scene


def source_of(workdir: str, step: int) -> dict:
    """What a derived file was made from: the checkpoint step and the sha256 of the run's config.json."""
    return {"step": int(step), "config_sha256": files.sha256_file(os.path.join(workdir, CONFIG))}


class MetricsWriter:
    """Appends one JSON object per log step to a .jsonl file: {"step": n, name: value, ...}.

    A resumed run first drops the lines past its restored step, so the file reads as one run.
    """

    def __init__(self, path: str, start: int = 0):
        self.path = path
        if os.path.exists(path):
            keep = [r for r in read_metrics(path) if r.get("step", 0) <= start]
            files.write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def write(self, step: int, values: dict) -> None:
        """Append one strict-JSON line (non-finite values become null); a torn line is skipped on read."""
        line = json.dumps(files.finite_json({"step": int(step), **values}), allow_nan=False)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def read_metrics(path: str) -> list[dict]:
    """The rows of a train_metrics.jsonl (a torn last line, from a crash mid-write, is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
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
        return np.array([np.mean(np.asarray(r.get(key), np.float64)) for r in rows], np.float64)

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
    with files.atomic_path(png_path) as tmp:
        fig.savefig(tmp)
    return png_path
