"""The compact 4D scene format `.a4d`: canonical Gaussians + motion-basis trajectories + weights + cameras.

One file replaces a per-frame PLY sequence: the Gaussians are stored once (at the canonical frame) and every
frame is recovered by the motion model (`motion.apply_motion`). The byte layout is specified in
docs/format.md; this module is its reference writer and reader.

    write_a4d(path, scene)      Scene -> file, atomically (float16 where it is harmless, see PRECISIONS)
    read_a4d(path) -> Scene     file -> Scene; any defect is an A4DFormatError (an InputError) naming the file
    scene_from_state(...)       the active Gaussians of a TrainState (+ ModelSpec, cameras) as a Scene
    Scene.splats_at(t)          renderer input at time t (the same maths as training)

Reading a file imports numpy only: the methods that build JAX objects import the model, renderer and camera
modules when called (the lazy imports below, each marked), so tools that only inspect .a4d files stay light.
A run's workdir becomes a Scene with io/workdir.py's scene_from_workdir.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct as pystruct
import zlib

import numpy as np

from any4d_jax import files
from any4d_jax.errors import InputError

MAGIC = b"A4D\x00"
VERSION = (1, 0)  # (major, minor): a reader reads every minor version of its major version
PREAMBLE = pystruct.Struct("<4sHHII")  # magic, major, minor, header length, header CRC-32
ALIGN = 16  # the header is padded, and every array starts, at a multiple of this many bytes

# Storage type of every array per precision preset. float16 is used where it costs < 0.1 dB (measured in
# tests/io/test_a4d.py and the issue note); positions and trajectories stay float32.
PRECISIONS = {
    "mixed": {"quats": "f2", "scales": "f2", "opacities": "f2", "sh": "f2", "weights": "f2"},
    "float32": {},
}
ARRAY_ORDER = (
    "means",
    "quats",
    "scales",
    "opacities",
    "sh",
    "weights",
    "generator",
    "learnable",
    "generator_pivots",
    "learnable_pivots",
    "camera_viewmats",
    "camera_Ks",
    "camera_times",
)
_DTYPES = {"f4": np.dtype("<f4"), "f2": np.dtype("<f2")}
# motion.TIME_BASES (not imported: reading an .a4d needs numpy only)
TIME_BASES = ("per_frame", "dct", "bspline")
# The scene keys a reader needs (Scene.meta: motion_config, cameras, the viewer); "source" is optional.
META_KEYS = (
    "num_frames",
    "canonical_frame",
    "time_basis",
    "num_time_coeffs",
    "fps",
    "width",
    "height",
    "background",
)
COUNT_KEYS = ("num_gaussians", "sh_degree", "num_generator_channels", "num_learnable_bases", "num_cameras")
HEADER_KEYS = ("version", *COUNT_KEYS, *META_KEYS, "arrays", "payload_bytes", "payload_crc32")
# Header keys that are the file's own (not Scene.meta): a Scene's meta may not set them.
RESERVED_KEYS = frozenset(
    {"format", "version", *COUNT_KEYS, "arrays", "payload_bytes", "payload_crc32", *ARRAY_ORDER}
)


class A4DFormatError(InputError):
    """A file that is not a readable .a4d (wrong magic, newer version, truncated, corrupted, a header key of
    the wrong type or range, NaN/inf values), or a Scene that cannot be written as one. An InputError (so a
    ValueError): str(e) is one line starting with the file's name."""


@dataclasses.dataclass
class Scene:
    """A 4D scene in activated form (numpy, float32 in memory whatever the file stores).

    means:      (N, 3)        canonical centres.              quats:     (N, 4) unit rotations (w, x, y, z).
    scales:     (N, 3)        standard deviations (> 0).      opacities: (N,)   in [0, 1].
    sh:         (N, K, 3)     SH coefficients, K = (d + 1)^2.
    weights:    (N, B)        motion blend weights (the active-basis mask already applied), B = 6 C + B_l.
    generator:  (K_t, C, 6)   generator trajectory coefficients; learnable: (K_t, B_l, 6) learnable twists.
    generator_pivots: (C, 3); learnable_pivots: (B_l, 3).
    camera_viewmats: (F, 4, 4) world-to-camera (OpenCV); camera_Ks: (F, 3, 3); camera_times: (F,) frames.
    meta: num_frames, canonical_frame, time_basis, num_time_coeffs, fps, width, height, background (META_KEYS,
          required) and optionally source = {"step": int, "config_sha256": str}: the checkpoint step exported
          and the sha256 of the run's config.json (io/workdir.py sets it; experiments.view compares it).
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh: np.ndarray
    weights: np.ndarray
    generator: np.ndarray
    learnable: np.ndarray
    generator_pivots: np.ndarray
    learnable_pivots: np.ndarray
    camera_viewmats: np.ndarray
    camera_Ks: np.ndarray
    camera_times: np.ndarray
    meta: dict

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def motion_config(self):
        from any4d_jax.model import motion  # lazy: reading an .a4d needs numpy only

        return motion.MotionConfig(
            num_frames=int(self.meta["num_frames"]),
            num_generator_channels=int(self.generator.shape[1]),
            num_learnable_bases=int(self.learnable.shape[1]),
            time_basis=self.meta["time_basis"],
            num_time_coeffs=int(self.meta["num_time_coeffs"]),
            canonical_frame=int(self.meta["canonical_frame"]),
        )

    def motion_params(self):
        """MotionParams of the scene (every basis active: the file's weights have the mask applied)."""
        import jax.numpy as jnp

        from any4d_jax.model import motion  # lazy: reading an .a4d needs numpy only

        return motion.init_params(
            self.motion_config(),
            self.num_gaussians,
            jnp.asarray(self.weights, jnp.float32),
            (
                jnp.asarray(self.generator_pivots, jnp.float32),
                jnp.asarray(self.learnable_pivots, jnp.float32),
            ),
        ).replace(
            generator=jnp.asarray(self.generator, jnp.float32),
            learnable=jnp.asarray(self.learnable, jnp.float32),
        )

    def splats_at(self, t):
        """Renderer `Splats` of the scene at time t (float frames), moved by `motion.apply_motion`."""
        import jax.numpy as jnp

        from any4d_jax.model import motion  # lazy: reading an .a4d needs numpy only
        from any4d_jax.render.types import Splats  # lazy: reading an .a4d needs numpy only

        means_t, quats_t = motion.apply_motion(
            jnp.asarray(self.means, jnp.float32),
            jnp.asarray(self.quats, jnp.float32),
            self.motion_params(),
            self.motion_config(),
            t,
        )
        return Splats(
            means=means_t,
            quats=quats_t,
            scales=jnp.asarray(self.scales, jnp.float32),
            opacities=jnp.asarray(self.opacities, jnp.float32),
            colors=jnp.asarray(self.sh, jnp.float32),
        )

    def cameras(self):
        """The training cameras as a `Camera` pytree (F frames)."""
        from any4d_jax.geometry import cameras  # lazy: reading an .a4d needs numpy only

        return cameras.make_camera(
            self.camera_viewmats, self.camera_Ks, int(self.meta["width"]), int(self.meta["height"])
        )


def scene_from_state(state, spec, cams, times, fps: float) -> Scene:
    """The active Gaussians of a trained state as a Scene.

    state: a TrainState (anything with `params`: ModelParams and `active`); spec: its ModelSpec; cams: the
    training `Camera` (F frames); times: (F,) their frame times.
    """
    return scene_from_params(state.params, state.active, spec.motion, spec.background, cams, times, fps)


def scene_from_params(params, active, motion_cfg, background, cams, times, fps: float) -> Scene:
    """Scene from ModelParams: the active rows, activated; the basis mask (params.motion.mask) is baked into
    the weights, so a reader needs no mask."""
    p = params
    act = np.asarray(active, bool)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    q = np.asarray(p.quats, np.float32)[act]
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    mp = p.motion
    weights = np.asarray(mp.weights, np.float32)[act] * np.asarray(mp.mask, np.float32)
    meta = {
        "num_frames": motion_cfg.num_frames,
        "canonical_frame": motion_cfg.canonical_frame,
        "time_basis": motion_cfg.time_basis,
        "num_time_coeffs": motion_cfg.num_time_params,
        "fps": float(fps),
        "width": int(cams.width),
        "height": int(cams.height),
        "background": [float(x) for x in background],
    }
    return Scene(
        means=np.asarray(p.means, np.float32)[act],
        quats=q,
        scales=np.exp(np.asarray(p.log_scales, np.float32)[act]),
        opacities=sig(np.asarray(p.opacity_logits, np.float32)[act]),
        sh=np.asarray(p.sh, np.float32)[act],
        weights=weights,
        generator=np.asarray(mp.generator, np.float32),
        learnable=np.asarray(mp.learnable, np.float32),
        generator_pivots=np.asarray(mp.generator_pivots, np.float32),
        learnable_pivots=np.asarray(mp.learnable_pivots, np.float32),
        camera_viewmats=np.asarray(cams.viewmat, np.float32).reshape(-1, 4, 4),
        camera_Ks=np.asarray(cams.K, np.float32).reshape(-1, 3, 3),
        camera_times=np.asarray(times, np.float32).reshape(-1),
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------------------
# Validation. Every defect is an A4DFormatError whose message is one line starting with the file's name; the
# writer runs the same checks, so what write_a4d writes read_a4d reads.
# ---------------------------------------------------------------------------------------------------------

_MAX_COUNT = 2**31 - 1  # counts, sizes and frames: int32 (what the renderer and the browser index with)
_MAX_BYTES = 2**63 - 1
_MAX_FPS = 10**6
_MAX_IMAGE_SIDE = 2**16
_NDIM = {
    "means": 2,
    "quats": 2,
    "scales": 2,
    "opacities": 1,
    "sh": 3,
    "weights": 2,
    "generator": 3,
    "learnable": 3,
    "generator_pivots": 2,
    "learnable_pivots": 2,
    "camera_viewmats": 3,
    "camera_Ks": 3,
    "camera_times": 1,
}


def _show(value, limit: int = 48) -> str:
    """A JSON value for an error message: one line (repr escapes newlines), at most `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int beyond the float range
        return False


def _int_key(header: dict, key: str, lo: int, hi: int, name: str) -> int:
    v = header[key]
    if not _is_int(v) or not lo <= v <= hi:
        want = "a non-negative integer" if (lo, hi) == (0, _MAX_BYTES) else f"an integer in {lo}..{hi}"
        raise A4DFormatError(f"{name}: header key {key} must be {want}, got {_show(v)}")
    return v


def expected_shapes(header: dict) -> dict[str, tuple[int, ...]]:
    """Every array's shape, from the header's counts (checked by `_check_header` first)."""
    n, c, bl = header["num_gaussians"], header["num_generator_channels"], header["num_learnable_bases"]
    kt, f, k = header["num_time_coeffs"], header["num_cameras"], (header["sh_degree"] + 1) ** 2
    return {
        "means": (n, 3),
        "quats": (n, 4),
        "scales": (n, 3),
        "opacities": (n,),
        "sh": (n, k, 3),
        "weights": (n, 6 * c + bl),
        "generator": (kt, c, 6),
        "learnable": (kt, bl, 6),
        "generator_pivots": (c, 3),
        "learnable_pivots": (bl, 3),
        "camera_viewmats": (f, 4, 4),
        "camera_Ks": (f, 3, 3),
        "camera_times": (f,),
    }


def _check_meta(header: dict, name: str) -> None:
    """The scene keys (num_frames, ..., source) of a header or of a Scene.meta."""
    missing = [k for k in META_KEYS if k not in header]
    if missing:
        raise A4DFormatError(f"{name}: the header lacks {', '.join(missing)}")
    num_frames = _int_key(header, "num_frames", 1, _MAX_COUNT, name)
    _int_key(header, "canonical_frame", 0, num_frames - 1, name)
    basis = header["time_basis"]
    if not isinstance(basis, str) or basis not in TIME_BASES:
        raise A4DFormatError(
            f"{name}: header key time_basis must be one of {', '.join(TIME_BASES)}, got {_show(basis)}"
        )
    kt = _int_key(header, "num_time_coeffs", 1, _MAX_COUNT, name)
    if basis == "per_frame" and kt != num_frames:
        raise A4DFormatError(
            f"{name}: time_basis per_frame needs num_time_coeffs = num_frames ({num_frames}), got {kt}"
        )
    if basis == "bspline" and kt < 4:
        raise A4DFormatError(f"{name}: time_basis bspline needs num_time_coeffs >= 4, got {kt}")
    fps = header["fps"]
    if not _is_finite_number(fps) or not 0 < fps <= _MAX_FPS:
        raise A4DFormatError(
            f"{name}: header key fps must be a positive number up to {_MAX_FPS}, got {_show(fps)}"
        )
    _int_key(header, "width", 1, _MAX_IMAGE_SIDE, name)
    _int_key(header, "height", 1, _MAX_IMAGE_SIDE, name)
    bg = header["background"]
    if not isinstance(bg, list) or len(bg) != 3 or not all(_is_finite_number(x) for x in bg):
        raise A4DFormatError(f"{name}: header key background must be [r, g, b] (3 numbers), got {_show(bg)}")
    if "source" in header:
        src = header["source"]
        if not isinstance(src, dict) or not {"step", "config_sha256"} <= set(src):
            raise A4DFormatError(
                f'{name}: header key source must be {{"step": int, "config_sha256": str}}, got {_show(src)}'
            )
        if not _is_int(src["step"]) or not 0 <= src["step"] <= _MAX_BYTES:
            raise A4DFormatError(
                f"{name}: source.step must be a non-negative integer, got {_show(src['step'])}"
            )
        sha = src["config_sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
            raise A4DFormatError(
                f"{name}: source.config_sha256 must be 64 lowercase hex digits, got {_show(sha)}"
            )


def _check_header(header, name: str) -> None:
    """Every key a reader uses, its type and range; the array specs against the counts. The payload itself
    (its length, CRC and values) is checked by from_bytes."""
    if not isinstance(header, dict) or header.get("format") != "a4d":
        raise A4DFormatError(f'{name}: the header is not an a4d header (no "format": "a4d")')
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise A4DFormatError(f"{name}: the header lacks {', '.join(missing)}")
    version = header["version"]
    if not (isinstance(version, list) and len(version) == 2 and all(_is_int(v) for v in version)):
        raise A4DFormatError(f"{name}: header key version must be [major, minor], got {_show(version)}")
    if not all(0 <= v <= 0xFFFF for v in version):
        raise A4DFormatError(
            f"{name}: header key version must be two integers in 0..65535, got {_show(version)}"
        )
    _int_key(header, "payload_bytes", 0, _MAX_BYTES, name)
    _int_key(header, "payload_crc32", 0, 2**32 - 1, name)
    for key in ("num_gaussians", "num_generator_channels", "num_learnable_bases", "num_cameras"):
        _int_key(header, key, 0, _MAX_COUNT, name)
    _int_key(header, "sh_degree", 0, 3, name)
    _check_meta(header, name)
    arrays = header["arrays"]
    if not isinstance(arrays, dict):
        raise A4DFormatError(f"{name}: header key arrays must be an object, got {_show(arrays)}")
    for key, want in expected_shapes(header).items():
        spec = arrays.get(key)
        if spec is None:
            raise A4DFormatError(f"{name}: the header lists no array {key!r}")
        if not isinstance(spec, dict) or not {"dtype", "shape", "offset"} <= set(spec):
            raise A4DFormatError(
                f'{name}: array {key!r} must be {{"dtype": ..., "shape": [...], "offset": ...}}, '
                f"got {_show(spec)}"
            )
        dtype, shape, offset = spec["dtype"], spec["shape"], spec["offset"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise A4DFormatError(
                f"{name}: array {key!r} has dtype {_show(dtype)}, expected one of {', '.join(_DTYPES)}"
            )
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise A4DFormatError(
                f"{name}: array {key!r} has shape {_show(shape)}, expected a list of non-negative integers"
            )
        if tuple(shape) != want:
            raise A4DFormatError(
                f"{name}: array {key!r} has shape {_show(shape)}, the header counts give {list(want)}"
            )
        if not _is_int(offset) or offset < 0:
            raise A4DFormatError(
                f"{name}: array {key!r} has offset {_show(offset)}, expected a non-negative integer"
            )
        end = offset + math.prod(want) * _DTYPES[dtype].itemsize
        if end > header["payload_bytes"]:
            raise A4DFormatError(
                f"{name}: array {key!r} runs past the payload ({end} > {header['payload_bytes']} bytes)"
            )


def _check_scene(scene: Scene, name: str = "<scene>") -> None:
    """The arrays' shapes agree with each other (the Scene docstring); A4DFormatError naming `name`."""
    if not isinstance(scene.meta, dict):
        raise A4DFormatError(f"{name}: scene meta must be a dict, got {type(scene.meta).__name__}")
    shapes = {}
    for key, ndim in _NDIM.items():
        shape = tuple(np.shape(getattr(scene, key)))
        if len(shape) != ndim:
            raise A4DFormatError(f"{name}: {key} has shape {shape}, expected {ndim} dimensions")
        shapes[key] = shape
    n = shapes["means"][0]
    kt, c = shapes["generator"][:2]
    bl = shapes["learnable"][1]
    f = shapes["camera_times"][0]
    k = shapes["sh"][1]
    want = {
        "means": (n, 3),
        "quats": (n, 4),
        "scales": (n, 3),
        "opacities": (n,),
        "sh": (n, k, 3),
        "weights": (n, 6 * c + bl),
        "generator": (kt, c, 6),
        "learnable": (kt, bl, 6),
        "generator_pivots": (c, 3),
        "learnable_pivots": (bl, 3),
        "camera_viewmats": (f, 4, 4),
        "camera_Ks": (f, 3, 3),
        "camera_times": (f,),
    }
    for key, shape in want.items():
        if shapes[key] != shape:
            raise A4DFormatError(f"{name}: {key} has shape {shapes[key]}, expected {shape}")
    if k not in (1, 4, 9, 16):
        raise A4DFormatError(f"{name}: sh has {k} coefficients per channel, expected 1, 4, 9 or 16")


def _pad(n: int) -> int:
    return -n % ALIGN


def to_bytes(scene: Scene, precision: str = "mixed", name: str = "<scene>") -> bytes:
    """The whole file as bytes (see docs/format.md). A4DFormatError naming `name` for a scene the reader would
    refuse: inconsistent shapes, missing or bad meta, NaN/inf values (or values beyond float16 in `mixed`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"a4d: precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    _check_scene(scene, name)
    clash = sorted(set(scene.meta) & RESERVED_KEYS)
    if clash:
        raise A4DFormatError(f"{name}: scene meta must not set the header's own keys ({', '.join(clash)})")
    kinds = PRECISIONS[precision]
    arrays, blobs, offset = {}, [], 0
    for key in ARRAY_ORDER:
        code = kinds.get(key, "f4")
        src = np.asarray(getattr(scene, key))
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
            stored = np.ascontiguousarray(src, dtype=_DTYPES[code])
        if not np.all(np.isfinite(stored)):
            why = "holds NaN or inf" if not np.all(np.isfinite(src)) else "exceeds the float16 range"
            fix = "; write it with precision float32" if why.startswith("exceeds") else ""
            raise A4DFormatError(f"{name}: array {key!r} {why}{fix}")
        data = stored.tobytes()
        arrays[key] = {"dtype": code, "shape": list(src.shape), "offset": offset}
        blobs.append(data + b"\x00" * _pad(len(data)))
        offset += len(data) + _pad(len(data))
    payload = b"".join(blobs)
    header = {
        "format": "a4d",
        "version": list(VERSION),
        "num_gaussians": scene.num_gaussians,
        "sh_degree": int(round(np.sqrt(scene.sh.shape[1]))) - 1,
        "num_generator_channels": int(scene.generator.shape[1]),
        "num_learnable_bases": int(scene.learnable.shape[1]),
        "num_cameras": int(scene.camera_times.shape[0]),
        **files.finite_json(dict(scene.meta)),  # numpy scalars -> numbers; NaN/inf -> null (refused below)
        "arrays": arrays,
        "payload_bytes": len(payload),
        "payload_crc32": zlib.crc32(payload),
    }
    _check_header(header, name)
    try:
        text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise A4DFormatError(f"{name}: scene meta is not JSON ({_one_line(e)})") from None
    hbytes = text.encode("utf-8")
    hbytes += b" " * _pad(PREAMBLE.size + len(hbytes))  # JSON allows trailing spaces; aligns the payload
    pre = PREAMBLE.pack(MAGIC, VERSION[0], VERSION[1], len(hbytes), zlib.crc32(hbytes))
    return pre + hbytes + payload


def write_a4d(path, scene: Scene, precision: str = "mixed") -> int:
    """Write `scene` to `path` atomically (files.atomic_write: a crash leaves the previous file or none,
    never a partial one); returns the number of bytes written."""
    data = to_bytes(scene, precision, str(path))
    with files.atomic_write(path, "wb") as f:
        f.write(data)
    return len(data)


def _one_line(e: BaseException) -> str:
    """An exception's text as one line."""
    return " ".join(str(e).split()) or type(e).__name__


def from_bytes(data: bytes, name: str = "<bytes>") -> Scene:
    """Parse a whole .a4d file held in memory. Raises A4DFormatError naming `name` on any defect (and no
    other exception, whatever the bytes)."""
    if len(data) < PREAMBLE.size:
        raise A4DFormatError(f"{name}: truncated ({len(data)} bytes; an .a4d file starts with 16)")
    magic, major, minor, hlen, hcrc = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise A4DFormatError(f"{name}: not an .a4d file (magic {magic!r}, expected {MAGIC!r})")
    if major > VERSION[0]:
        raise A4DFormatError(
            f"{name}: written by format version {major}.{minor}, newer than this reader "
            f"({VERSION[0]}.x); upgrade any4d_jax to read it"
        )
    if major < 1:
        raise A4DFormatError(f"{name}: unknown format version {major}.{minor}")
    start = PREAMBLE.size + hlen
    if len(data) < start:
        raise A4DFormatError(f"{name}: truncated inside the header ({len(data)} of {start}+ bytes)")
    hbytes = data[PREAMBLE.size : start]
    if zlib.crc32(hbytes) != hcrc:
        raise A4DFormatError(f"{name}: corrupted header (CRC-32 mismatch); re-export the scene")
    try:
        header = files.parse_json(hbytes.decode("utf-8"), name)
    except InputError as e:  # parse_json's line starts with `name: `
        text = str(e)
        raise A4DFormatError(f"{name}: corrupted header ({text.removeprefix(name + ': ')})") from None
    except ValueError as e:  # not UTF-8; an integer of more than 4300 digits
        raise A4DFormatError(f"{name}: corrupted header ({_one_line(e)})") from None
    _check_header(header, name)
    payload = data[start:]
    need = header["payload_bytes"]
    if len(payload) < need:
        raise A4DFormatError(f"{name}: truncated ({len(data)} bytes, the header says {start + need})")
    payload = payload[:need]
    if zlib.crc32(payload) != header["payload_crc32"]:
        raise A4DFormatError(f"{name}: corrupted data (payload CRC-32 mismatch); re-export the scene")
    out = {}
    for key in ARRAY_ORDER:
        spec = header["arrays"][key]
        dt, shape = _DTYPES[spec["dtype"]], tuple(spec["shape"])
        arr = np.frombuffer(payload, dt, math.prod(shape), spec["offset"]).reshape(shape).astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise A4DFormatError(f"{name}: array {key!r} holds NaN or inf values; re-export the scene")
        out[key] = arr
    meta = {k: v for k, v in header.items() if k not in RESERVED_KEYS}
    scene = Scene(**out, meta=meta)
    _check_scene(scene, name)
    return scene


def read_a4d(path) -> Scene:
    """Read an .a4d file (any 1.x version). Raises A4DFormatError (one line naming the path) on a defective
    file, and on one that cannot be opened (missing, a folder, no permission)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise A4DFormatError(f"{path}: cannot be read ({e.strerror or _one_line(e)})") from None
    return from_bytes(data, str(path))
