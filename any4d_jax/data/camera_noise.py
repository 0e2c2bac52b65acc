"""Known camera errors on training frames: what a generator that follows its trajectory only roughly does.

`perturb(viewmats, rotation_deg, translation, seed)` moves every camera but the first (the gauge: a generated
video's first frame is the prompt image, seen exactly from the first camera) by an exact amount in a random
direction: a rotation of `rotation_deg` degrees about a uniformly random axis through the camera centre, and a
shift of the centre by `translation` scene units in a uniformly random direction. The images stay as they were
rendered, so the frames now carry "commanded" cameras that are off by a known error (data.camera_noise_deg,
data.camera_noise_frac x the camera-to-subject distance), which camera refinement (model/camera_refine.py)
should recover.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError

__all__ = ["perturb", "perturb_frames"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(T, 3, 3) rotations by `angle` radians about unit `axis` (T, 3) (Rodrigues)."""
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def perturb(viewmats, rotation_deg: float, translation: float, seed: int) -> np.ndarray:
    """(T, 4, 4) float32 world-to-camera matrices, each but the first off by exactly `rotation_deg` degrees
    and `translation` scene units of its centre, in random directions (seeded by `seed`).

    viewmats: (T, 4, 4) world-to-camera. The rotation turns the camera about its own centre; the centre then
    moves by `translation`: viewmat' = [R_n R, R_n (t - R d)] with d the world-space shift of the centre."""
    if not (
        np.isfinite(rotation_deg) and rotation_deg >= 0 and np.isfinite(translation) and translation >= 0
    ):
        raise InputError(
            f"camera noise must be finite and >= 0, got {rotation_deg} degrees and {translation} units"
        )
    v = np.asarray(viewmats, np.float64)
    num = v.shape[0]
    rng = np.random.default_rng([int(seed), 0xCA3E])
    axis = _unit(rng.normal(size=(num, 3)))
    shift = translation * _unit(rng.normal(size=(num, 3)))
    rn = _rotation(axis, np.radians(rotation_deg))
    rn[0], shift[0] = np.eye(3), 0.0  # the gauge camera stays exact
    r, t = v[:, :3, :3], v[:, :3, 3]
    out = v.copy()
    out[:, :3, :3] = rn @ r
    # centre c = -R^T t; new centre c + d: t' = -R' (c + d) = R_n (t - R d).
    out[:, :3, 3] = np.einsum("tij,tj->ti", rn, t - np.einsum("tij,tj->ti", r, shift))
    return out.astype(np.float32)


def perturb_frames(frames: Frames, rotation_deg: float, fraction: float, size: float, seed: int) -> Frames:
    """`frames` with cameras from `perturb` (translation = fraction x size); images, depth, times unchanged.
    Returns `frames` itself when both amounts are 0."""
    if rotation_deg == 0 and fraction == 0:
        return frames
    vm = perturb(frames.cameras.viewmat, rotation_deg, fraction * size, seed)
    return frames.replace(cameras=frames.cameras.replace(viewmat=jnp.asarray(vm)))
