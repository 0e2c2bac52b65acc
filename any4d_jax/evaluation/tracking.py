"""Point-tracking scores in plain numpy: 3D end-point error, 2D keypoint transfer, TAP-Vid 2D tracking.

Functions (P tracks, F frames; every function takes a mask and ignores what lies outside it, NaN included):

* `epe_3d`, `delta_3d`, `scores_3d`: 3D tracking as Shape of Motion evaluates it on DyCheck's iPhone
  scenes (Wang et al. 2024, "Shape of Motion: 4D Reconstruction from a Single Video",
  vye16/shape-of-motion, scripts/evaluate_iphone.py ``evaluate_3d_tracking``): the Euclidean end-point error
  (EPE) in metres, and the fraction of points within 5 cm and 10 cm (strict ``<``; SoM calls these
  ``pck_3d_5cm``, ``pck_3d_10cm``). We use them on our synthetic scene too.
* `pck_t`: keypoint-transfer PCK-T of DyCheck (Gao et al. 2022, "Monocular Dynamic View Synthesis: A Reality
  Check", dycheck/core/metrics/keypoint.py ``compute_pck``): a transfer is correct when it lands strictly
  within ``ratio * max(W, H)`` pixels of the true keypoint; ratio 0.05 by default.
* `tapvid_scores`: TAP-Vid's 2D tracking scores (Doersch et al. 2022, "TAP-Vid: A Benchmark for Tracking Any
  Point in a Video", google-deepmind/tapnet, tapnet/evaluation_datasets.py ``compute_tapvid_metrics``) in
  query-first mode: occlusion accuracy (OA), fraction of points within 1, 2, 4, 8, 16 px and their mean
  (<delta^x_avg>, APCK), Jaccard at those thresholds and their mean (average Jaccard, AJ), on a 256 x 256
  raster.

Averaging. All three pool over the entries they are given: one ratio (or mean) over every counted (track,
frame) entry. This is TAP-Vid's per-video score exactly (it sums over points and frames of a video, then a
benchmark averages videos). The published SoM and DyCheck numbers instead average per frame pair (SoM: the
mean over (source, target) pairs of the per-pair mean, pairs with no covisible keypoint skipped; DyCheck: the
mean over pairs of the per-pair PCK): to reproduce those, call once per pair and average the results.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TAPVID_RESOLUTION",
    "TAPVID_THRESHOLDS",
    "delta_3d",
    "epe_3d",
    "pck_t",
    "scores_3d",
    "tapvid_scores",
]

TAPVID_THRESHOLDS = (1, 2, 4, 8, 16)  # pixels on the TAPVID_RESOLUTION raster
TAPVID_RESOLUTION = 256  # TAP-Vid scores positions on a 256 x 256 raster


def _check_points(pred, true, valid, dim: int, names: str = "pred, true") -> tuple:
    """float64 copies of pred, true (..., dim) and a bool valid (...), after checking their shapes agree."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    valid = np.asarray(valid, bool)
    if pred.shape != true.shape or pred.ndim < 1 or pred.shape[-1] != dim:
        raise ValueError(f"{names} must share one shape (..., {dim}); got {pred.shape} and {true.shape}")
    if valid.shape != pred.shape[:-1]:
        raise ValueError(
            f"valid must have shape {pred.shape[:-1]} (the points' shape less the last axis); "
            f"got {valid.shape}"
        )
    return pred, true, valid


def _distances(pred: np.ndarray, true: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Euclidean distances of the valid entries only, (N,) for N = valid.sum(): invalid entries (NaN, inf or
    any garbage) are never touched."""
    return np.linalg.norm(pred[valid] - true[valid], axis=-1)


def _ratio(num, den) -> float:
    """num / den as a float, NaN when den is 0 (no warning)."""
    return float(num) / float(den) if den else float("nan")


def _delta_key(threshold: float) -> str:
    """'delta_3d_5cm' for 0.05 (metres): the threshold in centimetres, shortest form (0.025 -> '2.5cm')."""
    return f"delta_3d_{threshold * 100:g}cm"


def _check_query_frame(query_frame, num_tracks: int, num_frames: int) -> np.ndarray:
    """query_frame (P,) as ints (rounded, as TAP-Vid rounds its query times), each in [0, F)."""
    q = np.asarray(query_frame)
    if q.shape != (num_tracks,):
        raise ValueError(f"query_frame must have shape ({num_tracks},); got {q.shape}")
    q = np.round(q).astype(np.int64)
    if q.size and (q.min() < 0 or q.max() >= num_frames):
        raise ValueError(f"query_frame must lie in [0, {num_frames}); got values in [{q.min()}, {q.max()}]")
    return q


# --------------------------------------------------------------------------------------------------------
# 3D tracking (Shape of Motion's iPhone protocol)
# --------------------------------------------------------------------------------------------------------


def epe_3d(pred, true, valid) -> float:
    """Mean Euclidean end-point error over the valid entries.

    pred, true: (P, F, 3) float (any leading shape (..., 3) works), in one unit of length;
    valid: (P, F) bool (the leading shape), entries to score; the rest are ignored, NaN included.
    Returns the mean error in the inputs' unit; NaN when no entry is valid.
    """
    pred, true, valid = _check_points(pred, true, valid, 3)
    err = _distances(pred, true, valid)
    return float(err.mean()) if err.size else float("nan")


def delta_3d(pred, true, valid, thresholds=(0.05, 0.10)) -> dict:
    """Fraction of valid entries whose end-point error is strictly below each threshold.

    pred, true: (P, F, 3) float (any leading shape (..., 3) works); valid: (P, F) bool;
    thresholds: in the inputs' unit, read as metres for the key names.
    Returns {"delta_3d_5cm": ..., "delta_3d_10cm": ...} (one key per threshold, named by the threshold in
    centimetres: 0.025 -> "delta_3d_2.5cm"); values are NaN when no entry is valid.
    """
    pred, true, valid = _check_points(pred, true, valid, 3)
    err = _distances(pred, true, valid)
    return {_delta_key(t): _ratio(np.count_nonzero(err < t), err.size) for t in thresholds}


def scores_3d(pred, true, valid, query_frame=None, metres_per_unit: float = 1.0) -> dict:
    """Shape of Motion's 3D tracking scores: EPE (metres) and the fractions within 5 cm and 10 cm.

    pred, true: (P, F, 3) float, track p's predicted and true positions at frame f, in scene units;
    valid: (P, F) bool, entries to score (the rest are ignored, NaN included);
    query_frame: (P,) int or None: track p's query frame, whose entry is left out (the prediction there is
      the query itself, so its error is zero by construction); None scores every valid entry;
    metres_per_unit: errors are multiplied by this before averaging and thresholding (scene units to metres).
    Returns {"epe_3d": float metres, "delta_3d_5cm": float, "delta_3d_10cm": float, "num_points": int}, pooled
    over the scored (track, frame) entries; num_points counts them. With none, the three scores are NaN and
    num_points is 0.
    """
    pred, true, valid = _check_points(pred, true, valid, 3)
    if pred.ndim != 3:
        raise ValueError(f"pred and true must have shape (P, F, 3); got {pred.shape}")
    P, F = valid.shape
    if query_frame is not None:
        q = _check_query_frame(query_frame, P, F)
        valid = valid & (np.arange(F)[None, :] != q[:, None])
    err = _distances(pred, true, valid) * float(metres_per_unit)
    out = {"epe_3d": float(err.mean()) if err.size else float("nan")}
    out.update({_delta_key(t): _ratio(np.count_nonzero(err < t), err.size) for t in (0.05, 0.10)})
    out["num_points"] = int(err.size)
    return out


# --------------------------------------------------------------------------------------------------------
# 2D keypoint transfer (DyCheck PCK-T)
# --------------------------------------------------------------------------------------------------------


def pck_t(pred_xy, true_xy, valid, width, height, ratio: float = 0.05) -> float:
    """DyCheck's keypoint-transfer PCK: fraction of valid transfers within ratio * max(W, H) pixels.

    pred_xy, true_xy: (..., 2) float pixels (e.g. (P, F, 2) or (N, 2)), predicted and true positions of the
      transferred keypoints in the target image; valid: (...) bool, the entries to score (DyCheck scores the
      keypoints visible in both source and target frames); the rest are ignored, NaN included;
    width, height: the image size in pixels (of the images the pixels refer to);
    ratio: threshold as a fraction of the longer image side (0.05: DyCheck's PCK-T@0.05).
    A transfer is correct when its distance is strictly below the threshold (DyCheck's ``dists < thres``).
    Returns the fraction pooled over the valid entries; NaN when none is valid.
    """
    pred, true, valid = _check_points(pred_xy, true_xy, valid, 2, "pred_xy, true_xy")
    err = _distances(pred, true, valid)
    return _ratio(np.count_nonzero(err < ratio * max(width, height)), err.size)


# --------------------------------------------------------------------------------------------------------
# TAP-Vid 2D tracking
# --------------------------------------------------------------------------------------------------------


def tapvid_scores(pred_xy, pred_visible, true_xy, true_visible, query_frame, width, height) -> dict:
    """TAP-Vid's 2D tracking scores of one video, query-first mode (``compute_tapvid_metrics``).

    pred_xy, true_xy: (P, F, 2) float pixels (x, y) of track p at frame f in a width x height image;
    pred_visible, true_visible: (P, F) bool, predicted and true visibility (TAP-Vid passes occlusion flags,
      their negation);
    query_frame: (P,) int, the frame of each track's query point (rounded, as TAP-Vid rounds query times).

    Definitions, as in tapnet/evaluation_datasets.py:

    * Evaluated entries: query-first mode scores track p at frames f > query_frame[p] only (the query frame
      and earlier frames never count).
    * Positions are rescaled to a 256 x 256 raster (x * 256 / width, y * 256 / height) and a point is
      *within* threshold d when its distance is strictly below d (d = 1, 2, 4, 8, 16).
    * occlusion_accuracy: fraction of evaluated entries whose predicted visibility equals the true one.
    * pts_within_d: among evaluated entries visible in the ground truth, the fraction within d, whatever the
      predicted visibility; delta_avg (<delta^x_avg>, APCK; TAP-Vid's average_pts_within_thresh) is their
      mean over the five thresholds.
    * jaccard_d = TP / (GT positives + FP) over evaluated entries, with TP: visible in truth and prediction
      and within d; GT positives: visible in truth; FP: predicted visible and either occluded in truth or
      not within d. average_jaccard (AJ) is the mean over the five thresholds.

    Pooling: every ratio is over all evaluated entries of all tracks together, which is TAP-Vid's per-video
    score (it sums over points and frames); a benchmark averages these over videos.
    Ignored: every entry at or before its query frame; true_xy where the truth is occluded. pred_xy counts
    wherever the truth is visible (pts_within ignores the predicted visibility), and a non-finite position
    there is simply not within any threshold.
    Returns {"occlusion_accuracy", "pts_within_1", ..., "pts_within_16", "delta_avg", "jaccard_1", ...,
    "jaccard_16", "average_jaccard"}, floats. A ratio with a zero denominator is NaN: with no evaluated entry
    (e.g. P = 0, or every query on the last frame) all are NaN; with no truly visible evaluated entry the
    pts_within are NaN (and so delta_avg), and a jaccard is NaN when it also has no false positive.
    """
    pred, true = np.asarray(pred_xy, np.float64), np.asarray(true_xy, np.float64)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(
            f"pred_xy and true_xy must share one shape (P, F, 2); got {pred.shape}, {true.shape}"
        )
    P, F = pred.shape[:2]
    pred_vis = np.asarray(pred_visible, bool)
    true_vis = np.asarray(true_visible, bool)
    if pred_vis.shape != (P, F) or true_vis.shape != (P, F):
        raise ValueError(
            f"pred_visible and true_visible must have shape ({P}, {F}); "
            f"got {pred_vis.shape}, {true_vis.shape}"
        )
    if not (width > 0 and height > 0):
        raise ValueError(f"width and height must be positive; got {width} x {height}")
    q = _check_query_frame(query_frame, P, F)

    evaluated = np.arange(F)[None, :] > q[:, None]  # (P, F): query-first, frames after the query only
    scale = np.array([TAPVID_RESOLUTION / width, TAPVID_RESOLUTION / height])
    with np.errstate(invalid="ignore", over="ignore"):  # garbage where it does not count
        sq_dist = np.sum(np.square((pred - true) * scale), axis=-1)  # (P, F) on the 256 x 256 raster

    gt_pos = true_vis & evaluated  # evaluated entries visible in the truth
    n_eval, n_gt_pos = np.count_nonzero(evaluated), np.count_nonzero(gt_pos)
    out = {"occlusion_accuracy": _ratio(np.count_nonzero((pred_vis == true_vis) & evaluated), n_eval)}
    within_frac, jaccard = [], []
    for d in TAPVID_THRESHOLDS:
        with np.errstate(invalid="ignore"):
            within = sq_dist < d * d  # NaN compares False: not within
        hit = within & gt_pos
        within_frac.append(_ratio(np.count_nonzero(hit), n_gt_pos))
        true_positives = np.count_nonzero(hit & pred_vis)
        false_positives = np.count_nonzero(pred_vis & evaluated & (~true_vis | ~within))
        jaccard.append(_ratio(true_positives, n_gt_pos + false_positives))
        out[f"pts_within_{d}"] = within_frac[-1]
    out["delta_avg"] = float(np.mean(within_frac))
    out.update({f"jaccard_{d}": j for d, j in zip(TAPVID_THRESHOLDS, jaccard, strict=True)})
    out["average_jaccard"] = float(np.mean(jaccard))
    return out
