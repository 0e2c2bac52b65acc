"""Ablations over motion-basis sizes: every variant trained at once by `jax.vmap` of the one train step.

All variants share one maximal motion-basis allocation (the largest generator-channel and learnable-basis
counts asked for) and differ only in the active-basis mask stored in their parameters
(`MotionParams.mask`), so they have the same shapes and one compiled program trains them all. They share the
data (every training frame); each has its own parameters, optimiser state and RNG, stacked on a leading
variant axis V. The loop is train/loop.py's, with the step and density round vmapped, so variant i ends
where a
separate `train` run with the same mask and seed ends (tests/train/test_ablation.py checks this).
The job around it (scores, table, plot) is jobs/ablate.py.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections

from any4d_jax.data.frames import Frames
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import motion
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib
from any4d_jax.train.loop import LoopFns, LoopResult, Schedule, growing, run_loop


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ablation variant: the active generator channels C, learnable bases B_l, and the seed."""

    generator_channels: int
    learnable_bases: int
    seed: int

    @property
    def num_bases(self) -> int:
        """Active bases B = 6 C + B_l."""
        return 6 * self.generator_channels + self.learnable_bases


def parse_counts(text, name: str) -> tuple[int, ...]:
    """Counts from "0,1,2" (or an int, or a sequence): sorted, unique, each >= 0."""
    if isinstance(text, int):
        items = [text]
    elif isinstance(text, str):
        items = [s.strip() for s in text.split(",") if s.strip()]
    else:
        items = list(text)
    try:
        counts = sorted({int(x) for x in items})
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers like '0,4,8', got {text!r}") from None
    if not counts or counts[0] < 0:
        raise ValueError(f"{name} must list at least one count >= 0, got {text!r}")
    return tuple(counts)


def variants(config: ml_collections.ConfigDict) -> list[Variant]:
    """Every (generator channels, learnable bases, seed) combination, channel-major, seed-minor."""
    a = config.ablation
    gcs = parse_counts(a.generator_channels, "ablation.generator_channels")
    lbs = parse_counts(a.learnable_bases, "ablation.learnable_bases")
    if a.num_seeds < 1:
        raise ValueError(f"ablation.num_seeds must be >= 1, got {a.num_seeds}")
    seeds = [config.seed + i for i in range(a.num_seeds)]
    return [Variant(g, b, s) for g in gcs for b in lbs for s in seeds]


def allocation_config(config: ml_collections.ConfigDict, vs: list[Variant]) -> ml_collections.ConfigDict:
    """The config every variant trains under: the maximal allocation, the hybrid preset (all bases
    allocated; the masks switch them off) and the step schedule scaled by ablation.step_scale."""
    scale = config.ablation.step_scale
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"ablation.step_scale must be in (0, 1], got {scale}")
    c = ml_collections.ConfigDict(config.to_dict())
    c.motion.preset = "hybrid"
    c.motion.num_generator_channels = max(v.generator_channels for v in vs)
    c.motion.num_learnable_bases = max(v.learnable_bases for v in vs)
    t = c.train
    for key in ("num_steps", "time_ramp_steps", "densify_from", "densify_until", "densify_every"):
        t[key] = max(1, round(t[key] * scale)) if t[key] > 0 else t[key]
    t.checkpoint_every = min(t.checkpoint_every, t.num_steps)
    return c


def stack(trees: list):
    """List of V pytrees of the same structure -> one pytree with a leading axis V on every leaf."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def select(tree, i: int):
    """Variant i of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def init_states(config, setup: state_lib.Setup, frames: Frames, optimizer, vs: list[Variant]):
    """Stacked initial TrainState (leading axis V): `init_state` under each variant's seed, with the
    variant's basis mask in its parameters."""
    by_seed = {}
    for v in vs:
        if v.seed not in by_seed:
            c = ml_collections.ConfigDict(config.to_dict())
            c.seed = v.seed
            by_seed[v.seed] = state_lib.init_state(c, setup, frames, optimizer)
    states = []
    for v in vs:
        s = by_seed[v.seed]
        mask = motion.basis_mask(setup.model.motion, v.generator_channels, v.learnable_bases)
        states.append(s.replace(params=s.params.replace(motion=s.params.motion.replace(mask=mask))))
    return stack(states)


def make_functions(setup: state_lib.Setup, optimizer, vmapped: bool = True, jit=jax.jit) -> LoopFns:
    """The loop's (step, densify), jitted; vmapped over a leading variant axis when `vmapped`.

    step(state, data) -> (state, metrics): data (every training frame) is shared, states are per variant.
    A render of any variant that overflows the pair budget undoes the step of all variants (the guard sits
    outside the vmap), so the loop's redo with a grown budget keeps every variant on the same step.
    """

    def build(s: state_lib.Setup):
        step = step_lib.keep_finite(step_lib.make_train_step(s, optimizer, guard=False))
        dens = functools.partial(step_lib.densify_round, setup=s)
        if vmapped:
            step = jax.vmap(step, in_axes=(0, None))
            dens = jax.vmap(dens, in_axes=(0, None))
        if s.model.render.grow_pairs:
            step = step_lib.within_budget(step)
        return jit(step, donate_argnums=(0,)), jit(dens, donate_argnums=(0,))

    return growing(build, setup)


def train_variants(
    config, train_frames: Frames, vs: list[Variant], workdir: str | None = None, progress=True
) -> tuple[object, state_lib.Setup, LoopResult]:
    """Train every variant in one vmapped loop. config: the allocation config (`allocation_config`).

    Returns (stacked state, setup, LoopResult with the first non-finite step per variant). With a workdir,
    the stacked state is checkpointed on train.checkpoint_every (orbax), a run resumes from the latest, and
    per-variant training metrics go to train_metrics.jsonl.
    """
    setup = state_lib.make_setup(config, train_frames)
    extent = state_lib.scene_extent(train_frames.cameras)
    optimizer = state_lib.make_optimizer(config, extent)
    state = init_states(config, setup, train_frames, optimizer, vs)
    mgr = writer = None
    if workdir is not None:
        mgr = workdir_lib.checkpoint_manager(workdir, config.train.keep_checkpoints)
        if config.resume:
            state = workdir_lib.restore_latest(mgr, state)
        writer = workdir_lib.MetricsWriter(
            f"{workdir}/{workdir_lib.TRAIN_METRICS}", start=int(jnp.max(state.step))
        )
    fns = make_functions(setup, optimizer, vmapped=True)
    state, result = run_loop(
        state,
        state_lib.frames_to_data(train_frames),
        fns,
        Schedule.from_config(config.train),
        extent,
        checkpoints=mgr,
        writer=writer,
        strict=False,
        progress=progress,
        desc=f"ablate x{len(vs)}",
    )
    return state, state_lib.with_max_pairs(setup, result.max_pairs), result
