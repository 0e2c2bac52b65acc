"""`Tracks`: long-range 2D point tracks through the frames of a video (a correspondence prior and a score).

    Tracks(xy, visible, confidence, query_frame, points)   the type (P tracks over the F frames of a Frames)
    check(tracks, num_frames, width, height, where)         one-line ValueError naming `where` when malformed
    lift(tracks, depth, cameras)                            3D points of the tracks from depth maps
    subsample(tracks, max_tracks, seed)                     at most max_tracks tracks (seeded)
    canonical_frame(tracks)                                 the frame where most tracks are visible
    visibility(points, cams, depth)                         pixels and visibility of known points (depth test)
    from_scene(positions_at, frames, candidates, ...)      exact tracks of points with known motion
    concat(parts) / every_query(tracks)                     one Tracks of several / every frame a query frame

Frame indices are rows of the Frames the tracks belong to (0..F-1, the training video's order), not times.
Pixel positions follow geometry/cameras.py: x right, y down, pixel (col, row) covers [col, col + 1) x
[row, row + 1), its centre is (col + 0.5, row + 0.5). Readers of other conventions convert on load
(data/tracks_io.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.geometry import cameras


@struct.dataclass
class Tracks:
    """P long-range point tracks over F frames.

    xy:          (P, F, 2) float32 pixel positions (where the point is, or would be when hidden).
    visible:     (P, F) bool: the point is seen in frame f (inside the image and not occluded).
    confidence:  (P, F) float32 in [0, 1]: how much to trust xy / visible at f (1 for ground truth).
    query_frame: (P,) int32 frame each track was started from (the point is visible there).
    points:      (P, F, 3) float32 world positions (ground truth, or lifted from depth by `lift`), or None;
                 `points_valid` (P, F) bool marks which of them are known.
    """

    xy: jnp.ndarray
    visible: jnp.ndarray
    confidence: jnp.ndarray
    query_frame: jnp.ndarray
    points: Any = None
    points_valid: Any = None

    @property
    def num_tracks(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[1])

    def query_xy(self) -> jnp.ndarray:
        """(P, 2) each track's position at its query frame."""
        return jnp.take_along_axis(self.xy, jnp.asarray(self.query_frame)[:, None, None], axis=1)[:, 0]

    def take(self, idx) -> Tracks:
        """The tracks at indices idx (a (P',) int array)."""
        idx = np.asarray(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Tracks(
            xy=self.xy[idx],
            visible=self.visible[idx],
            confidence=self.confidence[idx],
            query_frame=self.query_frame[idx],
            points=pick(self.points),
            points_valid=pick(self.points_valid),
        )


def make(xy, visible, confidence=None, query_frame=None, points=None, points_valid=None) -> Tracks:
    """Tracks from numpy-like arrays with the defaults filled in: confidence 1, query frame the first visible
    frame of each track, points_valid = visible when points are given."""
    xy = np.asarray(xy, np.float32)
    visible = np.asarray(visible, bool)
    conf = np.ones(visible.shape, np.float32) if confidence is None else np.asarray(confidence, np.float32)
    if query_frame is None:
        query_frame = np.argmax(visible, axis=1)
    pts = None if points is None else np.asarray(points, np.float32)
    valid = None
    if pts is not None:
        valid = visible.copy() if points_valid is None else np.asarray(points_valid, bool)
    return Tracks(
        xy=jnp.asarray(xy),
        visible=jnp.asarray(visible),
        confidence=jnp.asarray(conf),
        query_frame=jnp.asarray(np.asarray(query_frame, np.int32)),
        points=None if pts is None else jnp.asarray(pts),
        points_valid=None if valid is None else jnp.asarray(valid),
    )


def check(tracks: Tracks, num_frames: int, width: int, height: int, where: str) -> Tracks:
    """The tracks if they fit F = num_frames frames of width x height; else a one-line errors.InputError (a
    ValueError) naming `where` (the file they came from) and what is wrong."""
    xy, vis = np.asarray(tracks.xy), np.asarray(tracks.visible)
    conf, q = np.asarray(tracks.confidence), np.asarray(tracks.query_frame)
    p = xy.shape[0] if xy.ndim == 3 else -1
    problems = []
    if xy.ndim != 3 or xy.shape[2] != 2:
        problems.append(f"positions have shape {xy.shape}, expected (P, F, 2)")
    elif xy.shape[1] != num_frames:
        problems.append(f"tracks span {xy.shape[1]} frames but the video has {num_frames}")
    if not problems:
        if vis.shape != xy.shape[:2] or conf.shape != xy.shape[:2]:
            shapes = f"visibility {vis.shape} / confidence {conf.shape}"
            problems.append(f"{shapes} do not match (P, F) = {xy.shape[:2]}")
        elif q.shape != (p,):
            problems.append(f"query frames have shape {q.shape}, expected ({p},)")
        elif p and (q.min() < 0 or q.max() >= num_frames):
            problems.append(f"query frames outside 0..{num_frames - 1}")
        elif not np.all(np.isfinite(xy[vis])):
            problems.append("visible positions are not all finite")
        elif not np.all(np.isfinite(conf)) or conf.min(initial=0.0) < 0 or conf.max(initial=0.0) > 1:
            problems.append("confidences must lie in [0, 1]")
        elif p and not np.all(vis[np.arange(p), q]):
            hidden = int(np.sum(~vis[np.arange(p), q]))
            problems.append(f"{hidden} tracks are not visible at their query frame")
        else:
            seen = xy[vis] if np.any(vis) else np.zeros((1, 2))
            lo, hi = seen.min(axis=0), seen.max(axis=0)
            if np.any(lo < -1.0) or hi[0] > width + 1.0 or hi[1] > height + 1.0:
                problems.append(
                    f"visible positions span x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f}, outside "
                    f"the {width}x{height} frames (pixels of another resolution?)"
                )
    if tracks.points is not None and not problems:
        pts = np.asarray(tracks.points)
        if pts.shape != xy.shape[:2] + (3,):
            problems.append(f"3D points have shape {pts.shape}, expected {xy.shape[:2] + (3,)}")
        elif tracks.points_valid is None or np.shape(tracks.points_valid) != xy.shape[:2]:
            problems.append(f"3D points need points_valid of shape {xy.shape[:2]}")
    if problems:
        raise InputError(f"{where}: bad tracks: {problems[0]}")
    return tracks


def _sample_depth(depth: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Nearest-pixel depth (F, H, W) at positions xy (P, F, 2) -> (P, F) (0 outside the image)."""
    f, h, w = depth.shape
    col, row = np.floor(xy[..., 0]).astype(np.int64), np.floor(xy[..., 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    fr = np.broadcast_to(np.arange(f)[None], col.shape)
    d = depth[fr, np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
    return np.where(inside, d, 0.0)


def lift(tracks: Tracks, depth, cameras) -> Tracks:
    """Tracks with world points from z-depth maps: a visible track point at (x, y) in frame f becomes the
    point at depth depth[f] there (nearest pixel) on the ray of camera f; points with no depth (0 or
    non-finite) or not visible are marked invalid (points_valid).

    depth: (F, H, W) z-depth; cameras: Camera with viewmat (F, 4, 4), K (F, 3, 3).
    """
    xy = np.asarray(tracks.xy, np.float64)
    z = _sample_depth(np.asarray(depth, np.float64), xy)
    valid = np.asarray(tracks.visible) & np.isfinite(z) & (z > 0)
    z = np.where(valid, z, 0.0)
    K = np.asarray(cameras.K, np.float64)  # (F, 3, 3)
    vm = np.asarray(cameras.viewmat, np.float64)  # (F, 4, 4)
    x = (xy[..., 0] - K[None, :, 0, 2]) / K[None, :, 0, 0] * z
    y = (xy[..., 1] - K[None, :, 1, 2]) / K[None, :, 1, 1] * z
    cam = np.stack([x, y, z], -1)  # (P, F, 3) camera coordinates
    R, t = vm[:, :3, :3], vm[:, :3, 3]
    world = np.einsum("fji,pfj->pfi", R, cam - t[None])  # R^T (x_c - t)
    world = np.where(valid[..., None], world, 0.0)
    return tracks.replace(points=jnp.asarray(world, jnp.float32), points_valid=jnp.asarray(valid))


def subsample(tracks: Tracks, max_tracks: int, seed: int = 0) -> Tracks:
    """At most max_tracks of the tracks, chosen uniformly without replacement (seeded), in their order."""
    if max_tracks <= 0 or tracks.num_tracks <= max_tracks:
        return tracks
    keep = np.sort(np.random.default_rng(seed).choice(tracks.num_tracks, max_tracks, replace=False))
    return tracks.take(keep)


def canonical_frame(tracks: Tracks) -> int:
    """The frame where the most tracks are visible (confidence-weighted; Shape of Motion's choice of its
    canonical frame); ties go to the earliest."""
    vis = np.asarray(tracks.visible, np.float64) * np.asarray(tracks.confidence, np.float64)
    return int(np.argmax(vis.sum(axis=0)))


# Occlusion test of ground-truth tracks (`visibility`): a point is occluded when its z-depth exceeds the
# rendered z-depth d at its pixel by more than DEPTH_RTOL * d + DEPTH_ATOL (scene units). The rendered depth
# is an alpha-weighted mean of the Gaussian centres that cover the pixel, biased towards the nearest, so a
# visible surface point lies a little *behind* it. Measured on the hand-held scene (data/handheld.py; t = 0,
# 21, 42, 63): visible points on camera-facing surfaces lie 0-2 % behind d, the floor (seen at a grazing
# angle, Gaussians 0.06 across) 1-3 % and up to 4 % at the nearest range (~2.8 units, where the 0.03 absolute
# term adds 1 %); points on the far side of the ball (radius 0.12 at ~3.5 units) start 4 % behind d, the
# blob's (radius 0.3 at ~4.5 units) 5 %, and anything behind another object >= 10 %. 3 % + 0.03 units
# (3.8-4 % at the subjects' depths) separates them; points within about a pixel of a silhouette, where d
# blends both sides, are the ambiguous ones either way. Scenes of another scale pass their own atol.
DEPTH_RTOL = 0.03
DEPTH_ATOL = 0.03


def visibility(
    points, cams: cameras.Camera, depth, rtol: float = DEPTH_RTOL, atol: float = DEPTH_ATOL
) -> tuple[np.ndarray, np.ndarray]:
    """Project world points through per-frame cameras and test them against the rendered depth.

    points: (F, P, 3) world positions at each frame; cams: viewmat (F, 4, 4), K (F, 3, 3); depth: (F, H, W)
    rendered z-depth (0 where nothing was drawn). A point is visible at f when it lies in front of the camera,
    inside the image (0 <= x < W, 0 <= y < H) and its z-depth is <= d * (1 + rtol) + atol, d the rendered
    depth at its (nearest) pixel; pixels with no depth (d = 0) occlude nothing (see DEPTH_RTOL).
    Returns xy (F, P, 2) float32 pixel positions (geometry.cameras convention) and visible (F, P) bool.
    """
    points = jnp.asarray(points, jnp.float32)
    proj = jax.vmap(
        lambda vm, k, p: cameras.project_points(cameras.Camera(vm, k, cams.width, cams.height), p)
    )
    xy, z = proj(cams.viewmat, cams.K, points)
    xy, z = np.asarray(xy), np.asarray(z)
    depth = np.asarray(depth)
    F, H, W = depth.shape
    front = z > 1e-6
    xy = np.where(front[..., None], xy, np.nan)  # behind the camera: no position
    with np.errstate(invalid="ignore"):
        inside = front & (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    col = np.clip(np.nan_to_num(np.floor(xy[..., 0]), nan=0.0), 0, W - 1).astype(np.int64)
    row = np.clip(np.nan_to_num(np.floor(xy[..., 1]), nan=0.0), 0, H - 1).astype(np.int64)
    d = depth[np.arange(F)[:, None], row, col]
    unoccluded = (d <= 0) | (z <= d * (1.0 + rtol) + atol)
    return np.nan_to_num(xy).astype(np.float32), inside & unoccluded


def from_scene(
    positions_at: Callable,
    frames: Frames,
    candidates,
    num_tracks: int,
    query_frames: Sequence[int],
    seed: int = 0,
    groups=None,
    group_shares: dict | None = None,
    rtol: float = DEPTH_RTOL,
    atol: float = DEPTH_ATOL,
    return_indices: bool = False,
):
    """Ground-truth tracks of Gaussians with analytic motion through any rendered Frames (any scene).

    positions_at: t (scalar) -> (N, 3) world positions at time t; vmapped over frames.times (jit it for
        speed, e.g. `jax.jit(lambda t: synthetic.scene_at(scene, cfg, t).means)` for the default scene).
    frames: F frames with cameras, times and rendered z-depth (frames.depth (F, H, W): the occlusion test).
    candidates: (C,) indices of the Gaussians that may be tracked.
    num_tracks: P, split evenly over query_frames (rows of frames).
    groups: optional (C,) int labels of the candidates, with group_shares {label: share}: the tracks of each
        query frame are drawn by group in these shares (renormalised over the groups with a visible
        candidate; labels left out get none; default equal shares), uniformly within a group. Without
        groups, uniformly. A candidate is drawn only where `visibility` finds it visible at the query
        frame, and at most once; fewer than P tracks come back when too few candidates are visible.
    Returns Tracks (xy (P, F, 2), visible (P, F), confidence 1, query_frame (P,), points (P, F, 3) exact,
    points_valid all True), ordered by query frame; with return_indices also the (P,) Gaussian indices.
    """
    if frames.depth is None:
        raise ValueError("from_scene: frames.depth is None (the occlusion test needs rendered depth)")
    candidates = np.asarray(candidates, np.int64)
    cand = jnp.asarray(candidates)
    pts = jax.vmap(positions_at)(jnp.asarray(frames.times, jnp.float32))[:, cand]  # (F, C, 3)
    xy, vis = visibility(pts, frames.cameras, frames.depth, rtol, atol)
    rng = np.random.default_rng(seed)
    qs = [int(q) for q in query_frames]
    counts = np.full(len(qs), num_tracks // max(len(qs), 1))
    counts[: num_tracks - counts.sum()] += 1
    labels = None if groups is None else np.asarray(groups)
    taken = np.zeros(candidates.shape[0], bool)
    chosen, chosen_q = [], []
    for q, n in zip(qs, counts, strict=True):
        ok = vis[q] & ~taken
        if labels is None:
            p = ok.astype(np.float64)
        else:
            shares = group_shares or {int(g): 1.0 for g in np.unique(labels)}
            p = np.zeros(candidates.shape[0])
            for g, share in shares.items():
                members = ok & (labels == g)
                if members.any() and share > 0:
                    p[members] = share / members.sum()
        avail = int(np.count_nonzero(p))
        if avail == 0 or n == 0:
            continue
        pick = rng.choice(candidates.shape[0], size=min(int(n), avail), replace=False, p=p / p.sum())
        taken[pick] = True
        chosen.append(np.sort(pick))
        chosen_q.append(np.full(pick.shape[0], q, np.int32))
    sel = np.concatenate(chosen) if chosen else np.zeros((0,), np.int64)
    qf = np.concatenate(chosen_q) if chosen_q else np.zeros((0,), np.int32)
    out = make(
        xy=np.transpose(xy[:, sel], (1, 0, 2)),
        visible=vis[:, sel].T,
        query_frame=qf,
        points=np.transpose(np.asarray(pts)[:, sel], (1, 0, 2)),
        points_valid=np.ones((sel.shape[0], xy.shape[0]), bool),
    )
    return (out, candidates[sel]) if return_indices else out


def concat(parts: list) -> Tracks:
    """One Tracks of the tracks of several (same frames; points kept only when every part has them)."""
    cat = lambda name: np.concatenate([np.asarray(getattr(t, name)) for t in parts])  # noqa: E731
    has_pts = all(t.points is not None for t in parts)
    return make(
        cat("xy"),
        cat("visible"),
        cat("confidence"),
        cat("query_frame"),
        cat("points") if has_pts else None,
        cat("points_valid") if has_pts else None,
    )


def every_query(tracks: Tracks) -> Tracks:
    """One track per (track, frame where it is visible with confidence > 0), queried there: keypoints
    annotated in a few frames, scored by transferring every annotated frame's keypoints to every other's
    (DyCheck's PCK-T over all ordered pairs)."""
    vis = np.asarray(tracks.visible) & (np.asarray(tracks.confidence) > 0)
    p, q = np.nonzero(vis)
    return tracks.take(p).replace(query_frame=jnp.asarray(q.astype(np.int32)))
