"""Motion bases initialised from 3D tracks (Shape of Motion's initialisation, for our hybrid basis).

    motion_from_tracks(...)    (trajectory coefficients, weights, pivots) for the motion model from 3D tracks
    fill_gaps(points, valid)   tracks with their unknown frames linearly interpolated (held at the ends)
    kmeans(features, k, seed)  labels of a seeded k-means++ / Lloyd clustering (numpy)
    kabsch(src, dst, w)        the rigid (R, t) taking src to dst in weighted least squares

Recipe (numpy, once before training): the dynamic tracks (those moving more than a fraction of the scene
extent) are clustered by k-means on their 3D velocities; each cluster's rigid motion from the canonical frame
to every frame is a weighted Kabsch fit of its tracks; its twist, read about the cluster's centroid at the
canonical frame (the basis pivot), is least-squares fitted by the time basis (model/motion.py). The B_l
learnable bases take B_l clusters, the C generator channels take C clusters of their own (a generator
channel's six scalar trajectories can hold any twist). Every dynamic Gaussian gets weight 1 on the cluster of
the dynamic track nearest to it at the canonical frame (scaled later per basis kind as without tracks).
"""

from __future__ import annotations

import numpy as np

from any4d_jax.geometry import lie
from any4d_jax.model.motion import MotionConfig, time_basis


def fill_gaps(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, F, 3) tracks with unknown frames linearly interpolated between known ones and held constant
    beyond them; (P,) bool: tracks with at least two known frames (the others are left as they were)."""
    pts = np.array(points, np.float64)
    ok = valid.sum(axis=1) >= 2
    frames = np.arange(pts.shape[1])
    for i in np.nonzero(ok)[0]:
        known = valid[i]
        for d in range(3):
            pts[i, :, d] = np.interp(frames, frames[known], pts[i, known, d])
    return pts, ok


def kmeans(features: np.ndarray, k: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    """(M,) int labels in 0..k-1 of k-means on features (M, D): k-means++ seeding, Lloyd iterations.
    Fewer than k distinct points give fewer (non-empty) clusters."""
    m = features.shape[0]
    k = max(1, min(k, m))
    rng = np.random.default_rng(seed)
    centres = [features[rng.integers(m)]]
    for _ in range(1, k):
        d2 = np.min(((features[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        if d2.sum() <= 0:
            break
        centres.append(features[rng.choice(m, p=d2 / d2.sum())])
    c = np.asarray(centres)
    for _ in range(iters):
        lab = np.argmin(((features[:, None] - c[None]) ** 2).sum(-1), axis=1)
        new = np.stack([features[lab == j].mean(0) if np.any(lab == j) else c[j] for j in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    return np.argmin(((features[:, None] - c[None]) ** 2).sum(-1), axis=1)


def kabsch(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) minimising sum_i w_i |R src_i + t - dst_i|^2 (a proper rotation, det +1)."""
    w = np.ones(len(src)) if w is None else np.asarray(w, np.float64)
    w = w / max(w.sum(), 1e-12)
    cs, cd = w @ src, w @ dst
    H = (src - cs).T @ (w[:, None] * (dst - cd))
    U, _, Vt = np.linalg.svd(H)
    s = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ np.diag([1.0, 1.0, s]) @ U.T
    return R, cd - R @ cs


def _nearest_rows(queries: np.ndarray, points: np.ndarray, block: int = 4096) -> np.ndarray:
    """(M,) index of the row of points (P, 3) nearest each query (M, 3), in blocks of queries."""
    out = np.empty(len(queries), np.int64)
    for s in range(0, len(queries), block):
        q = queries[s : s + block]
        out[s : s + block] = np.argmin(((q[:, None] - points[None]) ** 2).sum(-1), axis=1)
    return out


def _cluster_twists(pts, valid, members, canon: int, pivot: np.ndarray) -> np.ndarray:
    """(F, 6) twists about `pivot` of the cluster's rigid motion from frame `canon` to every frame."""
    f = pts.shape[1]
    twists = np.zeros((f, 6))
    src = pts[members, canon]
    for j in range(f):
        # Known positions only; where fewer than 3 are known, the interpolated ones keep the frame solvable.
        known = valid[members, j] & valid[members, canon]
        w = known.astype(np.float64) if known.sum() >= 3 else np.ones(len(members))
        R, t = kabsch(src, pts[members, j], w)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        xi = np.asarray(lie.se3_log(np.asarray(T, np.float32)), np.float64)
        twists[j] = np.concatenate([xi[:3], xi[3:] - np.cross(pivot, xi[:3])])  # world -> about the pivot
    twists[canon] = 0.0
    return twists


def _fit_coefficients(twists: np.ndarray, times: np.ndarray, cfg: MotionConfig) -> np.ndarray:
    """(K_t, B, 6) coefficients whose trajectories best match twists (B, F, 6) at the frame times (F,)."""
    phi = np.asarray(time_basis(cfg, np.asarray(times, np.float32)), np.float64)  # (F, K_t)
    b = twists.shape[0]
    rhs = np.transpose(twists, (1, 0, 2)).reshape(len(times), b * 6)
    coef, *_ = np.linalg.lstsq(phi, rhs, rcond=None)
    return coef.reshape(-1, b, 6)


def motion_from_tracks(
    cfg: MotionConfig,
    points: np.ndarray,
    valid: np.ndarray,
    times: np.ndarray,
    canon: int,
    means: np.ndarray,
    dynamic: np.ndarray,
    extent: float,
    min_motion: float = 0.02,
    seed: int = 0,
) -> dict | None:
    """Initial motion from 3D tracks, or None when no track moves.

    cfg: the motion model; points (P, F, 3) world tracks over the training frames with valid (P, F) bool;
    times (F,) the frames' times; canon: the frame at the canonical time; means (N, 3) the initial Gaussians
    (canonical), dynamic (N,) bool the ones allowed to move; extent: the scene size; min_motion: a track is
    dynamic when it moves more than this fraction of `extent` from its canonical position.
    Returns {"generator": (K_t, C, 6), "learnable": (K_t, B_l, 6), "weights": (N, B) one-hot on the
    clusters (generator channel: all 6 of its bases), "generator_pivots": (C, 3), "learnable_pivots":
    (B_l, 3), "num_dynamic_tracks": int}.
    """
    pts, ok = fill_gaps(np.asarray(points, np.float64), np.asarray(valid, bool))
    valid = np.asarray(valid, bool)
    ok &= valid[:, canon]
    moved = np.linalg.norm(pts - pts[:, canon : canon + 1], axis=-1).max(axis=1)
    dyn = ok & (moved > min_motion * extent)
    if not np.any(dyn):
        return None
    ids = np.nonzero(dyn)[0]
    vel = np.diff(pts[ids], axis=1).reshape(len(ids), -1)  # (P_d, (F-1) 3): Shape of Motion's features
    # The Gaussian's nearest track (dynamic or not): a Gaussian nearest a static track stays still.
    all_ok = np.nonzero(ok)[0]
    nearest = all_ok[_nearest_rows(np.asarray(means, np.float64), pts[all_ok, canon])]
    rank = -np.ones(pts.shape[0], np.int64)
    rank[ids] = np.arange(len(ids))
    near_dyn = rank[nearest]  # index into ids, -1 where the nearest track is static
    moves = np.asarray(dynamic, bool) & (near_dyn >= 0)

    def bases(count: int, salt: int):
        """(coefficients (K_t, count, 6), pivots (count, 3), one-hot (N, count)) for `count` clusters."""
        coef = np.zeros((cfg.num_time_params, count, 6))
        piv = np.zeros((count, 3))
        onehot = np.zeros((means.shape[0], count))
        if count == 0:
            return coef, piv, onehot
        lab = kmeans(vel, count, seed + salt)
        twists = np.zeros((count, pts.shape[1], 6))
        for c in range(count):
            members = ids[lab == c]
            if len(members) == 0:
                continue
            piv[c] = pts[members, canon].mean(0)
            twists[c] = _cluster_twists(pts, valid, members, canon, piv[c])
        coef = _fit_coefficients(twists, times, cfg)
        onehot[np.nonzero(moves)[0], lab[near_dyn[moves]]] = 1.0
        return coef, piv, onehot

    gcoef, gpiv, gone = bases(cfg.num_generator_channels, 1)
    lcoef, lpiv, lone = bases(cfg.num_learnable_bases, 2)
    weights = np.concatenate([np.repeat(gone, 6, axis=1), lone], axis=1)
    return {
        "generator": gcoef.astype(np.float32),
        "learnable": lcoef.astype(np.float32),
        "weights": weights.astype(np.float32),
        "generator_pivots": gpiv.astype(np.float32),
        "learnable_pivots": lpiv.astype(np.float32),
        "num_dynamic_tracks": int(len(ids)),
    }
