"""Data-parallel training with JAX's own sharding: a batch of training frames split over a device Mesh.

Each step is train/step.py's step on a batch of F = devices x frames_per_device training frames (one loss per
frame under `jax.vmap`, descending their mean). The batch is laid out along the mesh axis
"data" with a NamedSharding; parameters, optimiser state and every other part of the TrainState are
replicated. Nothing here moves gradients by hand: under `jax.jit` the XLA SPMD partitioner splits the
per-frame work over the devices and inserts the all-reduce of the gradient sum. Density control and the
rigidity neighbours run replicated; the loop (train/loop.py) is the one every run uses.

Switched on by `--config.parallel.devices=N` (N > 1). On CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=N` makes N host devices.

Multi-host (docs/distributed.md): every process runs the same command and calls `initialize()` first
(`--config.parallel.distributed=True`), before any JAX computation; `jax.devices()` then lists every host's
devices and the mesh spans them. Each process loads the frames once and `replicate` copies that one host copy
to its own devices only (no cross-host traffic); the gradient all-reduce crosses hosts (NCCL on GPU, gloo on
CPU). This module imports nothing that starts a JAX backend, so `initialize` can run after importing it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

if TYPE_CHECKING:
    from any4d_jax.train.state import Setup

AXIS = "data"

# Launchers that start one process per rank and say so in environment variables (read by `distributed_args`,
# after explicit arguments and before JAX's own detection of SLURM, Open MPI, Kubernetes and Cloud TPU).
TORCHRUN_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")  # torchrun, Kubeflow PyTorchJob
K8S_INDEX_ENV = "JOB_COMPLETION_INDEX"  # a Kubernetes indexed Job's pod index


def settings(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(devices, frames_per_device) of config.parallel; (1, 1) for configs without that section."""
    p = config.get("parallel")
    if p is None:
        return 1, 1
    devices, per = int(p.get("devices", 1)), int(p.get("frames_per_device", 1))
    if devices < 1 or per < 1:
        raise ValueError(f"parallel.devices and parallel.frames_per_device must be >= 1, got {devices}/{per}")
    return devices, per


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def distributed_args(
    env: Mapping[str, str] | None = None,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> dict:
    """The arguments of `jax.distributed.initialize`; None where JAX should detect the value itself.

    Each is taken from the first of: the explicit argument; JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID; torchrun-style MASTER_ADDR:MASTER_PORT / WORLD_SIZE / RANK (all four set; LOCAL_RANK
    picks the one local device when LOCAL_WORLD_SIZE > 1); the process id from JOB_COMPLETION_INDEX (a
    Kubernetes indexed Job). What is still None JAX detects on SLURM, Open MPI, Kubernetes and Cloud TPU
    (and JAX_LOCAL_DEVICE_IDS, read by JAX, restricts the local devices).
    """
    env = os.environ if env is None else env
    count, index = num_processes, process_id
    coordinator = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if count is None and "JAX_NUM_PROCESSES" in env:
        count = _env_int(env, "JAX_NUM_PROCESSES")
    if index is None and "JAX_PROCESS_ID" in env:
        index = _env_int(env, "JAX_PROCESS_ID")
    local = None if local_device_ids is None else list(local_device_ids)
    if all(k in env for k in TORCHRUN_ENV):
        coordinator = coordinator or f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
        count = _env_int(env, "WORLD_SIZE") if count is None else count
        index = _env_int(env, "RANK") if index is None else index
        per_host = _env_int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else 1
        if local is None and "LOCAL_RANK" in env and per_host > 1:
            local = [_env_int(env, "LOCAL_RANK")]
    if index is None and K8S_INDEX_ENV in env:
        index = _env_int(env, K8S_INDEX_ENV)
    return dict(
        coordinator_address=coordinator, num_processes=count, process_id=index, local_device_ids=local
    )


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    *,
    timeout_s: int = 300,
    env: Mapping[str, str] | None = None,
) -> None:
    """`jax.distributed.initialize` with `distributed_args` (explicit, then environment, then JAX's own
    detection); on CPU the cross-process collectives go through gloo. Call once per process, before any JAX
    computation (and before importing modules that compute at import, e.g. any4d_jax.data)."""
    args = distributed_args(env, coordinator_address, num_processes, process_id, local_device_ids)
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:  # an explicit choice (mpi) wins
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**args, initialization_timeout=timeout_s)
    except ValueError as e:  # nothing said who the coordinator or this process is
        raise ValueError(
            f"multi-host start failed ({e}): set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and "
            f"JAX_PROCESS_ID, or launch under SLURM, Open MPI, torchrun or a Kubernetes indexed Job"
        ) from None


def make_mesh(devices: int) -> Mesh:
    """A 1-D Mesh ("data",) over the first `devices` of jax.devices() (all hosts' after distributed init).

    Multi-process, the mesh must hold a device of every process (each runs the same program on its own)."""
    available = jax.devices()
    if devices > len(available):
        raise ValueError(
            f"parallel.devices={devices} but JAX sees {len(available)} device(s) ({jax.default_backend()}); "
            f"on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting Python"
        )
    chosen = available[:devices]
    if jax.process_count() > 1 and len({d.process_index for d in chosen}) < jax.process_count():
        raise ValueError(
            f"parallel.devices={devices} leaves some of the {jax.process_count()} processes without a device "
            f"({len(available)} devices in all); use parallel.devices={len(available)}"
        )
    return Mesh(np.asarray(chosen), (AXIS,))


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch split along the leading axis over "data")."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))


def jit_sharded_step(setup: Setup, optimizer, mesh: Mesh, batch_size: int, jit=jax.jit):
    """`(state, data) -> (state, metrics)` jitted over `mesh`: state and data replicated, the batch of
    `batch_size` frames drawn by the curriculum split over the devices."""
    from any4d_jax.train import step as step_lib  # light import: `initialize` runs before any backend

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
    from any4d_jax.train import step as step_lib  # light import: `initialize` runs before any backend

    replicated, _ = shardings(mesh)
    dens = jit(
        functools.partial(step_lib.densify_round, setup=setup), out_shardings=replicated, donate_argnums=(0,)
    )
    return jit_sharded_step(setup, optimizer, mesh, batch_size, jit), dens


def _host_copy_to_local_devices(x, sharding: NamedSharding) -> jax.Array:
    """One leaf (the same value on every process) as a global array of `sharding`, built from this process'
    host copy placed on this process' devices only."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    host = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, host, host.shape)


def replicate(tree, mesh: Mesh):
    """`tree` (host or single-device arrays, the same values on every process) copied to every device of
    `mesh`. Multi-process, each process copies its own host copy to its own devices (no cross-host traffic,
    no cross-host equality check): the data is read once per process, not once per device."""
    replicated, _ = shardings(mesh)
    if replicated.is_fully_addressable:  # one process: a plain device_put, as always
        return jax.device_put(tree, replicated)
    return jax.tree_util.tree_map(functools.partial(_host_copy_to_local_devices, sharding=replicated), tree)


def _local(x):
    """One global array as a single-device array on this process' first device."""
    if not isinstance(x, jax.Array):
        return x
    if x.is_fully_replicated:
        return x.addressable_data(0)
    from jax.experimental import multihost_utils

    return jax.device_put(multihost_utils.process_allgather(x, tiled=True), jax.local_devices()[0])


def local_copy(tree):
    """A global pytree as ordinary single-device arrays on this process' first device: a replicated leaf
    is this process' first replica (no communication); a sharded one is gathered from every process."""
    return jax.tree_util.tree_map(_local, tree)
