"""Shared by the generation tests: one tiny prompt config, and reconstruction steps on generated frames.

Compile time dominates on CPU, so every generation test uses the same sizes (5 frames of 32 x 32, the same
model/motion/render settings): the warp renderer, the evaluation renderer and the train step then compile
once per test session, whichever backend made the frames.
"""

import jax
import numpy as np
from conftest import fast_jit

from any4d_jax import generate
from any4d_jax.jobs import prompt as prompt_job
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib
from configs import image_to_4d, text_to_4d

NUM_FRAMES, SIZE = 5, 32


def tiny(config):
    """Shrink a prompt config (image_to_4d / text_to_4d) to test size, in place; returns it."""
    c = config
    c.camera.num_frames, c.camera.width, c.camera.height = NUM_FRAMES, SIZE, SIZE
    c.camera.arc_deg = 24.0
    c.model.capacity, c.model.sh_degree, c.model.init_stride = 1400, 0, 1
    c.motion.num_generator_channels, c.motion.num_learnable_bases, c.motion.num_time_coeffs = 1, 2, 3
    t = c.train
    t.num_steps, t.densify_from, t.densify_until, t.checkpoint_every, t.rigidity_k = 0, 100, 100, 100, 4
    c.generator.num_inference_steps, c.generator.max_sequence_length = 2, 16
    c.generator.synthetic.num_background, c.generator.synthetic.num_per_object = 400, 80
    c.eval.novel_views = NUM_FRAMES  # the same length as the clip: shared compiled renders and scores
    return c


def image_config():
    return tiny(image_to_4d.get_config())


def text_config():
    return tiny(text_to_4d.get_config())


def generate_frames(config, workdir=None):
    """(generator, prompt, trajectory, frames) of a prompt config (generate.load); with a workdir, the
    generated clip is saved there as the prompt job saves it (generated.mp4, trajectory.json)."""
    g = generate.load(config)
    if workdir is not None:
        prompt_job.save_generated(g, workdir, config.eval.fps)
    return g.generator, g.prompt, g.trajectory, g.frames


_STEP_CACHE: dict = {}


def reconstruct(config, frames, steps: int = 4):
    """Initialise Gaussians from generated frames (depth + colours, with their cameras) and run train steps.

    Uses the library's own pieces (make_setup, init_state, step.make_train_step) with one compiled step per
    (setup, scene extent), shared by every test. Returns (state, metrics per step as dicts of floats).
    """
    frames = frames.replace(mask=None)  # the generators' mask means "valid", not foreground (jobs/prompt.py)
    setup = state_lib.make_setup(config, frames)
    extent = state_lib.scene_extent(frames.cameras)
    optimizer = state_lib.make_optimizer(config, extent)
    state = state_lib.init_state(config, setup, frames, optimizer)
    key = (setup, round(extent, 6))
    if key not in _STEP_CACHE:
        _STEP_CACHE[key] = fast_jit(step_lib.make_train_step(setup, optimizer))
    step = _STEP_CACHE[key]
    data = state_lib.frames_to_data(frames)
    log = []
    for _ in range(steps):
        state, m = step(state, data)
        log.append({k: float(v) for k, v in jax.device_get(m).items()})
    assert all(np.isfinite(r["loss"]) for r in log), log
    return state, log
