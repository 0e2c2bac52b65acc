"""Data-parallel training with JAX's own sharding: a batch of training frames split over a device Mesh.

Each step renders a batch of F = devices x frames_per_device training frames (cameras), one loss per frame
(`train.loss_fn` under `jax.vmap`), and descends their mean. The batch is laid out along the mesh axis
"data" with a NamedSharding; parameters, optimiser state and every other part of the TrainState are
replicated. Nothing here moves gradients by hand: under `jax.jit` the XLA SPMD partitioner splits the
per-frame work over the devices and inserts the all-reduce of the gradient sum. Density control and the
rigidity neighbours run replicated on the same schedule as `train.train`.

Switched on by `--config.parallel.devices=N` (N > 1; `train.train` hands over to `train` here). On CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=N` makes N host devices. Multi-host: every process runs the
same command after `jax.distributed.initialize()` (`--config.parallel.distributed=True`); `jax.devices()`
then lists every host's devices and the mesh spans them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from any4d_jax import train as train_lib
from any4d_jax.data.frames import Frames

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


def pick_frames(state: train_lib.TrainState, num_frames: int, batch_size: int, setup: train_lib.Setup):
    """(next rng, (batch_size,) int32 frame indices) drawn with replacement from the time-curriculum window
    of `train.make_train_step` (frames around the canonical one, widening over time_ramp_steps)."""
    rng, pick = jax.random.split(state.rng)
    lo, hi = 0, num_frames
    if setup.time_ramp_steps > 0:
        half = jnp.ceil(num_frames * (state.step + 1) / setup.time_ramp_steps).astype(jnp.int32)
        t0 = setup.motion.canonical_frame
        lo, hi = jnp.maximum(0, t0 - half), jnp.minimum(num_frames, t0 + half + 1)
    return rng, jax.random.randint(pick, (batch_size,), lo, hi)


def batch_loss_and_grads(params, state: train_lib.TrainState, batch: dict, setup: train_lib.Setup, mask):
    """Mean loss over a batch of frames (every leaf of `batch` leads with F) and its gradients.

    Returns (loss (), aux (per frame, leading F), param grads, g2d (F, N, 2)): g2d is each frame's own
    screen-space gradient (d loss_f / d means2d, as in the single-frame step), not the mean's.
    """
    num = batch["rgb"].shape[0]
    offsets = jnp.zeros((num, state.active.shape[0], 2), jnp.float32)

    def mean_loss(p, off):
        per_frame = jax.vmap(train_lib.loss_fn, in_axes=(None, 0, None, 0, None, None))
        loss, aux = per_frame(p, off, state, batch, setup, mask)
        return jnp.mean(loss), aux

    (loss, aux), (grads, g2d) = jax.value_and_grad(mean_loss, argnums=(0, 1), has_aux=True)(params, offsets)
    return loss, aux, grads, g2d * num


def make_batch_step(setup: train_lib.Setup, optimizer: optax.GradientTransformation, batch_sharding=None):
    """The pure step `(state, batch, mask) -> (state, metrics)` on a given batch of F frames.

    batch: dict like `train.frames_to_data` with a leading F on every leaf. batch_sharding: optional
    NamedSharding for the batch (leading axis over the mesh); None = whatever the inputs carry.
    """

    def step(state: train_lib.TrainState, batch: dict, mask):
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        loss, aux, grads, g2d = batch_loss_and_grads(state.params, state, batch, setup, mask)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        visible = jnp.all(aux["radii"] > 0, axis=-1)  # (F, N)
        g_ndc = jnp.linalg.norm(g2d * jnp.array([0.5 * setup.width, 0.5 * setup.height]), axis=-1)
        new = state.replace(
            params=params,
            opt_state=opt_state,
            grad_accum=state.grad_accum + jnp.sum(jnp.where(visible, g_ndc, 0.0), axis=0),
            vis_count=state.vis_count + jnp.sum(visible, axis=0),
            step=state.step + 1,
        )
        metrics = {
            "loss": loss,
            "psnr": jnp.mean(aux["psnr"]),
            "dropped_pairs": jnp.sum(aux["dropped_pairs"]),
            **{f"loss/{k}": jnp.mean(v) for k, v in aux["parts"].items()},
        }
        return new, metrics

    return step


def make_train_step(setup, optimizer, batch_size: int, batch_sharding=None):
    """`(state, data, mask) -> (state, metrics)`: draws `batch_size` frames from data (every training frame,
    as `train.frames_to_data` gives it) with state.rng, then `make_batch_step`."""
    batch_step = make_batch_step(setup, optimizer, batch_sharding)

    def step(state, data, mask):
        rng, idx = pick_frames(state, data["rgb"].shape[0], batch_size, setup)
        batch = jax.tree_util.tree_map(lambda x: x[idx], data)
        new, metrics = batch_step(state, batch, mask)
        return new.replace(rng=rng), metrics

    return step


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch split along the leading axis over "data")."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))


def jit_sharded_step(setup, optimizer, mesh: Mesh, batch_size: int, jit=jax.jit):
    """The data-parallel train step, jitted over `mesh` (state and data replicated, frames split)."""
    if batch_size % mesh.size:
        raise ValueError(f"batch of {batch_size} frames does not split over {mesh.size} devices")
    replicated, split = shardings(mesh)
    return jit(
        make_train_step(setup, optimizer, batch_size, split),
        in_shardings=(replicated, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def local_copy(tree):
    """A replicated global pytree as ordinary single-device arrays (this process' first replica)."""
    return jax.tree_util.tree_map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def train(
    config: ml_collections.ConfigDict, frames: Frames, workdir: str, extra_points=None
) -> tuple[train_lib.TrainState, train_lib.Setup]:
    """`train.train` over parallel.devices devices: same schedule, checkpoints, guard and result.

    Every step draws devices x frames_per_device frames. The returned state lives on one device.
    """
    from any4d_jax.ablation import densify_round  # one copy of train.train's density-control round

    devices, per = settings(config)
    mesh = make_mesh(devices)
    replicated, _ = shardings(mesh)
    train_lib.check_workdir(config, workdir)
    setup = train_lib.make_setup(config, frames)
    extent = train_lib.scene_extent(frames.cameras)
    optimizer = train_lib.make_optimizer(config, extent)
    state = train_lib.init_state(config, setup, frames, optimizer, extra_points)
    tc = config.train
    mgr = train_lib._checkpoint_manager(workdir, tc.keep_checkpoints)
    if config.resume and mgr.latest_step() is not None:
        state = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore(state))
        tqdm.write(f"resumed from step {int(state.step)} ({workdir}/checkpoints)")
    state = jax.device_put(state, replicated)
    data = jax.device_put(train_lib.frames_to_data(frames), replicated)
    mask = jax.device_put(setup.basis_mask(), replicated)
    step_fn = jit_sharded_step(setup, optimizer, mesh, devices * per)
    dens_fn = jax.jit(
        lambda s, e: densify_round(s, e, setup, tc.rigidity_k),
        out_shardings=replicated,
        donate_argnums=(0,),
    )

    start = int(state.step)
    stop = tc.num_steps if tc.stop_after < 0 else min(tc.num_steps, tc.stop_after)
    desc = f"train x{devices} devices"
    bar = tqdm(range(start, stop), desc=desc, initial=start, total=tc.num_steps, unit="step")
    for s in bar:
        state, m = step_fn(state, data, mask)
        n = s + 1
        if n % tc.log_every == 0 or n == stop:
            last = {k: float(v) for k, v in m.items()}
            train_lib._guard_finite(last["loss"], n, workdir, mgr)
            n_active = int(jnp.sum(state.active))
            bar.set_postfix(loss=f"{last['loss']:.4f}", psnr=f"{last['psnr']:.2f}", n=n_active)
        if tc.densify_from <= n <= tc.densify_until and n % tc.densify_every == 0:
            state = dens_fn(state, extent)
        if n % tc.checkpoint_every == 0 or n == tc.num_steps:
            train_lib._guard_finite(float(m["loss"]), n, workdir, mgr)
            mgr.save(n, args=ocp.args.StandardSave(state))
    bar.close()
    mgr.wait_until_finished()
    return local_copy(state), setup
