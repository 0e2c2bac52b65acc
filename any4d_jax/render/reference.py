"""Dense all-pairs reference renderer: the same maths as `render`, none of its machinery.

Every pixel looks at every Gaussian (no tiles, no bins, no budgets, no custom VJP: plain autodiff), so tests
can compare the tile renderer's outputs and gradients against it. The projection is written out
independently (explicit 3x3 matrices, quaternion formula inline) so a mistake in one shows as a difference.
Pixels are processed in blocks (lax.map, rematerialised) so large images fit in memory; it is still slow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from any4d_jax.geometry.cameras import Camera
from any4d_jax.render.api import splat_colors
from any4d_jax.render.types import (
    ALPHA_MAX,
    ALPHA_MIN,
    LOWPASS,
    MAX_EXTENT,
    T_MIN,
    RenderConfig,
    RenderOut,
    Splats,
)


def _rotmat(q):
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def project_dense(splats: Splats, camera: Camera, near: float, far: float):
    """means2d (N, 2), inverse 2D covariance (N, 2, 2), depth (N,), valid (N,) without any radius logic
    except the same culling rules (depth range, opacity >= 1/255, box touching the image)."""
    W, H = camera.width, camera.height
    Rw = camera.viewmat[:3, :3]
    pc = jnp.einsum("ij,nj->ni", Rw, splats.means) + camera.viewmat[:3, 3]
    z = pc[:, 2]
    ok_z = (z > near) & (z < far)
    zs = jnp.where(ok_z, z, 1.0)
    K = camera.K
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    lim_x = (-(cx / fx + 0.3 * 0.5 * W / fx), (W - cx) / fx + 0.3 * 0.5 * W / fx)
    lim_y = (-(cy / fy + 0.3 * 0.5 * H / fy), (H - cy) / fy + 0.3 * 0.5 * H / fy)
    tx = zs * jnp.clip(pc[:, 0] / zs, *lim_x)
    ty = zs * jnp.clip(pc[:, 1] / zs, *lim_y)
    zero = jnp.zeros_like(zs)
    J = jnp.stack(
        [
            jnp.stack([fx / zs, s / zs, -(fx * tx + s * ty) / (zs * zs)], -1),
            jnp.stack([zero, fy / zs, -fy * ty / (zs * zs)], -1),
        ],
        -2,
    )
    Rg = _rotmat(splats.quats)
    S2 = jax.vmap(jnp.diag)(splats.scales**2)
    cov3 = Rg @ S2 @ jnp.swapaxes(Rg, 1, 2)
    cov_cam = Rw[None] @ cov3 @ Rw.T[None]
    cov2 = J @ cov_cam @ jnp.swapaxes(J, 1, 2) + LOWPASS * jnp.eye(2)
    det = jnp.linalg.det(cov2)
    ok_det = det > 1e-12
    cov2_s = jnp.where(ok_det[:, None, None], cov2, jnp.eye(2))
    inv = jnp.linalg.inv(cov2_s)
    uvw = jnp.einsum("ij,nj->ni", K, jnp.stack([pc[:, 0], pc[:, 1], zs], -1))
    means2d = uvw[:, :2] / uvw[:, 2:3]
    o = jax.lax.stop_gradient(splats.opacities)
    ok_o = o >= ALPHA_MIN
    ext = jnp.minimum(MAX_EXTENT, jnp.sqrt(2 * jnp.log(jnp.where(ok_o, 255 * o, 1.0))))
    c2 = jax.lax.stop_gradient(cov2)
    r = jnp.ceil(ext[:, None] * jnp.sqrt(jnp.maximum(jnp.stack([c2[:, 0, 0], c2[:, 1, 1]], -1), 0)))
    m = jax.lax.stop_gradient(means2d)
    on = (m[:, 0] + r[:, 0] > 0) & (m[:, 0] - r[:, 0] < W) & (m[:, 1] + r[:, 1] > 0) & (m[:, 1] - r[:, 1] < H)
    valid = ok_z & ok_det & ok_o & on & (r[:, 0] > 0) & (r[:, 1] > 0)
    return means2d, inv, z, valid


def render_reference(
    splats: Splats,
    camera: Camera,
    background: jnp.ndarray | None = None,
    cfg: RenderConfig | None = None,
    pixel_block: int = 1024,
) -> RenderOut:
    """Dense renderer with outputs like `render` (stats empty). Cost O(pixels x N)."""
    cfg = RenderConfig() if cfg is None else cfg
    W, H = camera.width, camera.height
    n = splats.num
    bg = jnp.zeros((3,), jnp.float32) if background is None else jnp.broadcast_to(background, (3,))
    means2d, inv, z, valid = project_dense(splats, camera, cfg.near, cfg.far)
    colors = splat_colors(splats, camera, cfg.sh_degree)
    feats = [colors, z[:, None], jnp.ones((n, 1))]
    if splats.features is not None:
        feats.append(splats.features)
    vals = jnp.concatenate(feats, -1)

    order = jnp.argsort(jnp.where(valid, z, jnp.inf), stable=True)
    means2d, inv, vals = means2d[order], inv[order], vals[order]
    opac = jnp.where(valid, splats.opacities, 0.0)[order]

    ys, xs = jnp.meshgrid(jnp.arange(H) + 0.5, jnp.arange(W) + 0.5, indexing="ij")
    pix = jnp.stack([xs.ravel(), ys.ravel()], -1)
    npix = pix.shape[0]
    nblk = -(-npix // pixel_block)
    pix = jnp.concatenate([pix, jnp.zeros((nblk * pixel_block - npix, 2))], 0).reshape(nblk, pixel_block, 2)

    @jax.checkpoint
    def block(p):
        d = means2d[None, :, :] - p[:, None, :]  # (b, N, 2)
        sigma = 0.5 * jnp.einsum("bni,nij,bnj->bn", d, inv, d)
        alpha = jnp.minimum(ALPHA_MAX, opac[None] * jnp.exp(-sigma))
        alpha = jnp.where((alpha >= ALPHA_MIN) & (sigma >= 0), alpha, 0.0)
        trans = jnp.cumprod(1.0 - alpha, axis=1)  # T after each Gaussian
        before = jnp.concatenate([jnp.ones_like(trans[:, :1]), trans[:, :-1]], axis=1)
        keep = (trans > T_MIN) & (alpha > 0)
        w = jnp.where(keep, alpha * before, 0.0)
        return w @ vals

    acc = jax.lax.map(block, pix).reshape(-1, vals.shape[1])[:npix].reshape(H, W, -1)
    alpha = acc[..., 4]
    rgb = acc[..., :3] + (1 - alpha)[..., None] * bg
    depth = jnp.where(alpha > 1e-6, acc[..., 3] / jnp.maximum(alpha, 1e-6), 0.0)
    features = acc[..., 5:] if splats.features is not None else None
    return RenderOut(rgb=rgb, alpha=alpha, depth=depth, features=features, stats={}, aux={"means2d": means2d})
