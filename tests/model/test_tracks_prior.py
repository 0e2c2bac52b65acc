"""The track prior: Tracks (lift, visibility, ground truth), anchors, the track loss and the track-fitted
motion initialisation, each against an independent computation (numpy projections, brute-force nearest
neighbours, finite differences, exact rigid motions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.data import synthetic
from any4d_jax.data import tracks as tracks_lib
from any4d_jax.geometry import cameras, lie
from any4d_jax.model import motion, track_anchors, track_init
from any4d_jax.train import losses

W, H, F = 40, 30, 5


def _cams(f=F):
    """f cameras looking at the origin from a small arc (z forward)."""
    az = np.linspace(-0.2, 0.2, f)
    eyes = np.stack([3 * np.sin(az), -0.3 * np.ones(f), -3 * np.cos(az)], -1)
    vm = cameras.look_at(jnp.asarray(eyes), jnp.zeros((f, 3)))
    K = jnp.broadcast_to(cameras.from_fov(W, H, 50.0), (f, 3, 3))
    return cameras.make_camera(vm, K, W, H)


def _numpy_project(points, vm, K):
    cam = points @ vm[:3, :3].T + vm[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:3], cam[:, 2]


def test_lift_inverts_projection_and_skips_unknown_depth():
    cams = _cams()
    rng = np.random.default_rng(0)
    p = 6
    depth = np.zeros((F, H, W), np.float32)
    xy = np.zeros((p, F, 2), np.float32)
    for f in range(F):  # distinct pixels, each given a depth
        flat = rng.choice(H * W, p, replace=False)
        row, col = flat // W, flat % W
        xy[:, f] = np.stack([col + 0.5, row + 0.5], -1)
        depth[f, row, col] = rng.uniform(2.0, 4.0, p)
    vis = np.ones((p, F), bool)
    depth[2, int(xy[3, 2, 1]), int(xy[3, 2, 0])] = 0.0  # unknown depth: that entry is invalid
    lifted = tracks_lib.lift(tracks_lib.make(xy, vis), depth, cams)
    valid = np.asarray(lifted.points_valid)
    assert not valid[3, 2] and valid.sum() == p * F - 1
    for f in range(F):  # projecting the lifted points back gives the pixels and the depths
        ok = valid[:, f]
        uv, z = _numpy_project(
            np.asarray(lifted.points)[ok, f], np.asarray(cams.viewmat[f]), np.asarray(cams.K[f])
        )
        np.testing.assert_allclose(uv, xy[ok, f], atol=1e-3)
        np.testing.assert_allclose(
            z, depth[f, (xy[ok, f, 1]).astype(int), (xy[ok, f, 0]).astype(int)], rtol=1e-5
        )


def test_visibility_marks_occluded_and_outside_points():
    cams = _cams(1)
    pts = np.array([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]], [[40.0, 0.0, 0.0]]], np.float32)  # (3, 1, 3)
    uv, z = _numpy_project(pts[:, 0], np.asarray(cams.viewmat[0]), np.asarray(cams.K[0]))
    depth = np.full((1, H, W), 50.0, np.float32)
    # A surface at the first point's depth in front of the second (which projects to nearly the same pixel).
    depth[0, int(uv[1, 1]), int(uv[1, 0])] = z[0]
    xy, seen = tracks_lib.visibility(np.swapaxes(pts, 0, 1), cams, depth)  # (F, P) layout
    np.testing.assert_allclose(xy[0, :2], uv[:2], atol=1e-4)
    assert seen[0, 0] and not seen[0, 1] and not seen[0, 2]


@pytest.fixture(scope="module")
def tiny_scene():
    cfg = synthetic.SyntheticConfig(num_frames=6, width=48, height=36, num_background=600, num_per_object=150)
    scene, train, _ = synthetic.make_dataset(cfg)
    return scene, cfg, train


def test_ground_truth_tracks_are_projections_of_the_scene_motion(tiny_scene):
    scene, cfg, train = tiny_scene
    tr = synthetic.ground_truth_tracks(scene, cfg, train, 40, 3, seed=1)
    tracks_lib.check(tr, train.num_frames, cfg.width, cfg.height, "test")
    assert 30 <= tr.num_tracks <= 40
    q = np.asarray(tr.query_frame)
    assert set(q) <= {0, 2, 3, 5} and len(set(q)) == 3
    pts = np.asarray(tr.points)
    for f in range(train.num_frames):
        uv, _ = _numpy_project(
            pts[:, f], np.asarray(train.cameras.viewmat[f]), np.asarray(train.cameras.K[f])
        )
        np.testing.assert_allclose(np.asarray(tr.xy)[:, f], uv, atol=1e-3)
    # The points are the scene's own Gaussians moved by scene_at.
    truth = synthetic.point_positions(scene, cfg, train.times)
    d = np.min(np.linalg.norm(truth[:, None, :, :] - pts[None], axis=-1).max(-1), axis=0)
    assert np.all(d < 1e-5)
    assert np.all(np.asarray(tr.visible)[np.arange(tr.num_tracks), q])
    # Three quarters on the moving objects: they move; the background ones do not.
    moved = np.linalg.norm(pts - pts[:, :1], axis=-1).max(1)
    assert np.sum(moved > 1e-3) == pytest.approx(0.75 * tr.num_tracks, abs=2)


def test_canonical_frame_and_every_query():
    vis = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]], bool)
    tr = tracks_lib.make(np.zeros((3, 4, 2)) + 5, vis)
    assert tracks_lib.canonical_frame(tr) == 1
    ev = tracks_lib.every_query(tr)
    assert ev.num_tracks == int(vis.sum())
    np.testing.assert_array_equal(np.asarray(ev.query_frame), np.nonzero(vis)[1])
    np.testing.assert_array_equal(np.asarray(ev.visible), vis[np.nonzero(vis)[0]])
    assert np.all(np.asarray(ev.visible)[np.arange(ev.num_tracks), np.asarray(ev.query_frame)])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(xy=d["xy"][:, :3]), "span 3 frames"),
        (lambda d: d.update(confidence=d["confidence"] * 2), "confidences"),
        (lambda d: d.update(query_frame=d["query_frame"] + 9), "query frames outside"),
        (lambda d: d.update(xy=d["xy"] * 100), "outside the 40x30 frames"),
    ],
)
def test_check_names_the_file(edit, message):
    d = {
        "xy": np.full((2, 4, 2), 5.0, np.float32),
        "visible": np.ones((2, 4), bool),
        "confidence": np.full((2, 4), 0.6, np.float32),
        "query_frame": np.zeros(2, np.int32),
    }
    edit(d)
    tr = tracks_lib.Tracks(**{k: jnp.asarray(v) for k, v in d.items()})
    with pytest.raises(ValueError, match=f"^my.npz: bad tracks: .*{message}"):
        tracks_lib.check(tr, 4, W, H, "my.npz")


def test_anchors_are_the_nearest_active_gaussians_at_the_query_time():
    rng = np.random.default_rng(3)
    n, p = 200, 30
    base = rng.normal(size=(n, 3)).astype(np.float32)
    shift = np.array([0.7, -0.2, 0.1], np.float32)
    means_at = lambda t: jnp.asarray(base) + t * jnp.asarray(shift)  # noqa: E731
    active = np.ones(n, bool)
    active[::7] = False
    times = rng.choice([0.0, 2.0], p).astype(np.float32)
    pts = rng.normal(size=(p, 3)).astype(np.float32)
    a = track_anchors.make(pts, times, (0.0, 2.0), means_at, jnp.asarray(active), 3)
    for i in range(p):
        d = np.linalg.norm(base + times[i] * shift - pts[i], axis=-1)
        d[~active] = np.inf
        ref = np.argsort(d)[:3]
        assert set(np.asarray(a.index[i]).tolist()) == set(ref.tolist())
        w = 1 / d[np.asarray(a.index[i])]
        np.testing.assert_allclose(np.asarray(a.weight[i]), w / w.sum(), rtol=1e-4)
    moved = np.asarray(track_anchors.predict(a, means_at(5.0)))
    ref = np.einsum("pk,pkd->pd", np.asarray(a.weight), (base + 5.0 * shift)[np.asarray(a.index)])
    np.testing.assert_allclose(moved, ref, atol=1e-5)


def test_track_loss_value_and_gradient():
    cam = cameras.Camera(viewmat=_cams(1).viewmat[0], K=_cams(1).K[0], width=W, height=H)
    rng = np.random.default_rng(4)
    pts = rng.uniform(-0.4, 0.4, (8, 3)).astype(np.float32)
    target = rng.uniform(0, 30, (8, 2)).astype(np.float32)
    w = rng.uniform(0, 1, 8).astype(np.float32)
    w[2] = 0.0
    uv, _ = _numpy_project(
        pts.astype(np.float64), np.asarray(cam.viewmat, np.float64), np.asarray(cam.K, np.float64)
    )
    ref = np.sum(w * np.linalg.norm(uv - target, axis=-1)) / W / w.sum()
    val = losses.track_loss(jnp.asarray(pts), cam, jnp.asarray(target), jnp.asarray(w))
    np.testing.assert_allclose(float(val), ref, rtol=1e-5)
    g = np.asarray(jax.grad(losses.track_loss)(jnp.asarray(pts), cam, jnp.asarray(target), jnp.asarray(w)))
    assert np.all(g[2] == 0)
    eps = 1e-3
    for i, j in [(0, 0), (3, 2), (7, 1)]:
        hi, lo = pts.copy(), pts.copy()
        hi[i, j] += eps
        lo[i, j] -= eps
        fd = (
            losses.track_loss(jnp.asarray(hi), cam, jnp.asarray(target), jnp.asarray(w))
            - losses.track_loss(jnp.asarray(lo), cam, jnp.asarray(target), jnp.asarray(w))
        ) / (2 * eps)
        np.testing.assert_allclose(g[i, j], float(fd), rtol=2e-2, atol=1e-4)


def test_kabsch_recovers_a_rigid_motion():
    rng = np.random.default_rng(5)
    src = rng.normal(size=(20, 3))
    R = np.asarray(lie.so3_exp(jnp.asarray([0.3, -1.1, 0.5])), np.float64)
    t = np.array([0.2, 1.0, -0.4])
    R2, t2 = track_init.kabsch(src, src @ R.T + t)
    np.testing.assert_allclose(R2, R, atol=1e-5)
    np.testing.assert_allclose(t2, t, atol=1e-5)


def test_motion_from_tracks_reproduces_two_rigid_objects():
    """Tracks of a spinning object and a sliding one: the fitted bases, with the per-frame time basis and the
    one-hot weights, move Gaussians sitting on the tracks exactly along them."""
    f, canon = 7, 3
    cfg = motion.MotionConfig(
        num_frames=f,
        num_generator_channels=0,
        num_learnable_bases=2,
        time_basis="per_frame",
        canonical_frame=canon,
    )
    rng = np.random.default_rng(6)
    a = rng.normal(size=(25, 3)) * 0.2 + np.array([-1.0, 0.0, 0.0])
    b = rng.normal(size=(25, 3)) * 0.2 + np.array([1.0, 0.0, 0.0])
    still = rng.normal(size=(10, 3)) * 0.2 + np.array([0.0, 1.5, 0.0])
    ts = np.arange(f) - canon
    pts = np.zeros((60, f, 3))
    for j, s in enumerate(ts):
        R = np.asarray(lie.so3_exp(jnp.asarray([0.0, 0.25 * s, 0.0])), np.float64)
        pts[:25, j] = (a - a.mean(0)) @ R.T + a.mean(0)
        pts[25:50, j] = b + np.array([0.1 * s, -0.05 * s * s, 0.0])
        pts[50:, j] = still
    valid = np.ones((60, f), bool)
    valid[3, 0] = valid[30, 6] = False  # a gap is filled, not trusted
    means = pts[:, canon].astype(np.float32)
    fit = track_init.motion_from_tracks(cfg, pts, valid, np.arange(f), canon, means, np.ones(60, bool), 2.0)
    assert fit["num_dynamic_tracks"] == 50
    w = fit["weights"]
    assert np.all(w[50:] == 0) and np.all(w[:50].sum(1) == 1)
    assert len(set(np.argmax(w[:25], 1))) == 1 and len(set(np.argmax(w[25:50], 1))) == 1
    mp = motion.init_params(
        cfg, 60, jnp.asarray(w), (jnp.zeros((0, 3)), jnp.asarray(fit["learnable_pivots"]))
    )
    mp = mp.replace(learnable=jnp.asarray(fit["learnable"]))
    for j in range(f):
        moved, _ = motion.apply_motion(
            jnp.asarray(means), jnp.tile(jnp.array([[1.0, 0, 0, 0]]), (60, 1)), mp, cfg, j
        )
        np.testing.assert_allclose(np.asarray(moved), pts[:, j], atol=2e-4)
