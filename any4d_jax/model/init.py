"""Model initialisation: Gaussians from depth maps, motion weights from k-means, pivots, rigidity neighbours.

init_model(config, motion_cfg, frames, key)   (ModelParams, active) ready to train
init_gaussians(config, frames)                point cloud of the training depth -> Gaussians
kmeans_weights / pivots_from_weights          Shape of Motion's k-means initialisation of the bases
rigidity_neighbours(params, active, k)        k nearest neighbours in (position, weights) space
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.geometry.knn import knn
from any4d_jax.model import camera_refine, motion, track_init
from any4d_jax.model.gaussians import ModelParams, from_points, points_from_depth
from any4d_jax.model.motion import MotionConfig, canonical_frame, split_weights


def init_gaussians(config: ml_collections.ConfigDict, frames: Frames, extra_points=None, t_canon=None):
    """Point cloud from the training depth maps: everything at the canonical frame, static parts elsewhere.

    Returns (Gaussians, dynamic (N,) bool): `dynamic` marks points from the foreground mask at the canonical
    frame (all canonical points when the data has no mask); only those get initial motion weights.
    t_canon: the canonical time (default: config.motion.canonical_frame without tracks).

    Under train.camera_refine the static background is seeded from the gauge frame (the first, whose camera
    is held exactly as commanded) instead of the canonical one: seeded through another frame's camera, the
    whole scene would start off by that camera's error, a global offset the per-frame corrections cannot
    undo (it is the gauge they leave free).
    """
    m = config.model
    times = np.asarray(frames.times)
    # The frame seen at (closest to) the canonical time: its whole depth map seeds the moving Gaussians.
    if t_canon is None:
        t_canon = canonical_frame(config, int(times.max()) + 1)
    t0 = int(np.argmin(np.abs(times - t_canon)))
    if frames.depth is None or not np.any(np.asarray(frames.depth) > 0):
        raise ValueError("model init from depth needs frames with depth; this data source gives none")
    depth = np.asarray(frames.depth)
    fg = np.asarray(frames.mask) > 0.5 if frames.mask is not None else np.ones(depth.shape, bool)
    canon = np.zeros(depth.shape, bool)
    canon[t0] = True
    a0 = 0 if camera_refine.enabled(config) else t0  # the frame seeding the static background
    anchor = np.zeros(depth.shape, bool)
    anchor[a0] = True
    static = ~fg if frames.mask is not None else np.zeros(depth.shape, bool)
    static[t0] = static[a0] = False
    p0, c0 = points_from_depth(depth, frames.rgb, frames.cameras, stride=m.init_stride, mask=anchor & ~fg)
    p1, c1 = points_from_depth(
        depth, frames.rgb, frames.cameras, stride=m.init_stride_dynamic, mask=canon & fg
    )
    p2, c2 = points_from_depth(depth, frames.rgb, frames.cameras, stride=m.init_stride_static, mask=static)
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
    g = from_points(pts, cols, m.capacity, sh_degree=m.sh_degree, init_opacity=m.init_opacity)
    return g, jnp.zeros((m.capacity,), bool).at[: len(pts)].set(jnp.asarray(dyn))


def init_model(
    config: ml_collections.ConfigDict,
    motion_cfg: MotionConfig,
    frames: Frames,
    key: jax.Array,
    extra_points=None,
) -> tuple[ModelParams, jnp.ndarray]:
    """(ModelParams, active (N,) bool) to start training from.

    Gaussians from the frames' depth (`init_gaussians`); k-means over the dynamic points only gives the
    initial weights (static points start, and with sparsity tend to stay, motionless), scaled per basis kind
    by motion.init_weight / init_generator_weight; pivots at the weighted centroids; the basis mask of
    config.motion.preset.
    """
    g, dynamic = init_gaussians(config, frames, extra_points, motion_cfg.canonical_frame)
    if not bool(jnp.any(dynamic)):
        dynamic = g.active
    gen = jnp.arange(motion_cfg.num_bases) < motion_cfg.num_generator_bases
    scale = jnp.where(gen, config.motion.init_generator_weight, config.motion.init_weight)
    mask = motion.preset_mask(motion_cfg, config.motion.preset)
    fit = motion_from_tracks(config, motion_cfg, frames, g.means, dynamic)
    if fit is not None:
        mp = motion.init_params(
            motion_cfg,
            g.capacity,
            jnp.asarray(fit["weights"]) * scale,
            (jnp.asarray(fit["generator_pivots"]), jnp.asarray(fit["learnable_pivots"])),
            mask,
        )
        mp = mp.replace(generator=jnp.asarray(fit["generator"]), learnable=jnp.asarray(fit["learnable"]))
        return ModelParams.from_gaussians(g, mp), g.active
    weights = kmeans_weights(g.means, motion_cfg, key, active=dynamic)
    weights = weights * scale * dynamic[:, None]
    mp = motion.init_params(
        motion_cfg, g.capacity, weights, pivots_from_weights(g.means, weights, motion_cfg), mask
    )
    return ModelParams.from_gaussians(g, mp), g.active


def motion_from_tracks(config, motion_cfg: MotionConfig, frames: Frames, means, dynamic) -> dict | None:
    """The track-fitted initial motion (model/track_init.py) when motion.init_from_tracks and the frames
    carry tracks with 3D points (ground truth, or lifted from the frames' depth here); else None."""
    tr = frames.tracks
    if tr is None or not config.motion.get("init_from_tracks", False):
        return None
    if tr.points is None:
        if frames.depth is None:
            return None
        tr = tracks_lib.lift(tr, frames.depth, frames.cameras)
    times = np.asarray(frames.times)
    canon = int(np.argmin(np.abs(times - motion_cfg.canonical_frame)))
    extent = float(np.ptp(np.asarray(means)[np.asarray(dynamic)], axis=0).max()) if np.any(dynamic) else 1.0
    return track_init.motion_from_tracks(
        motion_cfg,
        np.asarray(tr.points),
        np.asarray(tr.points_valid),
        times,
        canon,
        np.asarray(means),
        np.asarray(dynamic),
        extent=max(extent, 1e-6),
        seed=config.seed,
    )


def rigidity_neighbours(params: ModelParams, active: jnp.ndarray, k: int, weight_scale: float = 1.0):
    """(N, k) int32 nearest neighbours in (position, motion weights) space.

    Distances include the weights so that a Gaussian's neighbours move with the same bases: a cube resting on
    the ground is not tied rigidly to the ground (whose weights are ~0).
    """
    feats = jnp.concatenate([params.means, weight_scale * params.motion.weights], axis=-1)
    return knn(feats, k, active)


def kmeans_weights(
    means: jnp.ndarray, cfg: MotionConfig, key: jax.Array, iters: int = 10, active: jnp.ndarray | None = None
) -> jnp.ndarray:
    """One-hot-ish initial weights (N, B) from k-means on positions (as Shape of Motion initialises).

    Gaussians of cluster j get weight 1 on generator channel j mod C (all 6 components) and on learnable basis
    j mod B_l, where k-means runs with max(C, B_l) clusters. Trajectories start at zero, so motion starts
    at the identity whatever the weights.
    """
    n = means.shape[0]
    nc = max(cfg.num_generator_channels, cfg.num_learnable_bases, 1)
    act = jnp.ones((n,), bool) if active is None else active
    # k-means++ seeding: each next centre drawn with probability proportional to the squared distance.
    keys = jax.random.split(key, nc)
    first = jax.random.choice(keys[0], n, p=act / jnp.sum(act))
    centres = jnp.zeros((nc, 3), means.dtype).at[:].set(means[first])

    def seed(i, c):
        d2 = jnp.min(jnp.sum((means[:, None, :] - c[None]) ** 2, -1), axis=1) * act
        pick = jax.random.choice(keys[i], n, p=d2 / jnp.maximum(jnp.sum(d2), 1e-30))
        return c.at[i].set(means[pick])

    centres = jax.lax.fori_loop(1, nc, seed, centres)

    def step(c, _):
        lab = jnp.argmin(jnp.sum((means[:, None, :] - c[None]) ** 2, -1), axis=1)
        one = jax.nn.one_hot(lab, nc) * act[:, None]
        cnt = jnp.sum(one, 0)
        new = (one.T @ means) / jnp.maximum(cnt, 1.0)[:, None]
        return jnp.where(cnt[:, None] > 0, new, c), None

    centres, _ = jax.lax.scan(step, centres, None, length=iters)
    lab = jnp.argmin(jnp.sum((means[:, None, :] - centres[None]) ** 2, -1), axis=1)
    parts = []
    if cfg.num_generator_channels:
        g = jax.nn.one_hot(lab % cfg.num_generator_channels, cfg.num_generator_channels)
        parts.append(jnp.repeat(g, 6, axis=1))
    if cfg.num_learnable_bases:
        parts.append(jax.nn.one_hot(lab % cfg.num_learnable_bases, cfg.num_learnable_bases))
    if not parts:
        return jnp.zeros((n, 0), jnp.float32)
    return jnp.concatenate(parts, axis=1).astype(jnp.float32)


def pivots_from_weights(means: jnp.ndarray, weights: jnp.ndarray, cfg: MotionConfig) -> tuple:
    """Pivots (C, 3), (B_l, 3): the weighted centroid of the Gaussians using each channel / basis."""
    wg, wl = split_weights(jnp.abs(weights), cfg)
    wg = wg.mean(-1)  # (N, C)

    def centroid(ww):
        tot = jnp.sum(ww, axis=0)
        c = (ww.T @ means) / jnp.maximum(tot, 1e-12)[:, None]
        return jnp.where(tot[:, None] > 0, c, jnp.mean(means, axis=0))

    return centroid(wg), centroid(wl)
