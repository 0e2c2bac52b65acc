"""Training: TrainState, the pure jitted train step, and the loop around it.

The step is one pure function `(state, data) -> (state, metrics)` built once per run (`make_train_step`) and
jitted with the state donated. Everything with side effects happens outside it, on intervals: adaptive density
control (densify.py), checkpoints (orbax), progress (tqdm) and the non-finite-loss guard.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import struct
from tqdm import tqdm

from any4d_jax import gaussians as gs
from any4d_jax import losses, metrics, motion
from any4d_jax.cameras import Camera
from any4d_jax.data.frames import Frames
from any4d_jax.densify import DensifyConfig, densify
from any4d_jax.render import RenderConfig, render

PRESETS = {
    # name: (uses generator bases, uses learnable bases). Every preset keeps the full allocation
    # (motion.num_generator_channels, motion.num_learnable_bases) and switches bases off with the active-basis
    # mask, so the baselines share all code, shapes and checkpoints with the hybrid model.
    "static": (False, False),
    "learnable_only": (False, True),
    "generators_only": (True, False),
    "hybrid": (True, True),
}


@struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    params:     dict of trainable arrays: means (N, 3), quats (N, 4), log_scales (N, 3), opacity_logits (N,),
                sh (N, K, 3), motion (MotionParams).
    opt_state:  optax state of `params`.
    active:     (N,) bool slots in use.
    grad_accum: (N,) accumulated screen-space gradient norms (density control), vis_count (N,) their counts.
    neighbours: (N, k) int32 nearest neighbours for the rigidity loss (refreshed at each densification).
    step:       () int32; rng: PRNG key.
    """

    params: dict
    opt_state: Any
    active: jnp.ndarray
    grad_accum: jnp.ndarray
    vis_count: jnp.ndarray
    neighbours: jnp.ndarray
    step: jnp.ndarray
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static settings derived from the config (hashable; closed over by the jitted step)."""

    motion: motion.MotionConfig
    render: RenderConfig
    densify: DensifyConfig
    width: int
    height: int
    background: tuple
    ssim_lambda: float
    depth_weight: float
    foreground_weight: float
    accel_weight: float
    rigidity_weight: float
    sparsity_weight: float
    time_ramp_steps: int
    active_generator_channels: int
    active_learnable_bases: int

    def basis_mask(self) -> jnp.ndarray:
        """(B,) active-basis mask of the configured preset."""
        return motion.basis_mask(self.motion, self.active_generator_channels, self.active_learnable_bases)


def canonical_frame(config: ml_collections.ConfigDict, num_frames: int) -> int:
    """config.motion.canonical_frame, where -1 means the middle frame (num_frames // 2)."""
    t0 = int(config.motion.canonical_frame)
    return num_frames // 2 if t0 == -1 else t0


def motion_config(config: ml_collections.ConfigDict, num_frames: int) -> motion.MotionConfig:
    m = config.motion
    if m.preset not in PRESETS:
        raise ValueError(f"motion.preset must be one of {sorted(PRESETS)}, got {m.preset!r}")
    return motion.MotionConfig(
        num_frames=num_frames,
        num_generator_channels=m.num_generator_channels,
        num_learnable_bases=m.num_learnable_bases,
        time_basis=m.time_basis,
        num_time_coeffs=m.num_time_coeffs,
        canonical_frame=canonical_frame(config, num_frames),
    )


def make_setup(config: ml_collections.ConfigDict, frames: Frames) -> Setup:
    t = config.train
    return Setup(
        motion=motion_config(config, int(jnp.max(frames.times)) + 1),
        render=RenderConfig(
            tile_capacity=config.render.tile_capacity, max_pairs=config.render.max_pairs, validate=False
        ),
        densify=DensifyConfig(grad_threshold=t.densify_grad_threshold, min_opacity=t.prune_opacity),
        width=frames.cameras.width,
        height=frames.cameras.height,
        background=tuple(float(x) for x in config.render.background),
        ssim_lambda=t.ssim_lambda,
        depth_weight=t.depth_weight,
        foreground_weight=t.foreground_weight,
        accel_weight=t.accel_weight,
        rigidity_weight=t.rigidity_weight,
        sparsity_weight=t.sparsity_weight,
        time_ramp_steps=t.time_ramp_steps,
        active_generator_channels=config.motion.num_generator_channels * PRESETS[config.motion.preset][0],
        active_learnable_bases=config.motion.num_learnable_bases * PRESETS[config.motion.preset][1],
    )


def scene_extent(cams: Camera) -> float:
    """3DGS' scene scale: 1.1 x the largest distance of a camera centre from their mean."""
    c = np.asarray(cams.center)
    return float(1.1 * np.max(np.linalg.norm(c - c.mean(0), axis=-1)) + 1e-6) if len(c) > 1 else 1.0


def make_optimizer(config: ml_collections.ConfigDict, extent: float) -> optax.GradientTransformation:
    """Adam per parameter group; the means' learning rate decays exponentially (x0.01) over the run, the
    motion's by lr.motion_decay (1: constant)."""
    lr = config.train.lr
    steps = config.train.num_steps
    means = optax.exponential_decay(lr.means * extent, steps, 0.01)
    decay = lr.get("motion_decay", 1.0)
    sched = lambda v: v if decay == 1.0 else optax.exponential_decay(v, steps, decay)  # noqa: E731
    groups = {
        "means": optax.adam(means),
        "quats": optax.adam(lr.quats),
        "log_scales": optax.adam(lr.scales),
        "opacity_logits": optax.adam(lr.opacities),
        "sh": optax.adam(lr.colors),
        "motion_traj": optax.adam(sched(lr.motion_trajectories)),
        "motion_weights": optax.adam(sched(lr.motion_weights)),
        "frozen": optax.set_to_zero(),
    }

    def labels(params):
        out = {k: k for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
        out["motion"] = motion.MotionParams(
            generator="motion_traj",
            learnable="motion_traj",
            weights="motion_weights",
            generator_pivots="frozen",
            learnable_pivots="frozen",
        )
        return out

    return optax.multi_transform(groups, labels)


def splats_at(params: dict, active, setup: Setup, t, mask=None):
    """Renderer input for the Gaussians at time t (mask: active-basis mask, default the preset's)."""
    mask = setup.basis_mask() if mask is None else mask
    g = gs.Gaussians(
        means=params["means"],
        quats=params["quats"],
        log_scales=params["log_scales"],
        opacity_logits=params["opacity_logits"],
        sh=params["sh"],
        active=active,
    )
    return gs.at_time(g, params["motion"], setup.motion, t, mask)


def loss_fn(params, offset, state: TrainState, batch: dict, setup: Setup, mask):
    """Loss of one frame and its parts. offset: (N, 2) zeros whose gradient is the 2D position signal."""
    splats = splats_at(params, state.active, setup, batch["time"], mask)
    cam = Camera(viewmat=batch["viewmat"], K=batch["K"], width=setup.width, height=setup.height)
    out = render(splats, cam, jnp.asarray(setup.background), setup.render, means2d_offset=offset)
    parts = {"photometric": losses.photometric(out.rgb, batch["rgb"], setup.ssim_lambda)}
    if setup.depth_weight > 0:
        parts["depth"] = setup.depth_weight * losses.depth_loss(out.depth, batch["depth"])
    if setup.foreground_weight > 0:
        # Extra L1 on the moving pixels: they are a small part of the image but hold most of the error.
        parts["foreground"] = setup.foreground_weight * losses.masked_l1(out.rgb, batch["rgb"], batch["mask"])
    mp = params["motion"]
    if setup.accel_weight > 0:
        parts["acceleration"] = setup.accel_weight * motion.acceleration_loss(mp, setup.motion, mask)
    if setup.sparsity_weight > 0:
        parts["sparsity"] = setup.sparsity_weight * motion.sparsity_loss(mp, mask, state.active)
    if setup.rigidity_weight > 0:
        parts["rigidity"] = setup.rigidity_weight * motion.rigidity_loss(
            params["means"], splats.means, state.neighbours, state.active
        )
    total = sum(parts.values())
    aux = {
        "parts": parts,
        "psnr": metrics.psnr(out.rgb, batch["rgb"]),
        "radii": out.aux["radii"],
        "dropped_pairs": out.stats["dropped_pairs"],
    }
    return total, aux


def make_train_step(setup: Setup, optimizer: optax.GradientTransformation):
    """The pure step `(state, data, mask) -> (state, metrics)`; data holds every training frame."""

    def step(state: TrainState, data: dict, mask):
        rng, pick = jax.random.split(state.rng)
        num = data["rgb"].shape[0]
        # Curriculum: frames (in time order) are drawn from a window around the canonical frame that grows
        # to the whole clip over time_ramp_steps, so motion is learned outward from t0, not from scattered
        # frames at once.
        lo, hi = 0, num
        if setup.time_ramp_steps > 0:
            half = jnp.ceil(num * (state.step + 1) / setup.time_ramp_steps).astype(jnp.int32)
            t0 = setup.motion.canonical_frame
            lo, hi = jnp.maximum(0, t0 - half), jnp.minimum(num, t0 + half + 1)
        i = jax.random.randint(pick, (), lo, hi)
        batch = jax.tree_util.tree_map(lambda x: x[i], data)
        offset = jnp.zeros((state.active.shape[0], 2), jnp.float32)
        grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
        (loss, aux), (grads, g2d) = grad_fn(state.params, offset, state, batch, setup, mask)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Screen-space gradient in NDC units (as 3DGS thresholds it), accumulated where visible.
        visible = jnp.all(aux["radii"] > 0, axis=-1)
        g_ndc = jnp.linalg.norm(g2d * jnp.array([0.5 * setup.width, 0.5 * setup.height]), axis=-1)
        new = state.replace(
            params=params,
            opt_state=opt_state,
            grad_accum=state.grad_accum + jnp.where(visible, g_ndc, 0.0),
            vis_count=state.vis_count + visible,
            step=state.step + 1,
            rng=rng,
        )
        out = {
            "loss": loss,
            "psnr": aux["psnr"],
            "dropped_pairs": aux["dropped_pairs"],
            **{f"loss/{k}": v for k, v in aux["parts"].items()},
        }
        return new, out

    return step


def init_gaussians(config: ml_collections.ConfigDict, frames: Frames, extra_points=None):
    """Point cloud from the training depth maps: everything at the canonical frame, static parts elsewhere.

    Returns (Gaussians, dynamic (N,) bool): `dynamic` marks points from the foreground mask at the canonical
    frame (all canonical points when the data has no mask); only those get initial motion weights.
    """
    m = config.model
    times = np.asarray(frames.times)
    # The frame seen at (closest to) the canonical time: its whole depth map seeds the moving Gaussians.
    t0 = int(np.argmin(np.abs(times - canonical_frame(config, int(times.max()) + 1))))
    if frames.depth is None or not np.any(np.asarray(frames.depth) > 0):
        raise ValueError("model init from depth needs frames with depth; this data source gives none")
    depth = np.asarray(frames.depth)
    fg = np.asarray(frames.mask) > 0.5 if frames.mask is not None else np.ones(depth.shape, bool)
    canon = np.zeros(depth.shape, bool)
    canon[t0] = True
    static = ~fg if frames.mask is not None else np.zeros(depth.shape, bool)
    static[t0] = False
    p0, c0 = gs.points_from_depth(depth, frames.rgb, frames.cameras, stride=m.init_stride, mask=canon & ~fg)
    p1, c1 = gs.points_from_depth(
        depth, frames.rgb, frames.cameras, stride=m.init_stride_dynamic, mask=canon & fg
    )
    p2, c2 = gs.points_from_depth(depth, frames.rgb, frames.cameras, stride=m.init_stride_static, mask=static)
    pts, cols = np.concatenate([p0, p1, p2]), np.concatenate([c0, c1, c2])
    dyn = np.zeros(len(pts), bool)
    dyn[len(p0) : len(p0) + len(p1)] = True
    if extra_points is not None:  # e.g. DyCheck's points.npy: (M, 3) static points, (M, 3) colours
        pts = np.concatenate([pts, np.asarray(extra_points[0], np.float32)])
        cols = np.concatenate([cols, np.asarray(extra_points[1], np.float32)])
        dyn = np.concatenate([dyn, np.zeros(len(extra_points[0]), bool)])
    limit = int(m.init_fraction * m.capacity)
    if len(pts) > limit:
        keep = np.sort(np.random.default_rng(config.seed).choice(len(pts), limit, replace=False))
        pts, cols, dyn = pts[keep], cols[keep], dyn[keep]
    g = gs.from_points(pts, cols, m.capacity, sh_degree=m.sh_degree, init_opacity=m.init_opacity)
    return g, jnp.zeros((m.capacity,), bool).at[: len(pts)].set(jnp.asarray(dyn))


def init_state(config, setup: Setup, frames: Frames, optimizer, extra_points=None) -> TrainState:
    key = jax.random.PRNGKey(config.seed)
    k_means, k_run = jax.random.split(key)
    g, dynamic = init_gaussians(config, frames, extra_points)
    if not bool(jnp.any(dynamic)):
        dynamic = g.active
    # k-means over the dynamic points only: static points start (and, with sparsity, tend to stay) motionless.
    weights = motion.kmeans_weights(g.means, setup.motion, k_means, active=dynamic)
    gen = jnp.arange(setup.motion.num_bases) < setup.motion.num_generator_bases
    scale = jnp.where(gen, config.motion.init_generator_weight, config.motion.init_weight)
    weights = weights * scale * dynamic[:, None]
    params = {
        "means": g.means,
        "quats": g.quats,
        "log_scales": g.log_scales,
        "opacity_logits": g.opacity_logits,
        "sh": g.sh,
        "motion": motion.init_params(
            setup.motion, g.capacity, weights, motion.pivots_from_weights(g.means, weights, setup.motion)
        ),
    }
    n = g.capacity
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        active=g.active,
        grad_accum=jnp.zeros((n,), jnp.float32),
        vis_count=jnp.zeros((n,), jnp.float32),
        neighbours=rigidity_neighbours(params, g.active, config.train.rigidity_k, 1.0),
        step=jnp.zeros((), jnp.int32),
        rng=k_run,
    )


def rigidity_neighbours(params: dict, active, k: int, weight_scale: float) -> jnp.ndarray:
    """k nearest neighbours in (position, motion weights) space.

    Distances include the weights so that a Gaussian's neighbours move with the same bases: a cube resting on
    the ground is not tied rigidly to the ground (whose weights are ~0).
    """
    feats = jnp.concatenate([params["means"], weight_scale * params["motion"].weights], axis=-1)
    return motion.knn(feats, k, active)


def frames_to_data(frames: Frames) -> dict:
    data = {"rgb": frames.rgb, "viewmat": frames.cameras.viewmat, "K": frames.cameras.K, "time": frames.times}
    data["depth"] = frames.depth if frames.depth is not None else jnp.zeros(frames.rgb.shape[:3])
    data["mask"] = frames.mask if frames.mask is not None else jnp.zeros(frames.rgb.shape[:3])
    return data


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse a workdir that holds another experiment (config.json differs beyond run-control keys)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    mine = json.loads(config.to_json_best_effort())
    ignore = {"resume"}
    strip = lambda d: {k: v for k, v in d.items() if k not in ignore}  # noqa: E731
    if os.path.exists(path):
        with open(path) as f:
            theirs = json.load(f)
        train_a = {k: v for k, v in theirs.get("train", {}).items() if k != "stop_after"}
        train_b = {k: v for k, v in mine.get("train", {}).items() if k != "stop_after"}
        if strip({**theirs, "train": train_a}) != strip({**mine, "train": train_b}):
            raise ValueError(
                f"workdir {workdir} holds a run with another config ({path}); use another --workdir"
            )
    with open(path, "w") as f:
        json.dump(mine, f, indent=2, sort_keys=True)


def _checkpoint_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
    )


def _guard_finite(loss: float, step: int, workdir: str, mgr: ocp.CheckpointManager) -> None:
    """Stop on a non-finite loss before anything is saved, naming the checkpoint that is kept."""
    if np.isfinite(loss):
        return
    mgr.wait_until_finished()
    raise FloatingPointError(
        f"non-finite loss {loss} at step {step}; stopped. The last good checkpoint is kept in "
        f"{workdir}/checkpoints (step {mgr.latest_step()}); lower the learning rates or check the data"
    )


def train(
    config: ml_collections.ConfigDict, frames: Frames, workdir: str, extra_points=None
) -> tuple[TrainState, Setup]:
    """Fit Gaussians + motion to `frames`; checkpoints in workdir/checkpoints. Returns the final state.

    extra_points: optional (points (M, 3), colours (M, 3)) of static scene points added to the initialisation.
    """
    from any4d_jax.export import write_train_cameras  # the exporter's input; export imports train lazily

    os.makedirs(workdir, exist_ok=True)
    write_train_cameras(workdir, frames.cameras, frames.times, int(jnp.max(frames.times)) + 1)
    parallel = config.get("parallel")
    if parallel is not None and parallel.get("devices", 1) > 1:  # data-parallel over a device mesh
        from any4d_jax import parallel as parallel_lib

        return parallel_lib.train(config, frames, workdir, extra_points)
    check_workdir(config, workdir)
    setup = make_setup(config, frames)
    optimizer = make_optimizer(config, scene_extent(frames.cameras))
    state = init_state(config, setup, frames, optimizer, extra_points)
    data = frames_to_data(frames)
    mask = setup.basis_mask()
    tc = config.train
    mgr = _checkpoint_manager(workdir, tc.keep_checkpoints)
    if config.resume and mgr.latest_step() is not None:
        state = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore(state))
        tqdm.write(f"resumed from step {int(state.step)} ({workdir}/checkpoints)")

    step_fn = jax.jit(make_train_step(setup, optimizer), donate_argnums=(0,))
    extent = scene_extent(frames.cameras)
    dens_fn = jax.jit(functools.partial(densify, cfg=setup.densify))
    knn_fn = jax.jit(functools.partial(rigidity_neighbours, k=tc.rigidity_k, weight_scale=1.0))

    start = int(state.step)
    stop = tc.num_steps if tc.stop_after < 0 else min(tc.num_steps, tc.stop_after)
    bar = tqdm(range(start, stop), desc="train", initial=start, total=tc.num_steps, unit="step")
    last = {}
    for s in bar:
        state, m = step_fn(state, data, mask)
        n = s + 1
        if n % tc.log_every == 0 or n == stop:
            last = {k: float(v) for k, v in m.items()}
            _guard_finite(last["loss"], n, workdir, mgr)
            bar.set_postfix(
                loss=f"{last['loss']:.4f}",
                psnr=f"{last['psnr']:.2f}",
                n=int(jnp.sum(state.active)),
                dropped=int(last["dropped_pairs"]),
            )
        if tc.densify_from <= n <= tc.densify_until and n % tc.densify_every == 0:
            params, active, opt_state, _ = dens_fn(
                state.params,
                state.active,
                state.opt_state,
                state.grad_accum,
                state.vis_count,
                extent,
                jax.random.fold_in(state.rng, n),
            )
            state = state.replace(
                params=params,
                active=active,
                opt_state=opt_state,
                grad_accum=jnp.zeros_like(state.grad_accum),
                vis_count=jnp.zeros_like(state.vis_count),
                neighbours=knn_fn(params, active),
            )
        if n % tc.checkpoint_every == 0 or n == tc.num_steps:
            _guard_finite(float(m["loss"]), n, workdir, mgr)
            mgr.save(n, args=ocp.args.StandardSave(state))
    bar.close()
    mgr.wait_until_finished()
    return state, setup
