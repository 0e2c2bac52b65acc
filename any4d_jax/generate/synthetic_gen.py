"""The `synthetic` generator: the procedural dynamic scene of data/synthetic.py under the user's trajectory.

The prompt is ignored; the scene (spinning cube, bouncing ball, waving sheet before a wall and a checkered
ground, about 5 x 3 units) is moved so that its centre sits at `generator.synthetic.center` (default
(0, 0, camera.radius): straight ahead of a trajectory that starts at the origin looking down +z, which is
where `orbit` and the other constructors put their subject). Scene motion spans the clip: frame i is time i of
F. It knows its ground truth, so `render_views` gives held-out views at any camera and (float) time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax.data import synthetic
from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.generate.base import Prompt, frame_times
from any4d_jax.geometry.cameras import Camera
from any4d_jax.geometry.trajectory import Trajectory


class SyntheticGenerator:
    """Renders the ground-truth procedural scene (see module docstring)."""

    name = "synthetic"

    def __init__(self, config: ml_collections.ConfigDict):
        s = config.generator.synthetic
        centre = s.center if s.center is not None else (0.0, 0.0, config.camera.radius)
        self.center = np.asarray(centre, np.float64)
        if self.center.shape != (3,) or not np.all(np.isfinite(self.center)):
            raise InputError(f"generator.synthetic.center must be 3 finite numbers, got {s.center!r}")
        self.num_background = int(s.num_background)
        self.num_per_object = int(s.num_per_object)
        self.seed = int(config.seed)
        self.background = tuple(float(x) for x in config.render.background)
        self._built: tuple | None = None

    def check(self, prompt: Prompt, trajectory: Trajectory) -> None:
        if trajectory.num_frames < 2:
            raise InputError("generator 'synthetic' needs at least 2 frames (its scene moves over the clip)")

    def _scene(self, num_frames: int, width: int, height: int):
        cfg = synthetic.SyntheticConfig(
            num_frames=num_frames,
            width=width,
            height=height,
            seed=self.seed,
            num_background=self.num_background,
            num_per_object=self.num_per_object,
            background=self.background,
        )
        if self._built is None or self._built[0] != cfg:
            self._built = (cfg, synthetic.build_scene(cfg))
        return self._built

    def _scene_cameras(self, cams: Camera) -> Camera:
        """World shift X_user = X_scene + (center - LOOK_AT): viewmat_scene = viewmat T(offset)."""
        T = np.eye(4)
        T[:3, 3] = self.center - synthetic.LOOK_AT
        vm = jnp.asarray(np.asarray(cams.viewmat, np.float64) @ T, jnp.float32)
        return Camera(viewmat=vm, K=cams.K, width=cams.width, height=cams.height)

    def scene(self, prompt: Prompt, trajectory: Trajectory) -> None:
        """Fix the clip length (scene motion spans it), so `render_views` works for reloaded frames too."""
        self._num_frames = trajectory.num_frames

    def generate(self, prompt: Prompt, trajectory: Trajectory, key: jax.Array) -> Frames:
        self.check(prompt, trajectory)
        self.scene(prompt, trajectory)
        return self.render_views(prompt, trajectory, frame_times(trajectory.num_frames))

    def render_views(self, prompt: Prompt, cameras: Camera, times) -> Frames:
        """Ground truth at camera i, time times[i] (float; scene motion spans the generated clip)."""
        num = getattr(self, "_num_frames", None)
        if num is None:
            raise ValueError("synthetic.render_views: call generate() first (it fixes the clip length)")
        cfg, scene = self._scene(num, cameras.width, cameras.height)
        fr = synthetic.render_frames(scene, cfg, self._scene_cameras(cameras), times)
        # mask: the protocol's "valid" mask (every pixel is known), not the scene's foreground mask.
        return Frames(rgb=fr.rgb, cameras=cameras, times=fr.times, depth=fr.depth, mask=None)
