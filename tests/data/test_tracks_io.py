"""data/tracks_io.py: the .npz track format, Shape of Motion's preprocessed tracks / depth and DyCheck
keypoints, on tiny folders written here, plus one-line errors for bad files."""

import json
import math
import os
import zipfile

import numpy as np
import pytest

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data import tracks_io
from any4d_jax.errors import InputError, MissingInput

W, H = 8, 6
NAMES = ["0_00000", "0_00001", "0_00002"]


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _som_expected(occ, dist):
    """SoM's parse_tapir_track_info by hand, for one (occlusion, distance) logit pair."""
    vis_p, conf = 1.0 - _sig(occ), 1.0 - _sig(dist)
    visible, invisible = vis_p * conf > 0.5, (1.0 - vis_p) * conf > 0.5
    return visible, conf if (visible or invisible) else 0.0


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _small_tracks(points=True):
    rng = np.random.default_rng(0)
    p, f = 5, 4
    xy = rng.uniform(0.5, 5.5, (p, f, 2)).astype(np.float32)
    visible = rng.uniform(size=(p, f)) > 0.4
    visible[:, 1] = True
    query = np.full(p, 1, np.int32)
    conf = rng.uniform(size=(p, f)).astype(np.float32)
    pts = rng.normal(size=(p, f, 3)).astype(np.float32) if points else None
    valid = (rng.uniform(size=(p, f)) > 0.5) if points else None
    return tracks_lib.make(xy, visible, conf, query, pts, valid)


# ---------------------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("points", [True, False])
def test_npz_roundtrip_exact(tmp_path, points):
    tr = _small_tracks(points)
    path = tracks_io.save_npz(str(tmp_path / "t.npz"), tr)
    back = tracks_io.load_npz(path, 4, W, H)
    for name in ("xy", "visible", "confidence", "query_frame", "points", "points_valid"):
        a, b = getattr(tr, name), getattr(back, name)
        if a is None:
            assert b is None
        else:
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(np.load(path).files) == sorted(
        ["xy", "visible", "confidence", "query_frame"] + (["points", "points_valid"] if points else [])
    )


def test_npz_defaults(tmp_path):
    xy = np.full((2, 3, 2), 2.5, np.float64)
    visible = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)  # integers 0 / 1 are accepted as booleans
    tr = tracks_io.load_npz(_write_npz(tmp_path / "m.npz", xy=xy, visible=visible), 3, W, H)
    np.testing.assert_array_equal(np.asarray(tr.query_frame), [1, 0])  # first visible frame
    np.testing.assert_array_equal(np.asarray(tr.confidence), np.ones((2, 3)))
    assert tr.points is None and np.asarray(tr.xy).dtype == np.float32


def test_cotracker_conversion_note(tmp_path):
    """The docstring's CoTracker recipe: integer-centred (1, F, P, 2) -> ours (P, F, 2) + 0.5."""
    co = np.array([[[[0.0, 0.0], [7.0, 5.0]], [[1.0, 2.0], [6.0, 4.0]]]], np.float32)  # (1, F=2, P=2, 2)
    vis = np.ones((1, 2, 2), bool)
    path = _write_npz(tmp_path / "co.npz", xy=co[0].transpose(1, 0, 2) + 0.5, visible=vis[0].T)
    tr = tracks_io.load_npz(path, 2, W, H)
    np.testing.assert_array_equal(np.asarray(tr.xy)[1, 0], [7.5, 5.5])  # the bottom-right pixel's centre


# ---------------------------------------------------------------------------------------------------------
# Shape of Motion
# ---------------------------------------------------------------------------------------------------------

# (occlusion, distance) logits: confidently visible, confidently occluded, unsure, visible but less sure.
LOGITS = [(-3.0, -3.0), (3.0, -3.0), (0.0, 0.0), (-1.0, -2.0)]


def _som_scene(root, factor=1, queries=(0, 2), rows=None):
    """Per-pair SoM track files for the given query frames; row n of query q: track n at target t."""
    folder = os.path.join(root, "flow3d_preprocessed", "2d_tracks", f"{factor}x")
    os.makedirs(folder, exist_ok=True)
    for q in queries:
        for t, target in enumerate(NAMES):
            # 3 tracks: the first two visible at the query frame, the third occluded there (dropped).
            r = np.zeros((3, 4), np.float32)
            r[:, 0] = [1.0 + t, 2.0, 3.0]  # x (integer-centred, as SoM stores them)
            r[:, 1] = [2.0, 3.0 + q, 4.0]
            if t == q:
                r[:, 2:] = [LOGITS[0], LOGITS[3], LOGITS[1]]
            else:
                r[:, 2:] = [LOGITS[(t + q) % 4], LOGITS[(t + q + 1) % 4], LOGITS[0]]
            np.save(os.path.join(folder, f"{NAMES[q]}_{target}.npy"), r if rows is None else rows(q, t, r))
    return folder


def test_som_tracks_visibility_confidence_and_shift(tmp_path):
    _som_scene(str(tmp_path))
    tr = tracks_io.load_som_tracks(str(tmp_path), NAMES, 1, W, H)
    assert tr.num_tracks == 4 and tr.num_frames == 3  # 2 query frames x 2 tracks visible at their query
    np.testing.assert_array_equal(np.asarray(tr.query_frame), [0, 0, 2, 2])
    xy, vis, conf = np.asarray(tr.xy), np.asarray(tr.visible), np.asarray(tr.confidence)
    np.testing.assert_allclose(xy[0, 1], [2.5, 2.5])  # stored (2, 2) -> our pixel centre (2.5, 2.5)
    np.testing.assert_allclose(xy[3, 0], [2.5, 5.5])
    for i, (q, n) in enumerate([(0, 0), (0, 1), (2, 0), (2, 1)]):
        for t in range(3):
            logits = (LOGITS[0], LOGITS[3])[n] if t == q else LOGITS[(t + q + n) % 4]
            v, c = _som_expected(*logits)
            assert vis[i, t] == v, (i, t)
            assert conf[i, t] == pytest.approx(c, abs=1e-6), (i, t)
    # hand-computed values of the formulas: 1 - sigmoid(-3) = 0.9525741; (-1, -2): 0.731 * 0.881 = 0.644
    assert conf[0, 0] == pytest.approx(0.9525741, abs=1e-6) and vis[0, 0]
    assert not vis[0, 1] and conf[0, 1] == pytest.approx(0.9525741, abs=1e-6)  # (3, -3): confidently occluded
    assert vis[1, 0] and conf[1, 0] == pytest.approx(0.8807971, abs=1e-6)  # (-1, -2) at its query frame
    assert not vis[0, 2] and conf[0, 2] == 0.0  # (0, 0): unsure


def test_som_tracks_query_frames_subsampling_and_outside(tmp_path):
    def push_out(q, t, r):
        if q == 0 and t == 2:
            r[1, 0] = W + 3.0  # track 1 of query 0 at frame 2: visible by its logits but outside the image
        return r

    _som_scene(str(tmp_path), rows=push_out)
    assert _som_expected(*LOGITS[3])[0]  # the logits of that entry (LOGITS[(t + q + n) % 4])
    only0 = tracks_io.load_som_tracks(str(tmp_path), NAMES, 1, W, H, query_frames=[0])
    np.testing.assert_array_equal(np.asarray(only0.query_frame), [0, 0])
    assert not bool(np.asarray(only0.visible)[1, 2])
    assert float(np.asarray(only0.confidence)[1, 2]) == pytest.approx(_som_expected(*LOGITS[3])[1], abs=1e-6)
    one = tracks_io.load_som_tracks(str(tmp_path), NAMES, 1, W, H, max_tracks=3, seed=1)
    assert one.num_tracks == 3  # 1 from query 0, the remainder (2) from query 2
    np.testing.assert_array_equal(np.asarray(one.query_frame), [0, 2, 2])


def test_som_depth(tmp_path):
    folder = tmp_path / "flow3d_preprocessed" / "aligned_depth_anything_colmap" / "1x"
    folder.mkdir(parents=True)
    disps = [
        np.array([[0.5, 0.25], [0.0, 2.0]]),  # depth 2, 4, unknown, 0.5
        np.array([[1.0, 1.0], [1.0, 0.1]], np.float32),  # depth 1, 1, 1, 10
        np.array([[1e-4, -0.5], [1.0, 1.0]]),  # 1 / max(1e-4, 1e-3) = 1000 (clamped), unknown, 1, 1
    ]
    for name, d in zip(NAMES, disps, strict=True):
        np.save(folder / f"{name}.npy", d)
    depth = tracks_io.load_som_depth(str(tmp_path), NAMES, 1, (2, 2))
    assert depth.dtype == np.float32 and depth.shape == (3, 2, 2)
    clamp = 2.5 * 10.0  # median of the per-frame maxima 4, 10, 1000
    np.testing.assert_allclose(depth[0], [[2, 4], [0, 0.5]])
    np.testing.assert_allclose(depth[1], [[1, 1], [1, 10]], rtol=1e-6)
    np.testing.assert_allclose(depth[2], [[clamp, 0], [1, 1]])


# ---------------------------------------------------------------------------------------------------------
# DyCheck keypoints
# ---------------------------------------------------------------------------------------------------------

KPS = {  # frame index -> rows [x, y, v] (integer-centred, at 2x); keypoint 2 is never visible
    0: [[1.0, 2.0, 1], [3.0, 1.0, 0], [0.0, 0.0, 0]],
    2: [[2.0, 2.0, 1], [3.5, 4.0, 1], [0.0, 0.0, 0]],
}
CAMERA = {
    "orientation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    "position": [0, 0, 0],
    "focal_length": 10.0,
    "principal_point": [8.0, 6.0],
    "skew": 0.0,
    "pixel_aspect_ratio": 1.0,
    "radial_distortion": [0, 0, 0],
    "tangential_distortion": [0, 0],
    "image_size": [16, 12],
}


def _kp_scene(root, factor=2, kps=KPS):
    folder = os.path.join(root, "keypoint", f"{factor}x", "train")
    os.makedirs(folder, exist_ok=True)
    for f, rows in kps.items():
        with open(os.path.join(folder, f"{NAMES[f]}.json"), "w") as fh:
            json.dump(rows, fh)
    with open(os.path.join(folder, "skeleton.json"), "w") as fh:
        json.dump({"name": "unconnected", "parents": [None, None, None]}, fh)
    os.makedirs(os.path.join(root, "camera"), exist_ok=True)
    for name in NAMES:
        with open(os.path.join(root, "camera", f"{name}.json"), "w") as fh:
            json.dump(CAMERA, fh)
    return folder


def test_dycheck_keypoints(tmp_path):
    _kp_scene(str(tmp_path))
    tr = tracks_io.load_dycheck_keypoints(str(tmp_path), NAMES, 2)  # 8x6 from the camera at 2x
    assert tr.num_tracks == 2 and tr.num_frames == 3
    xy, vis, conf = np.asarray(tr.xy), np.asarray(tr.visible), np.asarray(tr.confidence)
    np.testing.assert_allclose(xy[0, 0], [1.5, 2.5])
    np.testing.assert_allclose(xy[1, 2], [4.0, 4.5])
    np.testing.assert_array_equal(vis, [[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(conf, [[1, 0, 1], [1, 0, 1]])  # frame 1 has no file
    np.testing.assert_array_equal(np.asarray(tr.query_frame), [0, 2])
    # factor 1 from the 2x annotations: (x + 0.5) * 2
    tr1 = tracks_io.load_dycheck_keypoints(str(tmp_path), NAMES, 1)
    np.testing.assert_allclose(np.asarray(tr1.xy)[0, 0], [3.0, 5.0])


# ---------------------------------------------------------------------------------------------------------
# Bad files: one line naming the file.
# ---------------------------------------------------------------------------------------------------------

GOOD = {"xy": np.full((2, 3, 2), 2.5, np.float32), "visible": np.ones((2, 3), bool)}


def _npz_case(**change):
    def make(tmp):
        arrays = {**GOOD, **change}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        return "npz", _write_npz(os.path.join(tmp, "t.npz"), **arrays)

    return make


def _file_case(content):
    def make(tmp):
        path = os.path.join(tmp, "t.npz")
        if isinstance(content, np.ndarray):
            with open(path, "wb") as fh:
                np.save(fh, content)
        else:
            with open(path, "wb") as fh:
                fh.write(content)
        return "npz", path

    return make


def _damaged_member(tmp):
    path = os.path.join(tmp, "t.npz")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xy.npy", b"not an array")
        zf.writestr("visible.npy", b"")
    return "npz", path


def _object_array(tmp):
    path = os.path.join(tmp, "t.npz")
    np.savez(path, xy=np.array([None, 1], dtype=object), visible=GOOD["visible"])
    return "npz", path


def _som_case(edit):
    def make(tmp):
        folder = _som_scene(tmp)
        return "som", edit(folder)

    return make


def _som_missing_pair(folder):
    path = os.path.join(folder, f"{NAMES[2]}_{NAMES[1]}.npy")
    os.remove(path)
    return path


def _som_write(name, array=None, raw=None):
    def edit(folder):
        path = os.path.join(folder, name)
        if raw is not None:
            with open(path, "wb") as fh:
                fh.write(raw)
        else:
            np.save(path, array)
        return path

    return edit


def _depth_case(name_array):
    def make(tmp):
        folder = os.path.join(tmp, "flow3d_preprocessed", "aligned_depth_anything_colmap", "1x")
        os.makedirs(folder)
        for name in NAMES:
            np.save(os.path.join(folder, f"{name}.npy"), np.ones((2, 2)))
        name, array = name_array
        path = os.path.join(folder, f"{name}.npy")
        if array is None:
            os.remove(path)
        else:
            np.save(path, array)
        return "depth", path

    return make


def _kp_case(rows_or_text, frame=2):
    def make(tmp):
        folder = _kp_scene(tmp)
        path = os.path.join(folder, f"{NAMES[frame]}.json")
        with open(path, "w") as fh:
            fh.write(rows_or_text if isinstance(rows_or_text, str) else json.dumps(rows_or_text))
        return "kp", path

    return make


BAD = {
    "npz missing file": lambda tmp: ("npz", os.path.join(tmp, "absent.npz")),
    "npz not a zip": _file_case(b"hello, not a zip\n"),
    "npz is a .npy": _file_case(np.zeros((2, 3, 2), np.float32)),
    "npz damaged member": _damaged_member,
    "npz missing key": _npz_case(visible=None),
    "npz unknown key": _npz_case(visibility=np.ones((2, 3), bool)),
    "npz xy shape": _npz_case(xy=np.zeros((2, 3, 3), np.float32)),
    "npz xy dtype": _npz_case(xy=np.full((2, 3, 2), 2, np.int32)),
    "npz frame count": _npz_case(xy=np.full((2, 4, 2), 2.5, np.float32), visible=np.ones((2, 4), bool)),
    "npz visible dtype": _npz_case(visible=np.full((2, 3), 0.5, np.float32)),
    "npz visible values": _npz_case(visible=np.full((2, 3), 2, np.int8)),
    "npz non-finite xy": _npz_case(xy=np.full((2, 3, 2), np.nan, np.float32)),
    "npz confidence range": _npz_case(confidence=np.full((2, 3), 1.5, np.float32)),
    "npz query range": _npz_case(query_frame=np.array([0, 3])),
    "npz query not visible": _npz_case(
        visible=np.array([[1, 0, 1], [1, 1, 1]], bool), query_frame=np.array([1, 0], np.int32)
    ),
    "npz never visible": _npz_case(visible=np.array([[1, 0, 1], [0, 0, 0]], bool)),
    "npz outside image": _npz_case(xy=np.full((2, 3, 2), 40.0, np.float32)),
    "npz points shape": _npz_case(points=np.zeros((2, 3, 2), np.float32)),
    "npz points_valid alone": _npz_case(points_valid=np.ones((2, 3), bool)),
    "npz object array": _object_array,
    "som folder missing": lambda tmp: ("som", os.path.join(tmp, "flow3d_preprocessed", "2d_tracks", "1x")),
    "som pair missing": _som_case(_som_missing_pair),
    "som pair shape": _som_case(_som_write(f"{NAMES[0]}_{NAMES[1]}.npy", np.zeros((3, 3), np.float32))),
    "som pair rows": _som_case(_som_write(f"{NAMES[0]}_{NAMES[2]}.npy", np.zeros((5, 4), np.float32))),
    "som pair dtype": _som_case(_som_write(f"{NAMES[0]}_{NAMES[1]}.npy", np.zeros((3, 4), np.int64))),
    "som not npy": _som_case(_som_write(f"{NAMES[2]}_{NAMES[0]}.npy", raw=b"garbage bytes")),
    "som non-finite": _som_case(
        _som_write(f"{NAMES[2]}_{NAMES[1]}.npy", np.full((3, 4), np.inf, np.float32))
    ),
    "som other factor": _som_case(
        _som_write(f"{NAMES[0]}_{NAMES[0]}.npy", np.array([[30.0, 2.0, -3.0, -3.0]] * 3, np.float32))
    ),
    "depth missing": _depth_case((NAMES[1], None)),
    "depth shape": _depth_case((NAMES[2], np.ones((4, 4)))),
    "depth non-finite": _depth_case((NAMES[0], np.full((2, 2), np.nan))),
    "depth dtype": _depth_case((NAMES[0], np.ones((2, 2), np.int32))),
    "kp not json": _kp_case("[[1, 2, 1], "),
    "kp not a list": _kp_case({"x": 1}),
    "kp short row": _kp_case([[1.0, 2.0], [1.0, 2.0], [0, 0]]),
    "kp visible value": _kp_case([[1.0, 2.0, 2], [1.0, 2.0, 1], [0, 0, 0]]),
    "kp count differs": _kp_case([[1.0, 2.0, 1]]),
    "kp outside image": _kp_case([[100.0, 2.0, 1], [1.0, 2.0, 1], [0, 0, 0]]),
    "kp folder missing": lambda tmp: ("kp", os.path.join(tmp, "keypoint", "2x", "train")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_one_line_naming_the_file(tmp_path, case):
    kind, path = BAD[case](str(tmp_path))
    root = str(tmp_path)
    with pytest.raises(InputError) as info:
        if kind == "npz":
            tracks_io.load_npz(path, 3, W, H)
        elif kind == "som":
            tracks_io.load_som_tracks(root, NAMES, 1, W, H)
        elif kind == "depth":
            tracks_io.load_som_depth(root, NAMES, 1, (2, 2))
        else:
            tracks_io.load_dycheck_keypoints(root, NAMES, 2, width=W, height=H)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and message.startswith(os.path.abspath(path)), message
    if case == "npz missing file":
        assert isinstance(info.value, MissingInput)
