"""The hybrid motion basis: fixed SE(3) generators with learned scalar trajectories + learnable SE(3) bases.

Every basis b is a twist trajectory xi_b(t) in se(3) = R^6, ordered (omega, v) as in geometry.py:
- generator bases: for each of C channels and each unit generator e_k of se(3) (k = 0..5), the twist
  a_{c,k}(t) e_k; only the scalar a_{c,k}(t) is learned (1 DoF per time parameter). B_g = 6 C.
- learnable bases: B_l free 6-DoF twists xi_b(t).
Gaussian i blends them with weights w_i (B_g + B_l,): xi_i(t) = sum_b m_b w_ib xi_b(t) (m: the active-basis
mask), moves by T_i(t) = Exp(xi_i(t)): mu_i(t) = R_i(t) mu_i + t_i(t), q_i(t) = quat(R_i(t)) q_i.

Trajectories are coefficients of a time basis phi(t) (K_t,): `per_frame` (hat functions on the frames, i.e.
one value per frame, linearly interpolated between frames) or `dct` (cos(pi j (t + 0.5) / T), j = 1..K_t).
The canonical frame t0 is the identity exactly: xi(t) = (phi(t) - phi(t0)) . coefficients.

Pivots: every generator channel and learnable basis acts about a fixed pivot p (its cluster's centroid at
initialisation): its twist (omega, v) is read in a frame centred at p, i.e. it is the world twist
(omega, v + p x omega) (the adjoint of a translation, linear, so blending stays a linear blend of twists).
This only reparameterises the same motions, but a rotation about an object's own centre then needs no
compensating translation, which makes it far easier to learn. Pivots are not trained.

Weight layout (B = 6 C + B_l): generator bases first, channel-major (index 6 c + k), then learnable bases.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from any4d_jax import geometry

TIME_BASES = ("per_frame", "dct")


@dataclasses.dataclass(frozen=True)
class MotionConfig:
    """Static shape of the motion model.

    num_frames:              T, frames t = 0..T-1 (fractional t interpolates).
    num_generator_channels:  C; B_g = 6 C generator bases.
    num_learnable_bases:     B_l free 6-DoF bases.
    time_basis:              "per_frame" or "dct".
    num_time_coeffs:         K_t DCT terms (per_frame uses T).
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
    """

    generator: jnp.ndarray
    learnable: jnp.ndarray
    weights: jnp.ndarray
    generator_pivots: jnp.ndarray
    learnable_pivots: jnp.ndarray


def init_params(
    cfg: MotionConfig, num_gaussians: int, weights: jnp.ndarray | None = None, pivots: tuple | None = None
) -> MotionParams:
    """Zero trajectories (no motion anywhere), the given or all-zero weights, and pivots (default origin)."""
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


def time_basis(cfg: MotionConfig, t: jnp.ndarray) -> jnp.ndarray:
    """phi(t) - phi(t0): (..., K_t) for times t (...,) (float frames)."""

    def phi(tt):
        tt = jnp.asarray(tt, jnp.float32)[..., None]
        if cfg.time_basis == "per_frame":
            frames = jnp.arange(cfg.num_frames, dtype=jnp.float32)
            tt = jnp.clip(tt, 0.0, cfg.num_frames - 1.0)
            return jnp.maximum(0.0, 1.0 - jnp.abs(tt - frames))
        j = jnp.arange(1, cfg.num_time_coeffs + 1, dtype=jnp.float32)
        return jnp.cos(jnp.pi * j * (tt + 0.5) / cfg.num_frames)

    t = jnp.asarray(t, jnp.float32)
    t0 = jnp.float32(cfg.canonical_frame)
    # Exactly 0 at t0: phi(t0) may be folded at compile time and phi(t) computed at run time by different cos
    # approximations (~1e-6 apart), which would give the trajectories rounding-noise gradients at t0 that
    # Adam, being scale-invariant, turns into full learning-rate steps.
    return jnp.where((t == t0)[..., None], 0.0, phi(t) - phi(t0))


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


def gaussian_twists(
    params: MotionParams, cfg: MotionConfig, t, mask: jnp.ndarray | None = None
) -> jnp.ndarray:
    """(N, 6) blended world twist of every Gaussian at time t."""
    a, xi = basis_twists(params, cfg, t)
    w = params.weights if mask is None else params.weights * mask
    n = w.shape[0]
    wg = w[:, : cfg.num_generator_bases].reshape(n, cfg.num_generator_channels, 6)
    wl = w[:, cfg.num_generator_bases :]
    # Generator basis (c, k) has twist a_ck(t) e_k about pivot c: per Gaussian and channel the blended twist
    # is w_c * a_c (componentwise), moved to world coordinates about the channel's pivot.
    gen = jnp.sum(_about_pivot(wg * a[None], params.generator_pivots[None]), axis=1)
    return gen + wl @ _about_pivot(xi, params.learnable_pivots)


def transforms(params: MotionParams, cfg: MotionConfig, t, mask=None) -> jnp.ndarray:
    """(N, 4, 4) rigid motion of every Gaussian from the canonical frame to time t."""
    return geometry.se3_exp(gaussian_twists(params, cfg, t, mask))


def apply_motion(means, quats, params: MotionParams, cfg: MotionConfig, t, mask=None):
    """Move canonical Gaussians to time t. means (N, 3), quats (N, 4) -> (means_t, quats_t)."""
    xi = gaussian_twists(params, cfg, t, mask)
    T = geometry.se3_exp(xi)
    means_t = jnp.einsum("nij,nj->ni", T[:, :3, :3], means) + T[:, :3, 3]
    quats_t = geometry.quat_multiply(geometry.so3_exp_quat(xi[:, :3]), quats)
    return means_t, quats_t


def trajectories_at_frames(params: MotionParams, cfg: MotionConfig) -> tuple[jnp.ndarray, jnp.ndarray]:
    """All basis trajectories sampled at the frames: (T, C, 6) and (T, B_l, 6)."""
    phi = time_basis(cfg, jnp.arange(cfg.num_frames, dtype=jnp.float32))  # (T, K)
    return jnp.einsum("tk,kcd->tcd", phi, params.generator), jnp.einsum("tk,kbd->tbd", phi, params.learnable)


# ----------------------------------------------------------------------------------------------------------
# Regularisers.
# ----------------------------------------------------------------------------------------------------------


def acceleration_loss(params: MotionParams, cfg: MotionConfig, mask=None) -> jnp.ndarray:
    """Mean squared second difference of every active basis trajectory over the frames."""
    if cfg.num_frames < 3:
        return jnp.float32(0.0)
    a, xi = trajectories_at_frames(params, cfg)
    if mask is not None:
        a = a * mask[: cfg.num_generator_bases].reshape(1, cfg.num_generator_channels, 6)
        xi = xi * mask[cfg.num_generator_bases :][None, :, None]
    acc = lambda x: x[2:] - 2.0 * x[1:-1] + x[:-2]  # noqa: E731
    total = jnp.sum(acc(a) ** 2) + jnp.sum(acc(xi) ** 2)
    return total / max(1, (cfg.num_frames - 2) * cfg.num_bases)


def sparsity_loss(params: MotionParams, mask=None, active=None) -> jnp.ndarray:
    """Mean absolute weight (L1) over active bases and Gaussians."""
    w = jnp.abs(params.weights)
    if mask is not None:
        w = w * mask
    if active is not None:
        w = w * active[:, None]
        return jnp.sum(w) / jnp.maximum(1.0, jnp.sum(active) * w.shape[1])
    return jnp.mean(w)


def knn(points: jnp.ndarray, k: int, active: jnp.ndarray | None = None, block: int = 1024) -> jnp.ndarray:
    """(N, k) int32 indices of each point's k nearest other points (brute force, in blocks of rows).

    Inactive points are never chosen as neighbours. Computed once per densification, not every step.
    """
    n = points.shape[0]
    act = jnp.ones((n,), bool) if active is None else active
    sq = jnp.sum(points * points, axis=-1)
    nb = -(-n // block)
    idx = jnp.arange(nb * block).reshape(nb, block)

    def rows(ids):
        p = points[jnp.minimum(ids, n - 1)]
        d = jnp.sum(p * p, -1)[:, None] + sq[None, :] - 2.0 * p @ points.T
        d = jnp.where(act[None, :] & (ids[:, None] != jnp.arange(n)[None, :]), d, jnp.inf)
        return jax.lax.top_k(-d, k)[1]

    return jax.lax.map(rows, idx).reshape(nb * block, k)[:n].astype(jnp.int32)


def rigidity_loss(means_canon, means_t, neighbours, active=None) -> jnp.ndarray:
    """Local rigidity: squared change of distance to each of the k neighbours between t0 and t.

    means_canon, means_t: (N, 3); neighbours: (N, k) int32 from `knn`.
    """

    def dist(m):
        d = m[:, None, :] - m[neighbours]
        return jnp.sqrt(jnp.sum(d * d, -1) + 1e-12)

    err = (dist(means_t) - dist(means_canon)) ** 2
    if active is None:
        return jnp.mean(err)
    w = (active[:, None] & active[neighbours]).astype(err.dtype)
    return jnp.sum(err * w) / jnp.maximum(1.0, jnp.sum(w))


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
    w = jnp.abs(weights)
    n = w.shape[0]
    wg = w[:, : cfg.num_generator_bases].reshape(n, cfg.num_generator_channels, 6).mean(-1)  # (N, C)
    wl = w[:, cfg.num_generator_bases :]

    def centroid(ww):
        tot = jnp.sum(ww, axis=0)
        c = (ww.T @ means) / jnp.maximum(tot, 1e-12)[:, None]
        return jnp.where(tot[:, None] > 0, c, jnp.mean(means, axis=0))

    return centroid(wg), centroid(wl)
