"""The `warp` generator: an image lifted to Gaussians before the first camera, rendered along the trajectory.

Deterministic (the key is unused). Every pixel of the image (fitted to the trajectory's size with
`images.fit_image`, centre crop by default) becomes one isotropic Gaussian at its depth, seen by trajectory
camera 0; our rasterizer renders them from every camera. Depth, first found wins:
  1. `prompt.depth`, a .npy z-depth map in scene units, used as given;
  2. `depth_model` (generator.depth_model), a local transformers depth-estimation folder
     (third_party/depth_model.py): its inverse or metric depth is turned into z-depth and scale-fitted so
     that the median depth of the central region is `depth` (the subject at camera.radius), clamped to
     [depth / max_depth_ratio, depth x max_depth_ratio];
  3. a simple prior (`depth_prior`, logged as a warning naming generator.depth_model): a plane through the
     picture centre at `depth`, tilted by `tilt_deg` about the camera's x axis (the top of the picture
     farther away, like a ground plane rising to the horizon; 0 = fronto-parallel), with the centre pulled
     `bulge` x closer (a soft dome that lets a centred subject stand out), clamped at `max_depth_ratio` x
     depth.
Pixels that no Gaussian covers (disoccluded, or outside the first view) come back as mask = 0, background
colour and depth 0.

`vace_control` turns the renders into the inputs of a video-inpainting model (WanVACE): holes filled with
HOLE_GRAY (0.5, the value VACE is trained to generate into), hole masks dilated by `mask_dilate` pixels (the
half-covered rims at splat edges are regenerated instead of kept), and frame 0 the fitted photo itself with an
all-keep mask (not its re-rendered blur). The renders themselves keep the render background: reconstruction
uses their depth and mask.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

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

log = logging.getLogger(__name__)

HOLE_GRAY = 0.5  # control-video value where the model must generate (WanVACE fills with 127.5 / 255)
# Default mask dilation in pixels: half of the 8-pixel cell that Wan's VAE encodes into one latent (and
# that VACE's mask is folded into). Splat rims (alpha just over mask_threshold, blended with the
# background, 1-2 px) are regenerated with margin, while a kept region loses at most half a cell per edge.
MASK_DILATE = 4


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
    mask_dilate: int = MASK_DILATE
    depth_model: str = ""
    device: str = "auto"

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
        if (
            isinstance(self.mask_dilate, bool)
            or not isinstance(self.mask_dilate, int)
            or self.mask_dilate < 0
        ):
            raise InputError(f"generator.warp.mask_dilate must be an integer >= 0, got {self.mask_dilate!r}")


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
        mask_dilate=w.get("mask_dilate", MASK_DILATE),
        depth_model=config.generator.get("depth_model", "") or "",
        device=config.generator.get("device", "auto") or "auto",
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


def render_with_alpha(
    splats: Splats, cams: Camera, s: WarpSettings
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """`render_views` plus the accumulated opacity: rgb (F, H, W, 3) over s.background, depth (F, H, W) (0
    where invalid), mask (F, H, W) and alpha (F, H, W) in [0, 1]."""
    cfg = RenderConfig(tile_capacity=s.tile_capacity, validate=False)
    bg = jnp.asarray(s.background, jnp.float32)
    (rgb, depth, alpha), _, _ = within_budget(
        lambda c: _render_views(splats, cams.viewmat, cams.K, bg, cams.width, cams.height, c), cfg
    )
    mask = (alpha >= s.mask_threshold).astype(jnp.float32)
    return jnp.clip(rgb, 0.0, 1.0), jnp.where(mask > 0, depth, 0.0), mask, jnp.clip(alpha, 0.0, 1.0)


def render_views(
    splats: Splats, cams: Camera, s: WarpSettings
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Render splats from every camera: rgb (F, H, W, 3), depth (F, H, W) (0 where invalid), mask (F, H, W).

    mask = 1 where the accumulated opacity reaches s.mask_threshold (the surface is seen), else 0.
    """
    return render_with_alpha(splats, cams, s)[:3]


def dilate(mask, radius: int) -> np.ndarray:
    """(..., H, W) binary mask grown by a disk of `radius` pixels (dy^2 + dx^2 <= radius^2), per image.

    Pixels outside the image count as 0 (the border does not grow holes). radius 0 returns the mask as
    float32 0 / 1. Numpy: max over the disk's shifted copies (radius 4: 49 shifts).
    """
    m = np.asarray(mask) > 0.5
    if radius <= 0:
        return m.astype(np.float32)
    h, w = m.shape[-2:]
    r = int(radius)
    pad = np.zeros(m.shape[:-2] + (h + 2 * r, w + 2 * r), bool)
    pad[..., r : r + h, r : r + w] = m
    out = np.zeros_like(m)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                out |= pad[..., r + dy : r + dy + h, r + dx : r + dx + w]
    return out.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class VaceControl:
    """The conditioning of a video-inpainting pipeline (WanVACE), numpy float32.

    video: (F, H, W, 3) in [0, 1]: frame 0 the fitted photo; other frames the renders composited over
           HOLE_GRAY (not the render background), HOLE_GRAY wherever `mask` is 1.
    mask:  (F, H, W), 1 where the model generates (the dilated holes), 0 where it keeps `video`; frame 0 is 0.
    """

    video: np.ndarray
    mask: np.ndarray


def vace_control(rgb0, rgb, alpha, valid, s: WarpSettings) -> VaceControl:
    """The VACE inputs from the fitted first frame rgb0 (H, W, 3) and the renders: rgb (F, H, W, 3) over
    s.background, alpha (F, H, W) their accumulated opacity, valid (F, H, W) their mask (1 = seen).

    Half-covered pixels are re-composited over HOLE_GRAY (rgb + (1 - alpha)(gray - background)), so no
    render-background colour leaks into the control; holes (1 - valid) are dilated by s.mask_dilate pixels and
    set to HOLE_GRAY exactly; frame 0 is rgb0 bit for bit with an all-keep mask.
    """
    rgb = np.asarray(rgb, np.float32)
    a = np.asarray(alpha, np.float32)[..., None]
    bg = np.asarray(s.background, np.float32)
    over_gray = np.clip(rgb + (1.0 - a) * (np.float32(HOLE_GRAY) - bg), 0.0, 1.0)
    hole = dilate(1.0 - np.asarray(valid, np.float32), s.mask_dilate)
    video = np.where(hole[..., None] > 0, np.float32(HOLE_GRAY), over_gray).astype(np.float32)
    rgb0 = np.asarray(rgb0, np.float32)
    if rgb0.shape != video.shape[1:]:
        raise ValueError(f"vace_control: first frame {rgb0.shape} but renders {video.shape[1:]}")
    video[0] = rgb0
    hole[0] = 0.0
    return VaceControl(video=video, mask=hole)


def first_frame_depth(prompt: Prompt, traj: Trajectory, s: WarpSettings, rgb0=None) -> np.ndarray:
    """(H, W) z-depth for the first camera: prompt.depth fitted like the image; else, with s.depth_model and
    the fitted first frame rgb0 (H, W, 3), the model's depth scale-fitted to s.depth; else the prior."""
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
    if s.depth_model and rgb0 is not None:
        from third_party import depth_model  # lazy: torch and transformers only when a depth model is asked

        return depth_model.estimate(
            s.depth_model, rgb0, target=s.depth, max_ratio=s.max_depth_ratio, device=s.device
        )
    if not s.depth_model:
        log.warning(
            "warp: depth from the tilted-plane prior (no depth map): set --config.generator.depth_model="
            "/path/to/depth_model (a local Depth Anything V2 or DepthPro folder) or --config.prompt.depth="
            "depth.npy for real geometry"
        )
    return depth_prior(traj.K[0], traj.width, traj.height, s)


def check_depth_model(s: WarpSettings) -> None:
    """Refuse a generator.depth_model folder that cannot be a supported depth model (JSON only, no torch)."""
    if s.depth_model:
        from third_party import depth_model  # lazy: keeps this module free of third_party imports

        depth_model.inspect(s.depth_model)


def lift_first_frame(rgb0, prompt: Prompt, traj: Trajectory, s: WarpSettings) -> Splats:
    """The Gaussians of an (H, W, 3) first frame at the trajectory's size, seen by trajectory camera 0."""
    depth = first_frame_depth(prompt, traj, s, rgb0)
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
        else:
            check_depth_model(self.settings)

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
