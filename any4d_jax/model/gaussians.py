"""Persistent 3D Gaussians with a fixed capacity, the model's parameters, and their activation into
renderer input.

    Gaussians      N slots (N fixed, so jitted steps keep one shape while densification and pruning only flip
                   the `active` mask), stored unconstrained (log scales, opacity logits, raw quaternions)
    ModelParams    what training optimises: the Gaussian fields + MotionParams (pivots and basis mask frozen)
    ModelSpec      the static settings that turn parameters into pixels (motion config, render config, bg)
    splats_at      ModelParams at time t -> the renderer's `Splats` (what training, evaluation, export use)
    activate / at_time / empty / from_points / points_from_depth

PLY I/O of Gaussians lives in any4d_jax/io/ply.py.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax.geometry.cameras import Camera
from any4d_jax.geometry.knn import knn_mean_distance
from any4d_jax.model import motion
from any4d_jax.render.sh import num_sh_bases, rgb_to_sh_dc, sh_degree_from_bases
from any4d_jax.render.types import RenderConfig, Splats

__all__ = [
    "Gaussians",
    "ModelParams",
    "ModelSpec",
    "activate",
    "at_time",
    "check",
    "empty",
    "from_points",
    "points_from_depth",
    "splats_at",
]


@struct.dataclass
class Gaussians:
    """Canonical Gaussians in unconstrained parameters, N slots of which `active` ones are in use.

    means:           (N, 3)    float32 centres (world, canonical frame).
    quats:           (N, 4)    float32 rotations (w, x, y, z), unnormalised (non-zero).
    log_scales:      (N, 3)    float32 log standard deviations along the local axes.
    opacity_logits:  (N,)      float32 opacity logits (opacity = sigmoid(logit)).
    sh:              (N, K, 3) float32 SH coefficients, K = (d + 1)^2 for degree d in 0..3; DC in sh[:, 0].
    active:          (N,)      bool, which slots hold a Gaussian.
    """

    means: jnp.ndarray
    quats: jnp.ndarray
    log_scales: jnp.ndarray
    opacity_logits: jnp.ndarray
    sh: jnp.ndarray
    active: jnp.ndarray

    @property
    def capacity(self) -> int:
        """N, the number of slots (active or not)."""
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """Degree d of the stored SH bands (K = (d + 1)^2)."""
        return sh_degree_from_bases(self.sh.shape[1])

    @property
    def num_active(self) -> jnp.ndarray:
        """int32 scalar count of active slots."""
        return jnp.sum(self.active.astype(jnp.int32))


def check(g: Gaussians) -> None:
    """Shape and dtype checks of a `Gaussians` (works on tracers too). Raises ValueError."""
    if g.means.ndim != 2 or g.sh.ndim != 3:
        raise ValueError(
            f"Gaussians: means must be (N, 3) and sh (N, K, 3); got {g.means.shape}, {g.sh.shape}"
        )
    n = g.means.shape[0]
    expected = {
        "means": (n, 3),
        "quats": (n, 4),
        "log_scales": (n, 3),
        "opacity_logits": (n,),
        "sh": (n, g.sh.shape[1], 3),
        "active": (n,),
    }
    bad = {k: getattr(g, k).shape for k, v in expected.items() if getattr(g, k).shape != v}
    if bad:
        raise ValueError(f"Gaussians: fields with wrong shapes {bad}; expected {expected}")
    sh_degree_from_bases(g.sh.shape[1])  # raises ValueError for K not in {1, 4, 9, 16}
    if g.active.dtype != jnp.bool_:
        raise ValueError(f"Gaussians: active must be bool, got {g.active.dtype}")


# ----------------------------------------------------------------------------------------------------------
# Activation.
# ----------------------------------------------------------------------------------------------------------


def activate(g: Gaussians, means: jnp.ndarray | None = None, quats: jnp.ndarray | None = None) -> Splats:
    """The renderer's input: exp scales, sigmoid opacities (0 for inactive slots), colours = the SH array.

    `means` (N, 3) / `quats` (N, 4) replace the canonical ones (e.g. Gaussians moved to time t). Inactive
    slots get opacity exactly 0, below the renderer's 1/255 threshold, so they are culled. Jit- and grad-safe.
    """
    check(g)
    means = g.means if means is None else means
    quats = g.quats if quats is None else quats
    chex.assert_shape(means, (g.capacity, 3))
    chex.assert_shape(quats, (g.capacity, 4))
    opacities = jnp.where(g.active, jax.nn.sigmoid(g.opacity_logits), 0.0)
    return Splats(
        means=means,
        quats=quats,
        scales=jnp.exp(g.log_scales),
        opacities=opacities,
        colors=g.sh,
    )


def at_time(g: Gaussians, motion_params: motion.MotionParams, motion_cfg: motion.MotionConfig, t) -> Splats:
    """Splats of the Gaussians moved to time t by the motion model (`motion.apply_motion`), then activated."""
    check(g)
    chex.assert_shape(motion_params.weights, (g.capacity, motion_cfg.num_bases))
    means_t, quats_t = motion.apply_motion(g.means, g.quats, motion_params, motion_cfg, t)
    return activate(g, means_t, quats_t)


# ----------------------------------------------------------------------------------------------------------
# The model's parameters.
# ----------------------------------------------------------------------------------------------------------

PER_GAUSSIAN = ("means", "quats", "log_scales", "opacity_logits", "sh")  # fields with one row per slot


@struct.dataclass
class ModelParams:
    """Everything training optimises, as one typed pytree (flax's TrainState.params, shape-of-motion's
    GaussianParams + MotionBases).

    means (N, 3), quats (N, 4), log_scales (N, 3), opacity_logits (N,), sh (N, K, 3): as in `Gaussians`.
    motion: MotionParams (trajectories, weights (N, B), and the frozen pivots and basis mask).
    camera: (T, 6) float32 per-frame camera corrections (model/camera_refine.py), or None when training
            takes the cameras as given (then the pytree has no such leaf).
    Per-Gaussian rows are the `PER_GAUSSIAN` fields and motion.weights.
    """

    means: jnp.ndarray
    quats: jnp.ndarray
    log_scales: jnp.ndarray
    opacity_logits: jnp.ndarray
    sh: jnp.ndarray
    motion: motion.MotionParams
    camera: jnp.ndarray | None = None

    @property
    def capacity(self) -> int:
        return self.means.shape[-2]

    @classmethod
    def from_gaussians(cls, g: Gaussians, motion_params: motion.MotionParams) -> ModelParams:
        return cls(**{k: getattr(g, k) for k in PER_GAUSSIAN}, motion=motion_params)

    @classmethod
    def from_tree(cls, tree) -> ModelParams:
        """ModelParams from itself or from the nested dict an orbax restore without a target gives."""
        if isinstance(tree, cls):
            return tree
        m = tree["motion"]
        mp = m if isinstance(m, motion.MotionParams) else motion.MotionParams(**{k: m[k] for k in m})
        return cls(**{k: tree[k] for k in PER_GAUSSIAN}, motion=mp, camera=tree.get("camera"))

    def gaussians(self, active: jnp.ndarray) -> Gaussians:
        return Gaussians(**{k: getattr(self, k) for k in PER_GAUSSIAN}, active=active)

    def labels(self) -> ModelParams:
        """The optimizer's label of every leaf (optax.multi_transform): one group per Gaussian field,
        motion_traj / motion_weights for the motion, frozen for the pivots and the basis mask, camera for the
        per-frame camera corrections (when present)."""
        return ModelParams(
            **{k: k for k in PER_GAUSSIAN},
            motion=motion.MotionParams(
                generator="motion_traj",
                learnable="motion_traj",
                weights="motion_weights",
                generator_pivots="frozen",
                learnable_pivots="frozen",
                mask="frozen",
            ),
            camera=None if self.camera is None else "camera",
        )

    def map_rows(self, fn) -> ModelParams:
        """fn applied to every per-Gaussian leaf (the PER_GAUSSIAN fields and motion.weights); other leaves
        and leaves that are not arrays (optax's MaskedNode in an optimizer state) are kept."""
        rows = lambda x: fn(x) if hasattr(x, "shape") else x  # noqa: E731
        return self.replace(
            **{k: rows(getattr(self, k)) for k in PER_GAUSSIAN},
            motion=self.motion.replace(weights=rows(self.motion.weights)),
        )


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Static settings that turn ModelParams into pixels (hashable: a static jit argument).

    motion: the motion basis' shape; render: the rasterizer's settings; background: RGB behind everything.
    """

    motion: motion.MotionConfig
    render: RenderConfig = RenderConfig()
    background: tuple = (1.0, 1.0, 1.0)


def splats_at(params: ModelParams, active: jnp.ndarray, motion_cfg: motion.MotionConfig, t) -> Splats:
    """Renderer input for the Gaussians at time t (float frames), moved by their own basis mask."""
    return at_time(params.gaussians(active), params.motion, motion_cfg, t)


# ----------------------------------------------------------------------------------------------------------
# Construction.
# ----------------------------------------------------------------------------------------------------------


def _identity_quats(n: int) -> np.ndarray:
    q = np.zeros((n, 4), np.float32)
    q[:, 0] = 1.0
    return q


def empty(capacity: int, sh_degree: int = 3) -> Gaussians:
    """`capacity` inactive slots: zero means, identity quats, unit scales, zero logits, zero SH."""
    capacity = int(capacity)
    if capacity < 0:
        raise ValueError(f"gaussians.empty: capacity must be >= 0, got {capacity}")
    if not 0 <= int(sh_degree) <= 3:
        raise ValueError(f"gaussians.empty: sh_degree must be in 0..3, got {sh_degree}")
    k = num_sh_bases(int(sh_degree))
    return Gaussians(
        means=jnp.zeros((capacity, 3), jnp.float32),
        quats=jnp.asarray(_identity_quats(capacity)),
        log_scales=jnp.zeros((capacity, 3), jnp.float32),
        opacity_logits=jnp.zeros((capacity,), jnp.float32),
        sh=jnp.zeros((capacity, k, 3), jnp.float32),
        active=jnp.zeros((capacity,), bool),
    )


def from_points(
    points,
    colors,
    capacity: int,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    key: jax.Array | None = None,
    min_scale: float = 1e-6,
) -> Gaussians:
    """Gaussians initialised from a point cloud, as 3DGS does; runs eagerly (not under jit).

    points: (M, 3) world positions; colors: (M, 3) RGB in [0, 1]. The first M slots become active. Scales are
    isotropic: log of the mean distance to the 3 nearest neighbours (clamped to `min_scale`); opacity logits
    are logit(init_opacity); SH DC is `rgb_to_sh_dc(colors)`, higher bands zero. Quaternions are the identity,
    or, when `key` is given, uniformly random rotations (indistinguishable for the isotropic initial scales,
    but they break the symmetry once the scales become anisotropic).
    """
    points = np.asarray(points, np.float32)
    colors = np.asarray(colors, np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"from_points: points must have shape (M, 3), got {points.shape}")
    m = points.shape[0]
    if colors.shape != (m, 3):
        raise ValueError(
            f"from_points: colors must have shape ({m}, 3) to match the points, got {colors.shape}"
        )
    capacity = int(capacity)
    if m > capacity:
        raise ValueError(
            f"from_points: {m} points do not fit in capacity {capacity}; raise the capacity or subsample "
            "the points (e.g. a larger stride in points_from_depth)"
        )
    if not 0.0 < float(init_opacity) < 1.0:
        raise ValueError(f"from_points: init_opacity must lie in (0, 1), got {init_opacity}")
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(colors))):
        raise ValueError("from_points: points and colors must be finite")
    g = empty(capacity, sh_degree)
    if m == 0:
        return g
    dist = np.asarray(knn_mean_distance(points, 3)) if m > 1 else np.zeros((1,), np.float32)
    log_scale = np.log(np.maximum(dist, np.float32(min_scale))).astype(np.float32)
    if key is None:
        quats = _identity_quats(m)
    else:
        q = np.asarray(jax.random.normal(key, (m, 4), jnp.float32))
        quats = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        quats = (quats * np.where(quats[:, :1] < 0, -1.0, 1.0)).astype(np.float32)
    logit = np.float32(np.log(init_opacity) - np.log1p(-init_opacity))
    dc = np.asarray(rgb_to_sh_dc(colors), np.float32)

    def put(base, value):
        out = np.array(base)
        out[:m] = value
        return jnp.asarray(out)

    return Gaussians(
        means=put(g.means, points),
        quats=put(g.quats, quats),
        log_scales=put(g.log_scales, np.repeat(log_scale[:, None], 3, axis=1)),
        opacity_logits=put(g.opacity_logits, logit),
        sh=put(g.sh, np.concatenate([dc[:, None, :], np.zeros((m, g.sh.shape[1] - 1, 3), np.float32)], 1)),
        active=put(g.active, True),
    )


def points_from_depth(
    depth, rgb, cameras: Camera, stride: int = 4, mask=None
) -> tuple[np.ndarray, np.ndarray]:
    """Unproject every `stride`-th pixel of depth maps to a coloured world point cloud (eager numpy).

    depth:   (F, H, W) z-depth (along the optical axis), <= 0 or non-finite means no depth.
    rgb:     (F, H, W, 3) colours (float in [0, 1], or uint8 which is divided by 255).
    cameras: Camera with viewmat (F, 4, 4), K (F, 3, 3) (OpenCV, world-to-camera), width W, height H.
    stride:  pixels (col, row) with col % stride == 0 and row % stride == 0 are used.
    mask:    optional (F, H, W) bool, False pixels are skipped.
    Pixel (col, row) has its centre at (col + 0.5, row + 0.5): X_cam = z K^-1 (u, v, 1), X = R^T (X_cam - t).
    Returns points (M, 3) and colors (M, 3) float32, ordered by frame, then row, then column.
    """
    depth = np.asarray(depth, np.float64)
    rgb_in = np.asarray(rgb)
    rgb = rgb_in.astype(np.float64) / 255.0 if rgb_in.dtype == np.uint8 else rgb_in.astype(np.float64)
    if depth.ndim != 3:
        raise ValueError(f"points_from_depth: depth must be (F, H, W), got {depth.shape}")
    f, h, w = depth.shape
    if rgb.shape != (f, h, w, 3):
        raise ValueError(f"points_from_depth: rgb must be {(f, h, w, 3)} to match depth, got {rgb.shape}")
    if mask is not None and np.shape(mask) != (f, h, w):
        raise ValueError(f"points_from_depth: mask must be {(f, h, w)}, got {np.shape(mask)}")
    if (cameras.width, cameras.height) != (w, h):
        raise ValueError(
            f"points_from_depth: cameras are {cameras.width} x {cameras.height} but depth maps are {w} x {h}"
        )
    viewmat = np.asarray(cameras.viewmat, np.float64)
    K = np.asarray(cameras.K, np.float64)
    if viewmat.shape != (f, 4, 4) or K.shape != (f, 3, 3):
        raise ValueError(
            f"points_from_depth: need one camera per frame, viewmat ({f}, 4, 4) and K ({f}, 3, 3); "
            f"got {viewmat.shape} and {K.shape}"
        )
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"points_from_depth: stride must be >= 1, got {stride}")

    rows = np.arange(0, h, stride)
    cols = np.arange(0, w, stride)
    uu, vv = np.meshgrid(cols + 0.5, rows + 0.5, indexing="xy")  # (h', w')
    pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)
    all_points, all_colors = [], []
    for i in range(f):
        z = depth[i][np.ix_(rows, cols)].reshape(-1)
        keep = np.isfinite(z) & (z > 0)
        if mask is not None:
            keep &= np.asarray(mask[i], bool)[np.ix_(rows, cols)].reshape(-1)
        rays = np.linalg.solve(K[i], pix[keep].T).T  # K^-1 (u, v, 1): points at z = 1
        x_cam = rays * z[keep][:, None]
        R, t = viewmat[i, :3, :3], viewmat[i, :3, 3]
        all_points.append((x_cam - t) @ R)  # rows of R^T (x - t)
        all_colors.append(rgb[i][np.ix_(rows, cols)].reshape(-1, 3)[keep])
    points = np.concatenate(all_points, axis=0).astype(np.float32)
    colors = np.concatenate(all_colors, axis=0).astype(np.float32)
    return points, colors
