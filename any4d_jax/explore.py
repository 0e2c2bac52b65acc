"""Helpers for notebook research (notebooks/explore.ipynb): load a config and a checkpoint, render, and take
gradients of a photometric loss with jax.grad.

Everything is a small pure function of a restored TrainState, so a notebook cell can swap any part (a loss,
a parameter, a time) and differentiate through the whole model: motion basis -> rasterizer -> loss.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import data, files
from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError, MissingInput
from any4d_jax.geometry.cameras import Camera
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model.gaussians import ModelParams, ModelSpec, splats_at
from any4d_jax.render import render
from any4d_jax.train import losses
from any4d_jax.train import state as state_lib

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar(value, typ: type, key: str):
    """`value` as a `typ` (bool, int, float or str) for config field `key`, parsed strictly; InputError
    naming the key otherwise. Strings are parsed for bool and number fields (JSON from a form or a shell)."""
    bad = f"override {key!r}: "
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise InputError(f"{bad}expected true/false (or yes/no, 1/0), got {_show(value)}")
    if typ in (int, float):
        if isinstance(value, str):
            text = value.strip()
            if _INT.fullmatch(text):
                value = int(text)
            elif _FLOAT.fullmatch(text):
                value = float(text)
            else:
                raise InputError(
                    f"{bad}expected a{'n integer' if typ is int else ' number'}, got {_show(value)}"
                )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{bad}expected a{'n integer' if typ is int else ' number'}, got {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{bad}expected a finite number, got {_show(value)}")
        if typ is float:
            return float(value)
        if isinstance(value, float) and not value.is_integer():
            raise InputError(f"{bad}expected a whole number (an integer field), got {_show(value)}")
        return int(value)
    if typ is str:
        if not isinstance(value, str):
            raise InputError(f"{bad}expected a string, got {_show(value)}")
        return value
    return value


def _coerce(value, typ: type, old, key: str):
    """`value` converted for a config field of type `typ` holding `old` (see `load_config`)."""
    if value is None:
        if typ is type(None) or old is None:  # a placeholder field (None = automatic) can be reset
            return None
        raise InputError(f"override {key!r}: this field cannot be null (it holds {_show(old)})")
    if typ in (bool, int, float, str):
        return _scalar(value, typ, key)
    if typ in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"override {key!r}: expected a list, got {_show(value)}")
        kinds = {type(x) for x in old} if old else set()
        if len(kinds) == 1 and next(iter(kinds)) in (bool, int, float, str):
            item = next(iter(kinds))
            if item is int and any(isinstance(v, float) for v in value):
                item = float  # (1, 2) -> [1.5, 2]: the list widens, as config_flags does
            value = [_scalar(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return typ(value)
    return value


def load_config(path: str, overrides: dict | str | None = None) -> ml_collections.ConfigDict:
    """get_config() of a config file, then flattened overrides ({"train.num_steps": 10} or its JSON).

    Each override is converted to the type of the field it replaces, strictly: a bool field takes a bool or
    one of true/false, yes/no, 1/0 (any case); an int field an integer, a float with no fraction (2.0) or an
    integer string; a float field a finite number or a number string; a str field a string; a list/tuple
    field a list (items converted like the field's items); a placeholder field (None by default) its type or
    null. Unknown keys and anything else are an InputError naming the key."""
    if not os.path.isfile(path):
        raise MissingInput(f"config file {path} not found")
    spec = importlib.util.spec_from_file_location("_any4d_config", path)
    if spec is None:
        raise InputError(f"config file {path}: not a Python file with get_config()")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if isinstance(overrides, str):
        overrides = files.parse_json(overrides, "overrides") if overrides.strip() else {}
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise InputError(
            f'overrides: expected an object of flattened keys (e.g. {{"train.num_steps": 10}}), got '
            f"{_show(overrides)}"
        )
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise InputError(f"override {_show(key)}: expected a dotted field name such as 'train.num_steps'")
        parts = key.split(".")
        node = config
        for depth, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                field = ".".join(parts[: depth + 1])
                raise InputError(f"override {key!r}: the config has no such field ({field!r})")
            if depth < len(parts) - 1:
                node = node[part]
        leaf = parts[-1]
        old = node[leaf]
        if isinstance(old, ml_collections.ConfigDict):
            raise InputError(f"override {key!r}: this is a group of fields: override its fields one by one")
        new = _coerce(value, node.get_type(leaf), old, key)
        try:
            node[leaf] = new
        except (TypeError, ValueError) as e:
            raise InputError(f"override {key!r}: {' '.join(str(e).split())}") from None
    return config


def load_frames(config: ml_collections.ConfigDict) -> tuple[Frames, Frames | None]:
    """(training frames, held-out frames) of config.data.source (`data.load`)."""
    ds = data.load(config)
    return ds.train, ds.held_out


def restore(config, frames: Frames, workdir: str, step: int | None = None):
    """(TrainState, Setup) from workdir/checkpoints as training saved it (the latest step by default)."""
    if not os.path.isdir(os.path.join(workdir, workdir_lib.CHECKPOINTS)):
        raise FileNotFoundError(f"no checkpoints in {workdir} (train first: python -m experiments.run)")
    setup = state_lib.make_setup(config, frames)
    optimizer = state_lib.make_optimizer(config, state_lib.scene_extent(frames.cameras))
    target = state_lib.init_state(config, setup, frames, optimizer)
    mgr = workdir_lib.checkpoint_manager(workdir, create=False)
    return workdir_lib.restore(mgr, target, step), setup


def camera(frames: Frames, i: int) -> Camera:
    """Camera of frame i (one view)."""
    c = frames.cameras
    return Camera(viewmat=c.viewmat[i], K=c.K[i], width=c.width, height=c.height)


def render_out(params: ModelParams, active, spec: ModelSpec, cam: Camera, t):
    """RenderOut (rgb (H, W, 3), ..., aux: means2d (N, 2), radii (N, 2)) of the model at time t from `cam`."""
    splats = splats_at(params, active, spec.motion, t)
    return render(splats, cam, jnp.asarray(spec.background), spec.render)


def displacement(params: ModelParams, active, spec: ModelSpec, t) -> jnp.ndarray:
    """(N,) distance each Gaussian moved from the canonical frame to time t (0 for inactive slots)."""
    moved = splats_at(params, active, spec.motion, t).means - params.means
    return jnp.where(active, jnp.linalg.norm(moved, axis=-1), 0.0)


def with_weights(params: ModelParams, weights: jnp.ndarray) -> ModelParams:
    """params with the motion weights (N, B) replaced."""
    return params.replace(motion=params.motion.replace(weights=weights))


def gaussian_weight_gradient(state, setup, cam: Camera, t, target, index, step: float = 1e-2) -> dict:
    """jax.grad of the photometric loss w.r.t. Gaussian `index`'s motion weights w_i, and where it comes from.

    target: (H, W, 3) image seen by `cam` at time t. Returns a dict of
      grad (B,):            dL/dw_i, by jax.grad of the loss as a function of w_i alone.
      image_grad (H, W, 3): dL/dI, the loss's gradient in image space: what backpropagation sends into the
                            rasterizer, and through Gaussian i's footprint on to w_i.
      chain (B,):           J^T dL/dI with J = dI/dw_i (jax.vjp): the chain rule by hand, equal to grad.
      change (H, W, 3):     (I(w_i + step d) - I(w_i)) / step for d = -grad / |grad|: how the picture moves
                            for a gradient step (a finite difference: the rasterizer's custom VJP is
                            reverse-mode only, so jax.jvp does not apply).
    """
    weights = state.params.motion.weights
    ssim_lambda = setup.losses.ssim_lambda

    def image(w_i):
        params = with_weights(state.params, weights.at[index].set(w_i))
        return render_out(params, state.active, setup.model, cam, t).rgb

    w_i = weights[index]
    grad = jax.grad(lambda w: losses.photometric(image(w), target, ssim_lambda))(w_i)
    rgb, vjp = jax.vjp(image, w_i)
    image_grad = jax.grad(lambda im: losses.photometric(im, target, ssim_lambda))(rgb)
    (chain,) = vjp(image_grad)
    direction = -grad / jnp.maximum(jnp.linalg.norm(grad), 1e-30)
    change = (image(w_i + step * direction) - rgb) / step
    return {"grad": grad, "image_grad": image_grad, "chain": chain, "change": change}


def to_image(x) -> np.ndarray:
    """Clip to [0, 1] as a numpy image."""
    return np.clip(np.asarray(x), 0.0, 1.0)
