"""Tests for any4d_jax.metrics and any4d_jax.losses against independent float64 numpy references.

The references below are deliberately written differently from the JAX code: SSIM uses an explicit loop over
output positions with a normalised 2D Gaussian window and centred moments (no separable filtering, no
E[x^2] - E[x]^2), and DyCheck's masked SSIM is re-implemented pass by pass with explicit per-window loops.
All JAX functions are jitted once per shape; the images share one shape, so only a few programs compile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fast_jit
from scipy import ndimage

from any4d_jax.evaluation import metrics
from any4d_jax.train import losses

B, H, W, C = 2, 24, 28, 3
FS, SIGMA, C1, C2 = 11, 1.5, 0.01**2, 0.03**2


def _ssim_map_fn(a, b):
    return metrics.ssim(a, b, return_map=True)


def _masked_ssim_map_fn(a, b, m):
    return metrics.masked_ssim(a, b, m, return_map=True)


# float32 programs, jitted once at module level (the float64 checks jit their own copies under x64).
ssim = fast_jit(metrics.ssim)
ssim_map = fast_jit(_ssim_map_fn)
psnr = fast_jit(metrics.psnr)
masked_psnr = fast_jit(metrics.masked_psnr)
masked_ssim = fast_jit(metrics.masked_ssim)
masked_ssim_map = fast_jit(_masked_ssim_map_fn)


# ---------------------------------------------------------------------------------------------------------
# Independent float64 numpy references.
# ---------------------------------------------------------------------------------------------------------


def _gauss1d(fs=FS, sigma=SIGMA):
    x = np.arange(fs, dtype=np.float64) - (fs - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ref_ssim_map(a, b, fs=FS, sigma=SIGMA):
    """SSIM map of (H, W, C) images: a loop over 'valid' positions with a full 2D Gaussian window."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    x = np.arange(fs) - (fs - 1) / 2
    w = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    w /= w.sum()
    h, wd, c = a.shape
    out = np.zeros((h - fs + 1, wd - fs + 1, c))
    for i in range(h - fs + 1):
        for j in range(wd - fs + 1):
            pa = a[i : i + fs, j : j + fs]
            pb = b[i : i + fs, j : j + fs]
            mu_a = np.einsum("ij,ijc->c", w, pa)
            mu_b = np.einsum("ij,ijc->c", w, pb)
            va = np.einsum("ij,ijc->c", w, (pa - mu_a) ** 2)
            vb = np.einsum("ij,ijc->c", w, (pb - mu_b) ** 2)
            cov = np.einsum("ij,ijc->c", w, (pa - mu_a) * (pb - mu_b))
            out[i, j] = (2 * mu_a * mu_b + C1) * (2 * cov + C2) / ((mu_a**2 + mu_b**2 + C1) * (va + vb + C2))
    return out


def ref_ssim(a, b):
    return ref_ssim_map(a, b).mean()


def ref_ssim_scipy(a, b):
    """skimage's algorithm (gaussian_weights=True, sigma=1.5, population covariance) via scipy.ndimage:
    Gaussian filter truncated at 3.5 sigma (= 11 taps), 'reflect' borders, crop (fs - 1) / 2 on each side."""
    f = lambda z: ndimage.gaussian_filter(z, SIGMA, truncate=3.5, mode="reflect")
    vals = []
    for c in range(a.shape[-1]):
        x = np.asarray(a[..., c], np.float64)
        y = np.asarray(b[..., c], np.float64)
        ux, uy = f(x), f(y)
        vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
        s = (2 * ux * uy + C1) * (2 * vxy + C2) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def ref_dycheck_masked_ssim_map(a, b, mask):
    """DyCheck's partial-convolution SSIM for one (H, W, C) image pair and an (H, W) mask, in float64.

    Pass 1 runs along W, pass 2 along H. Each output sample is sum(g_k z_k m_k) * fs / sum(m_k) over its fs
    taps (0 if no tap is covered), and the next pass sees the binary coverage (sum(m_k) != 0). The moments
    then give SSIM with DyCheck's clamps: variances >= 0, |cov| <= sqrt(var_a var_b).
    """
    g = _gauss1d()
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = np.asarray(mask, np.float64)

    def one_pass(z, m):  # along axis 1 of z: (rows, cols, C), m: (rows, cols)
        n = z.shape[1] - FS + 1
        out = np.zeros((z.shape[0], n, z.shape[2]))
        cov = np.zeros((z.shape[0], n))
        for r in range(z.shape[0]):
            for j in range(n):
                zz, mm = z[r, j : j + FS], m[r, j : j + FS]
                cnt = mm.sum()
                if cnt != 0:
                    out[r, j] = (g[:, None] * zz * mm[:, None]).sum(0) * FS / cnt
                    cov[r, j] = 1.0
        return out, cov

    def blur(z):
        z1, m1 = one_pass(z, m)
        z2, _ = one_pass(z1.transpose(1, 0, 2), m1.T)
        return z2.transpose(1, 0, 2)

    mu_a, mu_b = blur(a), blur(b)
    va = np.maximum(blur(a * a) - mu_a**2, 0)
    vb = np.maximum(blur(b * b) - mu_b**2, 0)
    cv = blur(a * b) - mu_a * mu_b
    cv = np.sign(cv) * np.minimum(np.sqrt(va * vb), np.abs(cv))
    return (2 * mu_a * mu_b + C1) * (2 * cv + C2) / ((mu_a**2 + mu_b**2 + C1) * (va + vb + C2))


# ---------------------------------------------------------------------------------------------------------
# Inputs (one shape everywhere: (B, H, W, C) float32).
# ---------------------------------------------------------------------------------------------------------


def _random_pair(seed, noise=0.15):
    rng = np.random.default_rng(seed)
    a = rng.random((B, H, W, C)).astype(np.float32)
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    return a, b


def _structured_pair():
    """A checkerboard + smooth ramps image and a shifted, contrast-reduced copy with a step edge."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    checker = ((yy // 3 + xx // 3) % 2).astype(np.float64)
    ramp = xx / (W - 1)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + 0.5 * yy) / 9.0)
    img0 = np.stack([checker, ramp, wave], -1)
    img1 = np.stack([0.2 + 0.6 * np.roll(checker, 1, axis=1), ramp**2, (xx > W / 2) * wave], -1)
    flat = np.full((H, W, C), 0.5)
    flat[:, W // 2 :] = 0.8  # piecewise constant: zero variance windows
    a = np.stack([img0, flat]).astype(np.float32)
    b = np.stack([img1, img0]).astype(np.float32)
    return a, b


def _checker_high_contrast():
    yy, xx = np.mgrid[0:H, 0:W]
    x = ((yy // 2 + xx // 2) % 2).astype(np.float32)
    x = np.repeat(x[None, ..., None], C, -1)
    return np.concatenate([x, 0.9 * x + 0.05]).astype(np.float32)  # (B, H, W, C) high-contrast patterns


# ---------------------------------------------------------------------------------------------------------
# SSIM.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "structured"])
def test_ssim_matches_direct_2d_window_reference(kind):
    a, b = _random_pair(0) if kind == "random" else _structured_pair()
    got = np.asarray(ssim(a, b))
    got_map = np.asarray(ssim_map(a, b))
    assert got.shape == (B,) and got_map.shape == (B, H - FS + 1, W - FS + 1, C)
    with jax.enable_x64(True):  # float64 run: the algorithm itself must agree to round-off
        map64 = np.asarray(jax.jit(_ssim_map_fn)(a.astype(np.float64), b.astype(np.float64)))
    for i in range(B):
        ref_map = ref_ssim_map(a[i], b[i])
        np.testing.assert_allclose(map64[i], ref_map, atol=1e-10, rtol=0)
        # float32: single map entries carry up to ~5e-5 of E[x^2] - E[x]^2 cancellation (shared by every
        # float32 implementation of the separable algorithm); the mean is far more accurate.
        np.testing.assert_allclose(got_map[i], ref_map, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got[i], ref_map.mean(), atol=1e-5, rtol=0)
        # Second independent implementation: skimage's algorithm via scipy.ndimage (border reflect + crop).
        np.testing.assert_allclose(got[i], ref_ssim_scipy(a[i], b[i]), atol=1e-5, rtol=0)
    if kind == "random":
        assert 0.2 < got.min() and got.max() < 0.95  # a meaningful, non-degenerate regime


def test_ssim_identity_and_inverse():
    a, b = _random_pair(1)
    s, _ = _structured_pair()
    for x in (a, s):
        np.testing.assert_allclose(np.asarray(ssim(x, x)), 1.0, atol=1e-6)
    x = _checker_high_contrast()
    got = np.asarray(ssim(x, 1.0 - x))
    assert np.all(got < -0.9), got  # anti-correlated high-contrast pattern: SSIM close to -1
    for i in range(B):
        np.testing.assert_allclose(got[i], ref_ssim(x[i], 1.0 - x[i]), atol=1e-5)


def test_ssim_regression_value():
    # Hard-coded values from ref_ssim (the float64 direct 2D-window loop above, not the JAX code) on
    # _random_pair(1234): rng = np.random.default_rng(1234); a = rng.random((2, 24, 28, 3)) as float32,
    # b = clip(a + 0.15 * rng.standard_normal(a.shape), 0, 1) as float32; ref_ssim(a[i], b[i]) for i = 0, 1.
    # skimage.metrics.structural_similarity(a[i], b[i], channel_axis=-1, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=1) computes the same quantity.
    a, b = _random_pair(1234)
    expected = np.array([REF_SSIM_1234_0, REF_SSIM_1234_1])
    np.testing.assert_allclose([ref_ssim(a[0], b[0]), ref_ssim(a[1], b[1])], expected, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ssim(a, b)), expected, atol=1e-5, rtol=0)


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    for a, b in (_random_pair(0), _structured_pair()):
        got = np.asarray(ssim(a, b))
        for i in range(B):
            ref = skm.structural_similarity(
                a[i].astype(np.float64),
                b[i].astype(np.float64),
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            np.testing.assert_allclose(got[i], ref, atol=1e-5)


def test_ssim_vmap_and_unbatched_agree():
    a, b = _random_pair(2)
    batched = np.asarray(ssim(a, b))
    vmapped = np.asarray(fast_jit(jax.vmap(metrics.ssim))(a, b))
    np.testing.assert_allclose(vmapped, batched, atol=1e-7)
    np.testing.assert_allclose(float(ssim(a[0], b[0])), batched[0], atol=1e-7)


def test_input_validation():
    a, b = _random_pair(3)
    with pytest.raises(AssertionError):
        metrics.ssim(a, b[..., :2])
    with pytest.raises(ValueError):
        metrics.ssim(a[:, :8], b[:, :8])  # smaller than the window
    with pytest.raises(ValueError):
        metrics.masked_psnr(a, b, np.ones((H, W + 1)))


# ---------------------------------------------------------------------------------------------------------
# PSNR.
# ---------------------------------------------------------------------------------------------------------


def test_psnr_closed_form():
    a, _ = _random_pair(4)
    a = 0.8 * a
    got = np.asarray(psnr(a, a + np.float32(0.1)))
    assert got.shape == (B,)
    np.testing.assert_allclose(got, 20.0, atol=1e-4)  # mse = 0.01 -> -10 log10(0.01) = 20 dB
    np.testing.assert_allclose(np.asarray(metrics.mse(a, a + np.float32(0.1))), 0.01, rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(metrics.psnr(a, a + 0.1, max_val=2.0)), 20 + 20 * np.log10(2), atol=1e-4
    )


def test_masked_psnr_matches_psnr_on_covered_pixels():
    a, b = _random_pair(5)
    rng = np.random.default_rng(5)
    mask = rng.random((B, H, W)) < 0.4
    got = np.asarray(masked_psnr(a, b, mask[..., None].astype(np.float32)))
    for i in range(B):
        d = (a[i].astype(np.float64) - b[i])[mask[i]]  # (num_covered, C)
        np.testing.assert_allclose(got[i], -10 * np.log10(np.mean(d**2)), atol=1e-4)
    # (B, H, W) bool masks and (B, H, W, 1) float masks are the same thing.
    np.testing.assert_allclose(np.asarray(masked_psnr(a, b, mask)), got, atol=1e-5)
    # A full mask gives plain PSNR; one shared (H, W) mask serves the whole batch.
    full = np.asarray(masked_psnr(a, b, np.ones((H, W), np.float32)))
    np.testing.assert_allclose(full, np.asarray(psnr(a, b)), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Masked SSIM (DyCheck partial convolution).
# ---------------------------------------------------------------------------------------------------------


def _holey_mask():
    """(H, W) mask: the 16 left columns are empty (6 of 18 window columns see nothing), plus random holes."""
    rng = np.random.default_rng(7)
    m = (rng.random((H, W)) > 0.3).astype(np.float32)
    m[:, :16] = 0.0
    m[:4, 20:] = 0.0
    return m


def test_masked_ssim_full_mask_equals_ssim():
    for a, b in (_random_pair(6), _structured_pair()):
        got = np.asarray(masked_ssim(a, b, np.ones((H, W), np.float32)))
        np.testing.assert_allclose(got, np.asarray(ssim(a, b)), atol=1e-6)


@pytest.mark.parametrize("kind", ["random", "structured"])
def test_masked_ssim_matches_partial_conv_reference(kind):
    a, b = _random_pair(8) if kind == "random" else _structured_pair()
    m = _holey_mask()
    got = np.asarray(masked_ssim(a, b, m))
    got_map = np.asarray(masked_ssim_map(a, b, m))
    with jax.enable_x64(True):
        map64 = np.asarray(jax.jit(_masked_ssim_map_fn)(a.astype(np.float64), b.astype(np.float64), m))
    for i in range(B):
        ref_map = ref_dycheck_masked_ssim_map(a[i], b[i], m)
        np.testing.assert_allclose(map64[i], ref_map, atol=1e-10, rtol=0)
        np.testing.assert_allclose(got_map[i], ref_map, atol=1e-4, rtol=0)  # float32 round-off, as above
        np.testing.assert_allclose(got[i], ref_map.mean(), atol=1e-5, rtol=0)

    # The quirk: windows without a covered pixel score exactly 1 and still count in the mean.
    empty = ndimage.uniform_filter(m, FS, mode="constant")[5:-5, 5:-5] * FS * FS < 0.5  # (H-10, W-10)
    assert empty[:, :6].all() and empty.sum() == 6 * (H - FS + 1)  # 84 of the 252 windows see nothing
    assert np.all(got_map[:, empty] == 1.0)
    np.testing.assert_allclose(got, got_map.mean(axis=(1, 2, 3)), atol=1e-6)
    covered_only = got_map[:, ~empty].mean(axis=(1, 2))
    np.testing.assert_allclose(got, (84 * 1.0 + 168 * covered_only) / 252, atol=1e-6)  # 1/3 of the mean is 1
    assert np.all(got - covered_only > 0.02)  # visibly above a mean over covered windows only


def test_masked_ssim_regression_and_per_image_masks():
    # Hard-coded from ref_dycheck_masked_ssim_map (the float64 numpy reference above): the mean of its map
    # on _random_pair(1234)[i], i = 0, 1, with _holey_mask().
    a, b = _random_pair(1234)
    m = _holey_mask()
    expected = np.array([REF_MASKED_SSIM_1234_0, REF_MASKED_SSIM_1234_1])
    np.testing.assert_allclose(np.asarray(masked_ssim(a, b, m)), expected, atol=1e-5, rtol=0)
    # Per-image masks (B, H, W, 1): image 1 gets a full mask and must then score plain SSIM.
    per_image = np.stack([m, np.ones_like(m)])[..., None]
    got = np.asarray(masked_ssim(a, b, per_image))
    np.testing.assert_allclose(got, [expected[0], REF_SSIM_1234_1], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------------------------------------


def test_photometric_value_gradient_and_descent():
    target, _ = _structured_pair()  # includes flat regions (zero-variance windows)
    m = _holey_mask()
    loss = fast_jit(losses.photometric)
    grad = fast_jit(jax.grad(losses.photometric))
    mloss = fast_jit(lambda p, t, mm: losses.photometric(p, t, mask=mm))
    mgrad = fast_jit(jax.grad(lambda p, t, mm: losses.photometric(p, t, mask=mm)))
    ssim_only_grad = fast_jit(jax.grad(lambda p, t: losses.photometric(p, t, ssim_lambda=1.0)))

    assert abs(float(loss(target, target))) < 1e-6
    assert abs(float(mloss(target, target, m))) < 1e-6
    for g in (grad(target, target), mgrad(target, target, m)):
        assert np.all(np.isfinite(np.asarray(g)))
    # D-SSIM is at its minimum: zero gradient (the L1 part has jnp.abs' subgradient 1 at 0 instead).
    assert np.abs(np.asarray(ssim_only_grad(target, target))).max() < 1e-6

    rng = np.random.default_rng(9)
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1).astype(np.float32)
    mean_ssim = np.mean([ref_ssim(pred[i], target[i]) for i in range(B)])
    expected = 0.8 * np.abs(pred - target).mean() + 0.2 * (1 - mean_ssim)
    np.testing.assert_allclose(float(loss(pred, target)), expected, atol=1e-5)
    for f, g, extra in ((loss, grad, ()), (mloss, mgrad, (m,))):
        l0 = float(f(pred, target, *extra))
        gr = np.asarray(g(pred, target, *extra))
        assert l0 > 0 and np.all(np.isfinite(gr))
        assert float(f(pred - 0.01 * gr / np.abs(gr).max(), target, *extra)) < l0
    # Uncovered pixels get no gradient from the masked loss.
    gm = np.asarray(mgrad(pred, target, m))
    assert np.all(gm[:, m == 0] == 0) and np.abs(gm[:, m == 1]).max() > 0


def test_masked_l1_and_l1():
    a, b = _random_pair(10)
    m = _holey_mask()
    masked_l1 = fast_jit(losses.masked_l1)
    got = float(masked_l1(a, b, m))
    np.testing.assert_allclose(got, np.abs(a - b)[:, m == 1].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(fast_jit(losses.l1)(a, b)), np.abs(a - b).mean(), rtol=1e-5)
    assert float(masked_l1(a, b, np.zeros((H, W), np.float32))) == 0.0


def test_depth_loss_ignores_invalid_pixels():
    rng = np.random.default_rng(11)
    target = rng.uniform(1.0, 5.0, (B, H, W)).astype(np.float32)
    pred = (target + rng.standard_normal(target.shape)).astype(np.float32)
    valid = rng.random((B, H, W)) > 0.3
    target[rng.random((B, H, W)) < 0.2] = 0.0  # missing depth
    garbage = ~valid & (rng.random((B, H, W)) < 0.5)
    target[garbage] = np.nan  # invalid pixels may hold anything
    target[~valid & ~garbage & (target > 0)] = 1e6
    use = valid & (target > 0)
    expected = np.abs(pred - target)[use].mean()
    f = fast_jit(losses.depth_loss)
    np.testing.assert_allclose(float(f(pred, target, valid)), expected, rtol=1e-5)
    g = np.asarray(fast_jit(jax.grad(losses.depth_loss))(pred, target, valid))
    assert np.all(np.isfinite(g)) and np.all(g[~use] == 0) and np.all(g[use] != 0)
    # Without a validity map only target > 0 decides: NaN targets drop out, the 1e6 ones now count.
    pos = target > 0  # False for NaN
    assert np.isnan(target).any() and (target[pos] == 1e6).any()
    np.testing.assert_allclose(float(f(pred, target, None)), np.abs(pred - target)[pos].mean(), rtol=1e-5)


def test_mask_loss_bce():
    rng = np.random.default_rng(12)
    p = rng.random((B, H, W)).astype(np.float32)
    t = rng.random((B, H, W)) > 0.5
    expected = -np.mean(t * np.log(p.astype(np.float64)) + (1 - t) * np.log(1 - p.astype(np.float64)))
    mask_loss = fast_jit(losses.mask_loss)
    np.testing.assert_allclose(float(mask_loss(p, t)), expected, rtol=1e-5)
    # Clipping: confident wrong predictions stay finite.
    bad = float(mask_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0])))
    np.testing.assert_allclose(bad, -np.log(1e-6), rtol=1e-3)
    g = fast_jit(jax.grad(losses.mask_loss))(jnp.array([0.3, 0.9]), jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(np.asarray(g), [-1 / 0.3 / 2, 1 / 0.1 / 2], rtol=1e-4)


# Regression constants (float64; how they were computed: test_ssim_regression_value and
# test_masked_ssim_regression_and_per_image_masks).
REF_SSIM_1234_0 = 0.8831571975765953
REF_SSIM_1234_1 = 0.8878653472302248
REF_MASKED_SSIM_1234_0 = 0.8940547327322713
REF_MASKED_SSIM_1234_1 = 0.9078245026024554
