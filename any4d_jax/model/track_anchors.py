"""Track anchors: each 2D point track tied to the Gaussians nearest its query point, so the motion model
predicts where the tracked point goes and a track loss can pull the motion along.

    TrackAnchors(points, times, index, weight)     the anchors of P tracks (a pytree, part of the train state)
    make(points, times, query_times, means_at, active, k)   anchors from query points (P, 3) at their times
    refresh(anchors, query_times, means_at, active)          the same query points re-anchored (after density
                                                             control moved, cloned or pruned Gaussians)
    predict(anchors, means_t)                      (P, 3) the tracked points at time t, from the Gaussians
    project(points, camera)                        (P, 2) pixels and (P,) z of world points

A track's point at time t is the blend sum_k w_k mu_{a_k}(t) of its k anchor Gaussians, at the positions
the motion model moves them to (w_k proportional to 1 / distance at the query time, so a Gaussian sitting on
the query point dominates): Shape of Motion's "nearest Gaussian" correspondence, softened over k. Only the
anchored Gaussians see the track loss, through their canonical means and their motion (weights and basis
trajectories), never their opacities or colours.

Anchoring costs Q x P x N distances (Q distinct query times, P tracks, N Gaussian slots), in blocks of
tracks; it runs once at initialisation and at every density-control round, never per step.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from flax import struct

from any4d_jax.geometry.cameras import Camera


@struct.dataclass
class TrackAnchors:
    """Anchors of P tracks.

    points: (P, 3) float32 world position of each track's query point at its query time.
    times:  (P,) float32 query time of each track (motion-model time, frames).
    index:  (P, k) int32 anchor Gaussian slots; weight: (P, k) float32 blend weights (rows sum to 1).
    """

    points: jnp.ndarray
    times: jnp.ndarray
    index: jnp.ndarray
    weight: jnp.ndarray


def _nearest(points, means, active, k: int, block: int):
    """(P, k) indices of, and distances to, the k nearest active rows of means (N, 3) for points (P, 3)."""
    p = points.shape[0]
    nb = -(-p // block)
    pad = jnp.concatenate([points, jnp.zeros((nb * block - p, 3), points.dtype)]).reshape(nb, block, 3)
    sq = jnp.sum(means * means, -1)

    def rows(q):
        d2 = jnp.sum(q * q, -1)[:, None] + sq[None, :] - 2.0 * q @ means.T
        d2 = jnp.where(active[None, :], d2, jnp.inf)
        neg, idx = jax.lax.top_k(-d2, k)
        return idx, jnp.sqrt(jnp.maximum(-neg, 0.0))

    idx, dist = jax.lax.map(rows, pad)
    return idx.reshape(nb * block, k)[:p], dist.reshape(nb * block, k)[:p]


def _weights(dist: jnp.ndarray, eps: float = 1e-4) -> jnp.ndarray:
    """(P, k) inverse-distance blend weights, rows summing to 1 (inf distances, no active Gaussian, get 0)."""
    w = jnp.where(jnp.isfinite(dist), 1.0 / jnp.maximum(dist, eps), 0.0)
    return w / jnp.maximum(jnp.sum(w, -1, keepdims=True), 1e-12)


def anchor(
    points: jnp.ndarray,
    times: jnp.ndarray,
    query_times: tuple,
    means_at: Callable,
    active: jnp.ndarray,
    k: int,
    block: int = 256,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(index (P, k) int32, weight (P, k)): the k active Gaussians nearest each query point at its time.

    points: (P, 3); times: (P,) each one of `query_times` (a static tuple of the distinct query times);
    means_at(t) -> (N, 3) the Gaussians' positions at time t; active: (N,) bool. Jit-able.
    """
    chex.assert_shape(points, (None, 3))
    chex.assert_shape(times, (points.shape[0],))
    p = points.shape[0]
    index = jnp.zeros((p, k), jnp.int32)
    dist = jnp.full((p, k), jnp.inf, jnp.float32)
    for tq in query_times:  # static: a handful of distinct query frames
        i, d = _nearest(points, means_at(jnp.float32(tq)), active, k, block)
        here = (times == jnp.float32(tq))[:, None]
        index, dist = jnp.where(here, i.astype(jnp.int32), index), jnp.where(here, d, dist)
    return index, _weights(dist)


def make(points, times, query_times: tuple, means_at: Callable, active, k: int) -> TrackAnchors:
    """Anchors of the tracks whose query points (P, 3) sit at times (P,) (see `anchor`)."""
    points, times = jnp.asarray(points, jnp.float32), jnp.asarray(times, jnp.float32)
    index, weight = anchor(points, times, query_times, means_at, active, k)
    return TrackAnchors(points=points, times=times, index=index, weight=weight)


def refresh(anchors: TrackAnchors, query_times: tuple, means_at: Callable, active) -> TrackAnchors:
    """The same query points anchored again to the Gaussians as they are now."""
    index, weight = anchor(
        anchors.points, anchors.times, query_times, means_at, active, anchors.index.shape[1]
    )
    return anchors.replace(index=index, weight=weight)


def predict(anchors: TrackAnchors, means_t: jnp.ndarray) -> jnp.ndarray:
    """(P, 3) the tracked points at a time t, given every Gaussian's position means_t (N, 3) at t."""
    return jnp.einsum("pk,pkd->pd", anchors.weight, means_t[anchors.index])


def project(points: jnp.ndarray, camera: Camera) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(P, 2) pixel positions and (P,) camera z of world points (P, 3) in one camera (z <= 0: behind it;
    those pixels are finite but meaningless)."""
    p_cam = points @ camera.rotation.T + camera.translation
    z = p_cam[:, 2]
    uv = p_cam @ camera.K.T
    return uv[:, :2] / jnp.where(jnp.abs(uv[:, 2:3]) > 1e-8, uv[:, 2:3], 1e-8), z
