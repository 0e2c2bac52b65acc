"""Helpers for notebook research (notebooks/explore.ipynb): load a config and a checkpoint, render, and take
gradients of a photometric loss with jax.grad.

Everything is a small pure function of a restored TrainState, so a notebook cell can swap any part (a loss,
a parameter, a time) and differentiate through the whole model: motion basis -> rasterizer -> loss.
"""

from __future__ import annotations

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import data
from any4d_jax.data.frames import Frames
from any4d_jax.geometry.cameras import Camera
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model.gaussians import ModelParams, ModelSpec, splats_at
from any4d_jax.render import render
from any4d_jax.train import losses
from any4d_jax.train import state as state_lib


def load_config(path: str, overrides: dict | str | None = None) -> ml_collections.ConfigDict:
    """get_config() of a config file, then flattened overrides ({"train.num_steps": 10} or its JSON)."""
    spec = importlib.util.spec_from_file_location("_any4d_config", path)
    if spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"config file {path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if isinstance(overrides, str):
        overrides = json.loads(overrides) if overrides.strip() else {}
    for key, value in (overrides or {}).items():
        parent, _, leaf = key.rpartition(".")
        node = config
        for part in parent.split(".") if parent else []:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"override {key!r}: the config has no such field")
        node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], (int, float, str, bool)) else value
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
