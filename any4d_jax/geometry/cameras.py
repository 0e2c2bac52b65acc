"""Pinhole cameras as pytrees.

Conventions (OpenCV): world right-handed; the camera looks down +z, x right, y down. `viewmat` (4, 4) maps
world to camera coordinates, `K` (3, 3) holds pixel intrinsics, and pixel centres lie at integer + 0.5, so the
pixel (col, row) covers [col, col + 1) x [row, row + 1) and its centre is (col + 0.5, row + 0.5).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Camera:
    """One pinhole camera (or a batch of them with the same image size).

    viewmat: (..., 4, 4) float32 world-to-camera.
    K:       (..., 3, 3) float32 intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]].
    width, height: static ints (not traced), so one compiled program serves one image size.
    """

    viewmat: jnp.ndarray
    K: jnp.ndarray
    width: int = struct.field(pytree_node=False)
    height: int = struct.field(pytree_node=False)

    @property
    def rotation(self) -> jnp.ndarray:
        """(..., 3, 3) world-to-camera rotation."""
        return self.viewmat[..., :3, :3]

    @property
    def translation(self) -> jnp.ndarray:
        """(..., 3) world-to-camera translation."""
        return self.viewmat[..., :3, 3]

    @property
    def center(self) -> jnp.ndarray:
        """(..., 3) camera centre in world coordinates: -R^T t."""
        return -jnp.einsum("...ji,...j->...i", self.rotation, self.translation)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.viewmat.shape[:-2])


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> jnp.ndarray:
    """(3, 3) float32 intrinsics matrix."""
    return jnp.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], jnp.float32)


def from_fov(width: int, height: int, fov_x_deg: float) -> jnp.ndarray:
    """(3, 3) intrinsics of a centred camera with the given horizontal field of view (square pixels)."""
    fx = 0.5 * width / np.tan(0.5 * np.deg2rad(fov_x_deg))
    return intrinsics(fx, fx, 0.5 * width, 0.5 * height)


def look_at(eye: jnp.ndarray, target: jnp.ndarray, up: jnp.ndarray | tuple = (0.0, -1.0, 0.0)) -> jnp.ndarray:
    """World-to-camera (..., 4, 4) for a camera at `eye` (..., 3) looking at `target` (..., 3).

    `up` is the world direction that should appear *up* in the image. Because image y points down (OpenCV),
    the camera's +y axis is the projection of -up. Batched over leading dims; differentiable.
    """
    eye = jnp.asarray(eye, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    up = jnp.broadcast_to(jnp.asarray(up, jnp.float32), eye.shape)
    z = target - eye
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    x = jnp.cross(-up, z)  # right = down x forward (x, y, z right-handed with y down)
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    y = jnp.cross(z, x)
    R = jnp.stack([x, y, z], axis=-2)  # rows are the camera axes in world coordinates
    t = -jnp.einsum("...ij,...j->...i", R, eye)
    top = jnp.concatenate([R, t[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], jnp.float32), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def make_camera(viewmat, K, width: int, height: int) -> Camera:
    """Checked constructor: shapes (..., 4, 4) and (..., 3, 3) with equal leading dims."""
    viewmat = jnp.asarray(viewmat, jnp.float32)
    K = jnp.asarray(K, jnp.float32)
    chex.assert_shape(viewmat, (..., 4, 4))
    chex.assert_shape(K, (..., 3, 3))
    if viewmat.shape[:-2] != K.shape[:-2]:
        raise ValueError(
            f"Camera: viewmat leading dims {viewmat.shape[:-2]} != K leading dims {K.shape[:-2]}"
        )
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"Camera: width and height must be positive, got {width} x {height}")
    return Camera(viewmat=viewmat, K=K, width=int(width), height=int(height))


def pixel_centers(width: int, height: int) -> jnp.ndarray:
    """(H, W, 2) float32 pixel centres (x + 0.5, y + 0.5)."""
    xs = jnp.arange(width, dtype=jnp.float32) + 0.5
    ys = jnp.arange(height, dtype=jnp.float32) + 0.5
    gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
    return jnp.stack([gx, gy], axis=-1)


def pixel_rays(camera: Camera) -> tuple[jnp.ndarray, jnp.ndarray]:
    """World-space rays through pixel centres of one camera.

    Returns origins (H, W, 3) and unit directions (H, W, 3) float32.
    """
    uv = pixel_centers(camera.width, camera.height)
    ones = jnp.ones(uv.shape[:-1] + (1,), jnp.float32)
    pix = jnp.concatenate([uv, ones], axis=-1)  # (H, W, 3)
    d_cam = jnp.einsum("ij,hwj->hwi", jnp.linalg.inv(camera.K), pix)
    d_world = jnp.einsum("ji,hwj->hwi", camera.rotation, d_cam)  # R^T d
    d_world = d_world / jnp.linalg.norm(d_world, axis=-1, keepdims=True)
    origins = jnp.broadcast_to(camera.center, d_world.shape)
    return origins, d_world


def project_points(camera: Camera, points: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Project world points (N, 3) to pixels (N, 2) and camera-space depth z (N,)."""
    p_cam = points @ camera.rotation.T + camera.translation
    z = p_cam[:, 2]
    uvw = p_cam @ camera.K.T
    return uvw[:, :2] / uvw[:, 2:3], z
