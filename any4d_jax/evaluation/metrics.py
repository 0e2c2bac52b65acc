"""Image quality metrics: MSE, PSNR, SSIM and the masked variants of the DyCheck iPhone protocol.

Conventions: images are float ``(..., H, W, C)`` arrays in ``[0, max_val]`` (float32 in ``[0, 1]`` by
default), compared pairwise; every metric is computed per image and returns ``(...,)``, so any number of
leading batch dimensions is allowed. Masks are ``(..., H, W)`` or ``(..., H, W, 1)`` (float or bool, values in
``[0, 1]``); their leading dimensions broadcast against the images' (one mask can serve a whole batch).

SSIM (Wang et al., IEEE TIP 2004) follows the widely used reference implementations (skimage's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``, the
JAX versions in dm_pix / mip-NeRF): an 11-tap Gaussian window (sigma 1.5) normalised to sum 1, applied
separably in 'valid' mode per channel, population (biased) moments, ``c1 = (k1 max_val)^2``,
``c2 = (k2 max_val)^2``, and the mean of the SSIM map over all valid positions and all channels. Like the
mip-NeRF / DyCheck code, the variances are clamped at 0 and the covariance at ``sqrt(var_a var_b)``; for exact
arithmetic these clamps are no-ops, in float32 they only remove round-off.

The masked metrics reproduce DyCheck's ``compute_psnr`` / ``compute_ssim`` (Gao et al., "Monocular Dynamic
View Synthesis: A Reality Check", NeurIPS 2022), which published iPhone-dataset numbers depend on:

* ``masked_psnr = -10 log10( sum(mask (a - b)^2) / sum(mask broadcast to the channels) )``.
* ``masked_ssim`` is a partial-convolution SSIM in which each of the two separable 1D passes (first along W,
  then along H) renormalises by the number of covered taps, not by the Gaussian weight of the covered taps::

      z' = conv_gauss(z * m) * L / conv_box(m)   where conv_box(m) != 0, else 0;   m' = (conv_box(m) != 0)

  (``L`` = filter_size = sum of the box filter). The second pass uses the *binary* coverage ``m'`` of the
  first. Windows without any covered pixel get all moments 0, hence SSIM ``(c1 c2) / (c1 c2) = 1``, and they
  still count in the mean over all valid positions. With a full mask this is exactly ``ssim``.

An image whose mask covers nothing gets, by these formulas, ``masked_psnr = +inf`` and ``masked_ssim = 1``:
a perfect score for an image where nothing was compared. The functions here keep DyCheck's values (the
training loss uses ``masked_ssim`` and needs a finite value); the evaluation scorer
(``scores.score_frames``) reports such a frame as having no masked score (NaN, null in JSON) and leaves it
out of the means.

All functions are pure ``jax.numpy``, safe under ``jit``, ``vmap`` and ``grad`` (the covariance clamp uses a
guarded square root, so gradients stay finite on flat image regions). ``filter_size``, ``filter_sigma``,
``k1``, ``k2`` and ``max_val`` are Python numbers (static).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["mse", "psnr", "ssim", "masked_mse", "masked_psnr", "masked_ssim", "gaussian_filter_1d"]

Array = jnp.ndarray

# DyCheck's ``masked_mean`` clips the mask sum from below with this value.
_MASK_SUM_EPS = 1e-6


# ---------------------------------------------------------------------------------------------------------
# Input checking and helpers.
# ---------------------------------------------------------------------------------------------------------


def _check_pair(a: Array, b: Array) -> tuple[Array, Array]:
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    chex.assert_equal_shape([a, b])
    chex.assert_type([a, b], float)
    if a.ndim < 3:
        raise ValueError(f"images must be (..., H, W, C), got shape {a.shape}")
    return a, b


def _prepare_mask(mask: Array, img: Array) -> Array:
    """Mask ``(..., H, W)`` or ``(..., H, W, 1)`` -> ``(..., H, W, 1)``: ``img``'s dtype and batch shape."""
    mask = jnp.asarray(mask)
    h, w = img.shape[-3], img.shape[-2]
    if mask.ndim >= 3 and mask.shape[-3:] == (h, w, 1):
        pass
    elif mask.ndim >= 2 and mask.shape[-2:] == (h, w):
        mask = mask[..., None]
    else:
        raise ValueError(f"mask must be (..., {h}, {w}) or (..., {h}, {w}, 1), got {mask.shape}")
    mask = mask.astype(img.dtype)
    batch = jnp.broadcast_shapes(mask.shape[:-3], img.shape[:-3])
    if batch != img.shape[:-3]:
        raise ValueError(f"mask batch shape {mask.shape[:-3]} does not broadcast to {img.shape[:-3]}")
    return jnp.broadcast_to(mask, img.shape[:-1] + (1,))


def gaussian_filter_1d(filter_size: int = 11, filter_sigma: float = 1.5) -> np.ndarray:
    """``(filter_size,)`` float64 Gaussian taps ``exp(-x^2 / (2 sigma^2))`` centred on the window, sum 1.

    For even sizes the centre lies between the two middle taps (as in dm_pix / mip-NeRF / DyCheck).
    """
    x = np.arange(filter_size, dtype=np.float64) - (filter_size - 1) / 2.0
    g = np.exp(-0.5 * (x / filter_sigma) ** 2)
    return g / g.sum()


def _conv_valid(x: Array, taps, axis: int) -> Array:
    """'valid' 1D correlation of ``x`` along ``axis`` with the static ``taps`` (a sum of shifted slices).

    Elementwise arithmetic keeps full float32 precision on every backend (unlike ``lax.conv``, which may use
    TF32 / bf16 passes on GPUs by default) and stays cheap to compile.
    """
    n = x.shape[axis] - len(taps) + 1
    out = None
    for k, t in enumerate(taps):
        term = lax.slice_in_dim(x, k, k + n, axis=axis)
        term = term if t == 1.0 else t * term
        out = term if out is None else out + term
    return out


def _ssim_from_moments(mu0, mu1, m00, m11, m01, max_val, k1, k2) -> Array:
    """SSIM map from blurred first and second moments (with the variance / covariance clamps)."""
    mu00 = mu0 * mu0
    mu11 = mu1 * mu1
    mu01 = mu0 * mu1
    s00 = jnp.maximum(m00 - mu00, 0.0)
    s11 = jnp.maximum(m11 - mu11, 0.0)
    s01 = m01 - mu01
    # Cauchy-Schwarz clamp |s01| <= sqrt(s00 s11); the square root is guarded so that flat regions
    # (s00 s11 == 0) give a zero, not an infinite, derivative in the branch `minimum` does not select.
    p = s00 * s11
    pos = p > 0
    bound = jnp.where(pos, jnp.sqrt(jnp.where(pos, p, 1.0)), 0.0)
    s01 = jnp.sign(s01) * jnp.minimum(bound, jnp.abs(s01))
    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    numer = (2.0 * mu01 + c1) * (2.0 * s01 + c2)
    denom = (mu00 + mu11 + c1) * (s00 + s11 + c2)
    return numer / denom


def _check_window(img: Array, filter_size: int) -> None:
    if img.shape[-3] < filter_size or img.shape[-2] < filter_size:
        raise ValueError(f"image {img.shape[-3:-1]} is smaller than the SSIM window {filter_size}")


# ---------------------------------------------------------------------------------------------------------
# Unmasked metrics.
# ---------------------------------------------------------------------------------------------------------


def mse(a: Array, b: Array) -> Array:
    """Mean squared error per image.

    a, b: (..., H, W, C) float. Returns (...,): mean of (a - b)^2 over H, W and C.
    """
    a, b = _check_pair(a, b)
    return jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))


def psnr(a: Array, b: Array, max_val: float = 1.0) -> Array:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(max_val^2 / mse(a, b))``.

    a, b: (..., H, W, C) float in [0, max_val]. Returns (...,); +inf for identical images.
    """
    return 10.0 * jnp.log10(max_val**2 / mse(a, b))


def ssim(
    a: Array,
    b: Array,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    return_map: bool = False,
) -> Array:
    """Structural similarity (Gaussian window, 'valid', per channel) per image.

    a, b: (..., H, W, C) float in [0, max_val], H, W >= filter_size.
    Returns (...,): the mean of the SSIM map over its (H - filter_size + 1, W - filter_size + 1) valid
    positions and the C channels; with ``return_map`` the map itself, (..., H - fs + 1, W - fs + 1, C).
    """
    a, b = _check_pair(a, b)
    _check_window(a, filter_size)
    taps = [float(t) for t in gaussian_filter_1d(filter_size, filter_sigma)]
    z = jnp.stack([a, b, a * a, b * b, a * b])  # (5, ..., H, W, C)
    z = _conv_valid(_conv_valid(z, taps, axis=-2), taps, axis=-3)
    ssim_map = _ssim_from_moments(*z, max_val=max_val, k1=k1, k2=k2)
    if return_map:
        return ssim_map
    return jnp.mean(ssim_map, axis=(-3, -2, -1))


# ---------------------------------------------------------------------------------------------------------
# Masked metrics (DyCheck iPhone protocol).
# ---------------------------------------------------------------------------------------------------------


def masked_mse(a: Array, b: Array, mask: Array) -> Array:
    """Mask-weighted MSE per image: ``sum(mask (a - b)^2) / max(sum(mask broadcast to C), 1e-6)``.

    a, b: (..., H, W, C) float; mask: (..., H, W) or (..., H, W, 1) in [0, 1]. Returns (...,).
    """
    a, b = _check_pair(a, b)
    m = jnp.broadcast_to(_prepare_mask(mask, a), a.shape)
    num = jnp.sum(m * jnp.square(a - b), axis=(-3, -2, -1))
    den = jnp.maximum(jnp.sum(m, axis=(-3, -2, -1)), _MASK_SUM_EPS)
    return num / den


def masked_psnr(a: Array, b: Array, mask: Array, max_val: float = 1.0) -> Array:
    """PSNR on the covered pixels only (DyCheck): ``10 log10(max_val^2 / masked_mse(a, b, mask))``.

    a, b: (..., H, W, C) float; mask: (..., H, W) or (..., H, W, 1) in [0, 1]. Returns (...,) in dB
    (+inf when the covered pixels agree exactly, and also when nothing is covered: evaluation leaves such
    images out, see scores.score_frames).
    """
    return 10.0 * jnp.log10(max_val**2 / masked_mse(a, b, mask))


def _partial_conv_valid(z: Array, m: Array, taps, axis: int) -> tuple[Array, Array]:
    """One DyCheck partial-convolution pass along ``axis``.

    z: (..., H, W, C) values; m: (..., H, W, 1) coverage. Returns the renormalised Gaussian blur of z (0 where
    the window has no coverage) and the binary coverage of the output.
    """
    count = _conv_valid(m, [1.0] * len(taps), axis)
    blurred = _conv_valid(z * m, taps, axis)
    covered = count != 0
    safe = jnp.where(covered, count, 1.0)
    out = jnp.where(covered, blurred * (len(taps) / safe), 0.0)
    return out, covered.astype(z.dtype)


def masked_ssim(
    a: Array,
    b: Array,
    mask: Array,
    max_val: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    return_map: bool = False,
) -> Array:
    """DyCheck's partial-convolution SSIM per image (see the module docstring for the exact definition).

    a, b: (..., H, W, C) float in [0, max_val]; mask: (..., H, W) or (..., H, W, 1) in [0, 1].
    Returns (...,): the mean of the SSIM map over ALL valid positions and channels (windows without any
    covered pixel score exactly 1 and are included, so an empty mask gives 1: evaluation leaves such images
    out, see scores.score_frames); with ``return_map`` the map (..., H - fs + 1, W - fs + 1, C). With a full
    mask this equals ``ssim``.
    """
    a, b = _check_pair(a, b)
    _check_window(a, filter_size)
    m = _prepare_mask(mask, a)
    taps = [float(t) for t in gaussian_filter_1d(filter_size, filter_sigma)]
    z = jnp.stack([a, b, a * a, b * b, a * b])  # (5, ..., H, W, C); m broadcasts over the leading 5
    z, m = _partial_conv_valid(z, m, taps, axis=-2)  # along W first (DyCheck's order) ...
    z, _ = _partial_conv_valid(z, m, taps, axis=-3)  # ... then along H with the binary coverage
    ssim_map = _ssim_from_moments(*z, max_val=max_val, k1=k1, k2=k2)
    if return_map:
        return ssim_map
    return jnp.mean(ssim_map, axis=(-3, -2, -1))
