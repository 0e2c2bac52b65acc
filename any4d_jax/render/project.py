"""EWA projection of 3D Gaussians to screen-space conics (the first stage of the renderer).

A Gaussian with world covariance Sigma = R S S^T R^T is seen by a camera (W | t) as a 2D Gaussian with
covariance J W Sigma W^T J^T + 0.3 I, where J is the Jacobian of the perspective map at the centre. Radii
are per axis and opacity-aware: r = ceil(ext sqrt(Sigma2d_ii)), ext = min(3.33, sqrt(2 ln(255 o))), so that
the box contains every pixel where the Gaussian's alpha can reach 1/255.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from any4d_jax.geometry import lie
from any4d_jax.geometry.cameras import Camera
from any4d_jax.render.types import ALPHA_MIN, LOWPASS, MAX_EXTENT


@struct.dataclass
class Projected:
    """Per-Gaussian screen-space quantities.

    means2d: (N, 2) pixel coordinates of the centre (pixel centres at integer + 0.5).
    conics:  (N, 3) (a, b, c) of the inverse 2D covariance: sigma(d) = 0.5 (a dx^2 + c dy^2) + b dx dy.
    depths:  (N,)   camera-space z of the centre.
    radii:   (N, 2) int32 half extents of the bounding box in pixels; (0, 0) for culled Gaussians.
    valid:   (N,)   bool, not culled.
    """

    means2d: jnp.ndarray
    conics: jnp.ndarray
    depths: jnp.ndarray
    radii: jnp.ndarray
    valid: jnp.ndarray


def covariance_factor(quats: jnp.ndarray, scales: jnp.ndarray) -> jnp.ndarray:
    """(N, 3, 3) M = R(q) diag(s), so that Sigma = M M^T."""
    return lie.quat_to_rotmat(quats) * scales[:, None, :]


def project(
    means: jnp.ndarray,
    quats: jnp.ndarray,
    scales: jnp.ndarray,
    opacities: jnp.ndarray,
    camera: Camera,
    near: float,
    far: float,
) -> Projected:
    """Project N Gaussians into one camera. Differentiable in every float input, camera included."""
    R = camera.rotation
    p = means @ R.T + camera.translation  # (N, 3) camera space
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    in_depth = (z > near) & (z < far)
    zs = jnp.where(in_depth, z, 1.0)  # safe z: culled Gaussians must not poison gradients

    K = camera.K
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    W, H = camera.width, camera.height
    # Clamp the point used for the Jacobian to 1.3x the field of view (EWA is poor far off-axis).
    tan_x, tan_y = 0.5 * W / fx, 0.5 * H / fy
    ux = jnp.clip(x / zs, -(cx / fx + 0.3 * tan_x), (W - cx) / fx + 0.3 * tan_x)
    uy = jnp.clip(y / zs, -(cy / fy + 0.3 * tan_y), (H - cy) / fy + 0.3 * tan_y)
    zero = jnp.zeros_like(zs)
    J = jnp.stack(
        [
            jnp.stack([fx / zs, skew / zs, -(fx * ux + skew * uy) / zs], axis=-1),
            jnp.stack([zero, fy / zs, -fy * uy / zs], axis=-1),
        ],
        axis=-2,
    )  # (N, 2, 3)

    M = R @ covariance_factor(quats, scales)  # (N, 3, 3) camera-space factor
    JM = J @ M  # (N, 2, 3)
    cov = JM @ jnp.swapaxes(JM, -1, -2)  # (N, 2, 2)
    a = cov[:, 0, 0] + LOWPASS
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + LOWPASS
    det = a * c - b * b
    ok_det = det > 1e-12
    det_s = jnp.where(ok_det, det, 1.0)
    conics = jnp.stack([c / det_s, -b / det_s, a / det_s], axis=-1)

    means2d = jnp.stack([(fx * x + skew * y) / zs + cx, fy * y / zs + cy], axis=-1)

    # Opacity-aware extent (no gradient: integer box).
    o = jax.lax.stop_gradient(opacities)
    visible_o = o >= ALPHA_MIN
    ext = jnp.minimum(MAX_EXTENT, jnp.sqrt(2.0 * jnp.log(jnp.where(visible_o, 255.0 * o, 1.0))))
    a_, c_ = jax.lax.stop_gradient(a), jax.lax.stop_gradient(c)
    rx = jnp.ceil(ext * jnp.sqrt(jnp.maximum(a_, 0.0)))
    ry = jnp.ceil(ext * jnp.sqrt(jnp.maximum(c_, 0.0)))
    m2 = jax.lax.stop_gradient(means2d)
    on_screen = (m2[:, 0] + rx > 0) & (m2[:, 0] - rx < W) & (m2[:, 1] + ry > 0) & (m2[:, 1] - ry < H)
    valid = in_depth & ok_det & visible_o & on_screen & (rx > 0) & (ry > 0)
    radii = jnp.where(valid[:, None], jnp.stack([rx, ry], axis=-1), 0.0)
    # Radii are bounded so that integer tile maths downstream cannot overflow.
    radii = jnp.minimum(radii, 4.0 * (W + H)).astype(jnp.int32)
    return Projected(means2d=means2d, conics=conics, depths=z, radii=radii, valid=valid)
