"""Videos a person can look at: (F, H, W, 3) float frames in [0, 1] -> H.264 mp4."""

from __future__ import annotations

import imageio.v2 as iio2
import numpy as np

from any4d_jax import files


def to_u8(x) -> np.ndarray:
    """Float images in [0, 1] -> uint8 (rounded)."""
    return (np.clip(np.asarray(x), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def side_by_side(*images) -> np.ndarray:
    """(..., H, W, 3) images joined along the width (e.g. prediction | ground truth)."""
    return np.concatenate([np.asarray(x) for x in images], axis=-2)


def write_video(path: str, frames: np.ndarray, fps: int) -> None:
    """(F, H, W, 3) float in [0, 1] -> H.264 mp4 (odd sizes padded to even by repeating the edge), written
    atomically (files.py)."""
    f = to_u8(frames)
    pad_h, pad_w = f.shape[1] % 2, f.shape[2] % 2
    if pad_h or pad_w:
        f = np.pad(f, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with files.atomic_path(path) as tmp:  # the temporary name keeps the .mp4 extension imageio reads
        iio2.mimwrite(tmp, list(f), fps=fps, macro_block_size=1)
