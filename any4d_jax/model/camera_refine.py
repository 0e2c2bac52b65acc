"""Per-frame camera corrections: the reconstruction forgives a video that followed its cameras only roughly.

A generated video follows the commanded trajectory only approximately, and reconstruction assumes the
commanded cameras exactly; every misalignment becomes blur or floaters. With `train.camera_refine`, training
learns one small SE(3) correction per training frame beside the Gaussians:

    viewmat_t' = exp(delta_t) @ viewmat_t        delta_t = (omega, v / scale): (6,) float32

`delta_t` is a twist in the camera's own frame (`lie.se3_exp`: rotation axis-angle first, in radians, then
the translation in units of `scale`, the scene extent, so one learning rate suits every scene size). It
moves camera t by |omega| radians and its centre by |v| scene units (`pose_errors` measures both).

The gauge is fixed at one frame (`gauge`, the first by default: the prompt image is seen exactly from it),
whose correction is held at zero, so the scene cannot drift with the cameras. A penalty (`penalty`) keeps the
others near the commanded trajectory. The rasterizer differentiates through `viewmat`, so the corrections get
their gradient from the same photometric loss as the Gaussians (train/step.py); the corrections are the
`camera` leaf of `ModelParams` (None when refinement is off: the pytree, the optimizer and checkpoints are
then exactly as without this module).

Three things make the corrections settle on the true cameras rather than drift (README, camera refinement):
- they learn from the static Gaussians only (`static_gradient_only`, train.camera_static_only): a moving
  object whose motion is still wrong is no evidence of where the camera is;
- the static Gaussians stay static (motion.static_stays_static): a background free to move absorbs camera
  error instead of correcting it;
- a row-sparse Adam (train/row_adam.py): a step sees one frame, and plain Adam keeps moving every correction
  for ~10 steps after its frame was seen, in the sign of that one gradient.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.geometry import lie
from any4d_jax.geometry.cameras import Camera

__all__ = [
    "enabled",
    "init",
    "correct",
    "static_gradient_only",
    "refined_viewmats",
    "refined_cameras",
    "penalty",
    "pose_errors",
    "report",
]


def enabled(config) -> bool:
    """train.camera_refine settled: True / False as given; None (auto) = on for videos made by a diffusers
    generator (they follow their trajectory only roughly), off where the cameras are exact by construction
    (recorded data as calibrated, the synthetic scene, the warp and synthetic generators)."""
    value = config.train.get("camera_refine", None)
    if value is not None:
        return bool(value)
    return config.data.source == "prompt" and config.get("generator", {}).get("name", "") == "diffusers"


def init(num_frames: int) -> jnp.ndarray:
    """(T, 6) float32 zero corrections (every camera as commanded)."""
    return jnp.zeros((int(num_frames), 6), jnp.float32)


def _twist(delta: jnp.ndarray, scale: float) -> jnp.ndarray:
    """(..., 6) stored correction -> (..., 6) twist in scene units (omega, scale * v)."""
    return jnp.concatenate([delta[..., :3], scale * delta[..., 3:]], axis=-1)


def correct(viewmat: jnp.ndarray, delta: jnp.ndarray, scale: float = 1.0) -> jnp.ndarray:
    """exp(delta) @ viewmat. viewmat: (..., 4, 4) world-to-camera; delta: (..., 6) (see module docstring).

    Differentiable in both; delta = 0 gives viewmat exactly (float32)."""
    chex.assert_shape(delta, (..., 6))
    return lie.se3_exp(_twist(delta, scale)) @ viewmat


def static_gradient_only(splats, corrected: jnp.ndarray, static: jnp.ndarray):
    """`splats` to render with the `corrected` camera (4, 4) that give the same image but pass the
    correction's gradient through the `static` (N,) bool Gaussians only.

    A moving object is no evidence of where the camera is: while its motion is still wrong (a frame that has
    just entered the time curriculum), its photometric error would turn the camera toward it, and that error
    stays baked into the camera. The other Gaussians are pre-moved by V'^-1 sg(V') (V' the corrected viewmat,
    sg the stop-gradient): the identity in value, so means, rotations and the image are unchanged up to
    rounding, while the renderer's V' @ V'^-1 sg(V') x has no derivative in V'. Measured on exact cameras,
    this removes the drift the dynamic content caused (README, camera refinement)."""
    fix = lie.se3_inverse(corrected) @ jax.lax.stop_gradient(corrected)  # (4, 4), the identity in value
    means = splats.means @ fix[:3, :3].T + fix[:3, 3]
    quats = lie.quat_multiply(lie.rotmat_to_quat(fix[:3, :3])[None], splats.quats)
    keep = static[:, None]
    return splats.replace(
        means=jnp.where(keep, splats.means, means), quats=jnp.where(keep, splats.quats, quats)
    )


def gauge_mask(num_frames: int, gauge: int = 0) -> jnp.ndarray:
    """(T,) float32: 1 for frames whose correction is learned, 0 at the gauge frame."""
    return jnp.ones((num_frames,), jnp.float32).at[gauge].set(0.0)


def refined_viewmats(
    viewmats: jnp.ndarray, deltas: jnp.ndarray | None, scale: float = 1.0, gauge: int = 0
) -> jnp.ndarray:
    """(T, 4, 4) the commanded cameras with their learned corrections (the gauge frame unchanged).

    viewmats: (T, 4, 4); deltas: (T, 6) or None (refinement off: viewmats as they are)."""
    if deltas is None:
        return viewmats
    chex.assert_shape(deltas, (viewmats.shape[0], 6))
    masked = deltas * gauge_mask(viewmats.shape[0], gauge)[:, None]
    return correct(viewmats, masked, scale)


def penalty(deltas: jnp.ndarray, index, gauge: int = 0) -> jnp.ndarray:
    """() |omega|^2 + |v / scale|^2 of frame `index`'s correction (0 at the gauge frame): keeps the cameras
    near the command. One frame's term, so its gradient touches that frame's row alone (what the corrections'
    row-sparse Adam, train/row_adam.py, needs); over uniformly drawn frames it averages to the mean penalty.

    deltas: (T, 6); index: () int (traced or not)."""
    return (jnp.asarray(index) != gauge).astype(deltas.dtype) * jnp.sum(deltas[index] ** 2)


def pose_errors(viewmats: np.ndarray, reference: np.ndarray) -> dict:
    """Per-camera rotation error (degrees) and centre distance (scene units) of `viewmats` from `reference`.

    viewmats, reference: (T, 4, 4) world-to-camera. Returns {"rotation_deg": (T,), "translation": (T,)}
    as numpy float64 (host-side reporting, not differentiable)."""
    a, b = np.asarray(viewmats, np.float64), np.asarray(reference, np.float64)
    rel = a[:, :3, :3] @ np.swapaxes(b[:, :3, :3], -1, -2)
    # angle = atan2(sin, cos): accurate for small angles too (arccos of the trace alone is not, in float32).
    asym = rel - np.swapaxes(rel, -1, -2)
    sin = 0.5 * np.linalg.norm(np.stack([asym[:, 2, 1], asym[:, 0, 2], asym[:, 1, 0]], -1), axis=-1)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    center = lambda v: -np.einsum("tji,tj->ti", v[:, :3, :3], v[:, :3, 3])  # noqa: E731
    return {
        "rotation_deg": np.degrees(np.arctan2(sin, cos)),
        "translation": np.linalg.norm(center(a) - center(b), axis=-1),
    }


def refined_cameras(cams: Camera, deltas: jnp.ndarray | None, scale: float = 1.0, gauge: int = 0) -> Camera:
    """The training cameras (viewmat (T, 4, 4)) with their learned corrections; `cams` itself when None."""
    if deltas is None:
        return cams
    return cams.replace(viewmat=refined_viewmats(cams.viewmat, deltas, scale, gauge))


def report(commanded, refined, true=None, size: float = 1.0) -> dict:
    """How far the refinement moved the cameras, and, when the true cameras are known, how far the commanded
    and the refined ones are from them (mean and max over the frames; rotations in degrees, centre shifts in
    scene units and as a fraction of `size`). commanded, refined, true: (T, 4, 4) world-to-camera."""

    def stats(a, b, name):
        e = pose_errors(a, b)
        r, t = e["rotation_deg"], e["translation"]
        return {
            f"{name}_rotation_deg_mean": float(r.mean()),
            f"{name}_rotation_deg_max": float(r.max()),
            f"{name}_translation_mean": float(t.mean()),
            f"{name}_translation_max": float(t.max()),
            f"{name}_translation_frac_mean": float(t.mean() / size),
        }

    out = stats(refined, commanded, "correction")
    if true is not None:
        out.update(stats(commanded, true, "commanded_error"))
        out.update(stats(refined, true, "refined_error"))
    return out
