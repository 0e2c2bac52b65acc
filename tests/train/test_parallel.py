"""Data-parallel training: the sharded step equals the single-device step on the same batch.

The device tests need 4 JAX devices, which on CPU means XLA_FLAGS=--xla_force_host_platform_device_count=4
before JAX starts; `test_four_device_tests_in_a_subprocess` runs them in a fresh pytest process with that
flag (and conftest's fast-compile options), so the rest of the suite keeps its single device.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import _FAST_COMPILE, fast_jit

from any4d_jax import data
from any4d_jax.train import loop, parallel
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib
from configs import synthetic as synthetic_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INNER = "ANY4D_PARALLEL_SUBPROCESS"
needs_four = pytest.mark.skipif(
    jax.device_count() < 4, reason="needs 4 devices (run by test_four_device_tests_in_a_subprocess)"
)


def tiny_config():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    c.data.num_background, c.data.num_per_object = 300, 60
    c.data.eval_azimuths_deg = (10.0,)  # 4 held-out frames: the same shapes as training, one render compile
    c.model.capacity, c.model.sh_degree, c.model.init_stride, c.model.init_stride_static = 800, 0, 2, 4
    c.motion.num_generator_channels, c.motion.num_learnable_bases, c.motion.num_time_coeffs = 1, 2, 3
    t = c.train
    t.num_steps, t.time_ramp_steps, t.densify_from, t.densify_until, t.densify_every = 4, 0, 2, 2, 2
    t.checkpoint_every, t.log_every, t.rigidity_k = 4, 2, 4
    # Rotations frozen: the isotropic initial Gaussians' rotation gradient is zero up to rounding (~1e-9),
    # which Adam (scale-invariant) turns into +-lr steps that differ with the reduction order.
    t.lr.quats = 0.0
    return c


def test_configs_without_a_parallel_section_run_on_one_device():
    c = tiny_config()
    assert parallel.settings(c) == (1, 1)
    del c["parallel"]
    assert parallel.settings(c) == (1, 1)


def test_more_devices_than_visible_fail_with_the_flag_to_set():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count=64"):
        parallel.make_mesh(64)


@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="this is the subprocess")
def test_four_device_tests_in_a_subprocess():
    flags = [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=4"]
    flags += [f"--{k}={str(v).lower()}" for k, v in _FAST_COMPILE.items()]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "on_four", __file__],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, INNER: "1", "XLA_FLAGS": " ".join(flags).strip()},
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "skipped" not in r.stdout.splitlines()[-1], r.stdout[-2000:]


@pytest.fixture(scope="module")
def setup_state():
    c = tiny_config()
    frames = data.load(c).train
    setup = state_lib.make_setup(c, frames)
    optimizer = state_lib.make_optimizer(c, state_lib.scene_extent(frames.cameras))
    state = state_lib.init_state(c, setup, frames, optimizer)
    return c, frames, setup, optimizer, state


@needs_four
def test_sharded_step_equals_single_device_step_on_four(setup_state):
    _, frames, setup, optimizer, state = setup_state
    mesh = parallel.make_mesh(4)
    replicated, split = parallel.shardings(mesh)
    batch = jax.tree_util.tree_map(lambda x: x[jnp.array([0, 1, 2, 3])], state_lib.frames_to_data(frames))

    single = jax.jit(step_lib.make_step(setup, optimizer))
    sharded = jax.jit(
        step_lib.make_step(setup, optimizer, split),
        in_shardings=(replicated, split),
        out_shardings=(replicated, replicated),
    )
    compiled = sharded.lower(state, batch).compile()
    assert "all-reduce" in compiled.as_text()  # the compiler sums the per-device gradients
    batch_sharded = jax.device_put(batch, split)
    assert len(batch_sharded["rgb"].addressable_shards) == 4
    assert batch_sharded["rgb"].addressable_shards[0].data.shape[0] == 1  # one camera per device

    a, ma = single(state, batch)
    b, mb = compiled(jax.device_put(state, replicated), batch_sharded)
    assert len(a.params.means.sharding.device_set) == 1 and len(b.params.means.sharding.device_set) == 4
    for k in ma:
        np.testing.assert_allclose(np.asarray(ma[k]), np.asarray(mb[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    leaves_a = jax.tree_util.tree_leaves_with_path(a)
    for (path, x), y in zip(leaves_a, jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=str(path))
    # The step did something: the parameters moved.
    assert float(jnp.max(jnp.abs(a.params.sh - state.params.sh))) > 1e-4


@needs_four
def test_train_with_parallel_devices_on_four(setup_state, tmp_path):
    c, frames, _, _, _ = setup_state
    c.parallel.devices = 4
    state, setup = loop.train(c, frames, str(tmp_path))  # the one loop, with the sharded step
    assert int(state.step) == c.train.num_steps and os.path.isdir(tmp_path / "checkpoints" / "4")
    assert len(state.params.means.sharding.device_set) == 1  # returned on one device, ready to evaluate
    assert np.all(np.isfinite(np.asarray(state.params.means)))
    init = state_lib.init_state(c, setup, frames, state_lib.make_optimizer(c, 1.0))
    assert float(jnp.max(jnp.abs(state.params.sh - init.params.sh))) > 1e-3


def test_one_frame_batch_step_equals_the_vmapped_batch_step(setup_state):
    """F = 1 renders without a batch axis; it must equal the batched (vmapped) path on the same frame."""
    _, frames, setup, optimizer, state = setup_state
    data = state_lib.frames_to_data(frames)
    one = jax.tree_util.tree_map(lambda x: x[jnp.array([2])], data)
    two = jax.tree_util.tree_map(lambda x: x[jnp.array([2, 2])], data)  # the same frame twice: same mean
    a, ma = fast_jit(step_lib.make_step(setup, optimizer))(state, one)
    b, mb = fast_jit(step_lib.make_step(setup, optimizer))(state, two)
    np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.params.sh), np.asarray(b.params.sh), rtol=1e-5, atol=1e-6)
    # Screen-space statistics count each frame: the duplicated frame counts twice.
    np.testing.assert_allclose(np.asarray(b.densify.vis_count), 2 * np.asarray(a.densify.vis_count))
    assert float(jnp.sum(a.densify.vis_count)) > 0
