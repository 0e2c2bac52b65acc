"""The generator protocol and the backend registry.

A generator turns a prompt and a camera trajectory into a video seen by exactly those cameras:

    generate(prompt, trajectory, key) -> Frames(rgb (F, H, W, 3) in [0, 1], cameras = trajectory,
                                                times (F,) = 0..F-1, depth (F, H, W) or None,
                                                mask (F, H, W) or None)

`mask` means *valid* here (1 where the generator knows the pixel's geometry, 0 where it is disoccluded or
invented), not the foreground mask that `data.synthetic` returns; `pipeline.prompt_to_4d` drops it before
reconstruction. Backends are picked by name (`--config.generator.name`); the registry maps names to
"module:factory" strings, so torch is only imported when the `diffusers` backend is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol, runtime_checkable

import jax
import ml_collections

from any4d_jax.cameras import Camera
from any4d_jax.data.frames import Frames
from any4d_jax.trajectory import Trajectory


@dataclasses.dataclass(frozen=True)
class Prompt:
    """What the user asks for. Empty strings mean "not given".

    text:          text prompt (text-to-video, and the caption of image-to-video models).
    negative_text: negative prompt (classifier-free guidance), diffusers backends only.
    image:         path of the image prompt (the first frame, seen by the first camera).
    depth:         optional path of a .npy z-depth map for the image (else the warp depth prior).
    """

    text: str = ""
    negative_text: str = ""
    image: str = ""
    depth: str = ""


@runtime_checkable
class Generator(Protocol):
    """A video generator under given cameras (see the module docstring)."""

    name: str

    def check(self, prompt: Prompt, trajectory: Trajectory) -> None:
        """Validate the prompt and trajectory for this backend before any heavy work; raise ValueError."""

    def generate(self, prompt: Prompt, trajectory: Trajectory, key: jax.Array) -> Frames:
        """The video seen by `trajectory`: Frames with one frame per camera."""


def ground_truth(generator: Any, prompt: Prompt, cameras: Camera, times) -> Frames | None:
    """Frames of the generated scene seen by other cameras, when the backend knows the scene (else None).

    Backends that have a 3D scene (synthetic, warp) implement `render_views(prompt, cameras, times)`; this is
    what held-out evaluation uses.
    """
    fn = getattr(generator, "render_views", None)
    return None if fn is None else fn(prompt, cameras, times)


BACKENDS = {
    "synthetic": "any4d_jax.generate.synthetic_gen:SyntheticGenerator",
    "warp": "any4d_jax.generate.warp:WarpGenerator",
    "diffusers": "any4d_jax.generate.diffusers_gen:DiffusersGenerator",
}


def register(name: str, target: str) -> None:
    """Add a backend: `target` is "module:factory", factory(config) -> Generator."""
    if ":" not in target:
        raise ValueError(f"register: target must be 'module:factory', got {target!r}")
    BACKENDS[name] = target


def make_generator(config: ml_collections.ConfigDict) -> Generator:
    """The backend named by config.generator.name, built from the whole experiment config."""
    name = config.generator.name
    if name not in BACKENDS:
        raise ValueError(f"generator.name {name!r} is unknown; choose one of {sorted(BACKENDS)}")
    module, factory = BACKENDS[name].split(":")
    gen = getattr(importlib.import_module(module), factory)(config)
    if not isinstance(gen, Generator):
        raise TypeError(
            f"generator backend {name!r} ({BACKENDS[name]}) does not implement the Generator protocol"
        )
    return gen


def frame_times(num_frames: int):
    """(F,) float32 frame times 0..F-1 (the reconstruction's time axis)."""
    import jax.numpy as jnp

    return jnp.arange(num_frames, dtype=jnp.float32)
