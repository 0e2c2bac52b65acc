"""The training loop: one loop for the single-device, the data-parallel and the vmapped-ablation step.

The loop owns everything that happens between steps, outside jit, on intervals (as dycheck's `Tasks` and
flax's imagenet loop): progress and metrics logging (tqdm and `<workdir>/train_metrics.jsonl`), the non-finite
guard, density control, checkpoints and `stop_after`. It does not know what a step is: `fns.step(state, data)
-> (state, metrics)` and `fns.densify(state, extent) -> state` arrive jitted (and vmapped over ablation
variants, or sharded over a mesh) from `train` below or from the ablation job.

    train(config, frames, workdir)   the whole run: check the workdir, build, restore, loop, plot
    run_loop(state, data, fns, ...)  the loop itself (what `train` and the ablation share)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from any4d_jax.data.frames import Frames
from any4d_jax.errors import Interrupted
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.train import parallel
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When periodic work happens (all counts in steps; step n is the state after n updates)."""

    num_steps: int
    log_every: int
    checkpoint_every: int
    stop_after: int = -1  # stop after this step (simulates preemption; -1 = never)
    densify_from: int = 0
    densify_until: int = -1
    densify_every: int = 1

    @classmethod
    def from_config(cls, tc: ml_collections.ConfigDict) -> Schedule:
        """From config.train."""
        return cls(
            num_steps=int(tc.num_steps),
            log_every=max(1, int(tc.log_every)),
            checkpoint_every=max(1, int(tc.checkpoint_every)),
            stop_after=int(tc.stop_after),
            densify_from=int(tc.densify_from),
            densify_until=int(tc.densify_until),
            densify_every=max(1, int(tc.densify_every)),
        )

    @property
    def stop(self) -> int:
        """The last step this run takes."""
        return self.num_steps if self.stop_after < 0 else min(self.num_steps, self.stop_after)

    def log_due(self, n: int) -> bool:
        return n % self.log_every == 0 or n == self.stop

    def densify_due(self, n: int) -> bool:
        return self.densify_from <= n <= self.densify_until and n % self.densify_every == 0

    def checkpoint_due(self, n: int) -> bool:
        """On the grid, at the end, and where stop_after ends the run (so the reported step is saved)."""
        return n % self.checkpoint_every == 0 or n == self.num_steps or n == self.stop


class LoopFns(NamedTuple):
    """The jitted functions the loop calls: step(state, data) -> (state, metrics); densify(state, extent)."""

    step: Callable
    densify: Callable


class LoopResult(NamedTuple):
    last: dict  # the metrics of the last log step, as numpy (per variant for vmapped steps)
    first_bad: np.ndarray  # () or (V,) first check (log step) that found a variant diverged, -1 where none
    no_room: np.ndarray  # () or (V,) density-control requests that found no free slot (capacity full)


def _host(m: dict) -> dict:
    return {k: np.asarray(v) for k, v in jax.device_get(m).items()}


def _json_value(x: np.ndarray):
    x = np.asarray(x)
    if x.ndim == 0:
        if x.dtype == bool:
            return bool(x)
        return int(x) if np.issubdtype(x.dtype, np.integer) else float(x)
    return x.tolist()


class _Signals:
    """SIGINT/SIGTERM set a flag the loop reads after each step (it then checkpoints and stops); a second
    signal interrupts at once. Installed only in the main thread (signal handlers cannot be set elsewhere)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # the second one: stop now, as without the handler
            raise KeyboardInterrupt
        self.received = signum
        tqdm.write(f"{signal.Signals(signum).name} received: finishing this step and writing a checkpoint")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _diverged(n: int, what: str, mgr: ocp.CheckpointManager | None) -> FloatingPointError:
    """The one-line error of a diverged run, naming the step and the last finite checkpoint."""
    if mgr is None:
        kept = "no checkpoint is kept (no workdir)"
    else:
        mgr.wait_until_finished()
        last = mgr.latest_step()
        kept = (
            f"the last finite checkpoint is step {last} in {mgr.directory}, which a rerun resumes from"
            if last is not None
            else f"no checkpoint was written yet in {mgr.directory}"
        )
    return FloatingPointError(
        f"training diverged: non-finite {what} at step {n}; stopped before saving it. {kept}; "
        f"lower the learning rates (in a new --workdir) or check the data"
    )


def run_loop(
    state,
    data: dict,
    fns: LoopFns,
    schedule: Schedule,
    extent: float,
    *,
    checkpoints: ocp.CheckpointManager | None = None,
    writer: workdir_lib.MetricsWriter | None = None,
    strict: bool = True,
    progress: bool = True,
    desc: str = "train",
    signals: bool = True,
) -> tuple[object, LoopResult]:
    """Steps state.step .. schedule.stop: log, guard, densify and checkpoint on the schedule.

    state: a TrainState, or a stack of them (leading variant axis V) when `fns` are vmapped; every variant is
    at the same step.

    Finite state only: at every log and checkpoint step every float of the state (parameters, optimizer
    moments, statistics) and the loss are checked. strict: a non-finite one raises FloatingPointError naming
    the step and the last (finite) checkpoint, and nothing is saved. Not strict (ablation variants, whose
    step undoes a non-finite update per variant, `step.keep_finite`): the first check that finds a variant
    diverged is recorded in `first_bad` and the others go on.

    signals: SIGINT/SIGTERM finish the current step, write a checkpoint of it and raise `Interrupted` (rerun
    to resume). Density-control overflow (`no_room`) is counted, shown on the bar and logged.
    Returns (state, LoopResult).
    """
    steps = np.asarray(state.step)
    start = int(np.max(steps))
    first_bad = np.full(steps.shape, -1)
    no_room = np.zeros(steps.shape, np.int64)
    finite = jax.jit(jax.vmap(step_lib.all_finite) if steps.ndim else step_lib.all_finite)
    last: dict = {}
    where = "" if checkpoints is None else str(checkpoints.directory)
    bar = tqdm(
        range(start, schedule.stop),
        desc=desc,
        initial=start,
        total=schedule.num_steps,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    t_log, n_log = time.perf_counter(), start
    bad_seen = None  # device-side: variants whose update was undone since the start (not strict)
    saved = -1

    def check(n: int, loss) -> None:
        nonlocal first_bad
        ok = np.asarray(finite(state)) & np.isfinite(np.asarray(loss))
        if bad_seen is not None:
            ok = ok & ~np.asarray(bad_seen)
        if strict and not np.all(ok):
            bar.close()
            what = "loss" if np.all(np.asarray(finite(state))) else "parameters or optimizer state"
            raise _diverged(n, what, checkpoints)
        first_bad = np.where((first_bad < 0) & ~ok, n, first_bad)

    def save(n: int) -> None:
        nonlocal saved
        if checkpoints is not None and saved != n:
            checkpoints.save(n, args=ocp.args.StandardSave(state), force=True)
            saved = n

    with _Signals() if signals else contextlib.nullcontext() as sig:
        for s in bar:
            state, m = fns.step(state, data)
            n = s + 1
            if "finite" in m:
                bad_seen = ~m["finite"] if bad_seen is None else bad_seen | ~m["finite"]
            log, ckpt = schedule.log_due(n), checkpoints is not None and schedule.checkpoint_due(n)
            stop = sig is not None and sig.received is not None
            if log or ckpt or stop:
                check(n, m["loss"])
            if log:
                last = _host(m)
                now = time.perf_counter()
                last["step_time_s"] = np.float64((now - t_log) / max(1, n - n_log))  # includes compile
                last["gaussians"] = np.asarray(jnp.sum(state.active, axis=-1))
                last["no_room"] = no_room.copy()
                t_log, n_log = now, n
                if writer is not None:
                    writer.write(n, {k: _json_value(v) for k, v in last.items()})
                post = dict(
                    loss=f"{np.nanmean(last['loss']):.4f}",
                    psnr=f"{np.nanmean(last['psnr']):.2f}",
                    n=str(int(np.mean(last["gaussians"]))),
                    dropped=int(np.sum(last["dropped_pairs"])),
                )
                if np.any(no_room):
                    post["no_room"] = str(int(np.sum(no_room)))  # a str: tqdm writes big ints as 2e+4
                if np.any(first_bad >= 0):
                    post["diverged"] = str(int(np.sum(first_bad >= 0)))
                bar.set_postfix(**post, refresh=False)
            if schedule.densify_due(n):
                state, full = fns.densify(state, extent)
                full = np.asarray(full)
                if np.any(full) and not np.any(no_room):
                    tqdm.write(
                        f"warning: density control found no free slot for {int(np.sum(full))} Gaussians at "
                        f"step {n}: the capacity ({state.active.shape[-1]}) is full; raise model.capacity"
                    )
                no_room = no_room + full
            if ckpt:
                save(n)
            if stop:
                save(n)
                if checkpoints is not None:
                    checkpoints.wait_until_finished()
                bar.close()
                name = signal.Signals(sig.received).name
                kept = (
                    f"checkpoint {n} written to {where}; rerun the same command to resume"
                    if checkpoints is not None
                    else "nothing saved (no workdir)"
                )
                raise Interrupted(f"stopped by {name} at step {n}: {kept}", sig.received)
    bar.close()
    if checkpoints is not None:
        checkpoints.wait_until_finished()
    return state, LoopResult(last, first_bad, no_room)


def single_device_fns(setup: state_lib.Setup, optimizer, batch_size: int = 1, jit=jax.jit) -> LoopFns:
    """The step (frames drawn by the curriculum, then the step on them) and density round on one device."""
    step = step_lib.make_train_step(setup, optimizer, batch_size)
    dens = functools.partial(step_lib.densify_round, setup=setup)
    return LoopFns(jit(step, donate_argnums=(0,)), jit(dens, donate_argnums=(0,)))


def train(
    config: ml_collections.ConfigDict, frames: Frames, workdir: str, extra_points=None, progress: bool = True
) -> tuple[state_lib.TrainState, state_lib.Setup]:
    """Fit Gaussians + motion to `frames`; checkpoints in workdir/checkpoints. Returns (state, setup).

    Refuses a workdir that holds another experiment before writing anything into it, then saves the training
    cameras (the exporter's input), restores the latest checkpoint (config.resume) and runs the loop on one
    device or, with parallel.devices > 1, over a device mesh (the state comes back on one device).
    extra_points: optional (points (M, 3), colours (M, 3)) of static scene points added to the initialisation.
    """
    workdir_lib.check_workdir(config, workdir)
    workdir_lib.write_train_cameras(workdir, frames.cameras, frames.times, frames.num_times)
    setup = state_lib.make_setup(config, frames)
    extent = state_lib.scene_extent(frames.cameras)
    optimizer = state_lib.make_optimizer(config, extent)
    state = state_lib.init_state(config, setup, frames, optimizer, extra_points)
    mgr = workdir_lib.checkpoint_manager(workdir, config.train.keep_checkpoints)
    if config.resume:
        state = workdir_lib.restore_latest(mgr, state)
    data = state_lib.frames_to_data(frames)
    devices, per = parallel.settings(config)
    desc = "train"
    if devices > 1:
        mesh = parallel.make_mesh(devices)
        replicated, _ = parallel.shardings(mesh)
        state, data = jax.device_put(state, replicated), jax.device_put(data, replicated)
        fns = LoopFns(*parallel.sharded_fns(setup, optimizer, mesh, devices * per))
        desc = f"train x{devices} devices"
    else:
        fns = single_device_fns(setup, optimizer, per)
    writer = workdir_lib.MetricsWriter(
        os.path.join(workdir, workdir_lib.TRAIN_METRICS), start=int(state.step)
    )
    schedule = Schedule.from_config(config.train)
    state, _ = run_loop(
        state, data, fns, schedule, extent, checkpoints=mgr, writer=writer, progress=progress, desc=desc
    )
    workdir_lib.plot_curves(writer.path, os.path.join(workdir, workdir_lib.TRAIN_CURVES))
    return (parallel.local_copy(state) if devices > 1 else state), setup


def stopped_early(config: ml_collections.ConfigDict, state) -> dict | None:
    """{"stopped_at": step} when train.stop_after ended the run before train.num_steps, else None."""
    if config.train.stop_after >= 0 and int(state.step) < config.train.num_steps:
        return {"stopped_at": int(state.step)}
    return None
