"""Training state and its construction: TrainState, Setup (static settings), the optimizer, init_state.

TrainState   params (ModelParams), opt_state, active, densify statistics, neighbours, step, rng
Setup        static settings closed over by the step: model spec, loss weights, density control, sizes
make_setup(config, frames) / make_optimizer(config, extent) / init_state(config, setup, frames, opt)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.geometry.cameras import Camera
from any4d_jax.model import camera_refine, motion, track_anchors
from any4d_jax.model import init as init_lib
from any4d_jax.model.densify import DensifyConfig, DensifyState
from any4d_jax.model.gaussians import ModelParams, ModelSpec, splats_at
from any4d_jax.render import RenderConfig
from any4d_jax.train import row_adam


@struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    params:     ModelParams: Gaussian fields (N rows) + MotionParams (with its frozen pivots and basis mask).
    opt_state:  optax state of `params`.
    active:     (N,) bool slots in use.
    densify:    DensifyState: (N,) accumulated screen-space gradient norms and visibility counts.
    neighbours: (N, k) int32 nearest neighbours for the rigidity loss (refreshed at each densification).
    step:       () int32; rng: PRNG key.
    anchors:    TrackAnchors of the training tracks (model/track_anchors.py; refreshed at each densification),
                or None when the run uses no tracks.
    """

    params: ModelParams
    opt_state: Any
    active: jnp.ndarray
    densify: DensifyState
    neighbours: jnp.ndarray
    step: jnp.ndarray
    rng: jax.Array
    anchors: Any = None


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss parts (0 switches a part off). photometric = (1 - l) L1 + l (1 - SSIM)."""

    ssim_lambda: float = 0.2
    depth: float = 0.0
    foreground: float = 0.0
    acceleration: float = 0.0
    rigidity: float = 0.0
    sparsity: float = 0.0
    camera: float = 0.0  # keeps the per-frame camera corrections near the commanded cameras
    track: float = 0.0  # 2D track loss (tracks in the data only)

    @classmethod
    def from_config(
        cls, tc: ml_collections.ConfigDict, refine: bool = False, tracks: bool = False
    ) -> LossWeights:
        """From config.train; refine: camera refinement is on (`camera_refine.enabled`); tracks: the
        training frames carry tracks."""
        return cls(
            ssim_lambda=tc.ssim_lambda,
            depth=tc.depth_weight,
            foreground=tc.foreground_weight,
            acceleration=tc.accel_weight,
            rigidity=tc.rigidity_weight,
            sparsity=tc.sparsity_weight,
            camera=tc.camera_weight if refine else 0.0,
            track=tc.get("track_weight", 0.0) if tracks else 0.0,
        )


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static settings of a run (hashable; closed over by the jitted step).

    model: what evaluation and export need too (motion config, render config, background); losses: loss
    weights; densify: density control; width, height: the training image size; time_ramp_steps: the time
    curriculum; rigidity_k: neighbours of the rigidity loss; camera_scale: the scene extent, the unit of the
    camera corrections' translations (model/camera_refine.py); camera_gauge: the frame whose camera is held
    exactly as commanded; camera_start: the step from which the corrections learn; track_times: the distinct
    query times of the training tracks (anchoring loops over them); track_k: anchor Gaussians per track.
    """

    model: ModelSpec
    losses: LossWeights
    densify: DensifyConfig
    width: int
    height: int
    time_ramp_steps: int
    rigidity_k: int
    camera_scale: float = 1.0
    camera_gauge: int = 0
    camera_start: int = 0
    camera_static_only: bool = False
    track_times: tuple = ()
    track_k: int = 4


def uses_tracks(config: ml_collections.ConfigDict, frames: Frames) -> bool:
    """The track loss is on: the frames carry tracks and train.track_weight > 0."""
    return frames.tracks is not None and config.train.get("track_weight", 0.0) > 0


def tracks_frame(frames: Frames) -> int | None:
    """The time of the frame where the most training tracks are visible (None without tracks): the
    automatic canonical frame (motion.canonical_frame = -1)."""
    if frames.tracks is None:
        return None
    return int(round(float(np.asarray(frames.times)[tracks_lib.canonical_frame(frames.tracks)])))


def gauge_time(config: ml_collections.ConfigDict, frames: Frames) -> int | None:
    """The time of the gauge frame (the first: its camera is held as commanded) when the training cameras
    are refined, else None: the automatic canonical frame then (motion.canonical_frame = -1)."""
    if not camera_refine.enabled(config):
        return None
    return int(round(float(np.asarray(frames.times)[0])))


def make_setup(config: ml_collections.ConfigDict, frames: Frames) -> Setup:
    t = config.train
    return Setup(
        model=ModelSpec(
            motion=motion.motion_config(
                config, frames.num_times, tracks_frame(frames), gauge_time(config, frames)
            ),
            render=RenderConfig(
                tile_capacity=config.render.tile_capacity,
                max_pairs=config.render.max_pairs,
                grow_pairs=bool(config.render.grow_pairs),
                backend=str(config.render.backend),
                validate=False,
            ),
            background=tuple(float(x) for x in config.render.background),
        ),
        losses=LossWeights.from_config(t, camera_refine.enabled(config), uses_tracks(config, frames)),
        densify=DensifyConfig(grad_threshold=t.densify_grad_threshold, min_opacity=t.prune_opacity),
        width=frames.cameras.width,
        height=frames.cameras.height,
        time_ramp_steps=t.time_ramp_steps,
        rigidity_k=t.rigidity_k,
        camera_scale=scene_extent(frames.cameras),
        camera_gauge=0,
        camera_start=int(t.get("camera_start", 0)),
        camera_static_only=bool(t.get("camera_static_only", False)),
        track_times=query_times(frames) if uses_tracks(config, frames) else (),
        track_k=int(t.get("track_neighbours", 4)),
    )


def query_times(frames: Frames) -> tuple:
    """The distinct times (floats) of the tracks' query frames."""
    q = np.unique(np.asarray(frames.tracks.query_frame))
    return tuple(float(x) for x in np.asarray(frames.times)[q])


def with_max_pairs(setup: Setup, max_pairs: int | None) -> Setup:
    """`setup` with the renderer's pair budget set to `max_pairs` (None: unchanged)."""
    if max_pairs is None:
        return setup
    render = dataclasses.replace(setup.model.render, max_pairs=int(max_pairs))
    return dataclasses.replace(setup, model=dataclasses.replace(setup.model, render=render))


def scene_extent(cams: Camera) -> float:
    """3DGS' scene scale: 1.1 x the largest distance of a camera centre from their mean."""
    c = np.asarray(cams.center).reshape(-1, 3)
    return float(1.1 * np.max(np.linalg.norm(c - c.mean(0), axis=-1)) + 1e-6) if len(c) > 1 else 1.0


def make_optimizer(config: ml_collections.ConfigDict, extent: float) -> optax.GradientTransformation:
    """Adam per parameter group (labels from `ModelParams.labels`); the means' learning rate decays
    exponentially (x0.01) over the run, the motion's and the camera corrections' by lr.motion_decay (1:
    constant); frozen leaves (pivots, the basis mask) get zero updates.

    The same settings give the same (cached) object, so jitted steps built on it are reused across runs."""
    rates = tuple(sorted((k, float(v)) for k, v in config.train.lr.items()))
    static = bool(config.motion.get("static_stays_static", False))
    return _optimizer(rates, int(config.train.num_steps), float(extent), static)


def keep_zero_rows(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner`, with no update for a row (N, B) whose parameters are all exactly 0: a Gaussian that starts
    static (zero motion weights) stays static, as do the children density control gives it."""

    def update(updates, state, params=None):
        out, state = inner.update(updates, state, params)
        moving = jax.tree_util.tree_map(lambda p: jnp.any(p != 0, axis=-1, keepdims=True), params)
        return jax.tree_util.tree_map(lambda u, m: u * m.astype(u.dtype), out, moving), state

    return optax.GradientTransformation(inner.init, update)


@functools.lru_cache(maxsize=16)
def _optimizer(rates: tuple, steps: int, extent: float, static: bool = False) -> optax.GradientTransformation:
    lr = dict(rates)
    means = optax.exponential_decay(lr["means"] * extent, steps, 0.01)
    decay = lr.get("motion_decay", 1.0)
    sched = lambda v: v if decay == 1.0 else optax.exponential_decay(v, steps, decay)  # noqa: E731
    weights = optax.adam(sched(lr["motion_weights"]))
    groups = {
        "means": optax.adam(means),
        "quats": optax.adam(lr["quats"]),
        "log_scales": optax.adam(lr["scales"]),
        "opacity_logits": optax.adam(lr["opacities"]),
        "sh": optax.adam(lr["colors"]),
        "motion_traj": optax.adam(sched(lr["motion_trajectories"])),
        # motion.static_stays_static: Gaussians with all-zero weights (static at initialisation) never move.
        "motion_weights": keep_zero_rows(weights) if static else weights,
        # Row-sparse: a step touches only its own frames' corrections (train/row_adam.py says why).
        "camera": row_adam.row_adam(sched(lr.get("camera", 0.0))),
        "frozen": optax.set_to_zero(),
    }
    return optax.multi_transform(groups, lambda params: params.labels())


def init_state(config, setup: Setup, frames: Frames, optimizer, extra_points=None) -> TrainState:
    """The initial state: Gaussians from the frames' depth, k-means motion weights, the preset's basis
    mask."""
    key = jax.random.PRNGKey(config.seed)
    k_model, k_run = jax.random.split(key)
    params, active = init_lib.init_model(config, setup.model.motion, frames, k_model, extra_points)
    if camera_refine.enabled(config):
        params = params.replace(camera=camera_refine.init(frames.num_frames))
    n = active.shape[0]
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        active=active,
        densify=DensifyState.zeros(n),
        neighbours=init_lib.rigidity_neighbours(params, active, setup.rigidity_k),
        step=jnp.zeros((), jnp.int32),
        rng=k_run,
        anchors=init_anchors(setup, frames, params, active),
    )


def means_at(params: ModelParams, setup: Setup):
    """t -> (N, 3) the Gaussians' positions at time t under the motion model."""
    return lambda t: splats_at(params, jnp.ones(params.means.shape[:1], bool), setup.model.motion, t).means


def init_anchors(
    setup: Setup, frames: Frames, params: ModelParams, active
) -> track_anchors.TrackAnchors | None:
    """The training tracks anchored to the initial Gaussians (None when the run uses no tracks).

    A track's query point is its 3D point at the query frame: the data's own (ground truth) when it has
    them, else lifted from the frames' depth; tracks with no depth there are anchored at the query pixel's
    ray through the median depth of the frame (they still pull, if imprecisely)."""
    if not setup.track_times:
        return None
    tr = frames.tracks
    if tr.points is None:
        if frames.depth is None:
            raise ValueError(
                "the track loss needs 3D query points: the tracks have none and the frames no depth"
            )
        tr = tracks_lib.lift(tr, frames.depth, frames.cameras)
    q = np.asarray(tr.query_frame)
    p = np.arange(len(q))
    pts = np.asarray(tr.points)[p, q]
    ok = np.asarray(tr.points_valid)[p, q]
    if not np.all(ok):  # no depth at the query pixel: the median depth of that frame along its ray
        fill = tracks_lib.make(np.asarray(tr.xy), np.ones(q.shape + (tr.num_frames,), bool), query_frame=q)
        med = np.asarray(frames.depth).reshape(frames.num_frames, -1)
        med = np.array([np.median(d[d > 0]) if np.any(d > 0) else 1.0 for d in med], np.float32)
        flat = np.broadcast_to(med[:, None, None], np.asarray(frames.depth).shape)
        lifted = tracks_lib.lift(fill, flat, frames.cameras)
        pts = np.where(ok[:, None], pts, np.asarray(lifted.points)[p, q])
    times = np.asarray(frames.times)[q]
    return track_anchors.make(pts, times, setup.track_times, means_at(params, setup), active, setup.track_k)


def frames_to_data(frames: Frames) -> dict:
    """The training frames as the dict the step reads (rgb, viewmat, K, time, depth, mask, and index: the
    frame's position, which picks its camera correction; leading T)."""
    data = {"rgb": frames.rgb, "viewmat": frames.cameras.viewmat, "K": frames.cameras.K, "time": frames.times}
    data["index"] = jnp.arange(frames.num_frames, dtype=jnp.int32)
    data["depth"] = frames.depth if frames.depth is not None else jnp.zeros(frames.rgb.shape[:3])
    data["mask"] = frames.mask if frames.mask is not None else jnp.zeros(frames.rgb.shape[:3])
    if frames.tracks is not None:  # per frame: every track's position there and its loss weight
        tr = frames.tracks
        data["track_xy"] = jnp.swapaxes(jnp.asarray(tr.xy, jnp.float32), 0, 1)  # (F, P, 2)
        w = jnp.asarray(tr.visible, jnp.float32) * jnp.asarray(tr.confidence, jnp.float32)
        data["track_w"] = jnp.swapaxes(w, 0, 1)  # (F, P)
    return data
