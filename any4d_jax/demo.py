"""A weight-free static demo scene rendered along an orbit: the main job until reconstruction lands.

The scene is procedural (seeded): a checkered ground of flat Gaussians, a sphere shell with view-dependent
(degree-1 SH) colour, a ring, and a cloud of small coloured blobs. Outputs in the workdir: `orbit.png` (a
strip of views), `view_000.png`, `stats.json` (renderer stats and timings per view).
"""

from __future__ import annotations

import json
import os
import time

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from any4d_jax import cameras
from any4d_jax.render import RenderConfig, Splats, render
from any4d_jax.render.sh import rgb_to_sh_dc


def _flat_quats(n):
    return jnp.tile(jnp.array([[1.0, 0.0, 0.0, 0.0]]), (n, 1))


def demo_scene(key: jax.Array, num_gaussians: int) -> Splats:
    """A static scene of about `num_gaussians` Gaussians centred at the origin, y up is -y (OpenCV world)."""
    k = jax.random.split(key, 8)
    n_ground = num_gaussians // 2
    n_sphere = num_gaussians // 4
    n_ring = num_gaussians // 8
    n_blob = num_gaussians - n_ground - n_sphere - n_ring

    # Ground: a 4 x 4 checkerboard in the plane y = 0.6 (below the objects, since +y points down).
    g = jax.random.uniform(k[0], (n_ground, 2), minval=-2.0, maxval=2.0)
    ground = jnp.stack([g[:, 0], jnp.full((n_ground,), 0.6), g[:, 1]], -1)
    check = (jnp.floor(g[:, 0] * 2) + jnp.floor(g[:, 1] * 2)) % 2
    ground_rgb = jnp.where(check[:, None] > 0, jnp.array([0.85, 0.82, 0.75]), jnp.array([0.25, 0.3, 0.35]))
    ground_scales = jnp.tile(jnp.array([[0.05, 0.004, 0.05]]), (n_ground, 1))

    # Sphere shell of radius 0.45 at the centre, coloured by latitude, with a view-dependent sheen.
    d = jax.random.normal(k[1], (n_sphere, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    sphere = 0.45 * d + jnp.array([0.0, 0.0, 0.0])
    sphere_rgb = 0.5 + 0.45 * jnp.stack([d[:, 1], d[:, 0], -d[:, 1]], -1)
    sphere_scales = jnp.full((n_sphere, 3), 0.03)

    # Ring (torus) around the sphere, tilted.
    u = jax.random.uniform(k[2], (n_ring,), maxval=2 * jnp.pi)
    v = jax.random.uniform(k[3], (n_ring,), maxval=2 * jnp.pi)
    R, r = 0.8, 0.06
    ring = jnp.stack(
        [(R + r * jnp.cos(v)) * jnp.cos(u), r * jnp.sin(v), (R + r * jnp.cos(v)) * jnp.sin(u)], -1
    )
    tilt = 0.35
    c, s = jnp.cos(tilt), jnp.sin(tilt)
    ring = ring @ jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]).T
    ring_rgb = jnp.stack([0.9 + 0 * u, 0.55 + 0.3 * jnp.sin(3 * u), 0.1 + 0 * u], -1)
    ring_scales = jnp.full((n_ring, 3), 0.025)

    # Blobs: coloured clusters floating around.
    centres = jax.random.uniform(
        k[4], (12, 3), minval=jnp.array([-1.6, -0.9, -1.6]), maxval=jnp.array([1.6, 0.3, 1.6])
    )
    which = jax.random.randint(k[5], (n_blob,), 0, 12)
    blob = centres[which] + 0.08 * jax.random.normal(k[6], (n_blob, 3))
    palette = jax.random.uniform(k[7], (12, 3), minval=0.1, maxval=1.0)
    blob_rgb = palette[which]
    blob_scales = jnp.full((n_blob, 3), 0.035)

    means = jnp.concatenate([ground, sphere, ring, blob])
    rgb = jnp.concatenate([ground_rgb, sphere_rgb, ring_rgb, blob_rgb])
    scales = jnp.concatenate([ground_scales, sphere_scales, ring_scales, blob_scales])
    n = means.shape[0]
    sh = jnp.zeros((n, 4, 3)).at[:, 0, :].set(rgb_to_sh_dc(rgb))
    # Sheen on the sphere: brighter when seen from +x.
    sh = sh.at[n_ground : n_ground + n_sphere, 3, :].set(-0.25)
    opac = jnp.full((n,), 0.9)
    return Splats(means=means, quats=_flat_quats(n), scales=scales, opacities=opac, colors=sh)


def orbit_cameras(
    num_views: int, radius: float, elevation_deg: float, width: int, height: int, fov_deg: float
):
    """`num_views` cameras on a circle around the origin, looking at it (OpenCV, world up = -y)."""
    ang = jnp.linspace(0.0, 2 * jnp.pi, num_views, endpoint=False)
    el = jnp.deg2rad(elevation_deg)
    eyes = jnp.stack(
        [
            radius * jnp.cos(el) * jnp.sin(ang),
            jnp.full_like(ang, -radius * jnp.sin(el)),
            -radius * jnp.cos(el) * jnp.cos(ang),
        ],
        -1,
    )
    vms = cameras.look_at(eyes, jnp.zeros_like(eyes), up=(0.0, -1.0, 0.0))
    K = jnp.broadcast_to(cameras.from_fov(width, height, fov_deg), (num_views, 3, 3))
    return cameras.make_camera(vms, K, width, height)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Render the demo scene along an orbit and write PNGs and stats into workdir."""
    os.makedirs(workdir, exist_ok=True)
    scene = demo_scene(jax.random.PRNGKey(config.seed), config.scene.num_gaussians)
    rc = config.render
    cams = orbit_cameras(
        config.camera.num_views,
        config.camera.radius,
        config.camera.elevation_deg,
        rc.width,
        rc.height,
        rc.fov_deg,
    )
    cfg = RenderConfig(tile_capacity=rc.tile_capacity, max_pairs=rc.max_pairs)
    bg = jnp.asarray(rc.background, jnp.float32)
    draw = jax.jit(lambda vm, K: render(scene, cams.replace(viewmat=vm, K=K), bg, cfg))
    images, per_view = [], []
    for i in tqdm(range(config.camera.num_views), desc="render", unit="view"):
        t0 = time.perf_counter()
        out = jax.block_until_ready(draw(cams.viewmat[i], cams.K[i]))
        dt = time.perf_counter() - t0
        img = np.asarray(jnp.clip(out.rgb, 0, 1) * 255).astype(np.uint8)
        images.append(img)
        per_view.append({"seconds": dt, **{k: int(v) for k, v in out.stats.items()}})
        if i == 0:
            iio.imwrite(os.path.join(workdir, "view_000.png"), img)
    strip = np.concatenate(images, axis=1)
    iio.imwrite(os.path.join(workdir, "orbit.png"), strip)
    stats = {"num_gaussians": int(scene.num), "views": per_view}
    with open(os.path.join(workdir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    return {
        "orbit_png": os.path.join(workdir, "orbit.png"),
        "stats_json": os.path.join(workdir, "stats.json"),
        "dropped_pairs": sum(v["dropped_pairs"] for v in per_view),
    }
