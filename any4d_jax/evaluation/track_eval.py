"""Tracking scores of a trained model: where it says tracked points go, against ground-truth tracks.

    predict(state, spec, frames, tracks)        the model's tracks of the same query points (PredictedTracks)
    score(pred, tracks, width, height, metres)  3D (EPE, delta_3D), 2D (TAP-Vid AJ / APCK / OA, PCK-T)
    overlay(images, true_xy, pred_xy, ...)      frames with true (green) and predicted (red) points drawn
    evaluate(...)                               predict + score, and tracks.mp4 (the overlay) in a workdir

How the model tracks a point: the query pixel at its query frame is lifted to 3D with the model's own
rendered depth there (no ground-truth depth is used), tied to the Gaussians nearest that point at the query
time (model/track_anchors.py: the same blend the track loss trains), moved with them to every frame and
projected into that frame's camera. It is predicted visible where it lies inside the image and no farther
than the model's rendered depth at its pixel allows (z <= depth (1 + 0.03) + 0.01 x the scene's median
depth: data/tracks.visibility's rule, its absolute term in units of this scene).

Scores follow evaluation/tracking.py (TAP-Vid query-first, DyCheck PCK-T at 0.05 max(W, H) over every other
frame, Shape of Motion's 3D EPE and delta_3D at 5 and 10 cm), pooled over every (track, frame) entry; the
published DyCheck / SoM numbers average per frame pair instead, which weights pairs with few points more.
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.evaluation import tracking
from any4d_jax.geometry.cameras import Camera
from any4d_jax.io import video
from any4d_jax.model import track_anchors
from any4d_jax.model.gaussians import ModelSpec, splats_at
from any4d_jax.render import render, within_budget

VIDEO = "tracks.mp4"
DRAWN = 64  # tracks drawn in the video


class PredictedTracks(NamedTuple):
    points: np.ndarray  # (P, F, 3) world positions the model gives the tracked points
    xy: np.ndarray  # (P, F, 2) their pixels in the frames' cameras
    visible: np.ndarray  # (P, F) bool: predicted visible (inside, not behind the model's own surface)
    depth: np.ndarray  # (F, H, W) the model's rendered z-depth of every frame (what visibility tests)


def _depth_one(params, active, spec: ModelSpec, viewmat, K, t, width: int, height: int):
    cam = Camera(viewmat=viewmat, K=K, width=width, height=height)
    out = render(splats_at(params, active, spec.motion, t), cam, jnp.asarray(spec.background), spec.render)
    return out.depth, out.stats


_depth_jit = jax.jit(_depth_one, static_argnames=("spec", "width", "height"))


def render_depth(state, spec: ModelSpec, frames: Frames) -> np.ndarray:
    """(F, H, W) the model's z-depth of every frame (camera i at time times[i])."""
    cams, out = frames.cameras, []
    for i in range(frames.num_frames):

        def one(rcfg, i=i, spec=spec):
            s = dataclasses.replace(spec, render=rcfg)
            t = jnp.float32(frames.times[i])
            return _depth_jit(
                state.params, state.active, s, cams.viewmat[i], cams.K[i], t, cams.width, cams.height
            )

        d, _, rcfg = within_budget(one, spec.render)
        spec = dataclasses.replace(spec, render=rcfg)
        out.append(np.asarray(d))
    return np.stack(out)


def predict(state, spec: ModelSpec, frames: Frames, tracks: tracks_lib.Tracks, k: int = 4) -> PredictedTracks:
    """The model's tracks of the query points of `tracks` through `frames` (see the module docstring).

    state: anything with params and active; frames: the training frames with the cameras the model was
    fitted with; tracks: P tracks over those F frames (only query_frame and the query pixels are read)."""
    depth = render_depth(state, spec, frames)
    q = np.asarray(tracks.query_frame)
    # Lift each query pixel with the model's depth at its query frame (nearest pixel).
    only = np.zeros((tracks.num_tracks, frames.num_frames), bool)
    only[np.arange(len(q)), q] = True
    at_query = tracks_lib.make(np.asarray(tracks.xy), only, query_frame=q)
    lifted = tracks_lib.lift(at_query, depth, frames.cameras)
    p = np.arange(len(q))
    pts = np.asarray(lifted.points)[p, q]
    times = np.asarray(frames.times, np.float32)
    qt = tuple(float(x) for x in np.unique(times[q]))
    params, active = state.params, state.active

    def means_at(t):
        return splats_at(params, jnp.ones_like(active), spec.motion, t).means

    anchors = track_anchors.make(pts, times[q], qt, means_at, active, k)
    move = jax.jit(lambda t: track_anchors.predict(anchors, means_at(t)))
    pred = np.stack([np.asarray(move(jnp.float32(t))) for t in times], axis=1)  # (P, F, 3)
    valid_depth = depth[depth > 0]
    scale = float(np.median(valid_depth)) if valid_depth.size else 1.0
    xy, vis = tracks_lib.visibility(np.swapaxes(pred, 0, 1), frames.cameras, depth, 0.03, 0.01 * scale)
    return PredictedTracks(points=pred, xy=np.swapaxes(xy, 0, 1), visible=vis.T, depth=depth)


def score(
    pred: PredictedTracks, tracks: tracks_lib.Tracks, width: int, height: int, metres_per_unit=None
) -> dict:
    """{"3d": ..., "2d": ...}: 3D scores where the true tracks have 3D points (metres when metres_per_unit is
    known, else scene units with "units": "scene"), TAP-Vid scores and PCK-T on the 2D tracks."""
    q = np.asarray(tracks.query_frame)
    true_vis = np.asarray(tracks.visible)
    out = {}
    if tracks.points is not None:
        valid = np.asarray(tracks.points_valid)
        out["3d"] = tracking.scores_3d(
            pred.points, np.asarray(tracks.points), valid, q, metres_per_unit=metres_per_unit or 1.0
        )
        out["3d"]["units"] = "metres" if metres_per_unit else "scene"
    other = np.arange(tracks.num_frames)[None, :] != q[:, None]  # PCK-T: every other frame, both ways
    two = tracking.tapvid_scores(pred.xy, pred.visible, np.asarray(tracks.xy), true_vis, q, width, height)
    two["pck_t"] = tracking.pck_t(pred.xy, np.asarray(tracks.xy), true_vis & other, width, height)
    two["num_tracks"] = int(tracks.num_tracks)
    out["2d"] = two
    return out


def _disc(img: np.ndarray, xy: np.ndarray, colour, radius: float) -> None:
    """Draw filled discs of `radius` pixels at xy (M, 2) into img (H, W, 3) in place."""
    h, w = img.shape[:2]
    r = int(np.ceil(radius))
    for x, y in xy:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        cx, cy = int(np.floor(x)), int(np.floor(y))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                px, py = cx + dx, cy + dy
                if 0 <= px < w and 0 <= py < h and (px + 0.5 - x) ** 2 + (py + 0.5 - y) ** 2 <= radius**2:
                    img[py, px] = colour


def overlay(images, true_xy, true_vis, pred_xy, pred_vis, radius: float = 1.5) -> np.ndarray:
    """(F, H, W, 3) images with the true points (green) and the predicted ones (red) drawn where visible.

    images: (F, H, W, 3) in [0, 1]; true_xy / pred_xy: (P, F, 2) pixels; true_vis / pred_vis: (P, F) bool."""
    out = np.array(images, np.float32, copy=True)
    for f in range(out.shape[0]):
        _disc(out[f], np.asarray(true_xy)[np.asarray(true_vis)[:, f], f], (0.1, 0.85, 0.2), radius)
        _disc(out[f], np.asarray(pred_xy)[np.asarray(pred_vis)[:, f], f], (0.95, 0.1, 0.1), radius * 0.8)
    return out


def project_into(points: np.ndarray, cams: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World points (P, F, 3) seen by one camera per frame (cams: F cameras): ((P, F, 2), (P, F) in front)."""
    vm = np.asarray(cams.viewmat, np.float64)
    K = np.asarray(cams.K, np.float64)
    cam = np.einsum("fij,pfj->pfi", vm[:, :3, :3], points) + vm[None, :, :3, 3]
    uvw = np.einsum("fij,pfj->pfi", K, cam)
    z = cam[..., 2]
    return uvw[..., :2] / np.where(np.abs(uvw[..., 2:3]) > 1e-9, uvw[..., 2:3], 1e-9), z > 1e-6


def evaluate(
    state,
    spec: ModelSpec,
    frames: Frames,
    tracks: tracks_lib.Tracks,
    workdir: str | None = None,
    metres_per_unit: float | None = None,
    view: tuple | None = None,
    fps: int = 12,
) -> dict:
    """Score the model's tracks against `tracks` through `frames`; with a workdir, write tracks.mp4.

    view: optional (images (F, H, W, 3), cams Camera (F)) to draw on: a held-out camera's video at the same
    times, where the true and predicted 3D points are projected (needs 3D tracks); default the training
    frames with the 2D tracks. Returns the scores of `score`.
    """
    pred = predict(state, spec, frames, tracks)
    scores = score(pred, tracks, frames.cameras.width, frames.cameras.height, metres_per_unit)
    if workdir is not None:  # at most DRAWN tracks, so the points stay apart on small frames
        keep = np.sort(np.random.default_rng(0).permutation(tracks.num_tracks)[:DRAWN])
        tracks, pred = tracks.take(keep), PredictedTracks(*(a[keep] for a in pred[:3]), pred.depth)
        if view is not None and tracks.points is not None:
            images, cams = view
            t_xy, t_in = project_into(np.asarray(tracks.points), cams)
            p_xy, p_in = project_into(pred.points, cams)
            drawn = overlay(images, t_xy, t_in & np.asarray(tracks.points_valid), p_xy, p_in)
        else:
            drawn = overlay(
                np.asarray(frames.rgb),
                np.asarray(tracks.xy),
                np.asarray(tracks.visible),
                pred.xy,
                pred.visible,
            )
        video.write_video(os.path.join(workdir, VIDEO), drawn, fps)
    return scores


HEADLINE = {
    "3d": ("epe_3d", "delta_3d_5cm", "delta_3d_10cm"),
    "2d": ("average_jaccard", "delta_avg", "occlusion_accuracy", "pck_t"),
}


def headline(scores: dict) -> dict:
    """The numbers a run's summary shows of `score`'s result: {"tracking/<name>": value}."""
    return {
        f"tracking/{k}": scores[part][k] for part, names in HEADLINE.items() if part in scores for k in names
    }
