"""Static-shape binning of Gaussians into tiles, and of tiles into fixed-size chunks.

The compositor works on *chunks*: `chunk_size` consecutive Gaussians (front to back) of one tile. Chunks of a
tile are contiguous and in depth order, so a tile with n Gaussians costs ceil(n / chunk_size) chunks and the
work is proportional to the real number of tile-Gaussian pairs, not to the busiest tile (no per-tile padding).

Pipeline, every array static in shape:
1. sort Gaussians by depth (stable), culled ones last;
2. expand each Gaussian's tile rectangle into pairs, in depth order, into a budget of `max_pairs` slots
   (pairs past the budget are the farthest ones and are counted as dropped);
3. stable sort of pairs by tile id: inside a tile they stay front to back (exact order, no quantised depth);
4. with a `tile_capacity`, keep the nearest that many pairs of each tile (the rest are counted as dropped);
   without one (the default) every pair is kept: chunk slots suffice for any split of the pairs over tiles;
5. cut every tile's list into chunks; chunk m holds (tile, up to chunk_size Gaussian ids; N = padding).

The pair budget is the one capacity that can overflow. `bucket_pairs` gives the grown budget (a power of
two), which the callers that can re-run a render use (see RenderConfig.grow_pairs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

# Saturation bound for pair counts (int32-safe prefix sums when N * tiles is huge).
_SATURATE = 1 << 30


@struct.dataclass
class Bins:
    """Chunked tile lists.

    chunk_gids:  (M, Q) int32 Gaussian ids, front to back; N (a transparent dummy) pads partial chunks.
    chunk_tiles: (M,)   int32 tile id of each chunk; num_tiles for unused chunks.
    chunk_first: (M,)   bool, chunk is the first of its tile (unused chunks count as their own tile).
    chunk_last:  (M,)   bool, chunk is the last of its tile.
    num_chunks:  ()     int32 chunks in use (a prefix of the M slots).
    stats:       dict of int32 scalars.
    """

    chunk_gids: jnp.ndarray
    chunk_tiles: jnp.ndarray
    chunk_first: jnp.ndarray
    chunk_last: jnp.ndarray
    num_chunks: jnp.ndarray
    stats: dict


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """(tiles_x, tiles_y) covering the image."""
    return -(-width // tile_size), -(-height // tile_size)


def auto_max_pairs(
    num_gaussians: int, width: int, height: int, tile_size: int, tile_capacity: int | None = None
) -> int:
    """Default pair budget: 8 tiles per Gaussian, at least 64 pairs per tile (at most what a tile cap can
    keep, plus one tile per Gaussian of slack)."""
    tx, ty = tile_grid(width, height, tile_size)
    num_tiles = tx * ty
    budget = max(8 * num_gaussians, 64 * num_tiles, 1024)
    if tile_capacity is not None:
        budget = min(budget, num_tiles * tile_capacity + 8 * num_gaussians)
    return int(budget)


def bucket_pairs(needed: int) -> int:
    """The budget to grow to when a render wants `needed` pairs: the power of two >= 1.25 x needed (headroom
    for the scene to grow, and few distinct shapes so few recompiles). Raises ValueError past 2^30 pairs."""
    want = int(needed) + int(needed) // 4 + 1
    if want >= _SATURATE:
        raise ValueError(
            f"render: a frame wants {int(needed)} tile-Gaussian pairs, more than the binning supports "
            f"({_SATURATE}); lower the resolution or the number of Gaussians"
        )
    return 1 << (want - 1).bit_length()


def num_chunk_slots(max_pairs: int, num_tiles: int, chunk_size: int, chunk_batch: int) -> int:
    """M: enough chunk slots for any split of max_pairs pairs over num_tiles tiles, rounded to the batch."""
    m = -(-max_pairs // chunk_size) + num_tiles
    return int(math.ceil(m / chunk_batch) * chunk_batch)


def _saturating_cumsum(x: jnp.ndarray) -> jnp.ndarray:
    return jax.lax.associative_scan(lambda a, b: jnp.minimum(a + b, _SATURATE), x)


def _sort_pairs_by_tile(tile: jnp.ndarray, gid: jnp.ndarray, num_tiles: int):
    """Sort pairs (P,) by tile, keeping slot order (= depth order) inside a tile.

    Slot index p is unique, so the key tile * P + p sorts stably as one integer array, which XLA's CPU sort
    does ~7x faster than a two-operand stable sort. Grids too large for a 32-bit key use the two-operand sort.
    """
    P = tile.shape[0]
    if (num_tiles + 1) * P < 2**32:
        key = tile.astype(jnp.uint32) * jnp.uint32(P) + jnp.arange(P, dtype=jnp.uint32)
        key = jnp.sort(key)
        slot = (key % jnp.uint32(P)).astype(jnp.int32)
        return (key // jnp.uint32(P)).astype(jnp.int32), gid[slot]
    return jax.lax.sort((tile, gid), num_keys=1, is_stable=True)


def bin_gaussians(
    means2d: jnp.ndarray,
    radii: jnp.ndarray,
    depths: jnp.ndarray,
    valid: jnp.ndarray,
    width: int,
    height: int,
    tile_size: int,
    tile_capacity: int | None,
    max_pairs: int,
    chunk_size: int,
    chunk_batch: int,
) -> Bins:
    """Bin N projected Gaussians (means2d (N, 2), radii (N, 2) int32, depths (N,), valid (N,)) into chunks.

    tile_capacity: None keeps every pair of every tile; an int keeps the nearest that many per tile.
    """
    n = means2d.shape[0]
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    num_tiles = tiles_x * tiles_y
    P, Q = int(max_pairs), int(chunk_size)
    M = num_chunk_slots(P, num_tiles, Q, chunk_batch)

    means2d = jax.lax.stop_gradient(means2d)
    depths = jax.lax.stop_gradient(depths)
    order = jnp.argsort(jnp.where(valid, depths, jnp.inf), stable=True).astype(jnp.int32)

    m = means2d[order]
    r = radii[order].astype(jnp.float32)
    ts = float(tile_size)
    x0 = jnp.clip(jnp.floor((m[:, 0] - r[:, 0]) / ts), 0, tiles_x).astype(jnp.int32)
    x1 = jnp.clip(jnp.ceil((m[:, 0] + r[:, 0]) / ts), 0, tiles_x).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor((m[:, 1] - r[:, 1]) / ts), 0, tiles_y).astype(jnp.int32)
    y1 = jnp.clip(jnp.ceil((m[:, 1] + r[:, 1]) / ts), 0, tiles_y).astype(jnp.int32)
    w = x1 - x0
    count = jnp.where(valid[order], w * (y1 - y0), 0)  # (N,) tiles touched, depth order
    cum = _saturating_cumsum(count)
    total = cum[-1]

    # Expand rectangles into pair slots: slot p belongs to the first Gaussian whose inclusive cumsum > p.
    p = jnp.arange(P, dtype=jnp.int32)
    g = jnp.minimum(jnp.searchsorted(cum, p, side="right"), n - 1).astype(jnp.int32)
    local = p - (cum[g] - count[g])
    wg = jnp.maximum(w[g], 1)
    tile = (y0[g] + local // wg) * tiles_x + x0[g] + local % wg
    in_use = p < total
    tile = jnp.where(in_use, tile, num_tiles)
    gid = jnp.where(in_use, order[g], n)
    tile, gid = _sort_pairs_by_tile(tile, gid, num_tiles)

    per_tile = jnp.zeros(num_tiles + 1, jnp.int32).at[tile].add(1)[:num_tiles]
    tile_start = jnp.cumsum(per_tile) - per_tile
    kept = per_tile if tile_capacity is None else jnp.minimum(per_tile, tile_capacity)
    chunks = (kept + Q - 1) // Q
    chunk_end = jnp.cumsum(chunks)  # inclusive
    num_chunks = chunk_end[-1]

    mi = jnp.arange(M, dtype=jnp.int32)
    t = jnp.searchsorted(chunk_end, mi, side="right").astype(jnp.int32)  # num_tiles for unused slots
    tc = jnp.minimum(t, num_tiles - 1)
    j = mi - (chunk_end[tc] - chunks[tc])  # chunk index inside its tile
    used = t < num_tiles
    q = jnp.arange(Q, dtype=jnp.int32)
    rank = j[:, None] * Q + q[None, :]  # (M, Q) rank in the tile's list
    pos = jnp.clip(tile_start[tc][:, None] + rank, 0, P - 1)
    slot_ok = used[:, None] & (rank < kept[tc][:, None])
    chunk_gids = jnp.where(slot_ok, gid[pos], n).astype(jnp.int32)
    chunk_first = jnp.where(used, j == 0, True)
    chunk_last = jnp.where(used, j == chunks[tc] - 1, True)

    over_budget = jnp.maximum(total - P, 0)
    dropped = jnp.sum(per_tile - kept) + over_budget
    stats = {
        "num_visible": jnp.sum(valid).astype(jnp.int32),
        "num_pairs": total.astype(jnp.int32),
        "max_pairs": jnp.int32(P),
        "over_budget": over_budget.astype(jnp.int32),
        "dropped_pairs": dropped.astype(jnp.int32),
        "max_per_tile": jnp.max(per_tile).astype(jnp.int32),
        "num_chunks": num_chunks.astype(jnp.int32),
    }
    return Bins(
        chunk_gids=chunk_gids,
        chunk_tiles=jnp.where(used, t, num_tiles).astype(jnp.int32),
        chunk_first=chunk_first,
        chunk_last=chunk_last,
        num_chunks=num_chunks.astype(jnp.int32),
        stats=stats,
    )
