"""Prompt images and depth maps: loading with clear errors, and the resize/crop that matches the cameras.

`fit_image(img, width, height, mode)` resamples exactly the region that `Trajectory.rescale(width, height,
mode)` describes, so pixel (u, v) of the fitted image is where the rescaled intrinsics project.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

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


def load_image(
    path: str | os.PathLike, where: str = "prompt.image", background=(1.0, 1.0, 1.0)
) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] from an image file.

    Grey, palette and CMYK images are converted to RGB; transparent images (RGBA, LA, palette with
    transparency) are composited over `background`. 16/32-bit single-channel and float images are refused
    (they are usually depth maps: pass those as prompt.depth). Raises FileNotFoundError / ValueError with one
    line naming `where` and the file.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{where} is empty: pass an image file, e.g. --config.{where}=photo.png")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise ValueError(f"{where} {path} has {frames} frames (an animation): give a single image")
            mode = im.mode
            if mode not in _CONVERTIBLE:
                raise ValueError(
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
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{where} {path}: cannot read the image ({type(e).__name__}: {e})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"{where} {path} is {rgb.shape[1]} x {rgb.shape[0]} pixels: too small")
    return np.ascontiguousarray(rgb, np.float32)


def fit_box(src_w: int, src_h: int, width: int, height: int, mode: str) -> tuple[float, float, float, float]:
    """The source region (x0, y0, x1, y1), in source pixels, that maps onto a (width, height) output.

    "crop": scale by s = max(width / src_w, height / src_h), keep the centre; "stretch": the whole image.
    """
    if mode == "stretch":
        return 0.0, 0.0, float(src_w), float(src_h)
    if mode != "crop":
        raise ValueError(f"fit mode must be 'crop' or 'stretch', got {mode!r}")
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


def load_depth(path: str | os.PathLike, where: str = "prompt.depth") -> np.ndarray:
    """(H, W) float32 z-depth (distance along the optical axis, in scene units) from a .npy file.

    Every value must be finite and > 0. (Relative inverse depth from a monocular depth model must be turned
    into z-depth first.)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such file: {path}")
    if not path.endswith(".npy"):
        raise ValueError(f"{where} {path}: expected a .npy file holding an (H, W) float z-depth map")
    try:
        depth = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{where} {path}: cannot read the array ({e})") from None
    depth = np.squeeze(np.asarray(depth))
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"{where} {path}: expected an (H, W) numeric depth map, got shape {depth.shape}")
    depth = depth.astype(np.float32)
    if not np.all(np.isfinite(depth)) or np.any(depth <= 0):
        raise ValueError(f"{where} {path}: every depth must be finite and > 0")
    return depth
