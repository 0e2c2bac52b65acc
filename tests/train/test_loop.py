"""The training loop: exact resume after an interruption, the non-finite guard, workdir/config checks, the
metrics log, presets and the optimizer's learning-rate schedule."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from any4d_jax import data
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams
from any4d_jax.train import loop
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib
from configs import synthetic as synthetic_config


def tiny_config():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    c.data.num_background, c.data.num_per_object = 300, 60
    c.model.capacity, c.model.sh_degree, c.model.init_stride, c.model.init_stride_static = 1200, 0, 2, 4
    c.motion.num_generator_channels, c.motion.num_learnable_bases, c.motion.num_time_coeffs = 1, 2, 3
    t = c.train
    t.num_steps, t.densify_from, t.densify_until, t.densify_every = 12, 4, 8, 4
    t.checkpoint_every, t.log_every, t.rigidity_k = 6, 3, 4
    c.eval.novel_views, c.eval.write_ply = 3, True
    return c


@pytest.fixture(scope="module")
def frames():
    return data.load(tiny_config()).train


def test_resumed_run_ends_with_the_same_parameters(frames, tmp_path):
    c = tiny_config()
    full, _ = loop.train(c, frames, str(tmp_path / "full"))
    c.train.stop_after = 6
    part, _ = loop.train(c, frames, str(tmp_path / "split"))
    assert int(part.step) == 6
    c.train.stop_after = -1
    resumed, _ = loop.train(c, frames, str(tmp_path / "split"))  # picks up the step-6 checkpoint
    assert int(resumed.step) == int(full.step) == 12
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Training did something: the parameters moved away from the initialisation.
    init = state_lib.init_state(
        c,
        state_lib.make_setup(c, frames),
        frames,
        state_lib.make_optimizer(c, state_lib.scene_extent(frames.cameras)),
    )
    assert float(jnp.abs(full.params.sh - init.params.sh).max()) > 1e-3
    # Every log step reached train_metrics.jsonl once (the resumed run replaced nothing twice), with the
    # loss parts, PSNR, Gaussians in use, dropped pairs and step time; and train_curves.png was drawn.
    rows = workdir_lib.read_metrics(str(tmp_path / "split" / workdir_lib.TRAIN_METRICS))
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    for key in (
        "loss",
        "loss/photometric",
        "loss/rigidity",
        "psnr",
        "gaussians",
        "dropped_pairs",
        "step_time_s",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert rows[-1]["gaussians"] == int(full.active.sum())
    png = tmp_path / "split" / workdir_lib.TRAIN_CURVES
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(frames, tmp_path, monkeypatch):
    original = step_lib.make_train_step

    def poisoned(setup, optimizer, batch_size=1, batch_sharding=None):
        step = original(setup, optimizer, batch_size, batch_sharding)

        def f(state, data):
            new, m = step(state, data)
            return new, dict(m, loss=jnp.where(state.step >= 7, jnp.nan, m["loss"]))

        return f

    monkeypatch.setattr(step_lib, "make_train_step", poisoned)
    c = tiny_config()
    c.train.checkpoint_every, c.train.log_every = 3, 1
    with pytest.raises(FloatingPointError, match=r"step 8.*step 6"):
        loop.train(c, frames, str(tmp_path))
    mgr = ocp.CheckpointManager(os.path.abspath(tmp_path / "checkpoints"))
    assert mgr.latest_step() == 6


def test_workdir_holding_another_config_fails(frames, tmp_path):
    c = tiny_config()
    c.train.num_steps = 1
    loop.train(c, frames, str(tmp_path))
    cameras_before = (tmp_path / workdir_lib.TRAIN_CAMERAS).read_bytes()
    c.seed = 1
    other = frames.replace(times=frames.times[::-1])  # another run's cameras and times
    with pytest.raises(ValueError, match="another config"):
        loop.train(c, other, str(tmp_path))
    # The refused run wrote nothing: the first run's cameras (the exporter's input) are intact.
    assert (tmp_path / workdir_lib.TRAIN_CAMERAS).read_bytes() == cameras_before


def test_static_preset_trains(frames, tmp_path):
    c = tiny_config()
    c.motion.preset, c.train.num_steps = "static", 2
    state, _ = loop.train(c, frames, str(tmp_path))
    assert float(state.params.motion.mask.sum()) == 0 and int(state.step) == 2  # the mask is in the state
    np.testing.assert_array_equal(state.params.motion.learnable, 0.0)  # masked bases get no update
    np.testing.assert_array_equal(state.params.motion.generator, 0.0)


def test_unknown_motion_preset_fails():
    c = tiny_config()
    c.motion.preset = "bogus"
    with pytest.raises(ValueError, match="motion.preset"):
        motion.motion_config(c, 4)


def test_motion_learning_rates_decay_to_the_configured_factor():
    """Adam's first step is the learning rate; with lr.motion_decay the last one is that x the factor."""
    from any4d_jax.model import motion

    c = synthetic_config.get_config()
    c.train.num_steps = 11
    c.train.lr.motion_decay = 0.1
    mc = motion.MotionConfig(num_frames=4, num_generator_channels=1, num_learnable_bases=1, num_time_coeffs=2)
    params = ModelParams(
        means=jnp.zeros((3, 3)),
        quats=jnp.zeros((3, 4)),
        log_scales=jnp.zeros((3, 3)),
        opacity_logits=jnp.zeros((3,)),
        sh=jnp.zeros((3, 1, 3)),
        motion=motion.init_params(mc, 3),
    )
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    opt = state_lib.make_optimizer(c, extent=1.0)
    state = opt.init(params)
    steps = []
    for _ in range(c.train.num_steps):
        upd, state = opt.update(grads, state, params)
        steps.append((float(upd.motion.learnable[0, 0, 0]), float(upd.motion.weights[0, 0])))
    lr = c.train.lr
    np.testing.assert_allclose(steps[0], (-lr.motion_trajectories, -lr.motion_weights), rtol=1e-3)
    # exponential decay over num_steps: step 10 of 11 has the factor 0.1 ** (10 / 11)
    f = 0.1 ** (10 / 11)
    np.testing.assert_allclose(steps[-1], (-lr.motion_trajectories * f, -lr.motion_weights * f), rtol=1e-3)
    assert float(upd.motion.generator_pivots[0, 0]) == 0.0  # pivots stay frozen
    assert float(upd.motion.mask[0]) == 0.0  # and so does the basis mask
    assert float(upd.sh[0, 0, 0]) == pytest.approx(-c.train.lr.colors, rel=1e-3)  # labels follow the fields
