"""Cameras: look-at conventions, projection of known points, pixel rays."""

import jax.numpy as jnp
import numpy as np

from any4d_jax.geometry import cameras


def test_look_at_identity_and_orientation():
    vm = cameras.look_at(jnp.zeros(3), jnp.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(vm, np.eye(4), atol=1e-7)
    # A camera above the origin (world up = -y) looking at it: the origin lands at the principal point and a
    # point further up in the world lands higher in the image (smaller row).
    eye = jnp.array([0.5, -2.0, -3.0])
    vm = cameras.look_at(eye, jnp.zeros(3))
    R = np.asarray(vm[:3, :3])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(R) > 0
    cam = cameras.make_camera(vm, cameras.intrinsics(100, 100, 64, 48), 128, 96)
    uv, z = cameras.project_points(cam, jnp.array([[0.0, 0.0, 0.0], [0.0, -0.3, 0.0]]))
    np.testing.assert_allclose(uv[0], [64, 48], atol=1e-4)
    assert uv[1, 1] < uv[0, 1] and z[0] > 0
    np.testing.assert_allclose(cam.center, eye, atol=1e-6)


def test_pixel_rays_reproject_to_their_pixels():
    vm = cameras.look_at(jnp.array([0.3, -0.2, -2.0]), jnp.array([0.0, 0.1, 0.0]))
    cam = cameras.make_camera(vm, cameras.intrinsics(40, 44, 15.5, 10.0), 31, 21)
    o, d = cameras.pixel_rays(cam)
    pts = (o + 2.7 * d).reshape(-1, 3)
    uv, _ = cameras.project_points(cam, pts)
    np.testing.assert_allclose(uv.reshape(21, 31, 2), cameras.pixel_centers(31, 21), atol=2e-3)
    np.testing.assert_allclose(jnp.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
