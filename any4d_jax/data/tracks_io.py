"""Point tracks from files: a documented .npz any tracker can write, Shape of Motion's preprocessed iPhone
tracks and aligned depth, and DyCheck's keypoint annotations. Every reader returns checked `tracks.Tracks`.

    save_npz(path, tracks)                                       write Tracks in the .npz format below
    load_npz(path, num_frames, width, height)                    read and check that format -> Tracks
    load_som_tracks(root, frame_names, factor, width, height)    SoM flow3d_preprocessed/2d_tracks -> Tracks
    load_som_depth(root, frame_names, factor, expect_hw)         SoM aligned mono depth -> (F, H, W) z-depth
    load_dycheck_keypoints(root, frame_names, factor)            DyCheck keypoint/<f>x/train -> Tracks
    som_track_info(occlusion_logit, distance_logit)              SoM's parse_tapir_track_info, in numpy

Frame f of a result is frame_names[f] (or, for .npz, the f-th frame of the video the tracks belong to, e.g.
`IPhoneScene.train_names` order). Pixel positions follow data/tracks.py: x right, y down, pixel (col, row)
covers [col, col + 1) x [row, row + 1), so the centre of the top-left pixel is (0.5, 0.5).

Every problem with a file (missing, not the expected container, a missing or unknown key, wrong shape or
dtype, non-finite or out-of-range values, tracks that do not fit the frames) raises an `errors.InputError` (a
ValueError; `errors.MissingInput` for a missing .npz, `iphone.SceneError` inside a scene folder): one line
naming the file and what to do. Arrays are checked from their .npy headers before they are read.

The .npz track format
---------------------
One numpy archive (`numpy.savez` or `numpy.savez_compressed`; read with allow_pickle=False) holding P tracks
over the F frames of a video, at the resolution the frames are used at (W x H):

    key           shape      dtype                  meaning
    xy            (P, F, 2)  float (16/32/64)       required. Pixel position (x, y) of track p in frame f, our
                                                    convention (top-left pixel centre (0.5, 0.5)). Finite
                                                    everywhere: where the point is hidden, the tracker's guess
                                                    (or any finite value).
    visible       (P, F)     bool (or integer 0/1)  required. The point is seen in frame f: inside the image
                                                    and not occluded. Visible positions must lie in the image.
    confidence    (P, F)     float in [0, 1]        optional, default 1. Trust in xy / visible at f; 0 means
                                                    unknown; not visible with confidence > 0 means occluded.
    query_frame   (P,)       integer in 0..F-1      optional, default the first frame where the track is
                                                    visible. The frame the track was started from (visible).
    points        (P, F, 3)  float, finite          optional. World positions (ground truth, or lifted).
    points_valid  (P, F)     bool (or integer 0/1)  optional, only with points; default = visible.

No other key is accepted (a misspelt optional key would silently fall back to its default). P >= 1, and every
track must be visible in at least one frame. `save_npz` writes exactly these keys (compressed), so
save_npz / load_npz round-trips a Tracks exactly.

Writing one from a tracker's output (numpy; the video has F frames of W x H pixels):

- CoTracker (facebookresearch/co-tracker): ``tracks, vis = predictor(video, queries=q)`` gives tracks
  (1, F, P, 2) and boolean vis (1, F, P) (its predictor thresholds visibility at 0.9)::

      xy = tracks[0].transpose(1, 0, 2) + 0.5      # CoTracker puts pixel centres at integer positions
      visible = vis[0].T;  query_frame = q[0, :, 0].astype(int)

  CoTracker's coordinates have pixel centres at integers: `bilinear_sampler` (align_corners=True) puts 0 at
  the centre of the left-most pixel and its predictor rescales by (W - 1) / (w - 1)
  (cotracker/models/core/model_utils.py, cotracker/predictor.py); hence the + 0.5. Frames before a track's
  query frame are only tracked with backward_tracking=True; otherwise write confidence 0 there.
- TAPIR / BootsTAPIR (google-deepmind/tapnet): tracks (P, F, 2), occlusion and expected_dist logits (P, F)::

      xy = tracks                                   # raster coordinates already: no shift
      visible = (1 - sigmoid(occlusion)) * (1 - sigmoid(expected_dist)) > 0.5
      confidence = 1 - sigmoid(expected_dist)       # optional

  tapnet works in raster coordinates, (0, 0) the top-left corner of the top-left pixel (the `interp` docstring
  in tapnet/utils/model_utils.py), i.e. ours, provided you rescaled from the model's resolution by the image
  sizes (``transforms.convert_grid_coordinates(tracks, (256, 256), (W, H))``, as tapnet's demos do). Scripts
  that query integer pixel indices and rescale by (W - 1) / 255, like Shape of Motion's
  preproc/compute_tracks_*.py, produce integer-centred positions: add 0.5 (load_som_tracks does).
- Any other tracker: check your tracker's convention (where is the centre of the top-left pixel?).

Shape of Motion's preprocessed iPhone layout (vye16/shape-of-motion @ 697d462)
-----------------------------------------------------------------------------
Read by flow3d/data/iphone_dataset.py, written by preproc/compute_tracks_{torch,jax}.py and
preproc/compute_depth.py, inside a DyCheck scene folder::

    flow3d_preprocessed/2d_tracks/<f>x/<query>_<target>.npy      (N_query, 4) float32, one file per ordered
                                                                 pair of frames (query == target included)
    flow3d_preprocessed/aligned_<depth_type>/<f>x/<frame>.npy    (H, W) float aligned *disparity*, 0 = invalid
                                                                 (depth_type: depth_anything_colmap (SoM's
                                                                 default), depth_anything, midas)

<query> and <target> are frame names (e.g. 0_00012_0_00040.npy). Row n of every <q>_*.npy is the same
track: the n-th point of a 4-pixel grid over the foreground mask of frame q. Columns: x, y (pixels, centres at
integers: the query rows hold the integer grid positions and SoM samples with grid_sample(align_corners=True)
after normalising by W - 1), TAPIR's occlusion logit, TAPIR's expected-distance logit. SoM derives, per entry
(flow3d/data/utils.py parse_tapir_track_info)::

    visibility = 1 - sigmoid(occlusion);  certainty = 1 - sigmoid(expected_dist)
    visible = visibility * certainty > 0.5;   invisible = (1 - visibility) * certainty > 0.5
    confidence = certainty if (visible or invisible) else 0

load_som_tracks returns exactly those visible / confidence (invisible = not visible and confidence > 0), with
xy + 0.5, except that (a) a position outside the W x H image is not visible (our Tracks' definition; its
confidence is kept), and (b) tracks SoM's rule does not call visible at their own query frame are left out
(our Tracks start from a visible point). It does not apply SoM's foreground-mask and "visible in 5% of
frames" filters (those need masks and depth). Tracks are subsampled like SoM's get_tracks_3d: max_tracks split
evenly over the query frames (the last takes the remainder), each drawn without replacement (seeded).

Aligned depth: SoM's loader turns the disparity d into depth 1 / max(d, 1e-3), then clamps depth at 2.5 x the
median over frames of each frame's largest depth. load_som_depth does the same, except that pixels the
preprocessing marked invalid (d <= 0) get depth 0 (unknown) instead of being pushed to the clamp. The depth is
in the units of whatever the disparity was aligned to: for depth_anything_colmap, SoM's COLMAP model
(flow3d_preprocessed/colmap/sparse), which SoM pairs with its refined cameras; nothing here checks that it
matches the DyCheck cameras of iphone.load_scene.

DyCheck keypoints (KAIR-BAIR/dycheck @ ddf77a4)
-----------------------------------------------
``keypoint/<f>x/<split>/<frame>.json`` (docs/DATASETS.md; dycheck/datasets/nerfies.py `load_keypoints`): a
(J, 3) list of [x, y, v] rows, the same J keypoints in the same order in every file, v = 1 visible / 0 not,
and ``skeleton.json`` beside them (ignored here). Files exist only for 10 training frames, the strided subset
``frame_names[linspace(0, F, 10, endpoint=False).astype(int)]`` of dycheck/core/tasks/kp_transfer.py (the
released iPhone scenes have them at 2x only). Positions are stored with pixel centres at integers: DyCheck
adds 0.5 on load (``offset = 0.5 if camera.use_center``, use_center defaults to True). PCK-T (kp_transfer.py,
core/metrics/keypoint.py) runs over every ordered pair of keypoint frames, on keypoints visible in both, and
counts a transfer correct when it lands within 0.05 x max(W, H) pixels. Shape of Motion reads keypoint/2x and
multiplies x, y by 2 / factor (flow3d/data/iphone_dataset.py iPhoneDatasetKeypointView).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from any4d_jax import files
from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.iphone import (
    SceneError,
    _load_json,
    _load_npy,
    _npy_header,
    _numbers_only,
    _one_line,
    _short,
    read_camera,
    read_npy_header,
)
from any4d_jax.errors import InputError, MissingInput

__all__ = [
    "NPZ_KEYS",
    "save_npz",
    "load_npz",
    "som_track_info",
    "load_som_tracks",
    "load_som_depth",
    "load_dycheck_keypoints",
]

NPZ_KEYS = ("xy", "visible", "confidence", "query_frame", "points", "points_valid")
# Largest P * F a track file may declare (xy alone is then 2 GiB as float32).
MAX_TRACK_ENTRIES = 2**28
# Largest number of rows a SoM per-pair track file may declare.
MAX_SOM_ROWS = 2**24
SOM_DIR = "flow3d_preprocessed"
SOM_DISPARITY_FLOOR = 1e-3  # SoM: depth[depth < 1e-3] = 1e-3 before inverting the disparity
SOM_DEPTH_CLAMP = 2.5  # SoM: depth clamped at 2.5 x the median of per-frame maxima
KEYPOINT_FACTORS = (1, 2, 4, 8)
NPZ_HELP = "see any4d_jax/data/tracks_io.py for the format"


def _checked(tr: tracks_lib.Tracks, num_frames: int, width: int, height: int, where: str, error=InputError):
    """tracks.check, its InputError re-raised as `error` (e.g. iphone.SceneError) with the same line."""
    try:
        return tracks_lib.check(tr, num_frames, width, height, where)
    except InputError as e:
        if type(e) is error:
            raise
        raise error(_one_line(e)) from None


def _check_frame_names(frame_names, where: str) -> list[str]:
    names = list(frame_names) if isinstance(frame_names, (list, tuple)) else None
    if not names:
        raise InputError(
            f"{where}: frame_names must be a non-empty list of frame names, got {_short(frame_names)}"
        )
    for i, n in enumerate(names):
        if not isinstance(n, str) or n in ("", ".", "..") or any(c in n for c in "/\\\0"):
            raise InputError(f"{where}: frame_names[{i}] {n!r} is not a plain file name")
    if len(set(names)) != len(names):
        raise InputError(f"{where}: frame_names lists a frame twice")
    return names


def _check_factor(factor, where: str) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"{where}: factor must be a positive integer (1, 2, ...), got {factor!r}")
    return int(factor)


# ---------------------------------------------------------------------------------------------------------
# The .npz format.
# ---------------------------------------------------------------------------------------------------------


def save_npz(path: str, tracks: tracks_lib.Tracks) -> str:
    """Write `tracks` to `path` in the .npz format of the module docstring (compressed, atomically).

    xy (P, F, 2) float32, visible (P, F) bool, confidence (P, F) float32, query_frame (P,) int32, and points
    (P, F, 3) float32 with points_valid (P, F) bool when the tracks have points. Returns path.
    """
    arrays = {
        "xy": np.asarray(tracks.xy, np.float32),
        "visible": np.asarray(tracks.visible, bool),
        "confidence": np.asarray(tracks.confidence, np.float32),
        "query_frame": np.asarray(tracks.query_frame, np.int32),
    }
    if tracks.points is not None:
        arrays["points"] = np.asarray(tracks.points, np.float32)
        valid = tracks.visible if tracks.points_valid is None else tracks.points_valid
        arrays["points_valid"] = np.asarray(valid, bool)
    with files.atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def _member_header(zf: zipfile.ZipFile, member: str, path: str, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the .npy header of one archive member, without reading its data."""
    try:
        with zf.open(member) as f:
            shape, dtype = read_npy_header(f)
    except Exception as e:  # noqa: BLE001 - any header failure is a bad file
        raise InputError(f"{path}: key {key!r} cannot be read as a numpy array ({_one_line(e)})") from None
    if dtype.hasobject:
        raise InputError(
            f"{path}: key {key!r} holds Python objects (dtype {dtype}); save plain numeric arrays, {NPZ_HELP}"
        )
    return tuple(shape), dtype


def _npz_headers(path: str) -> dict[str, tuple[tuple, np.dtype]]:
    if not os.path.isfile(path):
        raise MissingInput(
            f"{path}: tracks file not found (write it with tracks_io.save_npz or numpy.savez; {NPZ_HELP})"
        )
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not an .npz archive (numpy.savez writes one; {NPZ_HELP})")
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            keys = {(m[:-4] if m.endswith(".npy") else m): m for m in members}
            unknown = sorted(k for k in keys if k not in NPZ_KEYS)
            if unknown:
                raise InputError(
                    f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; the keys are "
                    f"{', '.join(NPZ_KEYS)} ({NPZ_HELP})"
                )
            return {k: _member_header(zf, m, path, k) for k, m in keys.items()}
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged archive
        raise InputError(f"{path}: cannot be read as an .npz archive ({_one_line(e)})") from None


def _expect(path, key, header, shape, kinds, what):
    got_shape, dtype = header
    if got_shape != shape:
        raise InputError(f"{path}: key {key!r} has shape {got_shape}, expected {shape} ({NPZ_HELP})")
    if dtype.kind not in kinds:
        raise InputError(f"{path}: key {key!r} has dtype {dtype}, expected {what} ({NPZ_HELP})")


def _as_bool(path, key, a) -> np.ndarray:
    if a.dtype.kind != "b" and not np.all((a == 0) | (a == 1)):
        raise InputError(f"{path}: key {key!r} must hold booleans (or integers 0 / 1), got other values")
    return a.astype(bool)


def load_npz(path: str, num_frames: int, width: int, height: int) -> tracks_lib.Tracks:
    """Read and check a track file in the .npz format of the module docstring.

    num_frames F, width W, height H: the video the tracks belong to (frames at the resolution used).
    Returns Tracks with xy (P, F, 2), visible / confidence (P, F), query_frame (P,), points (P, F, 3) or None.
    Any problem raises a one-line InputError (MissingInput when the file does not exist) naming the file.
    """
    path = os.fspath(path)
    headers = _npz_headers(path)
    missing = [k for k in ("xy", "visible") if k not in headers]
    if missing:
        raise InputError(
            f"{path}: missing key(s) {', '.join(map(repr, missing))} "
            f"(has {', '.join(sorted(headers)) or 'none'}; {NPZ_HELP})"
        )
    shape, dtype = headers["xy"]
    if len(shape) != 3 or shape[2] != 2:
        raise InputError(f"{path}: key 'xy' has shape {shape}, expected (P, F, 2) ({NPZ_HELP})")
    p, f = shape[:2]
    if dtype.kind != "f":
        raise InputError(f"{path}: key 'xy' has dtype {dtype}, expected float pixel positions ({NPZ_HELP})")
    if f != num_frames:
        raise InputError(
            f"{path}: tracks span {f} frames but the video has {num_frames}; write one column per frame"
        )
    if p == 0:
        raise InputError(f"{path}: the file holds no tracks (P = 0)")
    if p * f > MAX_TRACK_ENTRIES:
        raise InputError(
            f"{path}: {p} tracks x {f} frames is more than the {MAX_TRACK_ENTRIES} this reader reads"
        )
    _expect(path, "visible", headers["visible"], (p, f), "biu", "bool")
    if "confidence" in headers:
        _expect(path, "confidence", headers["confidence"], (p, f), "f", "float in [0, 1]")
    if "query_frame" in headers:
        _expect(path, "query_frame", headers["query_frame"], (p,), "iu", "integer frame indices")
    if "points_valid" in headers and "points" not in headers:
        raise InputError(f"{path}: key 'points_valid' without 'points'; add the points or drop points_valid")
    if "points" in headers:
        _expect(path, "points", headers["points"], (p, f, 3), "f", "float world positions")
    if "points_valid" in headers:
        _expect(path, "points_valid", headers["points_valid"], (p, f), "biu", "bool")

    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: np.asarray(npz[k]) for k in headers}
    except Exception as e:  # noqa: BLE001 - a damaged member
        raise InputError(f"{path}: cannot be read as an .npz archive ({_one_line(e)})") from None

    xy = data["xy"].astype(np.float32)
    if not np.all(np.isfinite(xy)):
        raise InputError(
            f"{path}: key 'xy' has non-finite values; write finite positions everywhere (the tracker's guess "
            "where the point is hidden)"
        )
    visible = _as_bool(path, "visible", data["visible"])
    conf = data.get("confidence")
    if conf is not None:
        conf = conf.astype(np.float32)
        if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
            raise InputError(f"{path}: key 'confidence' must be finite and lie in [0, 1]")
    never = np.nonzero(~visible.any(axis=1))[0]
    if never.size:
        raise InputError(
            f"{path}: {never.size} track(s) are never visible (track {int(never[0])} first); drop them"
        )
    query = data.get("query_frame")
    if query is not None:
        query = query.astype(np.int64)
        if query.min() < 0 or query.max() >= f:
            raise InputError(f"{path}: key 'query_frame' has frame indices outside 0..{f - 1}")
    points = valid = None
    if "points" in data:
        points = data["points"].astype(np.float32)
        if not np.all(np.isfinite(points)):
            raise InputError(f"{path}: key 'points' has non-finite values; write finite positions everywhere")
        if "points_valid" in data:
            valid = _as_bool(path, "points_valid", data["points_valid"])
    tr = tracks_lib.make(xy, visible, conf, query, points, valid)
    return _checked(tr, num_frames, width, height, path)


# ---------------------------------------------------------------------------------------------------------
# Shape of Motion's preprocessed tracks and depth.
# ---------------------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def som_track_info(occlusion_logit, distance_logit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SoM's parse_tapir_track_info (flow3d/data/utils.py) in numpy float32.

    occlusion_logit, distance_logit: (...) TAPIR logits. Returns (visible, invisible, confidence), each (...):
    visible / invisible are bool (confidently visible / occluded), confidence is float32 (0 when neither).
    """
    occ = np.asarray(occlusion_logit, np.float32)
    dist = np.asarray(distance_logit, np.float32)
    visibility = np.float32(1.0) - _sigmoid(occ)
    confidence = np.float32(1.0) - _sigmoid(dist)
    visible = visibility * confidence > 0.5
    invisible = (np.float32(1.0) - visibility) * confidence > 0.5
    return visible, invisible, confidence * (visible | invisible).astype(np.float32)


def _som_rows(path: str, expect_rows: int | None, qpath: str | None = None) -> np.ndarray:
    """One SoM per-pair track file: (N, 4) float32 [x, y, occlusion logit, distance logit], checked."""
    if not os.path.isfile(path):
        raise SceneError(
            f"{path}: SoM track file not found (every query frame needs one file per target frame; rerun "
            "SoM's preproc/compute_tracks_torch.py or leave this query frame out of query_frames)"
        )
    shape, dtype = _npy_header(path)
    if len(shape) != 2 or shape[1] != 4 or dtype.kind != "f":
        raise SceneError(
            f"{path}: expected (N, 4) float rows [x, y, occlusion logit, distance logit], got shape {shape} "
            f"dtype {dtype}"
        )
    if expect_rows is not None and shape[0] != expect_rows:
        raise SceneError(
            f"{path}: {shape[0]} tracks but {qpath} has {expect_rows}; the files of one query frame must "
            "hold the same tracks (rerun SoM's track preprocessing for this query frame)"
        )
    if shape[0] > MAX_SOM_ROWS:
        raise SceneError(f"{path}: {shape[0]} tracks, more than the {MAX_SOM_ROWS} this reader reads")
    rows = _load_npy(path).astype(np.float32)
    if not np.all(np.isfinite(rows)):
        raise SceneError(f"{path}: non-finite values in the track rows; rerun SoM's track preprocessing")
    return rows


def load_som_tracks(
    root: str,
    frame_names,
    factor: int,
    width: int,
    height: int,
    query_frames=None,
    max_tracks: int = 40_000,
    seed: int = 0,
) -> tracks_lib.Tracks:
    """Tracks from Shape of Motion's flow3d_preprocessed/2d_tracks/<factor>x (see the module docstring).

    root: the DyCheck scene folder. frame_names: the F frames, in video order (e.g. IPhoneScene.train_names);
    frame f of the result is frame_names[f]. width, height: the frames' size at `factor`.
    query_frames: indices into frame_names of the query frames to read (each needs all F target files);
    default every frame with at least one <frame>_<target>.npy file. max_tracks: at most this many tracks,
    split evenly over the query frames as SoM does (<= 0: all). seed: the subsampling seed.
    Returns Tracks (P, F) in query-frame order; SceneError (one line naming the file) on any problem.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    factor = _check_factor(factor, root)
    folder = os.path.join(root, SOM_DIR, "2d_tracks", f"{factor}x")
    names = _check_frame_names(frame_names, folder)
    if not os.path.isdir(folder):
        raise SceneError(
            f"{folder}: SoM 2D track folder not found (download SoM's preprocessed scene or run its "
            f"preproc/compute_tracks_torch.py for factor {factor})"
        )
    present = set(os.listdir(folder))
    f_count = len(names)
    if query_frames is None:
        queries = [i for i, q in enumerate(names) if any(f"{q}_{t}.npy" in present for t in names)]
        if not queries:
            raise SceneError(
                f"{folder}: no <query>_<target>.npy file for any pair of the {f_count} frames "
                f"(first frame {names[0]!r}); are these the scene's frame names?"
            )
    else:
        queries = sorted({int(q) for q in query_frames}) if len(query_frames) else []
        if not queries or queries[0] < 0 or queries[-1] >= f_count:
            raise InputError(
                f"{folder}: query_frames must be frame indices in 0..{f_count - 1}, got {query_frames!r}"
            )
    rng = np.random.default_rng(seed)
    per_query = max_tracks // len(queries) if max_tracks > 0 else 0
    blocks, query_of = [], []
    for k, q in enumerate(queries):
        qpath = os.path.join(folder, f"{names[q]}_{names[q]}.npy")
        qrows = _som_rows(qpath, None)
        qx, qy = qrows[:, 0] + 0.5, qrows[:, 1] + 0.5
        outside = (qx < 0) | (qx > width) | (qy < 0) | (qy > height)
        if np.any(outside):
            raise SceneError(
                f"{qpath}: query positions reach x {qx.max():.1f}, y {qy.max():.1f}, outside the "
                f"{width}x{height} frames: tracks of another resolution? (pass the frame size at factor "
                f"{factor})"
            )
        candidates = np.nonzero(som_track_info(qrows[:, 2], qrows[:, 3])[0])[0]
        budget = max_tracks - per_query * (len(queries) - 1) if k == len(queries) - 1 else per_query
        if max_tracks > 0 and candidates.size > budget:
            candidates = np.sort(rng.choice(candidates, budget, replace=False))
        if candidates.size == 0:
            continue
        cols = []
        for t in range(f_count):
            rows = (
                qrows
                if t == q
                else _som_rows(os.path.join(folder, f"{names[q]}_{names[t]}.npy"), len(qrows), qpath)
            )
            cols.append(rows[candidates])
        blocks.append(np.stack(cols, axis=1))  # (P_q, F, 4)
        query_of.append(np.full(candidates.size, q, np.int32))
    if not blocks:
        raise SceneError(
            f"{folder}: no track is visible at its query frame by SoM's rule (check the occlusion / distance "
            "logit columns)"
        )
    data = np.concatenate(blocks)
    xy = data[..., :2] + np.float32(0.5)  # SoM: pixel centres at integers; ours at + 0.5
    visible, _, confidence = som_track_info(data[..., 2], data[..., 3])
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
    tr = tracks_lib.make(xy, visible & inside, confidence, np.concatenate(query_of))
    return _checked(tr, f_count, width, height, folder, SceneError)


def load_som_depth(
    root: str, frame_names, factor: int, expect_hw: tuple[int, int], depth_type: str = "depth_anything_colmap"
) -> np.ndarray:
    """(F, H, W) float32 z-depth from SoM's flow3d_preprocessed/aligned_<depth_type>/<factor>x/<frame>.npy.

    The files hold aligned disparity d (H, W); depth = 1 / max(d, 1e-3) clamped at 2.5 x the median of the
    frames' largest depths (SoM's loader), 0 (unknown) where d <= 0. Units: those the disparity was aligned to
    (module docstring). expect_hw: (H, W) of the frames at `factor`. SceneError (one line) on any problem.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    factor = _check_factor(factor, root)
    if not isinstance(depth_type, str) or not depth_type or any(c in depth_type for c in "/\\\0"):
        raise InputError(f"{root}: depth_type must be a folder-name suffix like 'depth_anything_colmap'")
    folder = os.path.join(root, SOM_DIR, f"aligned_{depth_type}", f"{factor}x")
    names = _check_frame_names(frame_names, folder)
    expect_hw = tuple(int(v) for v in expect_hw)
    if not os.path.isdir(folder):
        som = os.path.join(root, SOM_DIR)
        found = sorted(d for d in os.listdir(som) if d.startswith("aligned_")) if os.path.isdir(som) else []
        raise SceneError(
            f"{folder}: SoM aligned depth folder not found (found "
            f"{', '.join(found) or 'no aligned_* folder'}; pick depth_type accordingly or run SoM's "
            "preproc/compute_depth.py)"
        )
    depth = np.zeros((len(names),) + expect_hw, np.float32)
    for i, name in enumerate(names):
        path = os.path.join(folder, f"{name}.npy")
        if not os.path.isfile(path):
            raise SceneError(
                f"{path}: aligned disparity not found (every frame needs one; rerun compute_depth.py)"
            )
        shape, dtype = _npy_header(path)
        if shape != expect_hw:
            raise SceneError(
                f"{path}: disparity has shape {shape}, expected (H, W) = {expect_hw} (a map of another "
                f"factor than {factor}x?)"
            )
        if dtype.kind != "f":
            raise SceneError(
                f"{path}: disparity has dtype {dtype}, expected float (as compute_depth.py saves)"
            )
        d = _load_npy(path).astype(np.float64)
        if not np.all(np.isfinite(d)):
            raise SceneError(f"{path}: non-finite disparity values; rerun SoM's preproc/compute_depth.py")
        depth[i] = np.where(d > 0, 1.0 / np.maximum(d, SOM_DISPARITY_FLOOR), 0.0)
    known = depth > 0
    if not known.any():
        raise SceneError(f"{folder}: every disparity is <= 0 (invalid) in every frame")
    frame_max = [float(dm[k].max()) for dm, k in zip(depth, known, strict=True) if k.any()]
    return np.minimum(depth, np.float32(SOM_DEPTH_CLAMP * np.median(frame_max)))


# ---------------------------------------------------------------------------------------------------------
# DyCheck keypoints.
# ---------------------------------------------------------------------------------------------------------


def _keypoint_folder(root: str, factor: int, split: str) -> tuple[str, int]:
    """(folder, the factor its positions are at): keypoint/<factor>x/<split>, else another factor's folder."""
    for s in (factor,) + tuple(s for s in KEYPOINT_FACTORS if s != factor):
        folder = os.path.join(root, "keypoint", f"{s}x", split)
        if os.path.isdir(folder):
            return folder, s
    raise SceneError(
        f"{os.path.join(root, 'keypoint', f'{factor}x', split)}: DyCheck keypoint folder not found (nor one "
        "at another factor); download the scene's keypoint/ annotations"
    )


def _read_keypoints(path: str) -> np.ndarray:
    """(J, 3) float64 [x, y, v] from one keypoint JSON, v in {0, 1}, x and y finite."""
    rows = _load_json(path)
    if not isinstance(rows, list) or not rows:
        raise SceneError(f"{path}: expected a non-empty list of [x, y, visible] rows, got {_short(rows)}")
    for j, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 3 or not _numbers_only(row):
            raise SceneError(f"{path}: row {j} must be [x, y, visible] (three numbers), got {_short(row)}")
    kp = np.asarray(rows, np.float64)
    if not np.all(np.isfinite(kp)):
        raise SceneError(f"{path}: non-finite keypoint coordinates")
    bad = np.nonzero((kp[:, 2] != 0) & (kp[:, 2] != 1))[0]
    if bad.size:
        raise SceneError(f"{path}: row {int(bad[0])}: visible must be 0 or 1, got {kp[bad[0], 2]:g}")
    return kp


def load_dycheck_keypoints(
    root: str,
    frame_names,
    factor: int,
    split: str = "train",
    width: int | None = None,
    height: int | None = None,
) -> tracks_lib.Tracks:
    """One track per annotated DyCheck keypoint, from keypoint/<factor>x/<split>/<frame>.json.

    root: the scene folder; frame_names: the F frames in video order (frame f = frame_names[f]). When the
    scene has no keypoint/<factor>x folder, another factor's (the release has 2x only) is read and its
    positions are rescaled by s / factor about the image corner. Frames with a file get confidence 1 (visible
    as annotated); frames without one are not visible with confidence 0 (`confidence.max(axis=0) > 0` marks
    the annotated frames). query_frame: the first frame where the keypoint is visible; keypoints never visible
    in these frames are left out. Positions of hidden keypoints are meaningless (0 where no file).
    width, height: the frames' size at `factor`; default from camera/<first frame>.json.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    factor = _check_factor(factor, root)
    names = _check_frame_names(frame_names, os.path.join(root, "keypoint"))
    if width is None or height is None:
        cam = read_camera(os.path.join(root, "camera", f"{names[0]}.json")).rescale_image(factor)
        width, height = cam.width, cam.height
    folder, stored = _keypoint_folder(root, factor, split)
    scale = stored / factor
    per_frame = {}
    first = None
    for f, name in enumerate(names):
        path = os.path.join(folder, f"{name}.json")
        if not os.path.isfile(path):
            continue
        kp = _read_keypoints(path)
        if first is None:
            first = (path, len(kp))
        elif len(kp) != first[1]:
            raise SceneError(
                f"{path}: {len(kp)} keypoints but {first[0]} has {first[1]}; every file must list the same "
                "keypoints"
            )
        pos = (kp[:, :2] + 0.5) * scale  # DyCheck stores integer pixel centres (it adds 0.5 on load)
        seen = pos[kp[:, 2] == 1]
        if np.any((seen < 0) | (seen > np.array([width, height]))):
            raise SceneError(
                f"{path}: visible keypoints reach x {seen[:, 0].max():.1f}, y {seen[:, 1].max():.1f}, "
                f"outside the {width}x{height} frames at factor {factor}: annotations of another resolution?"
            )
        per_frame[f] = (pos, kp[:, 2] == 1)
    if not per_frame:
        raise SceneError(
            f"{folder}: no keypoint file for any of the {len(names)} frames (expected <frame>.json, e.g. "
            f"{names[0]}.json); are these the scene's {split} frame names?"
        )
    j_count, f_count = first[1], len(names)
    xy = np.zeros((j_count, f_count, 2), np.float32)
    visible = np.zeros((j_count, f_count), bool)
    confidence = np.zeros((j_count, f_count), np.float32)
    for f, (pos, vis) in per_frame.items():
        xy[:, f] = pos
        visible[:, f] = vis
        confidence[:, f] = 1.0
    keep = np.nonzero(visible.any(axis=1))[0]
    if keep.size == 0:
        raise SceneError(f"{folder}: no keypoint is visible in any of the annotated frames")
    tr = tracks_lib.make(xy[keep], visible[keep], confidence[keep])
    return _checked(tr, f_count, width, height, folder, SceneError)
