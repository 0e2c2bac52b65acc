"""The `warp` generator: an image lifted to Gaussians before the first camera, rendered along the trajectory.

Weight-free and deterministic (the key is unused). Every pixel of the image (fitted to the trajectory's size
with `images.fit_image`, centre crop by default) becomes one isotropic Gaussian at its depth, seen by
trajectory camera 0; our rasterizer renders them from every camera. Depth comes from `prompt.depth` (a .npy
z-depth map) or from a simple prior (`depth_prior`): a plane through the picture centre at `depth`, tilted by
`tilt_deg` about the camera's x axis (the top of the picture farther away, like a ground plane rising to the
horizon; 0 = fronto-parallel), with the centre pulled `bulge` x closer (a soft dome that lets a centred
subject stand out), clamped at `max_depth_ratio` x depth. Pixels that no Gaussian covers (disoccluded, or
outside the first view) come back as mask = 0, background colour and depth 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.generate import images
from any4d_jax.generate.base import Prompt, frame_times
from any4d_jax.geometry.cameras import Camera
from any4d_jax.geometry.trajectory import Trajectory
from any4d_jax.render import RenderConfig, Splats, render, within_budget


@dataclasses.dataclass(frozen=True)
class WarpSettings:
    """See configs/image_to_4d.py (generator.warp.*) for each knob."""

    depth: float = 2.0
    tilt_deg: float = 20.0
    bulge: float = 0.25
    max_depth_ratio: float = 4.0
    splat_scale: float = 0.4
    mask_threshold: float = 0.5
    fit: str = "crop"
    background: tuple = (1.0, 1.0, 1.0)
    tile_capacity: int | None = None

    def __post_init__(self):
        if not (np.isfinite(self.depth) and self.depth > 0):
            raise InputError(f"generator.warp.depth must be a positive distance, got {self.depth}")
        if not -80.0 < self.tilt_deg < 80.0:
            raise InputError(f"generator.warp.tilt_deg must lie in (-80, 80), got {self.tilt_deg}")
        if not 0.0 <= self.bulge < 1.0:
            raise InputError(f"generator.warp.bulge must lie in [0, 1), got {self.bulge}")
        if not self.max_depth_ratio > 1.0:
            raise InputError(f"generator.warp.max_depth_ratio must be > 1, got {self.max_depth_ratio}")
        if not self.splat_scale > 0:
            raise InputError(f"generator.warp.splat_scale must be > 0, got {self.splat_scale}")


def settings_from_config(config: ml_collections.ConfigDict) -> WarpSettings:
    w = config.generator.warp
    return WarpSettings(
        depth=float(w.depth if w.depth is not None else config.camera.radius),
        tilt_deg=float(w.tilt_deg),
        bulge=float(w.bulge),
        max_depth_ratio=float(w.max_depth_ratio),
        splat_scale=float(w.splat_scale),
        mask_threshold=float(w.mask_threshold),
        fit=config.camera.fit,
        background=tuple(float(x) for x in config.render.background),
        tile_capacity=config.render.tile_capacity,
    )


def depth_prior(K, width: int, height: int, s: WarpSettings) -> np.ndarray:
    """(H, W) float32 z-depth of the prior surface seen by a camera with intrinsics K (3, 3)."""
    K = np.asarray(K, np.float64)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5, indexing="xy")
    rays = np.einsum("ij,hwj->hwi", np.linalg.inv(K), np.stack([u, v, np.ones_like(u)], -1))  # z = 1
    a = np.deg2rad(s.tilt_deg)
    normal = np.array([0.0, np.sin(a), np.cos(a)])  # plane through (0, 0, depth); top recedes for a > 0
    denom = rays @ normal
    far = s.max_depth_ratio * s.depth
    z = np.where(denom > 1e-6, s.depth * np.cos(a) / np.maximum(denom, 1e-6), far)
    z = np.minimum(z, far)
    r2 = ((u - K[0, 2]) ** 2 + (v - K[1, 2]) ** 2) / float(max(width, height)) ** 2
    z = z * (1.0 - s.bulge * np.exp(-r2 / (2 * 0.25**2)))
    return z.astype(np.float32)


def lift(rgb, depth, viewmat, K, splat_scale: float) -> Splats:
    """One Gaussian per pixel of rgb (H, W, 3) at z-depth (H, W) seen by a camera (viewmat (4, 4), K (3, 3)).

    Returns Splats (N = H W) in world coordinates: isotropic std = splat_scale x the pixel footprint at the
    pixel's depth (z / f), opacity 1, RGB colours.
    """
    rgb = np.asarray(rgb, np.float64)
    depth = np.asarray(depth, np.float64)
    h, w = depth.shape
    K = np.asarray(K, np.float64)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5, indexing="xy")
    rays = np.einsum("ij,hwj->hwi", np.linalg.inv(K), np.stack([u, v, np.ones_like(u)], -1))
    x_cam = (rays * depth[..., None]).reshape(-1, 3)
    vm = np.asarray(viewmat, np.float64)
    R, t = vm[:3, :3], vm[:3, 3]
    means = (x_cam - t) @ R  # R^T (x - t)
    f = np.sqrt(K[0, 0] * K[1, 1])
    std = splat_scale * depth.reshape(-1) / f
    n = means.shape[0]
    return Splats(
        means=jnp.asarray(means, jnp.float32),
        quats=jnp.tile(jnp.array([[1.0, 0.0, 0.0, 0.0]], jnp.float32), (n, 1)),
        scales=jnp.asarray(np.repeat(std[:, None], 3, 1), jnp.float32),
        opacities=jnp.ones((n,), jnp.float32),
        colors=jnp.asarray(np.clip(rgb.reshape(-1, 3), 0.0, 1.0), jnp.float32),
    )


@functools.partial(jax.jit, static_argnames=("width", "height", "cfg"))
def _render_views(splats, viewmat, K, background, width, height, cfg):
    def one(args):
        vm, k = args
        out = render(splats, Camera(viewmat=vm, K=k, width=width, height=height), background, cfg)
        return (out.rgb, out.depth, out.alpha), out.stats

    return jax.lax.map(one, (viewmat, K))


def render_views(
    splats: Splats, cams: Camera, s: WarpSettings
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Render splats from every camera: rgb (F, H, W, 3), depth (F, H, W) (0 where invalid), mask (F, H, W).

    mask = 1 where the accumulated opacity reaches s.mask_threshold (the surface is seen), else 0.
    """
    cfg = RenderConfig(tile_capacity=s.tile_capacity, validate=False)
    bg = jnp.asarray(s.background, jnp.float32)
    (rgb, depth, alpha), _, _ = within_budget(
        lambda c: _render_views(splats, cams.viewmat, cams.K, bg, cams.width, cams.height, c), cfg
    )
    mask = (alpha >= s.mask_threshold).astype(jnp.float32)
    return jnp.clip(rgb, 0.0, 1.0), jnp.where(mask > 0, depth, 0.0), mask


def first_frame_depth(prompt: Prompt, traj: Trajectory, s: WarpSettings) -> np.ndarray:
    """(H, W) z-depth for the first camera: prompt.depth fitted like the image, else the prior."""
    if prompt.depth:
        d = images.load_depth(prompt.depth)
        if prompt.image:
            src = images.load_image(prompt.image)
            if src.shape[:2] != d.shape:
                raise InputError(
                    f"prompt.depth {prompt.depth} is {d.shape[1]} x {d.shape[0]} but prompt.image "
                    f"{prompt.image} is {src.shape[1]} x {src.shape[0]}: they must match"
                )
        return images.fit_depth(d, traj.width, traj.height, s.fit)
    return depth_prior(traj.K[0], traj.width, traj.height, s)


def lift_first_frame(rgb0, prompt: Prompt, traj: Trajectory, s: WarpSettings) -> Splats:
    """The Gaussians of an (H, W, 3) first frame at the trajectory's size, seen by trajectory camera 0."""
    depth = first_frame_depth(prompt, traj, s)
    return lift(rgb0, depth, traj.viewmat[0], traj.K[0], s.splat_scale)


class WarpGenerator:
    """Image prompt -> Gaussians in front of camera 0 -> renders along the trajectory (module docstring)."""

    name = "warp"

    def __init__(self, config: ml_collections.ConfigDict):
        self.settings = settings_from_config(config)
        self._scene: tuple[Prompt, Splats] | None = None

    def check(self, prompt: Prompt, trajectory: Trajectory) -> None:
        if not prompt.image:
            raise InputError(
                "generator 'warp' needs an image prompt: --config.prompt.image=photo.png (text prompts need "
                "--config.generator.name=diffusers with --config.generator.model=/path/to/pipeline)"
            )
        images.load_image(prompt.image)
        if prompt.depth:
            first_frame_depth(prompt, trajectory, self.settings)

    def scene(self, prompt: Prompt, trajectory: Trajectory) -> Splats:
        """Lift the image prompt in front of trajectory camera 0 (kept for `render_views`)."""
        img = images.load_image(prompt.image, background=self.settings.background)
        rgb0 = images.fit_image(img, trajectory.width, trajectory.height, self.settings.fit)
        splats = lift_first_frame(rgb0, prompt, trajectory, self.settings)
        self._scene = (prompt, splats)
        return splats

    def generate(self, prompt: Prompt, trajectory: Trajectory, key: jax.Array) -> Frames:
        self.check(prompt, trajectory)
        self.scene(prompt, trajectory)
        return self.render_views(prompt, trajectory, frame_times(trajectory.num_frames))

    def render_views(self, prompt: Prompt, cameras: Camera, times) -> Frames:
        """The scene lifted by the last `generate` (static: times only label the frames) seen by `cameras`."""
        if self._scene is None or self._scene[0] != prompt:
            raise ValueError("warp.render_views: call generate() with this prompt first (it lifts the scene)")
        rgb, depth, mask = render_views(self._scene[1], cameras, self.settings)
        return Frames(rgb=rgb, cameras=cameras, times=jnp.asarray(times, jnp.float32), depth=depth, mask=mask)
