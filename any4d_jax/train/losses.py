"""Training losses: photometric (L1 + D-SSIM), masked L1, depth L1, mask binary cross-entropy, the 2D track
loss, and the motion regularisers (trajectory acceleration, weight sparsity, local rigidity).

Every loss returns a scalar (the mean over everything it is given, batch included), is pure ``jax.numpy``
and safe under ``jit``, ``vmap`` and ``grad``. Images are float ``(..., H, W, C)`` in ``[0, 1]``; masks are
``(..., H, W)`` or ``(..., H, W, 1)`` (float or bool) and broadcast over the channels and over leading batch
dimensions, as in :mod:`any4d_jax.evaluation.metrics`. Masks, targets and validity maps are data: no
gradient is
meant to flow into them.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from any4d_jax.evaluation import metrics
from any4d_jax.model.motion import MotionConfig, MotionParams, split_weights, trajectories_at_frames

__all__ = [
    "l1",
    "masked_l1",
    "photometric",
    "depth_loss",
    "mask_loss",
    "acceleration_loss",
    "sparsity_loss",
    "rigidity_loss",
    "track_loss",
]

Array = jnp.ndarray

# Lower bound of a mask / validity sum in the denominators (a sum of binary weights is 0 or >= 1).
_SUM_EPS = 1e-6


def l1(pred: Array, target: Array) -> Array:
    """Mean absolute error over all elements.

    pred, target: any equal shapes, float. Returns () float.
    """
    chex.assert_equal_shape([pred, target])
    return jnp.mean(jnp.abs(pred - target))


def masked_l1(pred: Array, target: Array, mask: Array) -> Array:
    """Mean absolute error over the covered pixels: ``sum(m |pred - target|) / sum(m)``.

    pred, target: (..., H, W, C) float; mask: (..., H, W) or (..., H, W, 1) in [0, 1], broadcast to the C
    channels (and over leading batch dims), so the mean is over covered pixel-channels of the whole batch.
    Returns () float; 0 when nothing is covered.
    """
    chex.assert_equal_shape([pred, target])
    m = jnp.broadcast_to(metrics._prepare_mask(mask, pred), pred.shape)
    return jnp.sum(m * jnp.abs(pred - target)) / jnp.maximum(jnp.sum(m), _SUM_EPS)


def photometric(pred: Array, target: Array, ssim_lambda: float = 0.2, mask: Array | None = None) -> Array:
    """3DGS-style photometric loss ``(1 - lambda) L1 + lambda (1 - SSIM)``.

    pred, target: (..., H, W, C) float in [0, 1], H, W >= 11. SSIM is the Gaussian-window SSIM of
    :func:`any4d_jax.metrics.ssim`, averaged over the batch. With ``mask`` ((..., H, W) or (..., H, W, 1)),
    L1 is :func:`masked_l1` and SSIM is :func:`any4d_jax.metrics.masked_ssim` (DyCheck's partial-convolution
    SSIM, where windows with no covered pixel score 1 and thus carry no gradient). Returns () float.
    """
    chex.assert_equal_shape([pred, target])
    if mask is None:
        l1_term = l1(pred, target)
        ssim_term = jnp.mean(metrics.ssim(pred, target))
    else:
        l1_term = masked_l1(pred, target, mask)
        ssim_term = jnp.mean(metrics.masked_ssim(pred, target, mask))
    return (1.0 - ssim_lambda) * l1_term + ssim_lambda * (1.0 - ssim_term)


def depth_loss(pred_depth: Array, target_depth: Array, valid: Array | None = None) -> Array:
    """Mean absolute depth error over pixels that are valid and have a positive target depth.

    pred_depth, target_depth: equal shapes, e.g. (..., H, W) or (..., H, W, 1) float. valid: optional bool /
    {0, 1} (or soft weight) array broadcastable to them. A pixel counts iff ``valid`` (when given) and
    ``target_depth > 0``; NaN / inf targets at excluded pixels neither change the value nor the gradient.
    Returns () float; 0 when no pixel counts.
    """
    chex.assert_equal_shape([pred_depth, target_depth])
    use = target_depth > 0  # False for NaN
    w = use.astype(pred_depth.dtype)
    if valid is not None:
        w = w * jnp.broadcast_to(jnp.asarray(valid), pred_depth.shape).astype(pred_depth.dtype)
        use = w > 0
    # Double where: excluded pixels never see the (possibly non-finite) target, in the value or the gradient.
    diff = jnp.where(use, pred_depth - jnp.where(use, target_depth, 0.0), 0.0)
    return jnp.sum(w * jnp.abs(diff)) / jnp.maximum(jnp.sum(w), _SUM_EPS)


def mask_loss(pred_alpha: Array, target_mask: Array, eps: float = 1e-6) -> Array:
    """Binary cross-entropy between a predicted opacity and a target mask, mean over all elements.

    pred_alpha: any shape, float in [0, 1] (e.g. accumulated alpha, (..., H, W) or (..., H, W, 1));
    target_mask: broadcastable to it, bool or float in [0, 1] (soft targets allowed). ``pred_alpha`` is
    clipped to ``[eps, 1 - eps]`` so the loss stays finite (and its gradient is 0 beyond the clip).
    Returns () float.
    """
    p = jnp.clip(pred_alpha, eps, 1.0 - eps)
    t = jnp.broadcast_to(jnp.asarray(target_mask), p.shape).astype(p.dtype)
    return -jnp.mean(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))


# ----------------------------------------------------------------------------------------------------------
# Motion regularisers (each reads the active-basis mask from the MotionParams).
# ----------------------------------------------------------------------------------------------------------


def acceleration_loss(params: MotionParams, cfg: MotionConfig) -> Array:
    """Mean squared second difference of every active basis trajectory over the frames."""
    if cfg.num_frames < 3:
        return jnp.float32(0.0)
    a, xi = trajectories_at_frames(params, cfg)
    mg, ml = split_weights(jax.lax.stop_gradient(params.mask), cfg)
    a, xi = a * mg[None], xi * ml[None, :, None]
    acc = lambda x: x[2:] - 2.0 * x[1:-1] + x[:-2]  # noqa: E731
    total = jnp.sum(acc(a) ** 2) + jnp.sum(acc(xi) ** 2)
    return total / max(1, (cfg.num_frames - 2) * cfg.num_bases)


def sparsity_loss(params: MotionParams, active: Array | None = None) -> Array:
    """Mean absolute weight (L1) over active bases and (active: (N,) bool) Gaussians."""
    w = jnp.abs(params.weights) * jax.lax.stop_gradient(params.mask)
    if active is not None:
        w = w * active[:, None]
        return jnp.sum(w) / jnp.maximum(1.0, jnp.sum(active) * w.shape[1])
    return jnp.mean(w)


def rigidity_loss(
    means_canon: Array, means_t: Array, neighbours: Array, active: Array | None = None
) -> Array:
    """Local rigidity: squared change of distance to each of the k neighbours between t0 and t.

    means_canon, means_t: (N, 3); neighbours: (N, k) int32 (`geometry.knn.knn`); active: (N,) bool.
    """

    def dist(m):
        d = m[:, None, :] - m[neighbours]
        return jnp.sqrt(jnp.sum(d * d, -1) + 1e-12)

    err = (dist(means_t) - dist(means_canon)) ** 2
    if active is None:
        return jnp.mean(err)
    w = (active[:, None] & active[neighbours]).astype(err.dtype)
    return jnp.sum(err * w) / jnp.maximum(1.0, jnp.sum(w))


def track_loss(points: Array, camera, target_xy: Array, weight: Array) -> Array:
    """Confidence-weighted 2D track loss of one frame: sum_p w_p |proj(points_p) - xy_p| / sum_p w_p, the
    distance in units of the image's larger side (so it does not depend on the resolution).

    points: (P, 3) the model's tracked points at the frame's time (model/track_anchors.predict); camera: the
    frame's Camera; target_xy: (P, 2) the tracks' pixel positions there; weight: (P,) visibility x confidence
    (0: not seen in this frame). Points behind the camera count nothing. Returns () float; 0 when no track is
    seen.
    """
    chex.assert_shape(points, (None, 3))
    chex.assert_equal_shape_prefix([points, target_xy, weight], 1)
    uv = points @ camera.rotation.T + camera.translation
    z = uv[:, 2]
    w = weight * (z > 1e-4).astype(weight.dtype)
    proj = uv @ camera.K.T
    xy = proj[:, :2] / jnp.where(w[:, None] > 0, proj[:, 2:3], 1.0)
    d = jnp.where(w[:, None] > 0, xy - target_xy, 0.0)
    err = jnp.sqrt(jnp.sum(d * d, -1) + 1e-12) / max(camera.width, camera.height)
    return jnp.sum(w * err) / jnp.maximum(jnp.sum(w), _SUM_EPS)
