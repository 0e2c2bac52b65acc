"""The model's tracks (evaluation/track_eval.py) on a model whose motion is known exactly: a blob of
Gaussians translating along a known path. A model with that motion tracks its points to within the lifting
error; the same Gaussians without motion are off by exactly the path's displacement."""

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.evaluation import track_eval
from any4d_jax.geometry import cameras
from any4d_jax.model import gaussians, motion
from any4d_jax.model.gaussians import ModelParams, ModelSpec
from any4d_jax.render import RenderConfig

W, H, T, Q = 48, 36, 5, 2  # image size, frames, query frame


def _path(t):
    """The blob's translation at frame t (zero at the canonical frame Q)."""
    s = np.asarray(t, np.float64) - Q
    return np.stack([0.08 * s, -0.03 * s * s, 0.05 * s], -1)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.35, 0.35, (300, 3)).astype(np.float32)
    g = gaussians.from_points(pts, np.full((300, 3), 0.5), 320, sh_degree=0, init_opacity=0.95)
    cfg = motion.MotionConfig(
        num_frames=T,
        num_generator_channels=0,
        num_learnable_bases=1,
        time_basis="per_frame",
        canonical_frame=Q,
    )
    w = jnp.zeros((320, 1)).at[:300].set(1.0)
    moving = motion.init_params(cfg, 320, w)
    traj = np.zeros((T, 1, 6), np.float32)
    traj[:, 0, 3:] = _path(np.arange(T))  # per-frame basis: the twist at frame j is traj[j] - traj[Q]
    moving = moving.replace(learnable=jnp.asarray(traj))
    still = motion.init_params(cfg, 320, w)
    eyes = np.stack([np.linspace(-0.4, 0.4, T), np.full(T, -0.5), np.full(T, -3.0)], -1)
    vm = cameras.look_at(jnp.asarray(eyes), jnp.zeros((T, 3)))
    cams = cameras.make_camera(vm, jnp.broadcast_to(cameras.from_fov(W, H, 45.0), (T, 3, 3)), W, H)
    frames = Frames(rgb=jnp.zeros((T, H, W, 3)), cameras=cams, times=jnp.arange(T, dtype=jnp.float32))
    # True tracks: the Gaussian centres nearest the camera at the query frame (on the surface), moved.
    cam_z = (pts @ np.asarray(vm[Q, :3, :3]).T + np.asarray(vm[Q, :3, 3]))[:, 2]
    front = np.argsort(cam_z)[:12]
    true = pts[front][:, None, :] + _path(np.arange(T))[None].astype(np.float32)
    uv = [
        cameras.project_points(cameras.Camera(vm[f], cams.K[f], W, H), jnp.asarray(true[:, f]))[0]
        for f in range(T)
    ]
    xy = np.stack([np.asarray(u) for u in uv], 1)
    tr = tracks_lib.make(xy, np.ones((12, T), bool), query_frame=np.full(12, Q), points=true)
    spec = ModelSpec(motion=cfg, render=RenderConfig(validate=False))
    active = jnp.arange(320) < 300
    state = lambda mp: SimpleNamespace(params=ModelParams.from_gaussians(g, mp), active=active)  # noqa: E731
    return state(moving), state(still), spec, frames, tr


def test_a_model_with_the_true_motion_tracks_its_points(setup):
    moving, _, spec, frames, tr = setup
    pred = track_eval.predict(moving, spec, frames, tr)
    err = np.linalg.norm(pred.points - np.asarray(tr.points), axis=-1)  # (P, T)
    # The displacement is exact; what is left is where the query pixel was lifted to (the blob's surface
    # near the tracked centre, within a Gaussian's size) and the same offset carried along.
    spread = err - err[:, Q : Q + 1]
    assert np.max(np.abs(spread)) < 1e-4
    assert np.median(err[:, Q]) < 0.06
    s = track_eval.score(pred, tr, W, H, metres_per_unit=1.0)
    assert s["3d"]["epe_3d"] == pytest.approx(np.mean(np.delete(err, Q, axis=1)), rel=1e-4)


def test_a_motionless_model_is_off_by_the_displacement(setup):
    moving, still, spec, frames, tr = setup
    ref = track_eval.predict(moving, spec, frames, tr)
    pred = track_eval.predict(still, spec, frames, tr)
    np.testing.assert_allclose(pred.points[:, Q], ref.points[:, Q], atol=1e-5)  # same lifting and anchors
    # Without motion every prediction stays at its query point: the error is exactly the displacement.
    disp = np.linalg.norm(_path(np.arange(T)), axis=-1)
    np.testing.assert_allclose(
        np.linalg.norm(pred.points - ref.points, axis=-1), np.broadcast_to(disp, (12, T)), atol=1e-4
    )
    good = track_eval.score(ref, tr, W, H, 1.0)
    bad = track_eval.score(pred, tr, W, H, 1.0)
    assert bad["3d"]["epe_3d"] > good["3d"]["epe_3d"] + 0.1
    assert bad["2d"]["pck_t"] < good["2d"]["pck_t"]


def test_overlay_draws_true_green_and_predicted_red():
    img = np.ones((1, 10, 12, 3), np.float32)
    out = track_eval.overlay(
        img,
        np.array([[[2.5, 3.5]]]),
        np.array([[True]]),
        np.array([[[8.5, 6.5]]]),
        np.array([[True]]),
        radius=1.0,
    )
    np.testing.assert_allclose(out[0, 3, 2], (0.1, 0.85, 0.2))
    np.testing.assert_allclose(out[0, 6, 8], (0.95, 0.1, 0.1))
    assert np.all(out[0, 0, 0] == 1.0) and np.all(img == 1.0)
