"""Adaptive density control inside a fixed capacity (clone, split, prune), as pure functions.

    DensifyConfig                           thresholds (static)
    DensifyState                            (N,) screen-space gradient statistics, accumulated every step
    accumulate(stats, g2d, radii, W, H)     inside the train step
    densify(params, active, opt_state, stats, extent, key, cfg)   one round, outside the step

Called outside the jitted train step every few hundred steps (the schedule is the loop's). Static shapes
throughout: new Gaussians go into
free (inactive) slots, found with `jnp.nonzero(..., size=N)`; requests that find no free slot are counted, not
silently lost. Per 3DGS: Gaussians whose mean screen-space gradient exceeds a threshold are cloned when small
and split in two (scales / 1.6, positions sampled from the parent) when large; faint or huge ones are pruned.
Children inherit the parent's motion weights; their optimiser moments start at zero.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from any4d_jax.geometry import lie
from any4d_jax.model.gaussians import PER_GAUSSIAN, ModelParams


@dataclasses.dataclass(frozen=True)
class DensifyConfig:
    grad_threshold: float = 2e-4  # mean |d loss / d mean2d| in NDC units (3DGS' value)
    percent_dense: float = 0.01  # split instead of clone above this fraction of the scene extent
    min_opacity: float = 0.005  # prune below this opacity
    max_screen_fraction: float = 0.5  # prune Gaussians larger than this fraction of the scene extent
    split_factor: float = 1.6  # children scale = parent scale / split_factor


@struct.dataclass
class DensifyState:
    """Statistics density control decides on, reset after every round.

    grad_accum: (N,) summed screen-space gradient norms (NDC units) of the steps where a Gaussian was visible.
    vis_count:  (N,) number of those steps.
    """

    grad_accum: jnp.ndarray
    vis_count: jnp.ndarray

    @classmethod
    def zeros(cls, n: int) -> DensifyState:
        return cls(grad_accum=jnp.zeros((n,), jnp.float32), vis_count=jnp.zeros((n,), jnp.float32))


def accumulate(stats: DensifyState, g2d: jnp.ndarray, radii: jnp.ndarray, width: int, height: int):
    """Add one step's screen-space gradients of F frames: g2d (F, N, 2) d loss / d means2d in pixels,
    radii (F, N, 2) (a Gaussian counts where both radii are > 0). Norms in NDC units, as 3DGS thresholds."""
    visible = jnp.all(radii > 0, axis=-1)  # (F, N)
    g_ndc = jnp.linalg.norm(g2d * jnp.array([0.5 * width, 0.5 * height]), axis=-1)
    return DensifyState(
        grad_accum=stats.grad_accum + jnp.sum(jnp.where(visible, g_ndc, 0.0), axis=0),
        vis_count=stats.vis_count + jnp.sum(visible, axis=0),
    )


def _reset_rows(opt_state, rows: jnp.ndarray):
    """Zero rows `rows` (N,) of every per-Gaussian leaf of the optimizer state (Adam's moments).

    The per-Gaussian leaves are found by structure: optax keeps its moments as ModelParams-shaped trees
    (with MaskedNode where another group owns a leaf), and `ModelParams.map_rows` visits exactly the
    per-Gaussian fields of those.
    """

    def zero(x):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return jnp.where(rows.reshape((-1,) + (1,) * (x.ndim - 1)), 0.0, x)

    is_params = lambda x: isinstance(x, ModelParams)  # noqa: E731
    return jax.tree_util.tree_map(
        lambda x: x.map_rows(zero) if is_params(x) else x, opt_state, is_leaf=is_params
    )


def densify(
    params: ModelParams, active, opt_state, stats: DensifyState, scene_extent, key, cfg: DensifyConfig
):
    """One round of clone/split/prune. Shapes are unchanged; returns (params, active, opt_state, counts).

    params: ModelParams; active: (N,) bool; opt_state: its optax state (moments of changed rows are zeroed);
    stats: the screen-space statistics since the last round; scene_extent: 3DGS' scene scale.
    counts: cloned, split, pruned, no_room (requests that found no free slot), active.
    """
    n = active.shape[0]
    avg = stats.grad_accum / jnp.maximum(stats.vis_count, 1.0)
    scale = jnp.exp(jnp.max(params.log_scales, axis=-1))
    big = scale > cfg.percent_dense * scene_extent
    want = active & (avg > cfg.grad_threshold)
    clone, split = want & ~big, want & big
    opacity = jax.nn.sigmoid(params.opacity_logits)
    prune = active & ((opacity < cfg.min_opacity) | (scale > cfg.max_screen_fraction * scene_extent))
    prune = prune & ~want
    active_kept = active & ~prune

    free = ~active_kept
    free_slots = jnp.nonzero(free, size=n, fill_value=n)[0]
    num_free = jnp.sum(free)
    rank = jnp.cumsum(want) - 1
    granted = want & (rank < num_free)
    dest = jnp.where(granted, free_slots[jnp.clip(rank, 0, n - 1)], n)  # n = dropped by the scatter

    # Children: clones copy the parent; split children are sampled inside the parent and shrunk, and the
    # parent itself becomes the other child.
    k1, k2 = jax.random.split(key)
    q = params.quats / jnp.linalg.norm(params.quats, axis=-1, keepdims=True)
    R = lie.quat_to_rotmat(q)
    std = jnp.exp(params.log_scales)
    off1 = jnp.einsum("nij,nj->ni", R, std * jax.random.normal(k1, std.shape))
    off2 = jnp.einsum("nij,nj->ni", R, std * jax.random.normal(k2, std.shape))
    split_g = split & granted
    shrink = jnp.log(cfg.split_factor)
    log_scales = jnp.where(split_g[:, None], params.log_scales - shrink, params.log_scales)
    child = params.replace(
        means=jnp.where(split_g[:, None], params.means + off1, params.means), log_scales=log_scales
    )
    parent = params.replace(
        means=jnp.where(split_g[:, None], params.means + off2, params.means), log_scales=log_scales
    )

    def scatter(dst, src):
        return dst.at[dest].set(src, mode="drop")

    # Every per-Gaussian row (the Gaussian fields and the motion weights) of a child goes to its slot.
    new = parent.replace(
        **{k: scatter(getattr(parent, k), getattr(child, k)) for k in PER_GAUSSIAN},
        motion=parent.motion.replace(weights=scatter(parent.motion.weights, child.motion.weights)),
    )
    new_active = active_kept.at[dest].set(True, mode="drop")
    changed = jnp.zeros((n,), bool).at[dest].set(True, mode="drop") | split_g | prune
    opt_state = _reset_rows(opt_state, changed)
    stats = {
        "cloned": jnp.sum(clone & granted),
        "split": jnp.sum(split_g),
        "pruned": jnp.sum(prune),
        "no_room": jnp.sum(want & ~granted),
        "active": jnp.sum(new_active),
    }
    return new, new_active, opt_state, stats
