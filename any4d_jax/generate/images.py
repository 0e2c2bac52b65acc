"""Prompt images and depth maps: loading with clear errors, and the resize/crop that matches the cameras.

`fit_image(img, width, height, mode)` resamples exactly the region that `Trajectory.rescale(width, height,
mode)` describes, so pixel (u, v) of the fitted image is where the rescaled intrinsics project.

Prompt files are user input: an image or depth map larger than `MAX_PIXELS` is refused from its header, before
any pixel is decoded (a 45-byte PNG can declare 30000 x 30000 pixels), and every failure of PIL or numpy on a
malformed file is an `InputError` with one line naming the file.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image

from any4d_jax.errors import InputError, MissingInput

# Largest prompt image / depth map accepted, in pixels: 64 Mpx (8K is 33 Mpx) is 768 MB as float32 RGB, and
# below PIL's own DecompressionBombWarning (89 Mpx) and DecompressionBombError (179 Mpx) thresholds.
MAX_PIXELS = 64 * 10**6

# PIL modes converted to RGB, and how. Anything else (32-bit integer 'I', float 'F', 16-bit 'I;16': depth maps
# or scientific images, not photos) is refused.
_CONVERTIBLE = {
    "RGB": "as is",
    "L": "grey: replicated to RGB",
    "1": "black and white: replicated to RGB",
    "P": "palette: expanded to RGB (transparency composited on the background)",
    "RGBA": "alpha composited on the background colour",
    "LA": "grey + alpha: composited on the background colour",
    "CMYK": "converted to RGB",
    "YCbCr": "converted to RGB",
}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _check_size(width: int, height: int, max_pixels: int, where: str, path: str) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{where} {path} is {width} x {height} pixels ({width * height / 1e6:.0f} Mpx), more than the "
            f"{max_pixels / 1e6:g} Mpx accepted: downscale it first"
        )


def _check_file(path: str, where: str, example: str) -> None:
    if not path:
        raise InputError(f"{where} is empty: pass a file, e.g. --config.{where}={example}")
    if not os.path.isfile(path):
        raise MissingInput(f"{where}: no such file: {path}")


def load_image(
    path: str | os.PathLike,
    where: str = "prompt.image",
    background=(1.0, 1.0, 1.0),
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] from an image file.

    Grey, palette and CMYK images are converted to RGB; transparent images (RGBA, LA, palette with
    transparency) are composited over `background`. 16/32-bit single-channel and float images are refused
    (they are usually depth maps: pass those as prompt.depth), and so is an image of more than `max_pixels`
    pixels (from its header, before decoding). Raises InputError with one line naming `where` and the file,
    whatever PIL raises on a malformed file.
    """
    path = os.fspath(path)
    _check_file(path, where, "photo.png")
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 Mpx (below our bound when it is raised): the size check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_file = Image.open(path)
        with im_file as im:
            _check_size(im.width, im.height, max_pixels, where, path)  # the header only: nothing decoded yet
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(f"{where} {path} has {frames} frames (an animation): give a single image")
            im.load()
            mode = im.mode
            if mode not in _CONVERTIBLE:
                raise InputError(
                    f"{where} {path} has unsupported image mode {mode!r} (a 16/32-bit or float "
                    "single-channel image, e.g. a depth map): give an 8-bit RGB or grey photo (a depth map "
                    "goes in prompt.depth)"
                )
            if mode == "P" and "transparency" in im.info:
                im = im.convert("RGBA")
            elif mode == "P":
                im = im.convert("RGB")
            if im.mode in ("RGBA", "LA"):
                rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
                a = rgba[..., 3:]
                rgb = rgba[..., :3] * a + np.asarray(background, np.float32) * (1.0 - a)
            else:
                rgb = np.asarray(im.convert("RGB"), np.float32) / 255.0
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses > 179 Mpx in Image.open, before our check
        size = re.search(r"\((\d+) pixels\)", str(e))
        declared = f"{int(size.group(1)) / 1e6:.0f} Mpx" if size else "too many pixels"
        dims = _png_size(path)
        shape = f"{dims[0]} x {dims[1]} pixels ({declared})" if dims else declared
        raise InputError(
            f"{where} {path} is {shape}, more than the {max_pixels / 1e6:g} Mpx accepted: downscale it first"
        ) from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, TypeError, struct.error, ...
        raise InputError(f"{where} {path}: cannot read the image ({_one_line(e)})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise InputError(f"{where} {path} is {rgb.shape[1]} x {rgb.shape[0]} pixels: too small")
    return np.ascontiguousarray(rgb, np.float32)


def _png_size(path: str) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None for other files (for the message only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def fit_box(src_w: int, src_h: int, width: int, height: int, mode: str) -> tuple[float, float, float, float]:
    """The source region (x0, y0, x1, y1), in source pixels, that maps onto a (width, height) output.

    "crop": scale by s = max(width / src_w, height / src_h), keep the centre; "stretch": the whole image.
    """
    if mode == "stretch":
        return 0.0, 0.0, float(src_w), float(src_h)
    if mode != "crop":
        raise InputError(f"fit mode must be 'crop' or 'stretch', got {mode!r}")
    s = max(width / src_w, height / src_h)
    bw, bh = width / s, height / s
    x0, y0 = 0.5 * (src_w - bw), 0.5 * (src_h - bh)
    return x0, y0, x0 + bw, y0 + bh


def fit_image(img: np.ndarray, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """(H, W, C) float image resampled (bicubic) to (height, width, C) over `fit_box`; C = 1 or 3.

    Matches `Trajectory.rescale(width, height, mode)` for a trajectory of the source size.
    """
    img = np.asarray(img, np.float32)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    h, w, c = img.shape
    if (w, h) == (width, height):
        return img[..., 0] if squeeze else img
    box = fit_box(w, h, width, height, mode)
    chans = [
        np.asarray(Image.fromarray(img[..., i], mode="F").resize((width, height), Image.BICUBIC, box=box))
        for i in range(c)
    ]
    out = np.stack(chans, -1).astype(np.float32)
    return out[..., 0] if squeeze else out


def fit_depth(depth: np.ndarray, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """(H, W) depth resampled like `fit_image` but with nearest neighbours (no blending across edges)."""
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth
    box = fit_box(w, h, width, height, mode)
    im = Image.fromarray(depth, mode="F").resize((width, height), Image.NEAREST, box=box)
    return np.asarray(im, np.float32)


def load_depth(
    path: str | os.PathLike, where: str = "prompt.depth", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """(H, W) float32 z-depth (distance along the optical axis, in scene units) from a .npy file.

    Every value must be finite and > 0. (Relative inverse depth from a monocular depth model must be turned
    into z-depth first.) The file is memory-mapped and its shape (at most `max_pixels` values) and dtype
    are checked before its data are read; every failure is an InputError with one line naming `where` and
    the file.
    """
    path = os.fspath(path)
    _check_file(path, where, "depth.npy")
    if not path.endswith(".npy"):
        raise InputError(f"{where} {path}: expected a .npy file holding an (H, W) float z-depth map")
    try:
        depth = np.load(path, mmap_mode="r", allow_pickle=False)  # maps the file: nothing is read yet
        if not isinstance(depth, np.ndarray):  # an .npz archive under a .npy name
            getattr(depth, "close", lambda: None)()
            raise InputError(f"{where} {path}: expected one array, got {type(depth).__name__}")
        shape = tuple(s for s in depth.shape if s != 1)
        real = np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)
        if len(shape) != 2 or not real:
            raise InputError(
                f"{where} {path}: expected an (H, W) numeric depth map, got shape {depth.shape} {depth.dtype}"
            )
        _check_size(shape[1], shape[0], max_pixels, where, path)
        depth = np.asarray(depth, np.float32).reshape(shape)
    except InputError:
        raise
    except Exception as e:  # truncated data (mmap larger than the file), bad header, object arrays, ...
        raise InputError(f"{where} {path}: cannot read the array ({_one_line(e)})") from None
    if not np.all(np.isfinite(depth)) or np.any(depth <= 0):
        raise InputError(f"{where} {path}: every depth must be finite and > 0")
    return depth
