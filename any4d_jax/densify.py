"""Adaptive density control inside a fixed capacity (clone, split, prune), as a pure function.

Called outside the jitted train step every few hundred steps. Static shapes throughout: new Gaussians go into
free (inactive) slots, found with `jnp.nonzero(..., size=N)`; requests that find no free slot are counted, not
silently lost. Per 3DGS: Gaussians whose mean screen-space gradient exceeds a threshold are cloned when small
and split in two (scales / 1.6, positions sampled from the parent) when large; faint or huge ones are pruned.
Children inherit the parent's motion weights; their optimiser moments start at zero.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from any4d_jax import geometry


@dataclasses.dataclass(frozen=True)
class DensifyConfig:
    grad_threshold: float = 2e-4  # mean |d loss / d mean2d| in NDC units (3DGS' value)
    percent_dense: float = 0.01  # split instead of clone above this fraction of the scene extent
    min_opacity: float = 0.005  # prune below this opacity
    max_screen_fraction: float = 0.5  # prune Gaussians larger than this fraction of the scene extent
    split_factor: float = 1.6  # children scale = parent scale / split_factor


def _reset_rows(tree, rows: jnp.ndarray, capacity: int):
    """Zero rows `rows` (N,) of every float leaf whose leading dim is the capacity (optimiser moments)."""

    def f(x):
        if (
            hasattr(x, "shape")
            and x.ndim >= 1
            and x.shape[0] == capacity
            and jnp.issubdtype(x.dtype, jnp.floating)
        ):
            return jnp.where(rows.reshape((-1,) + (1,) * (x.ndim - 1)), 0.0, x)
        return x

    return jax.tree_util.tree_map(f, tree)


def densify(params: dict, active, opt_state, grad_accum, vis_count, scene_extent, key, cfg: DensifyConfig):
    """One round of clone/split/prune. Shapes are unchanged; returns (params, active, opt_state, stats).

    params: the train params dict (means, quats, log_scales, opacity_logits, sh, motion{weights, ...}).
    grad_accum, vis_count: (N,) accumulated screen-space gradient norms and the number of steps each was seen.
    """
    n = active.shape[0]
    avg = grad_accum / jnp.maximum(vis_count, 1.0)
    scale = jnp.exp(jnp.max(params["log_scales"], axis=-1))
    big = scale > cfg.percent_dense * scene_extent
    want = active & (avg > cfg.grad_threshold)
    clone, split = want & ~big, want & big
    opacity = jax.nn.sigmoid(params["opacity_logits"])
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
    q = params["quats"] / jnp.linalg.norm(params["quats"], axis=-1, keepdims=True)
    R = geometry.quat_to_rotmat(q)
    std = jnp.exp(params["log_scales"])
    off1 = jnp.einsum("nij,nj->ni", R, std * jax.random.normal(k1, std.shape))
    off2 = jnp.einsum("nij,nj->ni", R, std * jax.random.normal(k2, std.shape))
    split_g = split & granted
    shrink = jnp.log(cfg.split_factor)
    child = dict(params)
    child["means"] = jnp.where(split_g[:, None], params["means"] + off1, params["means"])
    child["log_scales"] = jnp.where(split_g[:, None], params["log_scales"] - shrink, params["log_scales"])
    parent = dict(params)
    parent["means"] = jnp.where(split_g[:, None], params["means"] + off2, params["means"])
    parent["log_scales"] = child["log_scales"]

    def scatter(dst, src):
        return dst.at[dest].set(src, mode="drop")

    new = {}
    for k in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        new[k] = scatter(parent[k], child[k])
    motion_p = params["motion"]
    new["motion"] = motion_p.replace(weights=scatter(motion_p.weights, motion_p.weights))
    new_active = active_kept.at[dest].set(True, mode="drop")
    changed = jnp.zeros((n,), bool).at[dest].set(True, mode="drop") | split_g | prune
    opt_state = _reset_rows(opt_state, changed, n)
    stats = {
        "cloned": jnp.sum(clone & granted),
        "split": jnp.sum(split_g),
        "pruned": jnp.sum(prune),
        "no_room": jnp.sum(want & ~granted),
        "active": jnp.sum(new_active),
    }
    return new, new_active, opt_state, stats
