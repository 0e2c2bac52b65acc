"""k nearest neighbours with static shapes.

    knn(points, k, active)             (N, k) int32 indices of each point's k nearest other (active) points:
                                       exact up to EXACT_LIMIT points, `windowed_knn` above
    windowed_knn(points, k, active)    approximate, O(N W): candidates from Morton-sorted windows
    knn_mean_distance(points, k)       (M,) mean distance to the k nearest other points (3DGS' initial scale)

Used once per densification round (the rigidity loss's neighbours) and at initialisation, never per step.
The exact search is brute force in blocks of rows (O(N^2) work, O(block N) memory): at the iPhone config's
300k slots one search took 11.6 minutes on a 2-core CPU (146 density rounds: ~28 hours), which is why larger
point sets take the windowed search (seconds).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np


def _nearest(points: jnp.ndarray, k: int, active: jnp.ndarray, block: int) -> jnp.ndarray:
    """(N, k) neighbour indices by squared distance |a|^2 + |b|^2 - 2 a.b, a point never its own neighbour,
    inactive points never chosen. The expansion only ranks; callers needing distances recompute them."""
    n = points.shape[0]
    sq = jnp.sum(points * points, axis=-1)
    nb = -(-n // block)
    idx = jnp.arange(nb * block).reshape(nb, block)

    def rows(ids):
        p = points[jnp.minimum(ids, n - 1)]
        d = jnp.sum(p * p, -1)[:, None] + sq[None, :] - 2.0 * p @ points.T
        d = jnp.where(active[None, :] & (ids[:, None] != jnp.arange(n)[None, :]), d, jnp.inf)
        return jax.lax.top_k(-d, k)[1]

    return jax.lax.map(rows, idx).reshape(nb * block, k)[:n]


EXACT_LIMIT = 32_768  # above this many points `knn` is approximate (windowed_knn)


def knn(
    points: jnp.ndarray,
    k: int,
    active: jnp.ndarray | None = None,
    block: int = 1024,
    exact_limit: int = EXACT_LIMIT,
) -> jnp.ndarray:
    """(N, k) int32 indices of each point's k nearest other points; points (N, D) (any feature space).

    Inactive points (active: (N,) bool) are never chosen as neighbours. Jit- and vmap-safe. N <= exact_limit:
    exact (brute force); above: `windowed_knn` (approximate, candidates by the first 3 coordinates).
    """
    act = jnp.ones((points.shape[0],), bool) if active is None else active
    if points.shape[0] > exact_limit:
        return windowed_knn(points, k, act)
    return _nearest(points, k, act, block).astype(jnp.int32)


def _spread_bits(x: jnp.ndarray) -> jnp.ndarray:
    """uint32 with bit i of x (10 bits) moved to bit 3 i (the Morton interleave of one axis)."""
    x = x & jnp.uint32(0x3FF)
    x = (x | (x << 16)) & jnp.uint32(0x030000FF)
    x = (x | (x << 8)) & jnp.uint32(0x0300F00F)
    x = (x | (x << 4)) & jnp.uint32(0x030C30C3)
    return (x | (x << 2)) & jnp.uint32(0x09249249)


def morton_codes(xyz: jnp.ndarray, active: jnp.ndarray, shift: float) -> jnp.ndarray:
    """(N,) uint32 Morton codes of xyz (N, 3) on a 512^3 grid over the active points' bounding cube, moved
    by `shift` cells (a second, shifted grid puts points split by the first one's seams side by side);
    inactive points get the largest code (they sort last)."""
    big = jnp.where(active[:, None], xyz, jnp.nan)
    lo = jnp.nan_to_num(jnp.nanmin(big, axis=0))
    extent = jnp.nan_to_num(jnp.max(jnp.nanmax(big, axis=0) - lo), nan=1.0)
    cells = (xyz - lo) * (511.0 / jnp.maximum(extent, 1e-12)) + shift
    q = jnp.clip(jnp.floor(cells), 0, 1023).astype(jnp.uint32)
    code = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2)
    return jnp.where(active, code, jnp.uint32(0xFFFFFFFF))


def windowed_knn(
    points: jnp.ndarray, k: int, active: jnp.ndarray, window: int = 32, block: int = 8192
) -> jnp.ndarray:
    """(N, k) int32 approximate k nearest neighbours, O(N window) work: the candidates of a point are the
    `window` points before and after it along two Morton orders of its first three coordinates (positions),
    on grids shifted by 171 cells; they are ranked by the full D-dimensional distance. Never the point
    itself or an inactive point; where fewer than k candidates exist, the point's own index fills the row
    (a self-pair adds nothing to a neighbour loss). Recall against the exact search is tested.
    """
    n = points.shape[0]
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    cands, oks = [], []
    for shift in (0.0, 171.0):
        order = jnp.argsort(morton_codes(points[:, :3], active, shift), stable=True).astype(jnp.int32)
        pos = jnp.arange(n, dtype=jnp.int32)[:, None] + offsets[None, :]
        ok_sorted = (pos >= 0) & (pos < n)
        cand_sorted = order[jnp.clip(pos, 0, n - 1)]  # row i: candidates of the point order[i]
        cands.append(jnp.zeros_like(cand_sorted).at[order].set(cand_sorted))
        oks.append(jnp.zeros_like(ok_sorted).at[order].set(ok_sorted))
    cand = jnp.concatenate(cands, axis=1)  # (N, 4 window)
    self_id = jnp.arange(n, dtype=jnp.int32)[:, None]
    ok = jnp.concatenate(oks, axis=1) & active[cand] & (cand != self_id)
    cand = jnp.sort(jnp.where(ok, cand, n), axis=1)  # invalid ones (n) last; duplicates side by side
    fresh = jnp.concatenate([jnp.ones((n, 1), bool), cand[:, 1:] != cand[:, :-1]], axis=1)
    valid = (cand < n) & fresh

    nb = -(-n // block)
    pad = nb * block - n
    rows = jnp.pad(jnp.arange(n, dtype=jnp.int32), (0, pad)).reshape(nb, block)
    cand_b = jnp.pad(cand, ((0, pad), (0, 0))).reshape(nb, block, -1)
    valid_b = jnp.pad(valid, ((0, pad), (0, 0))).reshape(nb, block, -1)

    def one(args):
        r, c, v = args
        diff = points[r][:, None, :] - points[jnp.minimum(c, n - 1)]
        d = jnp.where(v, jnp.sum(diff * diff, axis=-1), jnp.inf)
        neg, pick = jax.lax.top_k(-d, k)
        chosen = jnp.take_along_axis(c, pick, axis=1)
        return jnp.where(jnp.isfinite(neg), chosen, r[:, None])

    return jax.lax.map(one, (rows, cand_b, valid_b)).reshape(nb * block, k)[:n].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _knn_mean_distance(points: jnp.ndarray, k: int, block: int) -> jnp.ndarray:
    n = points.shape[0]
    p = points - jnp.mean(points, axis=0)  # centring reduces cancellation in |a|^2 + |b|^2 - 2 a.b
    sq = jnp.sum(p * p, axis=-1)
    nb = -(-n // block)
    ids = jnp.arange(nb * block).reshape(nb, block)

    def rows(r):
        r = jnp.minimum(r, n - 1)
        q = p[r]
        d2 = sq[r][:, None] + sq[None, :] - 2.0 * q @ p.T
        d2 = jnp.where(r[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)  # never its own neighbour
        nbr = jax.lax.top_k(-d2, k)[1]  # (block, k): the expansion only ranks them
        diff = q[:, None, :] - p[nbr]  # exact distances of the selected neighbours, inside the block
        return jnp.mean(jnp.sqrt(jnp.sum(diff * diff, axis=-1)), axis=-1)

    return jax.lax.map(rows, ids).reshape(-1)[:n]


def knn_mean_distance(points, k: int = 3, block: int | None = None) -> jnp.ndarray:
    """(M,) mean Euclidean distance of each point (M, 3) to its k nearest other points.

    With fewer than k + 1 points the available neighbours are used; a single point gets distance 0.
    """
    points = jnp.asarray(points, jnp.float32)
    chex.assert_rank(points, 2)
    chex.assert_axis_dimension(points, 1, 3)
    m = points.shape[0]
    k = min(int(k), m - 1)
    if k <= 0:
        return jnp.zeros((m,), jnp.float32)
    if block is None:  # bound the (block, M) distance tile to ~64 Mi entries
        block = int(max(1, min(1024, (1 << 26) // m, m)))
    return _knn_mean_distance(points, k=k, block=int(block))
