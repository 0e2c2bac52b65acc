"""The DyCheck iPhone job with Shape of Motion tracks: it loads them, trains with the track loss, and scores
DyCheck keypoint transfer (PCK-T); a missing 2d_tracks folder is refused before training with one line.

The scene is tests/dycheck_fixture.py's (a textured wall and a ball circling in front of it), at 2x only (the
dycheck protocol's factor). Into it we write, from the fixture's analytic geometry:

- SoM tracks flow3d_preprocessed/2d_tracks/2x/<query>_<target>.npy for two query frames (the first and the
  last training frame, what data.track_query_frames=2 picks) over every training frame: query pixels on an
  integer grid (SoM's pixel centres at integers) ray-cast into the scene, wall points static, ball points
  moving with the ball, projected into every training camera; occluded or out-of-image entries carry a high
  occlusion logit.
- DyCheck keypoints keypoint/2x/train/<frame>.json for three training frames: three wall points and the
  ball's front pole, [x, y, visible] with integer pixel centres (the ball hides one wall point in frame 4).
"""

import json
import os
import re
import shutil

import dycheck_fixture as fx
import numpy as np
import pytest
from conftest import _FAST_COMPILE

from any4d_jax import data
from any4d_jax.data import iphone
from configs import iphone as iphone_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FACTOR = 2  # protocol dycheck
TRAIN_NAMES = [fx.frame_name(0, t) for t in range(fx.NUM_TRAIN)]
QUERY_FRAMES = (0, fx.NUM_TRAIN - 1)  # linspace(0, F - 1, track_query_frames=2)
NUM_TRACKS = 12  # of the 16 written: 6 per query frame after SoM's split
WALL_PIXELS = ((6, 6), (41, 6), (6, 29), (41, 29), (24, 3), (24, 32))  # (col, row) at 2x, 48 x 36
KEYPOINT_FRAMES = (0, 2, 4)
NUM_KEYPOINT_QUERIES = 4 * len(KEYPOINT_FRAMES) - 1  # 4 keypoints, one hidden by the ball in frame 4
KEYPOINT_WALL = np.array([[-0.7, -0.5, fx.WALL_Z], [0.6, -0.45, fx.WALL_Z], [-0.5, 0.5, fx.WALL_Z]])
VISIBLE_LOGITS, OCCLUDED_LOGITS = (-6.0, -6.0), (6.0, -6.0)  # (occlusion, expected distance): confident

# The tiny run of tests/data/test_iphone.py, with SoM tracks; no LPIPS (not what this tests).
TINY = [
    *fx.TINY_RUN,
    "--config.eval.lpips_weights=none",
    "--config.data.tracks=som",
    f"--config.data.num_tracks={NUM_TRACKS}",
    f"--config.data.track_query_frames={len(QUERY_FRAMES)}",
]


def _camera(t):
    return fx.train_camera(t).at_factor(FACTOR)


def _seen(X, t):
    """(pixels (N, 2) in our convention, visible (N,)) of raw world points X (N, 3) in training frame t:
    inside the image and not behind the ball (a point on the ball's front surface is its own first hit)."""
    cam = _camera(t)
    pix, z = cam.project(X)
    inside = (z > 0) & np.all((pix >= 0) & (pix <= [cam.width, cam.height]), axis=-1)
    first_hit = fx._ball_hit(cam.position, X - cam.position, float(t))  # ray parameter; X itself is at 1
    return pix, inside & (first_hit > 1.0 - 1e-6)


def _query_points(q):
    """(points (N, 3), on_ball (N,)): the scene points seen at the query pixels of frame q."""
    _, _, hits = fx.raycast(_camera(q), float(q))
    on_ball = np.linalg.norm(hits - fx.ball_center(q), axis=-1) < fx.BALL_RADIUS + 1e-6
    rows, cols = np.nonzero(on_ball)
    r, c = int(round(rows.mean())), int(round(cols.mean()))
    pixels = list(WALL_PIXELS) + [(c, r), (c + 2, r + 2)]
    P = np.stack([hits[row, col] for col, row in pixels])
    ball = np.array([on_ball[row, col] for col, row in pixels])
    assert not ball[: len(WALL_PIXELS)].any() and ball[len(WALL_PIXELS) :].all(), "fixture geometry changed"
    return P, ball


def _write_som_tracks(root):
    folder = os.path.join(root, "flow3d_preprocessed", "2d_tracks", f"{FACTOR}x")
    os.makedirs(folder)
    for q in QUERY_FRAMES:
        P, ball = _query_points(q)
        for t in range(fx.NUM_TRAIN):
            X = P + ball[:, None] * (fx.ball_center(t) - fx.ball_center(q))  # the ball only translates
            pix, seen = _seen(X, t)
            logits = np.where(seen[:, None], VISIBLE_LOGITS, OCCLUDED_LOGITS)
            rows = np.concatenate([pix - 0.5, logits], -1).astype(np.float32)  # SoM: centres at integers
            if t == q:
                np.testing.assert_allclose(rows[:, :2], np.round(rows[:, :2]), atol=1e-4)  # the pixel grid
                rows[:, :2] = np.round(rows[:, :2])
            np.save(os.path.join(folder, f"{TRAIN_NAMES[q]}_{TRAIN_NAMES[t]}.npy"), rows)


def _write_keypoints(root):
    folder = os.path.join(root, "keypoint", f"{FACTOR}x", "train")
    os.makedirs(folder)
    for t in KEYPOINT_FRAMES:
        pole = fx.ball_center(t) - [0.0, 0.0, fx.BALL_RADIUS]  # the ball's front pole, facing the cameras
        pix, seen = _seen(np.concatenate([KEYPOINT_WALL, pole[None]]), t)
        rows = [[float(x - 0.5), float(y - 0.5), int(v)] for (x, y), v in zip(pix, seen, strict=True)]
        with open(os.path.join(folder, f"{TRAIN_NAMES[t]}.json"), "w") as f:
            json.dump(rows, f)


@pytest.fixture(scope="module")
def plain_scene(tmp_path_factory):
    return fx.write_scene(str(tmp_path_factory.mktemp("iphone") / "apple"), factors=(FACTOR,))


@pytest.fixture(scope="module")
def tracked_scene(plain_scene, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("iphone_tracks") / "apple")
    shutil.copytree(plain_scene, root)
    _write_som_tracks(root)
    _write_keypoints(root)
    return root


def _config(root):
    c = iphone_config.get_config()
    c.data.root, c.data.tracks = root, "som"
    c.data.num_tracks, c.data.track_query_frames = NUM_TRACKS, len(QUERY_FRAMES)
    c.data.max_points = 200
    return c


def test_som_tracks_and_keypoints_load(tracked_scene):
    ds = data.load(_config(tracked_scene))
    tr = ds.train.tracks
    assert tr is not None and ds.train.num_frames == fx.NUM_TRAIN
    assert tr.num_tracks == NUM_TRACKS and np.asarray(tr.xy).shape == (NUM_TRACKS, fx.NUM_TRAIN, 2)
    q = np.asarray(tr.query_frame)
    assert tuple(np.unique(q)) == QUERY_FRAMES and np.all(
        np.bincount(q)[list(QUERY_FRAMES)] == NUM_TRACKS // 2
    )
    xy, vis = np.asarray(tr.xy), np.asarray(tr.visible)
    at_query = xy[np.arange(NUM_TRACKS), q]
    assert vis[np.arange(NUM_TRACKS), q].all()
    np.testing.assert_allclose(at_query - 0.5, np.round(at_query - 0.5), atol=1e-5)  # pixel centres
    # Every loaded track is one of the written ones: the analytic projections, where visible.
    for p in range(NUM_TRACKS):
        P, ball = _query_points(int(q[p]))
        n = int(np.argmin(np.abs(_camera(int(q[p])).project(P)[0] - at_query[p]).sum(-1)))
        for t in range(fx.NUM_TRAIN):
            X = P[n] + ball[n] * (fx.ball_center(t) - fx.ball_center(int(q[p])))
            pix, seen = _seen(X[None], t)
            assert vis[p, t] == seen[0]
            if seen[0]:
                np.testing.assert_allclose(xy[p, t], pix[0], atol=1e-3)
    assert np.ptp(xy[:, :, 0], axis=1).max() > 2.0  # the camera sweep (and the ball) move the points
    # DyCheck keypoints: scored, never trained on; every annotated frame queries its visible keypoints.
    ev = ds.eval_tracks
    assert ev is not None and ev.num_tracks == NUM_KEYPOINT_QUERIES
    assert tuple(np.unique(np.asarray(ev.query_frame))) == KEYPOINT_FRAMES


def test_som_tracks_missing_folder_is_one_line_before_training(plain_scene):
    with pytest.raises(iphone.SceneError) as e:
        data.load(_config(plain_scene))
    msg = str(e.value)
    assert "\n" not in msg and "not found" in msg
    assert os.path.join(plain_scene, "flow3d_preprocessed", "2d_tracks", f"{FACTOR}x") in msg


def test_end_to_end_trains_on_som_tracks_and_scores_keypoints(tracked_scene, tmp_path):
    work = tmp_path / "run"
    r = fx.run_iphone(tracked_scene, work, TINY, _FAST_COMPILE)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (work / "train_metrics.jsonl").read_text().splitlines()]
    track = [row["loss/track"] for row in rows if "loss/track" in row]
    assert track and all(np.isfinite(track)) and track[-1] > 0
    m = json.loads((work / "metrics.json").read_text())
    two = m["tracking"]["2d"]
    assert isinstance(two["pck_t"], float) and 0.0 <= two["pck_t"] <= 1.0
    assert two["num_tracks"] == NUM_KEYPOINT_QUERIES
    # The summary (in metrics.json and printed as the final table) carries the headline PCK-T.
    assert m["summary"]["tracking/pck_t"] == pytest.approx(two["pck_t"])
    table = re.search(r"^\| tracking/pck_t \| ([0-9.]+) \|$", r.stdout, re.M)
    assert table and float(table.group(1)) == pytest.approx(two["pck_t"], abs=1e-4)
    assert f"keypoint transfer PCK-T {two['pck_t']:.3f}" in r.stdout
    assert {"val/mpsnr", "train/psnr"} <= set(m["summary"])
    assert (work / "tracks.mp4").stat().st_size > 0
