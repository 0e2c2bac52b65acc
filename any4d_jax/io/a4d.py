"""The compact 4D scene format `.a4d`: canonical Gaussians + motion-basis trajectories + weights + cameras.

One file replaces a per-frame PLY sequence: the Gaussians are stored once (at the canonical frame) and every
frame is recovered by the motion model (`motion.apply_motion`). The byte layout is specified in
docs/format.md; this module is its reference writer and reader.

    write_a4d(path, scene)      Scene -> file (float16 where it is harmless, see PRECISIONS)
    read_a4d(path) -> Scene     file -> Scene, with a clear A4DFormatError for files it cannot read
    scene_from_state(...)       the active Gaussians of a TrainState (+ ModelSpec, cameras) as a Scene
    Scene.splats_at(t)          renderer input at time t (the same maths as training)

Reading a file imports numpy only: the methods that build JAX objects import the model, renderer and camera
modules when called (the lazy imports below, each marked), so tools that only inspect .a4d files stay light.
A run's workdir becomes a Scene with io/workdir.py's scene_from_workdir.
"""

from __future__ import annotations

import dataclasses
import json
import struct as pystruct
import zlib

import numpy as np

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


class A4DFormatError(ValueError):
    """A file that is not a readable .a4d (wrong magic, newer version, truncated, corrupted)."""


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
    meta: num_frames, canonical_frame, time_basis, num_time_coeffs, fps, width, height, background, ...
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


def _check_scene(scene: Scene) -> None:
    n = scene.num_gaussians
    kt, c, _ = scene.generator.shape
    bl = scene.learnable.shape[1]
    f = scene.camera_times.shape[0]
    want = {
        "means": (n, 3),
        "quats": (n, 4),
        "scales": (n, 3),
        "opacities": (n,),
        "sh": (n, scene.sh.shape[1], 3),
        "weights": (n, 6 * c + bl),
        "generator": (kt, c, 6),
        "learnable": (kt, bl, 6),
        "generator_pivots": (c, 3),
        "learnable_pivots": (bl, 3),
        "camera_viewmats": (f, 4, 4),
        "camera_Ks": (f, 3, 3),
        "camera_times": (f,),
    }
    for name, shape in want.items():
        got = tuple(getattr(scene, name).shape)
        if got != shape:
            raise ValueError(f"a4d: {name} has shape {got}, expected {shape}")
    if scene.sh.shape[1] not in (1, 4, 9, 16):
        raise ValueError(f"a4d: sh has {scene.sh.shape[1]} coefficients per channel, expected 1, 4, 9 or 16")


def _pad(n: int) -> int:
    return -n % ALIGN


def to_bytes(scene: Scene, precision: str = "mixed") -> bytes:
    """The whole file as bytes (see docs/format.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"a4d: precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    _check_scene(scene)
    kinds = PRECISIONS[precision]
    arrays, blobs, offset = {}, [], 0
    for name in ARRAY_ORDER:
        code = kinds.get(name, "f4")
        data = np.ascontiguousarray(getattr(scene, name), dtype=_DTYPES[code]).tobytes()
        arrays[name] = {"dtype": code, "shape": list(getattr(scene, name).shape), "offset": offset}
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
        **{k: v for k, v in scene.meta.items()},
        "arrays": arrays,
        "payload_bytes": len(payload),
        "payload_crc32": zlib.crc32(payload),
    }
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * _pad(PREAMBLE.size + len(hbytes))  # JSON allows trailing spaces; aligns the payload
    pre = PREAMBLE.pack(MAGIC, VERSION[0], VERSION[1], len(hbytes), zlib.crc32(hbytes))
    return pre + hbytes + payload


def write_a4d(path, scene: Scene, precision: str = "mixed") -> int:
    """Write `scene` to `path`; returns the number of bytes written."""
    data = to_bytes(scene, precision)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def from_bytes(data: bytes, name: str = "<bytes>") -> Scene:
    """Parse a whole .a4d file held in memory. Raises A4DFormatError naming `name` on any defect."""
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
        header = json.loads(hbytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise A4DFormatError(f"{name}: corrupted header ({e})") from None
    if not isinstance(header, dict) or header.get("format") != "a4d":
        raise A4DFormatError(f'{name}: the header is not an a4d header (no "format": "a4d")')
    missing = [k for k in ("arrays", "payload_bytes", "payload_crc32") if k not in header]
    if missing:
        raise A4DFormatError(f"{name}: the header lacks {', '.join(missing)}")
    payload = data[start:]
    need = int(header["payload_bytes"])
    if len(payload) < need:
        raise A4DFormatError(f"{name}: truncated ({len(data)} bytes, the header says {start + need})")
    payload = payload[:need]
    if zlib.crc32(payload) != int(header["payload_crc32"]):
        raise A4DFormatError(f"{name}: corrupted data (payload CRC-32 mismatch); re-export the scene")
    out = {}
    for key in ARRAY_ORDER:
        spec = header["arrays"].get(key)
        if spec is None:
            raise A4DFormatError(f"{name}: the header lists no array {key!r}")
        dt = _DTYPES.get(spec["dtype"])
        if dt is None:
            raise A4DFormatError(f"{name}: array {key!r} has unknown dtype {spec['dtype']!r}")
        count = int(np.prod(spec["shape"], dtype=np.int64))
        end = spec["offset"] + count * dt.itemsize
        if end > need:
            raise A4DFormatError(f"{name}: array {key!r} runs past the payload ({end} > {need} bytes)")
        arr = np.frombuffer(payload, dt, count, spec["offset"]).reshape(spec["shape"])
        out[key] = arr.astype(np.float32)
    known = set(ARRAY_ORDER) | {"arrays", "payload_bytes", "payload_crc32", "format", "version"}
    known |= {"num_gaussians", "sh_degree", "num_generator_channels", "num_learnable_bases", "num_cameras"}
    meta = {k: v for k, v in header.items() if k not in known}
    scene = Scene(**out, meta=meta)
    _check_scene(scene)
    return scene


def read_a4d(path) -> Scene:
    """Read an .a4d file (any 1.x version). Raises A4DFormatError with the path on a defective file."""
    with open(path, "rb") as f:
        return from_bytes(f.read(), str(path))
