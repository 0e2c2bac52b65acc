"""DyCheck iPhone scenes (Gao et al., "Monocular Dynamic View Synthesis: A Reality Check", NeurIPS 2022).

Reads one scene folder exactly as KAIR-BAIR/dycheck publishes it::

    camera/<frame>.json            Nerfies camera (below), at 1x
    rgb/{1x,2x}/<frame>.png        RGB or RGBA uint8 (the alpha is ignored)
    depth/{1x,2x}/<frame>.npy      training frames: (H, W) or (H, W, 1) projective z-depth, raw world units
    covisible/{1x,2x}/val/<frame>.png   val frames: 255 where enough training views see the pixel
    dataset.json  metadata.json (per frame: warp_id = time, camera_id)  scene.json (center, scale, near, far)
    splits/{train,val}.json (frame_names, time_ids, camera_ids)   extra.json (factor, fps, bbox, lookat, up)
    points.npy                     (M, 3) static background points, raw world units (optional)

Conventions, as DyCheck's own loader (`dycheck/datasets/nerfies.py`, `geometry/camera.py`):
- Camera JSON: ``orientation`` (3, 3) world-to-camera rotation, ``position`` (3,) camera centre, OpenCV axes
  (x right, y down, z forward); ``K = [[f, skew, cx], [0, f * pixel_aspect_ratio, cy], [0, 0, 1]]``;
  ``viewmat = [R | -R position]``. Pixel centres lie at integer + 0.5 (DyCheck's ``use_center``), as ours do.
- Factor s: focal length and principal point are divided by s, the image size is ``round(size / s)``. (Skew,
  0 in every released scene, is divided by s as well; DyCheck leaves it unscaled.)
- World normalisation: ``position' = (position - center) * scale`` (rotation unchanged), ``depth' = depth *
  scale``, ``points' = (points - center) * scale``, with ``scene.json``'s center and scale.
- Depth on disk is projective z-depth (distance along the optical axis, not along the ray), in the raw world
  units of ``camera/*.json`` positions: metres for the released scenes, which come from Record3D LiDAR
  (DyCheck's processing clips it at 3 m). It is 0 where unknown. DyCheck converts it to ray distance for its
  NeRFs; our rasterizer renders z-depth, so it is kept as z-depth. The loader refuses depth whose scaled
  median is far beyond ``scene.json``'s far plane (millimetres, for instance).
- Lens distortion (``radial_distortion`` k1 k2 k3, ``tangential_distortion`` p1 p2, OpenCV's model applied
  to normalised coordinates): our rasterizer is pinhole, so every image of a distorted camera is resampled at
  load time to the pinhole camera with the same K and no distortion: RGB bilinearly, depth by nearest
  neighbour, covisible masks bilinearly then kept only where fully covered (as DyCheck's ``use_undistort``
  path does with OpenCV). Pixels whose source falls outside the image get no depth and no covisibility (RGB
  is edge-clamped there). The released iPhone cameras have no distortion, so nothing is resampled for them.

Every problem with the folder (missing file, JSON that is not strict JSON or has a field of the wrong type or
shape, camera field missing or non-finite, image that cannot be decoded or has the wrong size, depth of the
wrong dtype or shape, a split naming an unknown frame, ...) raises ``SceneError`` (an ``errors.InputError``):
one line naming the file (and the key) and what is wrong, before anything is trained. Every JSON file is read
by ``files.read_json`` (bounded size and nesting; NaN / Infinity tokens refused). Images and ``.npy`` arrays
are checked from their headers (size, dtype, shape) before they are decoded, so a small file declaring a huge
image or array is refused without allocating it.

A val frame whose covisible mask covers no pixel is loaded (``IPhoneScene.empty_covisible`` names it, and a
one-line warning is printed); evaluation/dycheck.py leaves it out of the masked metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import warnings
from typing import Any

import imageio.v2 as iio2
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from any4d_jax import files
from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.geometry import cameras

__all__ = [
    "SceneError",
    "NerfiesCamera",
    "SceneInfo",
    "IPhoneScene",
    "read_camera",
    "load_scene",
    "distort_normalized",
    "project",
    "undistort_map",
]

# Fields of a Nerfies/DyCheck camera JSON and their shapes.
CAMERA_FIELDS = {
    "orientation": (3, 3),
    "position": (3,),
    "focal_length": (),
    "principal_point": (2,),
    "skew": (),
    "pixel_aspect_ratio": (),
    "radial_distortion": (3,),
    "tangential_distortion": (2,),
    "image_size": (2,),
}
REQUIRED_FILES = ("dataset.json", "metadata.json", "scene.json", "splits/train.json", "splits/val.json")
REQUIRED_DIRS = ("camera", "rgb")
# Scaled depths whose median exceeds this multiple of scene.json's far plane are refused (wrong units).
DEPTH_UNIT_TOLERANCE = 20.0
# Largest image (W * H) a camera may declare: the released scenes are 720 x 960 (0.7M pixels) at 1x.
MAX_IMAGE_PIXELS = 2**26
# Largest points.npy (M points) read.
MAX_POINTS = 2**25
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class SceneError(InputError):
    """A DyCheck scene folder that cannot be read as published (one line: the file and what is wrong)."""


def _short(value, limit: int = 60) -> str:
    """A JSON value as it would appear in the file, on one line and at most about `limit` characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value) -> str:
    """'null', 'a list', 'a string', ... (what a JSON value is, for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _is_index(x) -> bool:
    """A JSON integer >= 0 (true / false are not integers)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


# ---------------------------------------------------------------------------------------------------------
# Cameras.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NerfiesCamera:
    """One DyCheck camera (float64 numpy).

    orientation: (3, 3) world-to-camera rotation; position: (3,) camera centre in world coordinates.
    focal_length, skew, pixel_aspect_ratio: floats (pixels); principal_point: (2,) (cx, cy) in pixels.
    radial_distortion: (3,) k1, k2, k3; tangential_distortion: (2,) p1, p2; image_size: (W, H) ints.
    """

    orientation: np.ndarray
    position: np.ndarray
    focal_length: float
    principal_point: np.ndarray
    skew: float
    pixel_aspect_ratio: float
    radial_distortion: np.ndarray
    tangential_distortion: np.ndarray
    image_size: tuple[int, int]

    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics [[f, skew, cx], [0, f * pixel_aspect_ratio, cy], [0, 0, 1]]."""
        f, (cx, cy) = self.focal_length, self.principal_point
        return np.array([[f, self.skew, cx], [0.0, f * self.pixel_aspect_ratio, cy], [0.0, 0.0, 1.0]])

    @property
    def viewmat(self) -> np.ndarray:
        """(4, 4) world-to-camera [R | -R position]."""
        vm = np.eye(4)
        vm[:3, :3] = self.orientation
        vm[:3, 3] = -self.orientation @ self.position
        return vm

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.radial_distortion != 0) or np.any(self.tangential_distortion != 0))

    def rescale_image(self, factor: int) -> NerfiesCamera:
        """The camera of the images downsampled by `factor` (DyCheck's rescale_image_domain(1 / factor))."""
        s = 1.0 / factor
        size = (int(round(self.width * s)), int(round(self.height * s)))
        return dataclasses.replace(
            self,
            focal_length=self.focal_length * s,
            principal_point=self.principal_point * s,
            skew=self.skew * s,
            image_size=size,
        )

    def normalise_world(self, center: np.ndarray, scale: float) -> NerfiesCamera:
        """The camera in the normalised world: position' = (position - center) * scale."""
        return dataclasses.replace(self, position=(self.position - center) * scale)

    def pinhole(self) -> NerfiesCamera:
        """The same camera without lens distortion (the target of `undistort_map`)."""
        return dataclasses.replace(self, radial_distortion=np.zeros(3), tangential_distortion=np.zeros(2))


def _load_json(path: str) -> Any:
    """A scene JSON file's value (files.read_json: bounded, strict; any defect is a one-line SceneError)."""
    if not os.path.isfile(path):
        raise SceneError(f"{path}: file not found")
    try:
        return files.read_json(path)
    except InputError as e:
        raise SceneError(str(e)) from None


def _numbers_only(value, depth: int = 0) -> bool:
    """True when value is a JSON number or (at most 3 deep) lists of numbers: no bool, null or string."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, list) and depth < 3:
        return all(_numbers_only(v, depth + 1) for v in value)
    return False


def _array(path: str, name: str, value, shape: tuple) -> np.ndarray:
    if not _numbers_only(value):
        raise SceneError(f"{path}: field {name!r} is not numeric: {_short(value)}")
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError, OverflowError):
        raise SceneError(f"{path}: field {name!r} is not numeric: {_short(value)}") from None
    if a.shape != shape:
        raise SceneError(f"{path}: field {name!r} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SceneError(f"{path}: field {name!r} has a non-finite value: {a.tolist()}")
    return a


def camera_from_dict(d: dict, path: str = "<camera>") -> NerfiesCamera:
    """A checked NerfiesCamera from a parsed camera JSON (`path` only names it in errors)."""
    if not isinstance(d, dict):
        raise SceneError(f"{path}: expected a JSON object, got {_json_kind(d)}")
    if "tangential_distortion" not in d and "tangential" in d:  # older Nerfies files (DyCheck accepts both)
        d = {**d, "tangential_distortion": d["tangential"]}
    missing = [k for k in CAMERA_FIELDS if k not in d]
    if missing:
        raise SceneError(f"{path}: camera is missing field(s) {', '.join(missing)}")
    v = {k: _array(path, k, d[k], shape) for k, shape in CAMERA_FIELDS.items()}
    R = v["orientation"]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
        raise SceneError(f"{path}: 'orientation' is not a rotation matrix (R R^T != I or det(R) < 0)")
    if v["focal_length"] <= 0 or v["pixel_aspect_ratio"] <= 0:
        raise SceneError(f"{path}: 'focal_length' and 'pixel_aspect_ratio' must be positive")
    w, h = v["image_size"]
    if w != int(w) or h != int(h) or w < 1 or h < 1:
        raise SceneError(f"{path}: 'image_size' must be two positive integers [W, H], got {[w, h]}")
    if w * h > MAX_IMAGE_PIXELS:
        raise SceneError(
            f"{path}: 'image_size' {int(w)}x{int(h)} is more than the {MAX_IMAGE_PIXELS} pixels this loader "
            "accepts"
        )
    return NerfiesCamera(
        orientation=R,
        position=v["position"],
        focal_length=float(v["focal_length"]),
        principal_point=v["principal_point"],
        skew=float(v["skew"]),
        pixel_aspect_ratio=float(v["pixel_aspect_ratio"]),
        radial_distortion=v["radial_distortion"],
        tangential_distortion=v["tangential_distortion"],
        image_size=(int(w), int(h)),
    )


def read_camera(path: str) -> NerfiesCamera:
    """Parse and check one camera JSON (1x image domain, raw world)."""
    return camera_from_dict(_load_json(path), path)


def distort_normalized(x, y, radial, tangential) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV / DyCheck lens distortion of normalised image coordinates (x, y) = (X / Z, Y / Z).

    xd = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2), yd likewise with p1 <-> p2.
    """
    k1, k2, k3 = radial
    p1, p2 = tangential
    r2 = x * x + y * y
    radial_scale = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial_scale + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial_scale + 2.0 * p2 * x * y + p1 * (r2 + 2.0 * y * y)
    return xd, yd


def project(cam: NerfiesCamera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) with the full camera model, distortion included.

    Returns pixels (N, 2) (continuous; pixel centres at integer + 0.5) and projective depth z (N,).
    """
    p = (np.asarray(points, np.float64) - cam.position) @ cam.orientation.T
    z = p[:, 2]
    xd, yd = distort_normalized(p[:, 0] / z, p[:, 1] / z, cam.radial_distortion, cam.tangential_distortion)
    K = cam.K
    return np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=-1), z


def undistort_map(cam: NerfiesCamera) -> np.ndarray:
    """(H, W, 2) where each pixel centre of `cam.pinhole()` lies in `cam`'s (distorted) image.

    Coordinates are continuous with pixel centres at integer + 0.5: sampling the distorted image there gives
    the undistorted image. Closed form (distortion is applied forwards; no iterative inversion is needed).
    """
    K = cam.K
    u, v = np.meshgrid(np.arange(cam.width) + 0.5, np.arange(cam.height) + 0.5, indexing="xy")
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    xd, yd = distort_normalized(x, y, cam.radial_distortion, cam.tangential_distortion)
    return np.stack([K[0, 0] * xd + K[0, 1] * yd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=-1)


def _inside(coords: np.ndarray, h: int, w: int) -> np.ndarray:
    x, y = coords[..., 0], coords[..., 1]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def sample_bilinear(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of image (H, W[, C]) at continuous coords (..., 2) (pixel centres at i + 0.5).

    Samples off the image are edge-clamped. Returns (..., [C]) float64.
    """
    h, w = image.shape[:2]
    img = np.asarray(image, np.float64)
    x = np.clip(coords[..., 0] - 0.5, 0.0, w - 1.0)
    y = np.clip(coords[..., 1] - 0.5, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros(x.shape, np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros(y.shape, np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def sample_nearest(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-pixel samples of image (H, W[, C]) at continuous coords (..., 2); edge-clamped."""
    h, w = image.shape[:2]
    col = np.clip(np.floor(coords[..., 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(coords[..., 1]).astype(np.int64), 0, h - 1)
    return np.asarray(image)[row, col]


# ---------------------------------------------------------------------------------------------------------
# Scene.
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SceneInfo:
    """scene.json: the world normalisation (center (3,), scale) and the scaled near / far planes."""

    center: np.ndarray
    scale: float
    near: float
    far: float


@dataclasses.dataclass(frozen=True)
class IPhoneScene:
    """One loaded scene in the normalised world, with pinhole (undistorted) cameras.

    train:  Frames of splits/train.json sorted by time: rgb (F, H, W, 3), z-depth (F, H, W) (0 = unknown) or
            None when the scene has no depth, mask None (the release has no foreground masks).
    val:    Frames of splits/val.json (split order): mask = covisible (V, H, W) in {0, 1}, depth None.
    *_names, *_camera_ids, *_time_ids: per-frame metadata (tuples, same order as the Frames).
    points: (M, 3) float32 normalised background points (points.npy) or None; point_colors (M, 3) in [0, 1]
            sampled from the training frames that see them (0.5 grey where none does).
    undistorted: names of the frames whose images were resampled to remove lens distortion.
    empty_covisible: names of the val frames whose covisible mask covers no pixel (left out of the masked
            metrics by evaluation/dycheck.py).
    """

    name: str
    root: str
    factor: int
    info: SceneInfo
    train: Frames
    val: Frames | None
    train_names: tuple
    train_time_ids: tuple
    val_names: tuple
    val_camera_ids: tuple
    val_time_ids: tuple
    points: np.ndarray | None
    point_colors: np.ndarray | None
    undistorted: tuple
    covisible_dir: str | None
    extra: dict
    empty_covisible: tuple = ()


def _read_scene_info(root: str) -> SceneInfo:
    path = os.path.join(root, "scene.json")
    d = _load_json(path)
    if not isinstance(d, dict):
        raise SceneError(f"{path}: expected a JSON object, got {_json_kind(d)}")
    missing = [k for k in ("center", "scale", "near", "far") if k not in d]
    if missing:
        raise SceneError(f"{path}: missing field(s) {', '.join(missing)}")
    center = _array(path, "center", d["center"], (3,))
    scale, near, far = (float(_array(path, k, d[k], ())) for k in ("scale", "near", "far"))
    if scale <= 0 or not 0 <= near < far:
        raise SceneError(
            f"{path}: need scale > 0 and 0 <= near < far, got scale {scale}, near {near}, far {far}"
        )
    return SceneInfo(center=center, scale=scale, near=near, far=far)


def _check_names(path: str, key: str, value, plain: bool) -> list:
    """value must be a list of strings (frame names); plain: names of files (no path separators)."""
    if not isinstance(value, list):
        raise SceneError(f"{path}: {key!r} must be a list of frame names, got {_short(value)}")
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise SceneError(f"{path}: {key}[{i}] must be a string, got {_short(name)}")
        if plain and (name in ("", ".", "..") or any(c in name for c in "/\\\0")):
            raise SceneError(f"{path}: {key}[{i}] {name!r} is not a plain file name (no path separators)")
    return value


def _check_indices(path: str, key: str, value) -> list:
    """value must be a list of JSON integers >= 0."""
    if not isinstance(value, list):
        raise SceneError(f"{path}: {key!r} must be a list of non-negative integers, got {_short(value)}")
    for i, x in enumerate(value):
        if not _is_index(x):
            raise SceneError(f"{path}: {key}[{i}] must be a non-negative integer, got {_short(x)}")
    return value


def _check_metadata(path: str, metadata) -> dict:
    """metadata.json: {frame name: {warp_id, camera_id[, appearance_id]: integers >= 0}}."""
    if not isinstance(metadata, dict):
        raise SceneError(f"{path}: expected an object mapping frame names, got {_short(metadata)}")
    for name, meta in metadata.items():
        if not isinstance(meta, dict):
            raise SceneError(f"{path}: entry {name!r} must be an object with warp_id and camera_id")
        for key in ("warp_id", "appearance_id", "camera_id"):
            if key in meta and not _is_index(meta[key]):
                raise SceneError(
                    f"{path}: entry {name!r}: {key!r} must be a non-negative integer, got {_short(meta[key])}"
                )
    return metadata


def _check_dataset(path: str, dataset) -> dict:
    """dataset.json: ids (list of names); optional train_ids / val_ids (lists), count / num_exemplars."""
    if not isinstance(dataset, dict) or "ids" not in dataset:
        raise SceneError(f"{path}: expected an object with 'ids'")
    for key in ("ids", "train_ids", "val_ids"):
        if key in dataset:
            _check_names(path, key, dataset[key], plain=False)
    for key in ("count", "num_exemplars"):
        if key in dataset and not _is_index(dataset[key]):
            raise SceneError(f"{path}: {key!r} must be a non-negative integer, got {_short(dataset[key])}")
    return dataset


def _read_split(root: str, split: str, metadata: dict) -> list[tuple[str, int, int]]:
    """[(frame_name, time_id, camera_id)] of splits/<split>.json, checked against metadata.json."""
    path = os.path.join(root, "splits", f"{split}.json")
    d = _load_json(path)
    if not isinstance(d, dict) or any(k not in d for k in ("frame_names", "time_ids", "camera_ids")):
        raise SceneError(f"{path}: expected an object with frame_names, time_ids and camera_ids")
    names = _check_names(path, "frame_names", d["frame_names"], plain=True)
    times = _check_indices(path, "time_ids", d["time_ids"])
    cams = _check_indices(path, "camera_ids", d["camera_ids"])
    if not (len(names) == len(times) == len(cams)):
        raise SceneError(
            f"{path}: frame_names, time_ids and camera_ids have different lengths "
            f"({len(names)}, {len(times)}, {len(cams)})"
        )
    out = []
    seen = set()
    for name, t, c in zip(names, times, cams, strict=True):
        if name in seen:
            raise SceneError(f"{path}: frame {name!r} is listed twice")
        seen.add(name)
        if name not in metadata:
            raise SceneError(f"{path}: frame {name!r} is not listed in metadata.json")
        if not os.path.isfile(os.path.join(root, "camera", f"{name}.json")):
            raise SceneError(f"{path}: frame {name!r} has no camera file camera/{name}.json")
        meta = metadata[name]
        if "warp_id" not in meta or "camera_id" not in meta:
            raise SceneError(
                f"{os.path.join(root, 'metadata.json')}: entry {name!r} needs warp_id and camera_id"
            )
        if meta["warp_id"] != t or meta["camera_id"] != c:
            raise SceneError(
                f"{path}: frame {name!r} has time_id {t}, camera_id {c} but metadata.json says warp_id "
                f"{meta['warp_id']}, camera_id {meta['camera_id']}"
            )
        out.append((name, t, c))
    return out


def _image_size(path: str) -> tuple[int, int]:
    """(W, H) from an image file's header, without decoding its pixels. PNG (the DyCheck format) is read
    directly from its IHDR chunk, whatever size it declares; other formats through PIL's lazy open."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:  # reads the header only
            return im.size


def _read_png(path: str, expect_hw: tuple[int, int], what: str) -> np.ndarray:
    """uint8 image (H, W, C) (C = 1, 3 or 4), checked against the expected (H, W)."""
    if not os.path.isfile(path):
        raise SceneError(f"{path}: {what} not found")
    try:
        w, h = _image_size(path)
    except Image.DecompressionBombError as e:
        raise SceneError(f"{path}: header declares an image too large to decode ({_one_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - any header failure is a bad file
        raise SceneError(f"{path}: cannot be read as an image ({_one_line(e)})") from None
    if (h, w) != expect_hw:  # from the header: a wrong (or huge) size is refused before decoding
        raise SceneError(
            f"{path}: image is {w}x{h} (WxH) but its camera gives {expect_hw[1]}x{expect_hw[0]} at this "
            "factor"
        )
    try:
        img = np.asarray(iio2.imread(path))
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
        raise SceneError(f"{path}: cannot be read as an image ({_one_line(e)})") from None
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4) or img.dtype != np.uint8:
        raise SceneError(f"{path}: expected an 8-bit image, got shape {img.shape} dtype {img.dtype}")
    if img.shape[:2] != expect_hw:
        raise SceneError(
            f"{path}: image is {img.shape[1]}x{img.shape[0]} (WxH) but its camera gives "
            f"{expect_hw[1]}x{expect_hw[0]} at this factor"
        )
    return img


def read_npy_header(f) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the .npy header at the start of an open binary file, without reading its data;
    ValueError for what is not a version 1 or 2 header."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    return tuple(shape), dtype


def _npy_header(path: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from a .npy file's header, without reading its data."""
    try:
        with open(path, "rb") as f:
            return read_npy_header(f)
    except Exception as e:  # noqa: BLE001 - any header failure is a bad file
        raise SceneError(f"{path}: cannot be read as a .npy array ({_one_line(e)})") from None


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise SceneError(f"{path}: cannot be read as a .npy array ({_one_line(e)})") from None


def _read_depth(path: str, expect_hw: tuple[int, int]) -> np.ndarray:
    if not os.path.isfile(path):
        raise SceneError(
            f"{path}: depth map not found (the scene has depth/, so every training frame needs one)"
        )
    shape, dtype = _npy_header(path)  # dtype and shape are checked before the data is read
    if dtype.kind != "f":
        raise SceneError(f"{path}: depth must be a float array (float16/32/64), got dtype {dtype}")
    if len(shape) == 3 and shape[-1] == 1:
        shape = shape[:2]
    if shape != expect_hw:
        raise SceneError(f"{path}: depth has shape {shape}, expected {expect_hw} (H, W) or (H, W, 1)")
    d = _load_npy(path).reshape(expect_hw).astype(np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise SceneError(f"{path}: depth must be finite and >= 0 (0 = unknown)")
    return d


def _load_frames(root, factor, split_rows, info, *, want_depth, covisible_dir, undistorted):
    """Read cameras, images (and depth or covisible masks) of one split; undistort where needed."""
    viewmats, Ks, rgbs, depths, masks = [], [], [], [], []
    maps: dict = {}
    size = None
    for name, _, _ in split_rows:
        cam_path = os.path.join(root, "camera", f"{name}.json")
        cam = read_camera(cam_path).rescale_image(factor).normalise_world(info.center, info.scale)
        if size is None:
            size = cam.image_size
        elif cam.image_size != size:
            raise SceneError(
                f"{cam_path}: image_size differs from the split's first frame ({size} at {factor}x)"
            )
        hw = (cam.height, cam.width)
        rgb = _read_png(os.path.join(root, "rgb", f"{factor}x", f"{name}.png"), hw, "rgb frame")
        if rgb.shape[-1] < 3:
            rgb = np.repeat(rgb[..., :1], 3, axis=-1)
        rgb = rgb[..., :3].astype(np.float64) / 255.0
        depth = mask = None
        if want_depth:
            depth = _read_depth(os.path.join(root, "depth", f"{factor}x", f"{name}.npy"), hw) * info.scale
        if covisible_dir is not None:
            m = _read_png(os.path.join(covisible_dir, f"{name}.png"), hw, "covisible mask")
            mask = (m[..., 0] >= 128).astype(np.float64)
        if cam.has_distortion:
            key = (cam.focal_length, cam.skew, cam.pixel_aspect_ratio, *cam.principal_point)
            key += (*cam.radial_distortion, *cam.tangential_distortion)
            if key not in maps:
                m_coords = undistort_map(cam)
                maps[key] = (m_coords, _inside(m_coords, cam.height, cam.width))
            coords, inside = maps[key]
            rgb = sample_bilinear(rgb, coords)
            if depth is not None:
                depth = np.where(inside, sample_nearest(depth, coords), 0.0)
            if mask is not None:
                mask = ((sample_bilinear(mask, coords) > 1.0 - 1e-6) & inside).astype(np.float64)
            undistorted.append(name)
            cam = cam.pinhole()
        viewmats.append(cam.viewmat)
        Ks.append(cam.K)
        rgbs.append(rgb.astype(np.float32))  # float32 per frame: ~400 frames at 1x are 3.3 GB already
        depths.append(None if depth is None else depth.astype(np.float32))
        masks.append(None if mask is None else mask.astype(np.float32))
    cams = cameras.make_camera(np.stack(viewmats), np.stack(Ks), size[0], size[1])
    return cams, np.stack(rgbs), depths, masks


def _check_depth_units(root: str, factor: int, depth: np.ndarray, info: SceneInfo) -> None:
    valid = depth[depth > 0]
    if valid.size == 0:
        raise SceneError(
            f"{os.path.join(root, 'depth', f'{factor}x')}: every depth map is 0 (unknown) at every pixel; "
            "fix them, remove the folder or pass --config.data.use_depth=false"
        )
    if valid.size and np.median(valid) > DEPTH_UNIT_TOLERANCE * info.far:
        raise SceneError(
            f"{os.path.join(root, 'depth', f'{factor}x')}: median depth {np.median(valid):.3g} (after "
            f"scene.json scale) is over {DEPTH_UNIT_TOLERANCE:g}x the far plane {info.far:.3g}: the depth "
            "maps are not in the cameras' world units (metres expected; millimetres?)"
        )


def _color_points(points: np.ndarray, frames: Frames, max_views: int = 32) -> np.ndarray:
    """(M, 3) colours of world points from the first of up to `max_views` training frames that sees them.

    A frame sees a point when it projects inside the image in front of the camera and, where the frame has
    depth, no more than 5% behind the depth map there. Points no frame sees get 0.5 grey.
    """
    colors = np.full(points.shape, 0.5, np.float32)
    todo = np.ones(len(points), bool)
    n = frames.num_frames
    views = np.unique(np.linspace(0, n - 1, min(n, max_views)).round().astype(int))
    vm, K = np.asarray(frames.cameras.viewmat, np.float64), np.asarray(frames.cameras.K, np.float64)
    w, h = frames.cameras.width, frames.cameras.height
    rgb = np.asarray(frames.rgb)
    depth = None if frames.depth is None else np.asarray(frames.depth)
    for i in views:
        idx = np.nonzero(todo)[0]
        if idx.size == 0:
            break
        p = points[idx] @ vm[i, :3, :3].T + vm[i, :3, 3]
        z = p[:, 2]
        uv = p @ K[i].T
        with np.errstate(divide="ignore", invalid="ignore"):
            col, row = np.floor(uv[:, 0] / z), np.floor(uv[:, 1] / z)
        ok = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        idx, col, row, z = idx[ok], col[ok].astype(int), row[ok].astype(int), z[ok]
        if depth is not None:
            d = depth[i, row, col]
            seen = (d <= 0) | (z <= 1.05 * d)
            idx, col, row = idx[seen], col[seen], row[seen]
        colors[idx] = rgb[i, row, col]
        todo[idx] = False
    return colors


def _read_points(root: str, info: SceneInfo) -> np.ndarray | None:
    path = os.path.join(root, "points.npy")
    if not os.path.isfile(path):
        return None
    shape, dtype = _npy_header(path)
    if len(shape) != 2 or shape[1] != 3 or dtype.kind not in "fiu":
        raise SceneError(f"{path}: expected finite real (M, 3) points, got shape {shape} dtype {dtype}")
    if shape[0] > MAX_POINTS:
        raise SceneError(f"{path}: {shape[0]} points, more than the {MAX_POINTS} this loader reads")
    pts = _load_npy(path)
    if not np.all(np.isfinite(pts)):
        raise SceneError(f"{path}: expected finite (M, 3) points, got a non-finite value")
    return ((pts.astype(np.float64) - info.center) * info.scale).astype(np.float32)


def find_covisible_dir(root: str, factor: int, candidates=None) -> str | None:
    """The first existing folder among `candidates` (relative to root; default covisible/<f>x/val)."""
    for rel in candidates or (os.path.join("covisible", f"{factor}x", "val"),):
        path = os.path.join(root, rel)
        if os.path.isdir(path):
            return path
    return None


def load_scene(
    root: str,
    factor: int = 2,
    covisible_dirs: tuple | None = None,
    use_depth: bool = True,
    use_points: bool = True,
) -> IPhoneScene:
    """Load and check a DyCheck iPhone scene folder (see the module docstring for the conventions).

    root: the scene folder (e.g. /data/iphone/apple). factor: 1 or 2 (which rgb/<f>x, depth/<f>x to read).
    covisible_dirs: folders (relative to root) searched in order for the val masks (covisible/<f>x/val).
    use_depth: read depth/<f>x (when the scene has it). use_points: read points.npy (when present).
    Raises SceneError (one line naming the file) on anything missing or malformed.
    """
    root = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(root):
        raise SceneError(
            f"{root}: scene folder not found (expected a DyCheck iPhone scene, e.g. .../iphone/apple)"
        )
    missing = [p for p in REQUIRED_FILES if not os.path.isfile(os.path.join(root, p))]
    missing += [p + "/" for p in REQUIRED_DIRS if not os.path.isdir(os.path.join(root, p))]
    if isinstance(factor, bool) or factor not in (1, 2, 4, 8):
        raise SceneError(f"{root}: factor must be 1, 2, 4 or 8, got {factor!r}")
    factor = int(factor)
    rgb_dir = os.path.join(root, "rgb", f"{factor}x")
    if "rgb/" not in missing and not os.path.isdir(rgb_dir):
        missing.append(f"rgb/{factor}x/")
    if missing:
        raise SceneError(f"{root}: incomplete DyCheck scene, missing {', '.join(missing)}")
    info = _read_scene_info(root)
    metadata_path = os.path.join(root, "metadata.json")
    metadata = _check_metadata(metadata_path, _load_json(metadata_path))
    dataset_path = os.path.join(root, "dataset.json")
    _check_dataset(dataset_path, _load_json(dataset_path))
    extra_path = os.path.join(root, "extra.json")
    extra = _load_json(extra_path) if os.path.isfile(extra_path) else {}
    if not isinstance(extra, dict):
        raise SceneError(f"{extra_path}: expected a JSON object, got {_json_kind(extra)}")

    train_rows = sorted(_read_split(root, "train", metadata), key=lambda r: (r[1], r[0]))
    val_rows = _read_split(root, "val", metadata)
    if not train_rows:
        raise SceneError(f"{os.path.join(root, 'splits', 'train.json')}: the train split is empty")
    times = [r[1] for r in train_rows]
    if len(set(times)) != len(times):
        raise SceneError(
            f"{os.path.join(root, 'splits', 'train.json')}: several training frames share a time_id"
        )
    max_t = max(times)
    for name, t, _ in val_rows:
        if not 0 <= t <= max_t:
            raise SceneError(
                f"{os.path.join(root, 'splits', 'val.json')}: frame {name!r} has time_id {t} outside the "
                f"training times 0..{max_t}"
            )

    has_depth = use_depth and os.path.isdir(os.path.join(root, "depth", f"{factor}x"))
    undistorted: list = []
    cams, rgb, depths, _ = _load_frames(
        root, factor, train_rows, info, want_depth=has_depth, covisible_dir=None, undistorted=undistorted
    )
    depth = np.stack(depths).astype(np.float32) if has_depth else None
    if depth is not None:
        _check_depth_units(root, factor, depth, info)
    train = Frames(
        rgb=jnp.asarray(rgb),
        cameras=cams,
        times=jnp.asarray(np.array(times, np.float32)),
        depth=None if depth is None else jnp.asarray(depth),
        mask=None,
    )

    val = None
    cov_dir = None
    empty_covisible: list = []
    if val_rows:
        cov_dir = find_covisible_dir(root, factor, covisible_dirs)
        if cov_dir is None:
            tried = ", ".join(covisible_dirs or (f"covisible/{factor}x/val",))
            raise SceneError(f"{root}: no covisible masks for the val split (looked for {tried})")
        vcams, vrgb, _, vmasks = _load_frames(
            root, factor, val_rows, info, want_depth=False, covisible_dir=cov_dir, undistorted=undistorted
        )
        if (vcams.width, vcams.height) != (cams.width, cams.height):
            raise SceneError(
                f"{root}: val frames are {vcams.width}x{vcams.height} but training frames are "
                f"{cams.width}x{cams.height} at {factor}x"
            )
        val = Frames(
            rgb=jnp.asarray(vrgb),
            cameras=vcams,
            times=jnp.asarray(np.array([r[1] for r in val_rows], np.float32)),
            depth=None,
            mask=jnp.asarray(np.stack(vmasks).astype(np.float32)),
        )
        empty_covisible = [r[0] for r, m in zip(val_rows, vmasks, strict=True) if not np.any(m > 0.5)]
        if empty_covisible:
            listed = ", ".join(empty_covisible[:3]) + (", ..." if len(empty_covisible) > 3 else "")
            print(
                f"[iphone] warning: {cov_dir}: {len(empty_covisible)} of {len(val_rows)} val covisible masks "
                f"are empty ({listed}); those frames are left out of mpsnr / mssim / mlpips",
                flush=True,
            )

    points = _read_points(root, info) if use_points else None
    point_colors = None if points is None else _color_points(points, train)
    return IPhoneScene(
        name=os.path.basename(root.rstrip(os.sep)),
        root=root,
        factor=factor,
        info=info,
        train=train,
        val=val,
        train_names=tuple(r[0] for r in train_rows),
        train_time_ids=tuple(times),
        val_names=tuple(r[0] for r in val_rows),
        val_camera_ids=tuple(r[2] for r in val_rows),
        val_time_ids=tuple(r[1] for r in val_rows),
        points=points,
        point_colors=point_colors,
        undistorted=tuple(undistorted),
        covisible_dir=cov_dir,
        extra=extra,
        empty_covisible=tuple(empty_covisible),
    )


# ----------------------------------------------------------------------------------------------------------
# The published evaluation protocols (which resolution and covisible masks a table uses) and loading helpers.
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One published evaluation protocol on the DyCheck iPhone set."""

    name: str
    factor: int  # image downsampling factor of rgb/<f>x and covisible/<f>x
    scenes: tuple  # the scenes its tables average over
    covisible_dirs: tuple  # folders (relative to the scene) searched in order for the val covisible masks
    reference: str


PROTOCOLS = {
    "dycheck": Protocol(
        name="dycheck",
        factor=2,
        scenes=("apple", "block", "paper-windmill", "space-out", "spin", "teddy", "wheel"),
        covisible_dirs=("covisible/2x/val",),
        reference="Gao et al., Monocular Dynamic View Synthesis: A Reality Check (NeurIPS 2022)",
    ),
    "som": Protocol(
        name="som",
        factor=1,
        scenes=("apple", "block", "paper-windmill", "spin", "teddy"),
        covisible_dirs=("flow3d_preprocessed/covisible/1x/val", "covisible/1x/val"),
        reference="Wang et al., Shape of Motion: 4D Reconstruction from a Single Video (2024)",
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"data.protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def resolve_factor(config: ml_collections.ConfigDict, protocol: Protocol) -> int:
    f = config.data.factor
    if f is None:
        return protocol.factor
    if int(f) != protocol.factor:
        raise ValueError(
            f"data.factor={f} contradicts protocol {protocol.name!r}, which evaluates at factor "
            f"{protocol.factor}; drop --config.data.factor or pick another protocol ({', '.join(PROTOCOLS)})"
        )
    return int(f)


def extra_points(scene: IPhoneScene, max_points: int, seed: int):
    """(points (M, 3), colours (M, 3)) from points.npy, at most max_points (seeded subsample), or None."""
    if scene.points is None or max_points <= 0 or len(scene.points) == 0:
        return None
    pts, cols = scene.points, scene.point_colors
    if len(pts) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(pts), max_points, replace=False))
        pts, cols = pts[keep], cols[keep]
    return pts, cols
