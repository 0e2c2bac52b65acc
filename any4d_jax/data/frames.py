"""`Frames`: the common type between generation, data loading and reconstruction."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax.geometry.cameras import Camera


@struct.dataclass
class Frames:
    """A video with its cameras: frame i was seen (or generated) by camera i at time `times[i]`.

    rgb:     (F, H, W, 3) float32 in [0, 1].
    cameras: Camera with viewmat (F, 4, 4), K (F, 3, 3) (OpenCV, world-to-camera).
    times:   (F,) float32 frame times in [0, T - 1].
    depth:   (F, H, W) float32 z-depth (0 where unknown), or None.
    mask:    (F, H, W) float32 in [0, 1]: foreground / valid pixels (meaning set by the source), or None.
    tracks:  data.tracks.Tracks: long-range 2D point tracks through these F frames (frame indices are rows
             here), or None.
    """

    rgb: jnp.ndarray
    cameras: Camera
    times: jnp.ndarray
    depth: Any = None
    mask: Any = None
    tracks: Any = None

    @property
    def num_frames(self) -> int:
        return self.rgb.shape[0]

    @property
    def num_times(self) -> int:
        """T, the length of the time axis the frames sample (last frame time + 1; the motion model's T)."""
        return int(np.max(np.asarray(self.times))) + 1

    def frame(self, i: int) -> Frames:
        """The i-th frame as a Frames of length 1 (without tracks: they span frames)."""
        sl = slice(i, i + 1)
        return Frames(
            rgb=self.rgb[sl],
            cameras=self.cameras.replace(viewmat=self.cameras.viewmat[sl], K=self.cameras.K[sl]),
            times=self.times[sl],
            depth=None if self.depth is None else self.depth[sl],
            mask=None if self.mask is None else self.mask[sl],
        )
