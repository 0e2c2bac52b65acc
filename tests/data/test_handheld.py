"""The hand-held scene: rigid, articulated and non-rigid motion, cameras, frames and ground-truth tracks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax import data as data_lib
from any4d_jax.data import handheld as hh
from any4d_jax.data import synthetic
from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.jobs import checks
from configs import handheld as handheld_config

TINY = hh.HandheldConfig(
    num_frames=8,
    width=64,
    height=48,
    num_floor=600,
    num_wall=400,
    num_box=250,
    num_car=250,
    num_arm=300,
    num_blob=300,
    num_ball=150,
    num_tracks=96,
)
TIMES = (0.0, 1.7, 3.5, 6.2, 7.0)


@pytest.fixture(scope="module")
def data():
    return hh.make_dataset(TINY)


def _rotmat(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pairwise(x):
    x = np.asarray(x, np.float64)
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def test_scene_at_zero_is_canonical_and_vmaps():
    scene = hh.build_scene(TINY)
    n = scene.groups.shape[0]
    assert 1800 <= n <= 2800 and set(np.unique(np.asarray(scene.groups))) == {0, 1, 2, 3, 4}

    @jax.jit
    def batch(ts):  # vmap over t, with the gradient in t (the motion is smooth and differentiable)
        sp = jax.vmap(lambda t: hh.scene_at(scene, TINY, t))(ts)
        return sp, jax.vmap(jax.grad(lambda t: jnp.sum(hh.means_at(scene, TINY, t))))(ts)

    sp, grads = batch(jnp.asarray(TIMES))
    np.testing.assert_allclose(sp.means[0], scene.splats.means, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(sp.quats[0] * scene.splats.quats, -1)), 1.0, atol=1e-6)
    assert sp.means.shape == (len(TIMES), n, 3) and bool(jnp.all(jnp.isfinite(sp.means)))
    assert bool(jnp.all(jnp.isfinite(grads))) and float(jnp.abs(grads).max()) > 0
    np.testing.assert_allclose(hh.means_at(scene, TINY, TIMES[2]), sp.means[2], atol=1e-6)


def test_rigid_preserved_nonrigid_not_background_static():
    scene = hh.build_scene(TINY)
    g = np.asarray(scene.groups)
    m0 = np.asarray(hh.means_at(scene, TINY, 0.0))
    for t in TIMES[1:]:
        mt = np.asarray(hh.means_at(scene, TINY, t))
        np.testing.assert_array_equal(mt[g == hh.BACKGROUND], m0[g == hh.BACKGROUND])
        for rigid in (hh.CAR, hh.BALL):
            m = g == rigid
            np.testing.assert_allclose(_pairwise(mt[m]), _pairwise(m0[m]), atol=2e-5)
            assert t == TIMES[-1] or np.abs(mt[m] - m0[m]).max() > 0.05  # it moves (the ball comes back)
        b = g == hh.BLOB
        assert np.abs(_pairwise(mt[b]) - _pairwise(m0[b])).max() > 0.02  # rigid would be ~1e-6
    # The car turns (its orientation changes), not only translates.
    m = g == hh.CAR
    d = np.asarray(hh.means_at(scene, TINY, 7.0))[m] - m0[m]
    assert np.abs(d - d.mean(0)).max() > 0.05


def test_arm_is_articulated_with_attached_joints():
    scene = hh.build_scene(TINY)
    g, parts = np.asarray(scene.groups), np.asarray(scene.parts)
    link1, link2 = (g == hh.ARM) & (parts == hh.ARM_LINK1), (g == hh.ARM) & (parts == hh.ARM_LINK2)
    j0 = np.asarray(hh.arm_joints(TINY, 0.0))
    m0 = np.asarray(hh.means_at(scene, TINY, 0.0))
    rel_angles = []
    for t in TIMES:
        j1, j2, tip = np.asarray(hh.arm_joints(TINY, t), np.float64)
        q, o = (np.asarray(a, np.float64) for a in hh.part_poses(TINY, t))
        # Link 2's joint sits at the end of link 1: the closed form j1 + R1 (0, -L1, 0), at distance L1.
        R1 = _rotmat(q[hh.POSE_LINK1])
        np.testing.assert_allclose(j2, j1 + R1 @ np.array([0.0, -hh.ARM_L1, 0.0]), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(j2 - j1), hh.ARM_L1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(tip - j2), hh.ARM_L2, atol=1e-5)
        np.testing.assert_allclose(o[hh.POSE_LINK2], j2, atol=1e-6)
        # The elbow angle between the links is joint 2's angle a2(t).
        d1, d2 = (j2 - j1) / hh.ARM_L1, (tip - j2) / hh.ARM_L2
        _, _, a2 = hh.arm_angles(TINY, t)
        np.testing.assert_allclose(np.arccos(np.clip(d1 @ d2, -1, 1)), abs(float(a2)), atol=1e-3)
        rel_angles.append(float(a2))
        # Each link's Gaussians move rigidly with their joint.
        mt = np.asarray(hh.means_at(scene, TINY, t))
        for m, jt, jc in [(link1, j1, j0[0]), (link2, j2, j0[1])]:
            np.testing.assert_allclose(
                np.linalg.norm(mt[m] - jt, axis=-1), np.linalg.norm(m0[m] - jc, axis=-1), atol=2e-5
            )
        # Link 2's Gaussians nearest the joint stay at the end of link 1 (within the links' widths).
        near = np.linalg.norm(mt[link2] - j2, axis=-1).min()
        assert near < 2 * hh.ARM_W1
    assert max(rel_angles) - min(rel_angles) > 0.5  # the elbow really bends: not one rigid body
    whole = link1 | link2
    mt = np.asarray(hh.means_at(scene, TINY, 3.5))
    assert np.abs(_pairwise(mt[whole]) - _pairwise(m0[whole])).max() > 0.05


def test_cameras_handheld_and_held_out():
    tr, ev = hh.train_cameras(TINY), hh.eval_cameras(TINY)
    assert tr.viewmat.shape == (TINY.num_frames, 4, 4) and ev.viewmat.shape == (2, 4, 4)
    c = np.asarray(tr.center, np.float64)
    travel = np.linalg.norm(c - c[0], axis=-1).max() * TINY.metres_per_unit  # metres
    assert 0.5 * TINY.baseline_m < travel < TINY.baseline_m + 4 * TINY.jitter_pos_m
    # Always looking roughly at the scene: the optical axis within a few degrees of the look-at point.
    axis = np.asarray(tr.rotation)[:, 2]
    to = hh.LOOK_AT - c
    cosang = np.sum(axis * to, -1) / np.linalg.norm(to, axis=-1)
    assert np.degrees(np.arccos(np.clip(cosang, -1, 1))).max() < 5.0
    # Held-out cameras 15-30 degrees off the training path, one left and one right.
    az = lambda p: np.degrees(np.arctan2(p[..., 0] - hh.LOOK_AT[0], -(p[..., 2] - hh.LOOK_AT[2])))  # noqa: E731
    ea, ta = az(np.asarray(ev.center)), az(c)
    assert ea[0] < ta.min() - 10 and ea[1] > ta.max() + 10
    assert np.all((np.abs(ea) > 15) & (np.abs(ea) < 30))


def test_frames_shapes_and_determinism(data):
    scene, train, ev = data
    T, E, H, W = TINY.num_frames, 2, TINY.height, TINY.width
    assert train.rgb.shape == (T, H, W, 3) and ev.rgb.shape == (E * T, H, W, 3)
    assert train.depth.shape == (T, H, W) and ev.mask.shape == (E * T, H, W)
    assert ev.cameras.viewmat.shape == (E * T, 4, 4)
    np.testing.assert_array_equal(ev.times, np.tile(np.arange(T), E))
    np.testing.assert_array_equal(ev.cameras.viewmat[0], ev.cameras.viewmat[T - 1])  # static, camera-major
    assert float(jnp.abs(ev.cameras.viewmat[0] - ev.cameras.viewmat[T]).max()) > 0.1
    assert 0.02 < float(train.mask.mean()) < 0.5 and float(train.depth.max()) > 3.0
    _, train2, _ = hh.make_dataset(TINY)
    np.testing.assert_array_equal(train.rgb, train2.rgb)
    np.testing.assert_array_equal(train.tracks.xy, train2.tracks.xy)
    other = dataclasses.replace(TINY, seed=1)
    assert float(jnp.abs(hh.build_scene(other).splats.means - scene.splats.means).max()) > 0.1
    assert float(jnp.abs(hh.train_cameras(other).viewmat - train.cameras.viewmat).max()) > 1e-3


def test_tracks_project_exactly_and_sit_on_moving_objects(data):
    scene, train, _ = data
    tr = train.tracks
    T = TINY.num_frames
    tracks_lib.check(tr, T, TINY.width, TINY.height, "handheld")
    assert tr.num_tracks == TINY.num_tracks and tr.points.shape == (TINY.num_tracks, T, 3)
    assert bool(jnp.all(tr.points_valid))
    np.testing.assert_array_equal(np.unique(tr.query_frame), hh.default_query_frames(T, 4))
    # The points are the Gaussians' exact positions.
    again, idx = hh.ground_truth_tracks(scene, TINY, train, seed=TINY.seed, return_indices=True)
    np.testing.assert_array_equal(again.xy, tr.xy)
    means = np.asarray(jax.vmap(lambda t: hh.means_at(scene, TINY, t))(train.times))  # (T, N, 3)
    np.testing.assert_allclose(tr.points, np.transpose(means[:, idx], (1, 0, 2)), atol=1e-5)
    assert np.mean(np.asarray(scene.groups)[idx] != hh.BACKGROUND) > 0.6
    # xy: an independent pinhole projection of the points.
    vm, K = np.asarray(train.cameras.viewmat, np.float64), np.asarray(train.cameras.K, np.float64)
    pts = np.asarray(tr.points, np.float64)
    cam = np.einsum("fij,pfj->pfi", vm[:, :3, :3], pts) + vm[None, :, :3, 3]
    u = K[None, :, 0, 0] * cam[..., 0] / cam[..., 2] + K[None, :, 0, 2]
    v = K[None, :, 1, 1] * cam[..., 1] / cam[..., 2] + K[None, :, 1, 2]
    np.testing.assert_allclose(tr.xy, np.stack([u, v], -1), atol=1e-3)
    # Visible points lie inside the image; hidden ones exist (occlusion and leaving the frame happen).
    xy, vis = np.asarray(tr.xy), np.asarray(tr.visible)
    assert np.all((xy[vis] >= 0) & (xy[vis] < [TINY.width, TINY.height]))
    assert 0.3 < vis.mean() < 0.99


def test_point_behind_the_static_box_is_hidden(data):
    _, train, _ = data
    cams = train.frame(0).cameras
    # The ray through the centre of box A's front face (the side facing the camera, -z).
    face = hh.BOX_A_CENTRE - np.array([0.0, 0.0, hh.BOX_A_HALF[2]], np.float32)
    centre = np.asarray(cams.center[0])
    ray = (face - centre) / np.linalg.norm(face - centre)
    on_face = face - 0.01 * ray
    behind = face + 0.6 * ray  # past the box (depth 0.4), in front of the floor and wall
    pts = jnp.asarray(np.stack([on_face, behind])[None], jnp.float32)  # (F = 1, P = 2, 3)
    xy, vis = hh.track_visibility(pts, cams, train.depth[:1])
    np.testing.assert_allclose(xy[0, 0], xy[0, 1], atol=1e-3)  # the same pixel
    assert 0 <= xy[0, 0, 0] < TINY.width and 0 <= xy[0, 0, 1] < TINY.height
    assert bool(vis[0, 0]) and not bool(vis[0, 1])
    # With no depth test (a huge tolerance) it would count as visible: only the occlusion hides it.
    _, vis_inf = hh.track_visibility(pts, cams, train.depth[:1], rtol=1e9)
    assert bool(vis_inf[0, 1])


def _zbuffer(points, cams, width, height):
    """(F, H, W) z-depth of the nearest point centre per pixel (0 where none): a cheap stand-in render."""
    vm, K = np.asarray(cams.viewmat, np.float64), np.asarray(cams.K, np.float64)
    cam = np.einsum("fij,fnj->fni", vm[:, :3, :3], np.asarray(points, np.float64)) + vm[:, None, :3, 3]
    z = cam[..., 2]
    col = np.floor(K[:, None, 0, 0] * cam[..., 0] / z + K[:, None, 0, 2]).astype(np.int64)
    row = np.floor(K[:, None, 1, 1] * cam[..., 1] / z + K[:, None, 1, 2]).astype(np.int64)
    depth = np.full((z.shape[0], height, width), np.inf)
    for f in range(z.shape[0]):
        ok = (z[f] > 0) & (col[f] >= 0) & (col[f] < width) & (row[f] >= 0) & (row[f] < height)
        np.minimum.at(depth[f], (row[f][ok], col[f][ok]), z[f][ok])
    return np.where(np.isfinite(depth), depth, 0.0)


def test_tracks_from_scene_works_on_the_default_scene():
    cfg = synthetic.SyntheticConfig(num_frames=3, width=40, height=30, num_background=500, num_per_object=120)
    scene = jax.jit(synthetic.build_scene, static_argnums=0)(cfg)  # one compile: faster than op by op
    groups = np.asarray(scene.groups)
    positions_at = jax.jit(lambda t: synthetic.scene_at(scene, cfg, t).means)
    times = jnp.arange(cfg.num_frames, dtype=jnp.float32)
    cams = synthetic.train_cameras(cfg)
    # Depth: a z-buffer of the Gaussian centres (the rasterizer's depth is exercised by the hand-held tests).
    depth = _zbuffer(jax.vmap(positions_at)(times), cams, cfg.width, cfg.height)
    rgb = jnp.zeros((cfg.num_frames, cfg.height, cfg.width, 3))
    frames = Frames(rgb=rgb, cameras=cams, times=times, depth=depth)
    shares = {
        synthetic.BACKGROUND: 0.25,
        synthetic.SPINNER: 0.25,
        synthetic.BOUNCER: 0.25,
        synthetic.SHEET: 0.25,
    }
    tr, idx = hh.tracks_from_scene(
        positions_at,
        frames,
        np.arange(groups.size),
        40,
        [0, 2],
        seed=3,
        groups=groups,
        group_shares=shares,
        return_indices=True,
    )
    tracks_lib.check(tr, cfg.num_frames, cfg.width, cfg.height, "synthetic")
    assert tr.num_tracks == 40 and len(np.unique(idx)) == 40
    np.testing.assert_array_equal(np.bincount(np.asarray(tr.query_frame)), [20, 0, 20])
    assert len(np.unique(groups[idx])) == 4
    np.testing.assert_allclose(tr.points[:, 2], np.asarray(positions_at(2.0))[idx], atol=1e-6)
    xy, vis = np.asarray(tr.xy), np.asarray(tr.visible)
    assert np.all((xy[vis] >= 0) & (xy[vis] < [cfg.width, cfg.height]))
    # A depth map twice as near as every point (an occluder everywhere) leaves no track.
    near = frames.replace(depth=np.where(depth > 0, 0.5 * depth, 0.1))
    assert hh.tracks_from_scene(positions_at, near, np.arange(groups.size), 40, [0]).num_tracks == 0


def test_data_load_builds_the_handheld_scene_from_its_config():
    """configs/handheld.py through data.load: the scene at the config's size, training tracks as data.tracks
    says, evaluation tracks on the moving objects only (other points than the training ones)."""
    c = handheld_config.get_config()
    checks.check_config(c)
    c.data.num_frames, c.data.width, c.data.height = 6, 48, 36
    c.data.tracks, c.data.num_tracks, c.eval.num_tracks = "ground_truth", 40, 30
    ds = data_lib.load(c)
    assert isinstance(ds.source, hh.HandheldConfig) and ds.metres_per_unit == 0.5
    assert ds.train.rgb.shape == (6, 36, 48, 3) and ds.held_out.num_frames == 12
    assert ds.train.tracks.num_tracks == 40
    ev = ds.eval_tracks
    assert 0 < ev.num_tracks <= 30
    moved = np.linalg.norm(np.asarray(ev.points) - np.asarray(ev.points)[:, :1], axis=-1).max(1)
    assert np.all(moved > 1e-4)  # every evaluation track is on a moving object
    c.data.tracks = ""
    assert data_lib.load(c).train.tracks is None
