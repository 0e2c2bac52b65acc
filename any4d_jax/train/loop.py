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
from any4d_jax.render.bin import bucket_pairs
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
    """The jitted functions the loop calls: step(state, data) -> (state, metrics); densify(state, extent).

    grow: None, or grow(needed_pairs) -> LoopFns whose step renders with a larger pair budget. With it the
    step must be guarded (`step.within_budget`): an overflowing step changes nothing, and the loop grows the
    budget and redoes it. max_pairs: the budget of `step` when it was grown (None: the setup's own).
    """

    step: Callable
    densify: Callable
    grow: Callable | None = None
    max_pairs: int | None = None


class LoopResult(NamedTuple):
    last: dict  # the metrics of the last log step, as numpy (per variant for vmapped steps)
    first_bad: np.ndarray  # () or (V,) first check (log step) that found a variant diverged, -1 where none
    no_room: np.ndarray  # () or (V,) density-control requests that found no free slot (capacity full)
    dropped_pairs: np.ndarray  # () or (V,) tile-Gaussian pairs dropped over the whole run (0 when growing)
    max_pairs: int | None  # the pair budget the step ended with, when the loop grew it (else None)


def growing(build: Callable, setup: state_lib.Setup) -> LoopFns:
    """LoopFns from build(setup) -> (step, densify), able to grow the pair budget when the setup's render
    does (RenderConfig.grow_pairs): grow(needed) rebuilds the step for `bin.bucket_pairs(needed)` pairs and
    keeps the density round (which does not render, so it is not recompiled)."""
    step, dens = build(setup)
    if not setup.model.render.grow_pairs:
        return LoopFns(step, dens)

    def grow(needed: int) -> LoopFns:
        bigger = state_lib.with_max_pairs(setup, bucket_pairs(needed))
        return growing(build, bigger)._replace(densify=dens)

    return LoopFns(step, dens, grow, setup.model.render.max_pairs)


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


_finite = jax.jit(step_lib.all_finite)
_finite_stacked = jax.jit(jax.vmap(step_lib.all_finite))


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

    Pair budget: with `fns.grow`, every step's over_budget is read (one scalar per step) and a step that
    overflowed (and was undone by its guard) is redone after `fns.grow` recompiles it with a larger budget,
    said in one line. Without it, dropped pairs are summed over the run and reported (bar, log, result).
    Returns (state, LoopResult).
    """
    steps = np.asarray(state.step)
    start = int(np.max(steps))
    first_bad = np.full(steps.shape, -1)
    no_room = np.zeros(steps.shape, np.int64)
    finite = _finite_stacked if steps.ndim else _finite
    last: dict = {}
    where = "" if checkpoints is None else str(checkpoints.directory)
    bar = tqdm(
        desc=desc,
        initial=start,
        total=schedule.num_steps,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    t_log, n_log = time.perf_counter(), start
    bad_seen = None  # device-side: variants whose update was undone since the start (not strict)
    dropped = jnp.zeros(steps.shape, jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)  # device-side
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

    n = start
    with _Signals() if signals else contextlib.nullcontext() as sig:
        while n < schedule.stop:
            state, m = fns.step(state, data)
            if fns.grow is not None and np.any(np.asarray(m["over_budget"]) > 0):
                wanted, had = int(np.max(m["num_pairs"])), int(np.max(m["max_pairs"]))
                fns = fns.grow(wanted)
                tqdm.write(
                    f"render: step {n + 1} wants {wanted} tile-Gaussian pairs, more than its budget of "
                    f"{had}; the budget grows to {fns.max_pairs} (one recompile) and the step is redone"
                )
                continue
            n += 1
            bar.update(1)
            dropped = dropped + m["dropped_pairs"]
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
                last["dropped_pairs_total"] = np.asarray(dropped)
                t_log, n_log = now, n
                if writer is not None:
                    writer.write(n, {k: _json_value(v) for k, v in last.items()})
                post = dict(
                    loss=f"{np.nanmean(last['loss']):.4f}",
                    psnr=f"{np.nanmean(last['psnr']):.2f}",
                    n=str(int(np.mean(last["gaussians"]))),
                    dropped=int(np.sum(last["dropped_pairs_total"])),
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
    dropped = np.asarray(dropped)
    if np.any(dropped):
        tqdm.write(
            f"warning: {int(np.sum(dropped))} tile-Gaussian pairs were dropped over the run "
            "(render.max_pairs is a hard budget with render.grow_pairs=False, or render.tile_capacity caps)"
        )
    return state, LoopResult(last, first_bad, no_room, dropped, fns.max_pairs)


def single_device_fns(setup: state_lib.Setup, optimizer, batch_size: int = 1, jit=jax.jit) -> LoopFns:
    """The step (frames drawn by the curriculum, then the step on them) and density round on one device,
    with pair-budget growth when the setup's render grows.

    With jax.jit the functions are cached on (setup, optimizer, batch size, and the step builders
    themselves, so a test that patches them gets its own): a second run with the same settings in one
    process (a notebook, a sweep, a test module) reuses the compiled step instead of compiling it again."""
    if jit is jax.jit:
        return _cached_fns(setup, optimizer, batch_size, step_lib.make_train_step, step_lib.densify_round)
    return _build_fns(setup, optimizer, batch_size, jit, step_lib.make_train_step, step_lib.densify_round)


def _build_fns(setup, optimizer, batch_size, jit, make_train_step, densify_round) -> LoopFns:
    def build(s: state_lib.Setup):
        step = make_train_step(s, optimizer, batch_size)
        dens = functools.partial(densify_round, setup=s)
        return jit(step, donate_argnums=(0,)), jit(dens, donate_argnums=(0,))

    return growing(build, setup)


@functools.lru_cache(maxsize=8)
def _cached_fns(setup, optimizer, batch_size, make_train_step, densify_round) -> LoopFns:
    return _build_fns(setup, optimizer, batch_size, jax.jit, make_train_step, densify_round)


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
    setup = state_lib.make_setup(config, frames)
    t0 = setup.model.motion.canonical_frame
    workdir_lib.write_train_cameras(workdir, frames.cameras, frames.times, frames.num_times, t0)
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
        state, data = parallel.replicate(state, mesh), parallel.replicate(data, mesh)
        fns = growing(lambda s: parallel.sharded_fns(s, optimizer, mesh, devices * per), setup)
        desc = f"train x{devices} devices"
    else:
        fns = single_device_fns(setup, optimizer, per)
    lead = jax.process_index() == 0  # multi-host: one process writes the shared workdir's log and curves
    metrics_path = os.path.join(workdir, workdir_lib.TRAIN_METRICS)
    writer = workdir_lib.MetricsWriter(metrics_path, start=int(state.step)) if lead else None
    schedule = Schedule.from_config(config.train)
    state, result = run_loop(
        state,
        data,
        fns,
        schedule,
        extent,
        checkpoints=mgr,
        writer=writer,
        progress=progress and lead,
        desc=desc,
    )
    if lead:
        workdir_lib.plot_curves(metrics_path, os.path.join(workdir, workdir_lib.TRAIN_CURVES))
    setup = state_lib.with_max_pairs(setup, result.max_pairs)  # evaluation renders with the grown budget
    return (parallel.local_copy(state) if devices > 1 else state), setup


def stopped_early(config: ml_collections.ConfigDict, state) -> dict | None:
    """{"stopped_at": step} when train.stop_after ended the run before train.num_steps, else None."""
    if config.train.stop_after >= 0 and int(state.step) < config.train.num_steps:
        return {"stopped_at": int(state.step)}
    return None
