"""Generation: prompt + camera trajectory -> video (Frames) seen by exactly those cameras.

Backends (`--config.generator.name`): `synthetic` (procedural scene with ground truth), `warp` (image lifted
to Gaussians and rendered along the trajectory; weight-free), `diffusers` (a local diffusers pipeline; needs
the optional gen extra: torch and diffusers are imported only when it is asked for).
"""

from any4d_jax.generate.base import (
    BACKENDS,
    Generated,
    Generator,
    Prompt,
    ground_truth,
    load,
    make_generator,
    prompt_from_config,
    register,
    trajectory_from_config,
)

__all__ = [
    "BACKENDS",
    "Generated",
    "Generator",
    "Prompt",
    "ground_truth",
    "load",
    "make_generator",
    "prompt_from_config",
    "register",
    "trajectory_from_config",
]
