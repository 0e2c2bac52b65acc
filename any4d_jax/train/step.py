"""The train step: `step(state, batch) -> (state, metrics)` on a batch of F frames, and its pure companions.

    loss_fn(params, offset, state, frame, setup)   loss of one frame and its parts
    make_step(setup, optimizer)                    the step on a given batch (F frames, leading axis)
    sample_batch(state, data, setup, F)            the time curriculum: F frames drawn from a growing window
    make_train_step(setup, optimizer, F)           sample_batch then step: what the loop jits
    within_budget(step)                            the step undone when a render overflowed its pair budget
    densify_round(state, extent, setup)            one density-control round: (state, no_room)

One device is the F = 1 case (one frame, rendered without a batch axis); the data-parallel step is the same
step with the batch sharded over a mesh (train/parallel.py); the ablation is `jax.vmap` of it over stacked
states (train/ablation.py). Nothing here has side effects: the loop (train/loop.py) jits and drives it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from any4d_jax.evaluation import metrics
from any4d_jax.geometry.cameras import Camera
from any4d_jax.model import camera_refine, motion, track_anchors
from any4d_jax.model import densify as densify_lib
from any4d_jax.model import init as init_lib
from any4d_jax.model.gaussians import splats_at
from any4d_jax.render import render
from any4d_jax.train import losses
from any4d_jax.train import state as state_lib
from any4d_jax.train.state import Setup, TrainState


def loss_fn(params, offset, state: TrainState, frame: dict, setup: Setup):
    """Loss of one frame and its parts.

    params: ModelParams (differentiated); offset: (N, 2) zeros whose gradient is the screen-space position
    signal of density control; frame: one frame of `state.frames_to_data` (no leading axis).
    """
    w = setup.losses
    splats = splats_at(params, state.active, setup.model.motion, frame["time"])
    viewmat = frame["viewmat"]
    drawn = splats  # what is rendered (the losses on positions below use `splats` itself)
    if params.camera is not None:  # the frame's learned correction (zero at the gauge frame)
        use = (frame["index"] != setup.camera_gauge).astype(viewmat.dtype)
        delta = params.camera[frame["index"]]
        # Held (no gradient, so Adam's moments stay zero) until the model is worth aligning the cameras to.
        delta = jnp.where(state.step >= setup.camera_start, delta, jax.lax.stop_gradient(delta))
        viewmat = camera_refine.correct(viewmat, use * delta, setup.camera_scale)
        if setup.camera_static_only:  # the camera learns from the static Gaussians (all weights 0) alone
            static = jnp.all(jax.lax.stop_gradient(motion.masked_weights(params.motion)) == 0, axis=-1)
            static = static & state.active
            # Data without a foreground mask starts every Gaussian moving: then every one counts.
            static = static | ~jnp.any(static)
            drawn = camera_refine.static_gradient_only(splats, viewmat, static)
    cam = Camera(viewmat=viewmat, K=frame["K"], width=setup.width, height=setup.height)
    out = render(drawn, cam, jnp.asarray(setup.model.background), setup.model.render, means2d_offset=offset)
    parts = {"photometric": losses.photometric(out.rgb, frame["rgb"], w.ssim_lambda)}
    if w.depth > 0:
        parts["depth"] = w.depth * losses.depth_loss(out.depth, frame["depth"])
    if w.foreground > 0:
        # Extra L1 on the moving pixels: they are a small part of the image but hold most of the error.
        parts["foreground"] = w.foreground * losses.masked_l1(out.rgb, frame["rgb"], frame["mask"])
    mp = params.motion
    if w.acceleration > 0:
        parts["acceleration"] = w.acceleration * losses.acceleration_loss(mp, setup.model.motion)
    if w.sparsity > 0:
        parts["sparsity"] = w.sparsity * losses.sparsity_loss(mp, state.active)
    if w.rigidity > 0:
        parts["rigidity"] = w.rigidity * losses.rigidity_loss(
            params.means, splats.means, state.neighbours, state.active
        )
    if w.track > 0 and state.anchors is not None and "track_xy" in frame:
        parts["track"] = w.track * losses.track_loss(
            track_anchors.predict(state.anchors, splats.means), cam, frame["track_xy"], frame["track_w"]
        )
    if params.camera is not None and w.camera > 0:
        parts["camera"] = w.camera * camera_refine.penalty(params.camera, frame["index"], setup.camera_gauge)
    aux = {
        "parts": parts,
        "psnr": metrics.psnr(out.rgb, frame["rgb"]),
        "radii": out.aux["radii"],
        "dropped_pairs": out.stats["dropped_pairs"],
        "num_pairs": out.stats["num_pairs"],
        "max_pairs": out.stats["max_pairs"],
        "over_budget": out.stats["over_budget"],
    }
    return sum(parts.values()), aux


def batch_loss_and_grads(params, state: TrainState, batch: dict, setup: Setup):
    """Mean loss over a batch of F frames (every leaf of `batch` leads with F) and its gradients.

    Returns (loss (), aux (per frame, leading F), param grads, g2d (F, N, 2)); g2d is each frame's own
    screen-space gradient (d loss_f / d means2d), not the mean's. F = 1 renders without a batch axis (the
    single-device step: no vmap, the same program as a plain one-frame step).
    """
    num = batch["rgb"].shape[0]
    n = state.active.shape[0]
    grad_fn = jax.value_and_grad
    if num == 1:
        frame = jax.tree_util.tree_map(lambda x: x[0], batch)
        fn = grad_fn(loss_fn, argnums=(0, 1), has_aux=True)
        (loss, aux), (grads, g2d) = fn(params, jnp.zeros((n, 2), jnp.float32), state, frame, setup)
        return loss, jax.tree_util.tree_map(lambda x: x[None], aux), grads, g2d[None]

    def mean_loss(p, off):
        per_frame = jax.vmap(loss_fn, in_axes=(None, 0, None, 0, None))
        loss, aux = per_frame(p, off, state, batch, setup)
        return jnp.mean(loss), aux

    fn = grad_fn(mean_loss, argnums=(0, 1), has_aux=True)
    (loss, aux), (grads, g2d) = fn(params, jnp.zeros((num, n, 2), jnp.float32))
    return loss, aux, grads, g2d * num


def make_step(setup: Setup, optimizer: optax.GradientTransformation, batch_sharding=None):
    """The pure step `(state, batch) -> (state, metrics)` on a batch of F frames.

    batch: dict as `state.frames_to_data` gives it with a leading F on every leaf. batch_sharding: optional
    NamedSharding of the batch (leading axis over a mesh); None = whatever the inputs carry.
    metrics: loss, psnr (mean over the batch), dropped_pairs (sum), num_pairs / over_budget (max over the
    frames: the most pairs a render wanted, and by how much it overflowed the budget max_pairs),
    loss/<part> (means).
    """

    def step(state: TrainState, batch: dict):
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        loss, aux, grads, g2d = batch_loss_and_grads(state.params, state, batch, setup)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        stats = densify_lib.accumulate(state.densify, g2d, aux["radii"], setup.width, setup.height)
        new = state.replace(params=params, opt_state=opt_state, densify=stats, step=state.step + 1)
        out = {
            "loss": loss,
            "psnr": jnp.mean(aux["psnr"]),
            "dropped_pairs": jnp.sum(aux["dropped_pairs"]),
            "num_pairs": jnp.max(aux["num_pairs"]),
            "max_pairs": jnp.max(aux["max_pairs"]),
            "over_budget": jnp.max(aux["over_budget"]),
            **{f"loss/{k}": jnp.mean(v) for k, v in aux["parts"].items()},
        }
        return new, out

    return step


def sample_batch(state: TrainState, data: dict, setup: Setup, batch_size: int):
    """(next rng, batch of `batch_size` frames) drawn with replacement from the time curriculum's window.

    data: every training frame (leading axis T, in time order). The window is centred on the canonical frame
    and grows to the whole clip over time_ramp_steps, so motion is learned outward from t0, not from
    scattered frames at once.
    """
    rng, pick = jax.random.split(state.rng)
    num = data["rgb"].shape[0]
    lo, hi = 0, num
    if setup.time_ramp_steps > 0:
        half = jnp.ceil(num * (state.step + 1) / setup.time_ramp_steps).astype(jnp.int32)
        t0 = setup.model.motion.canonical_frame
        lo, hi = jnp.maximum(0, t0 - half), jnp.minimum(num, t0 + half + 1)
    idx = jax.random.randint(pick, (batch_size,), lo, hi)
    return rng, jax.tree_util.tree_map(lambda x: x[idx], data)


def make_train_step(
    setup: Setup, optimizer, batch_size: int = 1, batch_sharding=None, guard: bool | None = None
):
    """`(state, data) -> (state, metrics)`: `sample_batch` from every training frame, then the step.

    guard (default: setup.model.render.grow_pairs): wrap it in `within_budget`, so a step whose render
    overflowed the pair budget changes nothing and the loop can grow the budget and redo it. The ablation
    passes False and guards its vmapped step as a whole (all variants redo together).
    """
    step = make_step(setup, optimizer, batch_sharding)

    def train_step(state: TrainState, data: dict):
        rng, batch = sample_batch(state, data, setup, batch_size)
        new, metrics_ = step(state, batch)
        return new.replace(rng=rng), metrics_

    guard = setup.model.render.grow_pairs if guard is None else guard
    return within_budget(train_step) if guard else train_step


def within_budget(step):
    """`step` whose update is undone entirely (parameters, optimizer, statistics, RNG and step counter)
    when any render in it overflowed the pair budget (metrics["over_budget"] > 0, for any frame or, with a
    vmapped step, any variant). Redoing it with a larger budget then takes exactly the step that was asked
    for: same frames, same RNG. The loop does that (train/loop.py); nothing is dropped."""

    def guarded(state, data):
        new, m = step(state, data)
        over = jnp.any(m["over_budget"] > 0)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(over, b, a), new, state), m

    return guarded


def all_finite(tree) -> jnp.ndarray:
    """() bool: every float in `tree` is finite (one reduction per leaf; vmap it for stacked states)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree_util.tree_leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def keep_finite(step):
    """`step` whose update is undone when it would leave any float of the state non-finite (the step
    counter still advances); metrics["finite"] () bool says whether it was kept. For the ablation, whose
    variants are independent: one diverging variant must not poison a checkpoint of all of them."""

    def guarded(state: TrainState, data):
        new, m = step(state, data)
        ok = all_finite(new)
        kept = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
        return kept.replace(step=new.step), {**m, "finite": ok}

    return guarded


def densify_round(state: TrainState, extent, setup: Setup) -> tuple[TrainState, jnp.ndarray]:
    """One density-control round after step n = state.step: clone/split/prune, reset the screen-space
    statistics, refresh the rigidity neighbours. Pure (jit it; vmap it over ablation variants).

    Returns (state, no_room): no_room () int32 counts the clone/split requests that found no free slot
    (the capacity is full); the loop reports it, nothing is dropped silently."""
    params, active, opt_state, counts = densify_lib.densify(
        state.params,
        state.active,
        state.opt_state,
        state.densify,
        extent,
        jax.random.fold_in(state.rng, state.step),
        cfg=setup.densify,
    )
    state = state.replace(
        params=params,
        active=active,
        opt_state=opt_state,
        densify=densify_lib.DensifyState.zeros(active.shape[0]),
        neighbours=init_lib.rigidity_neighbours(params, active, setup.rigidity_k),
    )
    if state.anchors is not None:
        means_at = state_lib.means_at(params, setup)
        state = state.replace(
            anchors=track_anchors.refresh(state.anchors, setup.track_times, means_at, active)
        )
    return state, counts["no_room"].astype(jnp.int32)
