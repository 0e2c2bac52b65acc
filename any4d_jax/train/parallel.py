"""Data-parallel training with JAX's own sharding: a batch of training frames split over a device Mesh.

Each step is train/step.py's step on a batch of F = devices x frames_per_device training frames (one loss per
frame under `jax.vmap`, descending their mean). The batch is laid out along the mesh axis
"data" with a NamedSharding; parameters, optimiser state and every other part of the TrainState are
replicated. Nothing here moves gradients by hand: under `jax.jit` the XLA SPMD partitioner splits the
per-frame work over the devices and inserts the all-reduce of the gradient sum. Density control and the
rigidity neighbours run replicated; the loop (train/loop.py) is the one every run uses.

Switched on by `--config.parallel.devices=N` (N > 1). On CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=N` makes N host devices. Multi-host: every process runs the
same command after `jax.distributed.initialize()` (`--config.parallel.distributed=True`); `jax.devices()`
then lists every host's devices and the mesh spans them.
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from any4d_jax.train import step as step_lib
from any4d_jax.train.state import Setup

AXIS = "data"


def settings(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(devices, frames_per_device) of config.parallel; (1, 1) for configs without that section."""
    p = config.get("parallel")
    if p is None:
        return 1, 1
    devices, per = int(p.get("devices", 1)), int(p.get("frames_per_device", 1))
    if devices < 1 or per < 1:
        raise ValueError(f"parallel.devices and parallel.frames_per_device must be >= 1, got {devices}/{per}")
    return devices, per


def make_mesh(devices: int) -> Mesh:
    """A 1-D Mesh ("data",) over the first `devices` of jax.devices() (all hosts' after distributed init)."""
    available = jax.devices()
    if devices > len(available):
        raise ValueError(
            f"parallel.devices={devices} but JAX sees {len(available)} device(s) ({jax.default_backend()}); "
            f"on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting Python"
        )
    return Mesh(np.asarray(available[:devices]), (AXIS,))


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch split along the leading axis over "data")."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))


def jit_sharded_step(setup: Setup, optimizer, mesh: Mesh, batch_size: int, jit=jax.jit):
    """`(state, data) -> (state, metrics)` jitted over `mesh`: state and data replicated, the batch of
    `batch_size` frames drawn by the curriculum split over the devices."""
    if batch_size % mesh.size:
        raise ValueError(f"batch of {batch_size} frames does not split over {mesh.size} devices")
    replicated, split = shardings(mesh)
    return jit(
        step_lib.make_train_step(setup, optimizer, batch_size, split),
        in_shardings=(replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def sharded_fns(setup: Setup, optimizer, mesh: Mesh, batch_size: int, jit=jax.jit):
    """(step, densify) of the loop (train/loop.py) over `mesh`, both jitted with replicated outputs."""
    replicated, _ = shardings(mesh)
    dens = jit(
        functools.partial(step_lib.densify_round, setup=setup), out_shardings=replicated, donate_argnums=(0,)
    )
    return jit_sharded_step(setup, optimizer, mesh, batch_size, jit), dens


def local_copy(tree):
    """A replicated global pytree as ordinary single-device arrays (this process' first replica)."""
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)
