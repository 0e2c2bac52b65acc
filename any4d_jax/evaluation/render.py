"""The trained model rendered at many cameras and times: the one renderer every evaluation and job uses.

    render_frames(state, spec, cams, times)      (F, H, W, 3): camera i at time times[i]
    render_variants(state, spec, cams, times)    (V, F, H, W, 3): the same for a stack of V states (ablation)

`state` is anything with `params` (ModelParams) and `active` (a TrainState, or a stack of them); the basis
mask comes from the params. One compiled program per (spec, image size) serves every frame. A frame whose
render overflows the pair budget is rendered again with it grown (render.within_budget), and later frames
keep the grown budget: nothing is dropped.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from any4d_jax.geometry.cameras import Camera
from any4d_jax.model.gaussians import ModelSpec, splats_at
from any4d_jax.render import render, within_budget


def _render_one(params, active, spec: ModelSpec, viewmat, K, t, width: int, height: int):
    cam = Camera(viewmat=viewmat, K=K, width=width, height=height)
    out = render(splats_at(params, active, spec.motion, t), cam, jnp.asarray(spec.background), spec.render)
    return jnp.clip(out.rgb, 0.0, 1.0), out.stats


_STATIC = ("spec", "width", "height")
_render_single = jax.jit(_render_one, static_argnames=_STATIC)


@functools.cache
def _render_stacked():
    fn = jax.vmap(_render_one, in_axes=(0, 0, None, None, None, None, None, None))
    return jax.jit(fn, static_argnums=(2, 6, 7))


def _frames(fn, state, spec: ModelSpec, cams: Camera, times, desc: str, progress: bool) -> np.ndarray:
    times = np.asarray(times, np.float32).reshape(-1)
    viewmat = jnp.asarray(cams.viewmat).reshape(-1, 4, 4)
    K = jnp.asarray(cams.K).reshape(-1, 3, 3)
    if len(viewmat) != len(times):
        raise ValueError(f"render_frames: {len(viewmat)} cameras but {len(times)} times")
    out = []
    for i in tqdm(range(len(times)), desc=desc, unit="frame", leave=False, disable=not progress):
        t = jnp.float32(times[i])

        def one(rcfg, i=i, t=t, spec=spec):
            s = dataclasses.replace(spec, render=rcfg)
            return fn(state.params, state.active, s, viewmat[i], K[i], t, cams.width, cams.height)

        rgb, _, rcfg = within_budget(one, spec.render)
        spec = dataclasses.replace(spec, render=rcfg)
        out.append(np.asarray(rgb))
    return np.stack(out, axis=-4)


def render_frames(
    state, spec: ModelSpec, cams: Camera, times, desc: str = "render", progress=True
) -> np.ndarray:
    """(F, H, W, 3) renders in [0, 1] of camera i (cams: F cameras) at time times[i]."""
    return _frames(_render_single, state, spec, cams, times, desc, progress)


def render_variants(state, spec: ModelSpec, cams: Camera, times, desc="render", progress=True) -> np.ndarray:
    """(V, F, H, W, 3): every state of a stack (leading V on params and active) at every camera and time."""
    return _frames(_render_stacked(), state, spec, cams, times, desc, progress)
