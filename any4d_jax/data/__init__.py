"""Data sources: every one yields `Frames` (images with the cameras they were taken or generated under).

    load(config) -> Dataset     the one switch over config.data.source for recorded data:
        "synthetic"   the procedural dynamic scene (data/synthetic.py): training frames + held-out views
        "iphone"      a DyCheck iPhone scene folder (data/iphone.py): training video + val split + points
The generated source ("prompt") is produced by the generate layer beside this one (generate.load): the
generators build Frames and use this package's synthetic scene, so they sit above it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from any4d_jax.data import camera_noise, iphone, synthetic
from any4d_jax.data.frames import Frames

__all__ = ["Dataset", "Frames", "load"]


@dataclasses.dataclass
class Dataset:
    """What a job trains and evaluates on.

    train:        training Frames (time order).
    held_out:     held-out Frames with ground truth (synthetic: static cameras at every time; iphone: the
                  val split), or None.
    extra_points: optional (points (M, 3), colours (M, 3)) static points for the initialisation.
    source:       the source object a job may need (SyntheticConfig, IPhoneScene + Protocol, ...).
    true_cameras: the training cameras as the images were really taken, when `train`'s cameras were
                  perturbed on purpose (data.camera_noise_*, data/camera_noise.py); else None.
    """

    train: Frames
    held_out: Frames | None = None
    extra_points: Any = None
    source: Any = None
    true_cameras: Any = None


def load(config: ml_collections.ConfigDict) -> Dataset:
    """The Dataset of config.data.source (every check of the source happens here, before training)."""
    source = config.data.source
    if source == "synthetic":
        sc = synthetic.SyntheticConfig.from_config(config)
        _, train, held_out = synthetic.make_dataset(sc)
        deg, frac = config.data.get("camera_noise_deg", 0.0), config.data.get("camera_noise_frac", 0.0)
        if deg == 0 and frac == 0:
            return Dataset(train=train, held_out=held_out, source=sc)
        noisy = camera_noise.perturb_frames(train, deg, frac, sc.radius, config.seed)
        return Dataset(train=noisy, held_out=held_out, source=sc, true_cameras=train.cameras)
    if source == "iphone":
        protocol = iphone.get_protocol(config.data.protocol)
        factor = iphone.resolve_factor(config, protocol)
        if not config.data.root:
            raise ValueError("data.root is not set: pass --config.data.root=/path/to/iphone/<scene>")
        scene = iphone.load_scene(
            config.data.root,
            factor=factor,
            covisible_dirs=protocol.covisible_dirs,
            use_depth=config.data.use_depth,
            use_points=config.data.use_points,
        )
        points = iphone.extra_points(scene, config.data.max_points, config.seed)
        return Dataset(train=scene.train, held_out=scene.val, extra_points=points, source=(scene, protocol))
    if source == "prompt":
        raise ValueError("data.source='prompt' is generated, not loaded: use any4d_jax.generate.load(config)")
    raise ValueError(f"data.source must be 'synthetic', 'iphone' or 'prompt', got {source!r}")
