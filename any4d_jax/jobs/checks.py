"""Config values checked before anything runs: one InputError line naming the key, the value and the rule.

Unknown keys and wrong types are refused by `config_flags` itself (the configs are locked); this adds the
ranges and choices a type cannot say (a frame count of 0, an SH degree of 7, a negative learning rate), so a
bad value fails in the first second instead of as an XLA shape error after the data is built. A rule applies
when its key exists (the configs in configs/ have different sections).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_collections

from any4d_jax.errors import InputError
from any4d_jax.render import types as render_types
from third_party import diffusers_video  # torch-free: the generator.device grammar (DEVICES)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int_at_least(lo: int) -> tuple[Callable, str]:
    return (lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= lo), f"an integer >= {lo}"


def _int_in(lo: int, hi: int) -> tuple[Callable, str]:
    return (
        lambda x: isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi
    ), f"an integer in [{lo}, {hi}]"


def _optional(rule: tuple[Callable, str]) -> tuple[Callable, str]:
    ok, what = rule
    return (lambda x: x is None or ok(x)), f"None or {what}"


def _nonneg() -> tuple[Callable, str]:
    return (lambda x: _num(x) and x >= 0), "a finite number >= 0"


def _positive() -> tuple[Callable, str]:
    return (lambda x: _num(x) and x > 0), "a finite number > 0"


def _unit() -> tuple[Callable, str]:
    return (lambda x: _num(x) and 0 <= x <= 1), "a number in [0, 1]"


def _open_unit() -> tuple[Callable, str]:
    return (lambda x: _num(x) and 0 < x <= 1), "a number in (0, 1]"


def _choice(*options: str) -> tuple[Callable, str]:
    return (lambda x: x in options), "one of " + ", ".join(options)


def _rgb() -> tuple[Callable, str]:
    return (
        lambda x: isinstance(x, (tuple, list)) and len(x) == 3 and all(_num(v) and 0 <= v <= 1 for v in x)
    ), "three numbers in [0, 1]"


def _device_ok(x) -> bool:
    try:
        diffusers_video.parse_device(x)
    except InputError:
        return False
    return True


MAX_PIXELS_SIDE = 16384
MAX_FRAMES = 10000

RULES: dict[str, tuple[Callable, str]] = {
    "seed": _int_at_least(0),
    "data.source": _choice("synthetic", "iphone", "prompt"),
    "data.num_frames": _int_in(1, MAX_FRAMES),
    "data.width": _int_in(8, MAX_PIXELS_SIDE),
    "data.height": _int_in(8, MAX_PIXELS_SIDE),
    "data.fov_deg": (lambda x: _num(x) and 0 < x < 180, "a number of degrees in (0, 180)"),
    "data.num_background": _int_at_least(1),
    "data.num_per_object": _int_at_least(1),
    "data.max_points": _int_at_least(0),
    "data.camera_noise_deg": (lambda x: _num(x) and 0 <= x <= 30, "a number of degrees in [0, 30]"),
    "data.camera_noise_frac": (
        lambda x: _num(x) and 0 <= x <= 1,
        "a fraction in [0, 1] of the subject distance",
    ),
    "data.scene": _choice("default", "handheld"),
    "data.tracks": (lambda x: isinstance(x, str), "'' (none), 'ground_truth', 'som' or a path to a .npz"),
    "data.num_tracks": _int_at_least(0),
    "data.track_query_frames": _int_at_least(1),
    "camera.num_frames": _int_in(1, MAX_FRAMES),
    "camera.width": _int_in(8, MAX_PIXELS_SIDE),
    "camera.height": _int_in(8, MAX_PIXELS_SIDE),
    "camera.fov_deg": (lambda x: _num(x) and 0 < x < 180, "a number of degrees in (0, 180)"),
    "camera.radius": _positive(),
    "model.capacity": _int_at_least(1),
    "model.sh_degree": _int_in(0, 3),
    "model.init_stride": _int_at_least(1),
    "model.init_stride_dynamic": _int_at_least(1),
    "model.init_stride_static": _int_at_least(1),
    "model.init_fraction": _open_unit(),
    "model.init_opacity": (lambda x: _num(x) and 0 < x < 1, "a number in (0, 1)"),
    "motion.preset": _choice("hybrid", "generators_only", "learnable_only", "static"),
    # At least one of each: orbax cannot checkpoint an empty array; presets switch bases off by their mask.
    "motion.num_generator_channels": (
        lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1,
        "an integer >= 1 (to train without generator bases use --config.motion.preset=learnable_only)",
    ),
    "motion.num_learnable_bases": (
        lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1,
        "an integer >= 1 (to train without learnable bases use --config.motion.preset=generators_only)",
    ),
    "motion.time_basis": _choice("per_frame", "dct", "bspline"),
    "motion.num_time_coeffs": _int_at_least(1),
    "motion.canonical_frame": _int_at_least(-1),
    "motion.init_weight": _nonneg(),
    "motion.init_generator_weight": _nonneg(),
    "motion.init_from_tracks": (lambda x: isinstance(x, bool), "True or False"),
    "motion.static_stays_static": (lambda x: isinstance(x, bool), "True or False"),
    "train.num_steps": _int_at_least(0),
    "train.time_ramp_steps": _int_at_least(0),
    "train.ssim_lambda": _unit(),
    "train.depth_weight": _nonneg(),
    "train.foreground_weight": _nonneg(),
    "train.accel_weight": _nonneg(),
    "train.rigidity_weight": _nonneg(),
    "train.rigidity_k": _int_at_least(1),
    "train.sparsity_weight": _nonneg(),
    "train.camera_refine": (lambda x: x is None or isinstance(x, bool), "True, False or empty (auto)"),
    "train.camera_weight": _nonneg(),
    "train.camera_start": _int_at_least(0),
    "train.camera_static_only": (lambda x: isinstance(x, bool), "True or False"),
    "train.track_weight": _nonneg(),
    "train.track_neighbours": _int_in(1, 64),
    "train.densify_every": _int_at_least(1),
    "train.densify_grad_threshold": _positive(),
    "train.prune_opacity": _unit(),
    "train.log_every": _int_at_least(1),
    "train.checkpoint_every": _int_at_least(1),
    "train.keep_checkpoints": _int_at_least(1),
    "train.stop_after": _int_at_least(-1),
    "train.lr.motion_decay": _open_unit(),
    "render.background": _rgb(),
    "render.tile_capacity": _optional(_int_at_least(1)),
    "render.max_pairs": _optional(_int_at_least(1)),
    "render.grow_pairs": (lambda x: isinstance(x, bool), "True or False"),
    "render.backend": _choice(*render_types.BACKENDS),
    "eval.fps": _int_in(1, 240),
    "eval.novel_views": _int_at_least(1),
    "eval.num_tracks": _int_at_least(0),
    "eval.train_stride": _int_at_least(1),
    "parallel.devices": _int_at_least(1),
    "parallel.frames_per_device": _int_at_least(1),
    "ablation.num_seeds": _int_at_least(1),
    "ablation.step_scale": _open_unit(),
    "generator.num_inference_steps": _int_at_least(1),
    "generator.guidance_scale": _nonneg(),
    "generator.device": (_device_ok, diffusers_video.DEVICES),
    "generator.dtype": _choice(*diffusers_video.DTYPES),
    "generator.vae_dtype": _choice(*diffusers_video.DTYPES[1:]),
    "generator.offload": _choice(*diffusers_video.OFFLOADS),
    "generator.vae_tiling": (lambda x: isinstance(x, bool), "True or False"),
    "generator.variant": (lambda x: isinstance(x, str), "a string ('' = the plain weight files)"),
    "generator.jax_memory_fraction": (
        lambda x: x is None or (_num(x) and 0 < x <= 1),
        "empty (no preallocation) or a number in (0, 1]",
    ),
    "generator.depth_model": (lambda x: isinstance(x, str), "a folder path ('' = the warp depth prior)"),
    "generator.camera_model": (lambda x: isinstance(x, str), "a folder path ('' = no Fun Control-Camera)"),
    "generator.image_model": (lambda x: isinstance(x, str), "a folder path ('' = no text -> image)"),
    "generator.image_size": _optional(_int_in(64, MAX_PIXELS_SIDE)),
    "generator.image_steps": _int_at_least(1),
    "generator.image_guidance_scale": _nonneg(),
    "generator.warp.mask_dilate": _int_in(0, 256),
    "generator.sana_wm.translation_scale": _positive(),
}


def _get(config: ml_collections.ConfigDict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_config(config: ml_collections.ConfigDict) -> None:
    """Every rule above whose key is in `config`, then the rules across keys; InputError on the first
    failure, naming the key (as --config.<key>) and the value."""
    for key, (ok, want) in RULES.items():
        value = _get(config, key)
        if value is not _MISSING and not ok(value):
            raise InputError(f"--config.{key}={value!r}: must be {want}")
    lr = _get(config, "train.lr")
    if lr is not _MISSING:
        for k, v in lr.items():
            if not (_num(v) and v >= 0):
                raise InputError(f"--config.train.lr.{k}={v!r}: must be a finite number >= 0")
    frm, until = _get(config, "train.densify_from"), _get(config, "train.densify_until")
    if frm is not _MISSING and until is not _MISSING and until >= 0 and frm > until:
        raise InputError(
            f"--config.train.densify_from={frm} is after --config.train.densify_until={until} "
            f"(-1 disables density control)"
        )
