"""The hybrid motion basis: fixed SE(3) generators with learned scalar trajectories + learnable SE(3) bases.

Every basis b is a twist trajectory xi_b(t) in se(3) = R^6, ordered (omega, v) as in lie.py:
- generator bases: for each of C channels and each unit generator e_k of se(3) (k = 0..5), the twist
  a_{c,k}(t) e_k; only the scalar a_{c,k}(t) is learned (1 DoF per time parameter). B_g = 6 C.
- learnable bases: B_l free 6-DoF twists xi_b(t).
Gaussian i blends them with weights w_i (B_g + B_l,): xi_i(t) = sum_b m_b w_ib xi_b(t) (m: the active-basis
mask), moves by T_i(t) = Exp(xi_i(t)): mu_i(t) = R_i(t) mu_i + t_i(t), q_i(t) = quat(R_i(t)) q_i.

Trajectories are coefficients of a time basis phi(t) (K_t,): `per_frame` (hat functions on the frames, i.e.
one value per frame, linearly interpolated between frames), `dct` (cos(pi j (t + 0.5) / T), j = 1..K_t) or
`bspline` (uniform cubic B-splines: K_t control points, spacing h = (T - 1) / (K_t - 3), centred at
(j - 1) h; C2, local support over 4 spans, a partition of unity on [0, T - 1] that reproduces cubics).
The canonical frame t0 is the identity exactly: xi(t) = (phi(t) - phi(t0)) . coefficients.

Pivots: every generator channel and learnable basis acts about a fixed pivot p (its cluster's centroid at
initialisation): its twist (omega, v) is read in a frame centred at p, i.e. it is the world twist
(omega, v + p x omega) (the adjoint of a translation, linear, so blending stays a linear blend of twists).
This only reparameterises the same motions, but a rotation about an object's own centre then needs no
compensating translation, which makes it far easier to learn. Pivots are not trained.

Weight layout (B = 6 C + B_l): generator bases first, channel-major (index 6 c + k), then learnable bases;
`split_weights` is the one place that slices it.

Active-basis mask: `MotionParams.mask` (B,) switches bases off (a frozen field, like the pivots), so one
maximal
allocation serves every baseline preset and ablation variant, and a checkpoint records which bases were
active.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct

from any4d_jax.geometry import lie

TIME_BASES = ("per_frame", "dct", "bspline")

PRESETS = {
    # name: (uses generator bases, uses learnable bases). Every preset keeps the full allocation
    # (motion.num_generator_channels, motion.num_learnable_bases) and switches bases off with the active-basis
    # mask, so the baselines share all code, shapes and checkpoints with the hybrid model.
    "static": (False, False),
    "learnable_only": (False, True),
    "generators_only": (True, False),
    "hybrid": (True, True),
}


@dataclasses.dataclass(frozen=True)
class MotionConfig:
    """Static shape of the motion model.

    num_frames:              T, frames t = 0..T-1 (fractional t interpolates).
    num_generator_channels:  C; B_g = 6 C generator bases.
    num_learnable_bases:     B_l free 6-DoF bases.
    time_basis:              "per_frame", "dct" or "bspline".
    num_time_coeffs:         K_t DCT terms or B-spline control points (>= 4); per_frame uses T.
    canonical_frame:         t0, where every motion is the identity.
    """

    num_frames: int
    num_generator_channels: int = 2
    num_learnable_bases: int = 8
    time_basis: str = "dct"
    num_time_coeffs: int = 16
    canonical_frame: int = 0

    def __post_init__(self):
        if self.time_basis not in TIME_BASES:
            raise ValueError(f"motion.time_basis must be one of {TIME_BASES}, got {self.time_basis!r}")
        if self.num_frames < 1 or not 0 <= self.canonical_frame < self.num_frames:
            raise ValueError(
                f"motion: canonical_frame {self.canonical_frame} outside 0..{self.num_frames - 1}"
            )
        if self.num_generator_channels < 0 or self.num_learnable_bases < 0 or self.num_time_coeffs < 1:
            raise ValueError("motion: basis counts must be >= 0 and num_time_coeffs >= 1")
        if self.time_basis == "bspline" and self.num_time_coeffs < 4:
            raise ValueError("motion: a cubic B-spline time basis needs num_time_coeffs >= 4 control points")

    @property
    def num_generator_bases(self) -> int:
        return 6 * self.num_generator_channels

    @property
    def num_bases(self) -> int:
        return self.num_generator_bases + self.num_learnable_bases

    @property
    def num_time_params(self) -> int:
        return self.num_frames if self.time_basis == "per_frame" else self.num_time_coeffs


@struct.dataclass
class MotionParams:
    """Learned motion.

    generator: (K_t, C, 6)   coefficients of the scalar trajectories a_{c,k}(t).
    learnable: (K_t, B_l, 6) coefficients of the learnable twists xi_b(t).
    weights:   (N, B)        per-Gaussian blend weights, B = 6 C + B_l.
    generator_pivots: (C, 3), learnable_pivots: (B_l, 3)  fixed pivots (zeros: the world origin).
    mask:      (B,)          float active-basis mask (1 = on), fixed: `basis_mask` / `preset_mask`.
    """

    generator: jnp.ndarray
    learnable: jnp.ndarray
    weights: jnp.ndarray
    generator_pivots: jnp.ndarray
    learnable_pivots: jnp.ndarray
    mask: jnp.ndarray


def init_params(
    cfg: MotionConfig,
    num_gaussians: int,
    weights: jnp.ndarray | None = None,
    pivots: tuple | None = None,
    mask: jnp.ndarray | None = None,
) -> MotionParams:
    """Zero trajectories (no motion anywhere), the given or all-zero weights, pivots (default origin) and
    the active-basis mask (default: every basis on)."""
    k = cfg.num_time_params
    if weights is None:
        weights = jnp.zeros((num_gaussians, cfg.num_bases), jnp.float32)
    if weights.shape != (num_gaussians, cfg.num_bases):
        raise ValueError(
            f"motion weights have shape {weights.shape}, expected {(num_gaussians, cfg.num_bases)}"
        )
    return MotionParams(
        generator=jnp.zeros((k, cfg.num_generator_channels, 6), jnp.float32),
        learnable=jnp.zeros((k, cfg.num_learnable_bases, 6), jnp.float32),
        weights=weights,
        generator_pivots=jnp.zeros((cfg.num_generator_channels, 3), jnp.float32)
        if pivots is None
        else pivots[0],
        learnable_pivots=jnp.zeros((cfg.num_learnable_bases, 3), jnp.float32)
        if pivots is None
        else pivots[1],
        mask=basis_mask(cfg) if mask is None else jnp.asarray(mask, jnp.float32),
    )


def basis_mask(cfg: MotionConfig, generator_channels: int | None = None, learnable_bases: int | None = None):
    """(B,) float mask keeping the first `generator_channels` channels and `learnable_bases` bases active.

    One maximal allocation with different masks gives the variants of an ablation the same shapes.
    """
    gc = cfg.num_generator_channels if generator_channels is None else generator_channels
    lb = cfg.num_learnable_bases if learnable_bases is None else learnable_bases
    if not (0 <= gc <= cfg.num_generator_channels and 0 <= lb <= cfg.num_learnable_bases):
        alloc = (cfg.num_generator_channels, cfg.num_learnable_bases)
        raise ValueError(f"basis_mask: ({gc}, {lb}) exceeds the allocation {alloc}")
    g = jnp.arange(cfg.num_generator_bases) < 6 * gc
    lrn = jnp.arange(cfg.num_learnable_bases) < lb
    return jnp.concatenate([g, lrn]).astype(jnp.float32)


def preset_mask(cfg: MotionConfig, preset: str) -> jnp.ndarray:
    """(B,) mask of a baseline preset (`PRESETS`) over the allocation `cfg`."""
    if preset not in PRESETS:
        raise ValueError(f"motion.preset must be one of {sorted(PRESETS)}, got {preset!r}")
    use_g, use_l = PRESETS[preset]
    return basis_mask(cfg, cfg.num_generator_channels * use_g, cfg.num_learnable_bases * use_l)


def split_weights(weights: jnp.ndarray, cfg: MotionConfig) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(..., B) weights (or a (B,) mask) -> generator part (..., C, 6) and learnable part (..., B_l)."""
    lead = weights.shape[:-1]
    wg = weights[..., : cfg.num_generator_bases].reshape(lead + (cfg.num_generator_channels, 6))
    return wg, weights[..., cfg.num_generator_bases :]


def canonical_frame(
    config: ml_collections.ConfigDict,
    num_frames: int,
    tracks_frame: int | None = None,
    gauge_frame: int | None = None,
) -> int:
    """config.motion.canonical_frame, where -1 means automatic: `gauge_frame` when the training cameras are
    refined (the one camera held exact: the scene is built through it first, and every other camera is then
    aligned to that scene as its frames enter the time curriculum), else `tracks_frame` (the time where the
    most training tracks are visible, Shape of Motion's choice) when the run uses tracks, else the middle
    frame (num_frames // 2)."""
    t0 = int(config.motion.canonical_frame)
    if t0 != -1:
        return t0
    if gauge_frame is not None:
        return int(gauge_frame)
    return num_frames // 2 if tracks_frame is None else int(tracks_frame)


def motion_config(
    config: ml_collections.ConfigDict,
    num_frames: int,
    tracks_frame: int | None = None,
    gauge_frame: int | None = None,
) -> MotionConfig:
    """The MotionConfig of an experiment config (config.motion) for a clip of num_frames frames
    (tracks_frame, gauge_frame: see `canonical_frame`)."""
    m = config.motion
    if m.preset not in PRESETS:
        raise ValueError(f"motion.preset must be one of {sorted(PRESETS)}, got {m.preset!r}")
    return MotionConfig(
        num_frames=num_frames,
        num_generator_channels=m.num_generator_channels,
        num_learnable_bases=m.num_learnable_bases,
        time_basis=m.time_basis,
        num_time_coeffs=m.num_time_coeffs,
        canonical_frame=canonical_frame(config, num_frames, tracks_frame, gauge_frame),
    )


def time_basis(cfg: MotionConfig, t: jnp.ndarray) -> jnp.ndarray:
    """phi(t) - phi(t0): (..., K_t) for times t (...,) (float frames)."""

    def phi(tt):
        tt = jnp.asarray(tt, jnp.float32)[..., None]
        if cfg.time_basis == "per_frame":
            frames = jnp.arange(cfg.num_frames, dtype=jnp.float32)
            tt = jnp.clip(tt, 0.0, cfg.num_frames - 1.0)
            return jnp.maximum(0.0, 1.0 - jnp.abs(tt - frames))
        if cfg.time_basis == "bspline":
            return bspline_basis(tt[..., 0], cfg.num_frames, cfg.num_time_coeffs)
        j = jnp.arange(1, cfg.num_time_coeffs + 1, dtype=jnp.float32)
        return jnp.cos(jnp.pi * j * (tt + 0.5) / cfg.num_frames)

    t = jnp.asarray(t, jnp.float32)
    t0 = jnp.float32(cfg.canonical_frame)
    # Exactly 0 at t0: phi(t0) may be folded at compile time and phi(t) computed at run time by different cos
    # approximations (~1e-6 apart), which would give the trajectories rounding-noise gradients at t0 that
    # Adam, being scale-invariant, turns into full learning-rate steps.
    return jnp.where((t == t0)[..., None], 0.0, phi(t) - phi(t0))


def bspline_basis(t: jnp.ndarray, num_frames: int, num_coeffs: int) -> jnp.ndarray:
    """(..., K) uniform cubic B-spline basis at times t (...,): control point j centred at (j - 1) h,
    h = (T - 1) / (K - 3), so the K functions sum to 1 on [0, T - 1] (t is clipped to it)."""
    h = max(num_frames - 1, 1) / (num_coeffs - 3)
    t = jnp.clip(jnp.asarray(t, jnp.float32), 0.0, max(num_frames - 1, 0))
    x = jnp.abs(t[..., None] / h - (jnp.arange(num_coeffs, dtype=jnp.float32) - 1.0))
    inner = 2.0 / 3.0 - x * x + 0.5 * x * x * x
    outer = (2.0 - x) ** 3 / 6.0
    return jnp.where(x < 1.0, inner, jnp.where(x < 2.0, outer, 0.0))


def basis_twists(params: MotionParams, cfg: MotionConfig, t) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Trajectories at time t (scalar): generator scalars a(t) (C, 6) and learnable twists xi(t) (B_l, 6)."""
    phi = time_basis(cfg, t)
    return jnp.einsum("k,kcd->cd", phi, params.generator), jnp.einsum("k,kbd->bd", phi, params.learnable)


def _about_pivot(xi: jnp.ndarray, pivot: jnp.ndarray) -> jnp.ndarray:
    """World twist of a twist read in a frame centred at `pivot`: (omega, v + p x omega).

    xi: (..., 6), pivot: (..., 3) -> (..., 6).
    """
    w = xi[..., :3]
    return jnp.concatenate([w, xi[..., 3:] + jnp.cross(pivot, w)], axis=-1)


def masked_weights(params: MotionParams) -> jnp.ndarray:
    """(N, B) weights with the active-basis mask applied (the mask is a constant: no gradient flows to it)."""
    return params.weights * jax.lax.stop_gradient(params.mask)


def gaussian_twists(params: MotionParams, cfg: MotionConfig, t) -> jnp.ndarray:
    """(N, 6) blended world twist of every Gaussian at time t (masked-off bases contribute nothing)."""
    a, xi = basis_twists(params, cfg, t)
    wg, wl = split_weights(masked_weights(params), cfg)
    # Generator basis (c, k) has twist a_ck(t) e_k about pivot c: per Gaussian and channel the blended twist
    # is w_c * a_c (componentwise), moved to world coordinates about the channel's pivot.
    gen = jnp.sum(_about_pivot(wg * a[None], params.generator_pivots[None]), axis=1)
    return gen + wl @ _about_pivot(xi, params.learnable_pivots)


def transforms(params: MotionParams, cfg: MotionConfig, t) -> jnp.ndarray:
    """(N, 4, 4) rigid motion of every Gaussian from the canonical frame to time t."""
    return lie.se3_exp(gaussian_twists(params, cfg, t))


def apply_motion(means, quats, params: MotionParams, cfg: MotionConfig, t):
    """Move canonical Gaussians to time t. means (N, 3), quats (N, 4) -> (means_t, quats_t)."""
    xi = gaussian_twists(params, cfg, t)
    T = lie.se3_exp(xi)
    means_t = jnp.einsum("nij,nj->ni", T[:, :3, :3], means) + T[:, :3, 3]
    quats_t = lie.quat_multiply(lie.so3_exp_quat(xi[:, :3]), quats)
    return means_t, quats_t


def trajectories_at_frames(params: MotionParams, cfg: MotionConfig) -> tuple[jnp.ndarray, jnp.ndarray]:
    """All basis trajectories sampled at the frames: (T, C, 6) and (T, B_l, 6)."""
    phi = time_basis(cfg, jnp.arange(cfg.num_frames, dtype=jnp.float32))  # (T, K)
    return jnp.einsum("tk,kcd->tcd", phi, params.generator), jnp.einsum("tk,kbd->tbd", phi, params.learnable)
