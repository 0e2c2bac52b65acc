"""The generator protocol and the backend registry.

A generator turns a prompt and a camera trajectory into a video seen by exactly those cameras:

    generate(prompt, trajectory, key) -> Frames(rgb (F, H, W, 3) in [0, 1], cameras = trajectory,
                                                times (F,) = 0..F-1, depth (F, H, W) or None,
                                                mask (F, H, W) or None)

`mask` means *valid* here (1 where the generator knows the pixel's geometry, 0 where it is disoccluded or
invented), not the foreground mask that `data.synthetic` returns; `jobs/prompt.py` drops it before
reconstruction. Backends are picked by name (`--config.generator.name`); the registry maps names to
"module:factory" strings, so torch is only imported when the `diffusers` backend is asked for.

Optional backend hooks: a static `jax_device(config)` (the JAX device to generate and train on, see
`jax_device`), `scene(prompt, trajectory)` (rebuild the scene without generating, for frames reloaded from
disk: `for_saved_frames`) and `render_views(prompt, cameras, times)` (ground truth: `ground_truth`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol, runtime_checkable

import jax
import ml_collections

from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.geometry import trajectory as tj
from any4d_jax.geometry.cameras import Camera
from any4d_jax.geometry.trajectory import Trajectory


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
        """Validate the prompt and trajectory for this backend before any heavy work; raise InputError."""

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


def backend_factory(name: str) -> Any:
    """The factory (usually the class) registered as `name`; imports its module, builds nothing."""
    if name not in BACKENDS:
        raise InputError(f"generator.name {name!r} is unknown; choose one of {sorted(BACKENDS)}")
    module, factory = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), factory)


def make_generator(config: ml_collections.ConfigDict) -> Generator:
    """The backend named by config.generator.name, built from the whole experiment config."""
    name = config.generator.name
    gen = backend_factory(name)(config)
    if not isinstance(gen, Generator):
        raise TypeError(
            f"generator backend {name!r} ({BACKENDS[name]}) does not implement the Generator protocol"
        )
    return gen


def jax_device(config: ml_collections.ConfigDict) -> Any | None:
    """The JAX device generation and training should run on (`jax.default_device`), or None for JAX's own
    default. A backend that places its output on a device (the diffusers backend on cuda:K) says so with a
    static `jax_device(config)`; it is asked before generating so that both sides use one GPU."""
    fn = getattr(backend_factory(config.generator.name), "jax_device", None)
    return None if fn is None else fn(config)


class SavedGenerator:
    """Stands for the backend of a clip reloaded from disk (jobs/prompt.py, generated.npz): it has the
    backend's name and no scene, so `ground_truth` is None and nothing is generated."""

    def __init__(self, name: str):
        self.name = name


def for_saved_frames(config: ml_collections.ConfigDict, prompt: Prompt, trajectory: Trajectory) -> Any:
    """The generator to evaluate reloaded frames with, without generating: backends that can rebuild their
    scene cheaply implement `scene(prompt, trajectory)` (warp: lift the image prompt), and then keep their
    held-out ground truth; the others (diffusers: a model folder and a GPU the reconstruction does not need)
    are a `SavedGenerator`."""
    factory = backend_factory(config.generator.name)
    if not hasattr(factory, "scene"):
        return SavedGenerator(config.generator.name)
    gen = factory(config)
    gen.scene(prompt, trajectory)
    return gen


def frame_times(num_frames: int):
    """(F,) float32 frame times 0..F-1 (the reconstruction's time axis)."""
    import jax.numpy as jnp

    return jnp.arange(num_frames, dtype=jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# From an experiment config (configs/image_to_4d.py, configs/text_to_4d.py).
# ----------------------------------------------------------------------------------------------------------


def prompt_from_config(config: ml_collections.ConfigDict) -> Prompt:
    p = config.prompt
    return Prompt(text=p.text, negative_text=p.negative_text, image=p.image, depth=p.depth)


def trajectory_from_config(config: ml_collections.ConfigDict) -> tj.Trajectory:
    """The Trajectory that config.camera describes (a constructor name or a keyframe JSON file)."""
    c = config.camera
    name = c.trajectory
    if name.endswith(".json"):
        traj = tj.from_json(name, num_frames=c.num_frames)
        if (traj.width, traj.height) != (c.width, c.height):
            traj = traj.rescale(c.width, c.height, c.fit)
        return traj
    target = c.target if c.target is not None else (0.0, 0.0, c.radius)
    common = dict(num_frames=c.num_frames, width=c.width, height=c.height, fov_deg=c.fov_deg)
    if name == "orbit":
        return tj.orbit(
            **common, radius=c.radius, arc_deg=c.arc_deg, elevation_deg=c.elevation_deg, target=c.target
        )
    if name == "dolly":
        return tj.dolly(**common, distance=c.distance, target=target)
    if name == "pan":
        return tj.pan(**common, yaw_deg=c.arc_deg, pitch_deg=c.pitch_deg)
    if name == "spiral":
        return tj.spiral(
            **common,
            radius=c.radius,
            spiral_radius=c.spiral_radius,
            turns=c.turns,
            forward=c.distance,
            target=c.target,
        )
    if name == "static":
        return tj.static(**common, target=target)
    raise InputError(
        f"camera.trajectory must be one of {sorted(tj.CONSTRUCTORS)} or a keyframe file ending in .json, "
        f"got {name!r}"
    )


@dataclasses.dataclass
class Generated:
    """A generated clip and what made it: frames[i] was generated for trajectory camera i at time i."""

    generator: Any
    prompt: Prompt
    trajectory: Trajectory
    frames: Frames


def load(config: ml_collections.ConfigDict) -> Generated:
    """The prompt source: the trajectory and prompt of the config, the backend checked (fails fast, before
    any weights load), then the clip generated under the config's seed."""
    prompt = prompt_from_config(config)
    traj = trajectory_from_config(config)
    gen = make_generator(config)  # validates the backend's settings (and a model folder) before loading
    gen.check(prompt, traj)
    frames = gen.generate(prompt, traj, jax.random.PRNGKey(config.seed))
    return Generated(generator=gen, prompt=prompt, trajectory=traj, frames=frames)
