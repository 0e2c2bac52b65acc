"""Brute-force k nearest neighbours in blocks of rows (static shapes; O(N^2) work, O(block N) memory).

    knn(points, k, active)          (N, k) int32 indices of each point's k nearest other (active) points
    knn_mean_distance(points, k)    (M,) mean distance to the k nearest other points (3DGS' initial scale)

Used once per densification round (the rigidity loss's neighbours) and at initialisation, never per step.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp


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


def knn(points: jnp.ndarray, k: int, active: jnp.ndarray | None = None, block: int = 1024) -> jnp.ndarray:
    """(N, k) int32 indices of each point's k nearest other points; points (N, D) (any feature space).

    Inactive points (active: (N,) bool) are never chosen as neighbours. Jit- and vmap-safe.
    """
    act = jnp.ones((points.shape[0],), bool) if active is None else active
    return _nearest(points, k, act, block).astype(jnp.int32)


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
