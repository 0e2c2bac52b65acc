"""Camera trajectories: one camera per frame, the same object for generation and for reconstruction.

Conventions (OpenCV, as everywhere in any4d_jax):

              z  (forward: the camera looks down +z)
             /
            /
           o-------> x  (right, in the image)
           |
           |
           v
           y  (down, in the image)

- `viewmat` (F, 4, 4) maps WORLD to CAMERA coordinates: X_cam = R X_world + t; the camera centre is
  C = -R^T t, and the rows of R are the camera's x, y, z axes written in world coordinates.
- `K` (F, 3, 3) holds pixel intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]]; the centre of pixel (col, row)
  is (col + 0.5, row + 0.5).
- The world is right-handed with *up = -y* (the default `up` of `look_at`): a camera above the scene has a
  negative y coordinate.
- JSON keyframes store the camera-to-world pose: `position` = C and `quaternion` (w, x, y, z) = the rotation
  R^T (camera axes -> world). Files written with `"convention": "opengl"` (x right, y up, z backward, as in
  NeRF/Blender) are converted on load: only the camera axes are flipped, world coordinates are kept as given.

Constructors: `orbit`, `dolly`, `pan`, `spiral`, `static`, `from_keyframes`, `from_json`; `Trajectory.to_json`
writes every frame as a keyframe (atomically), so `from_json(t.to_json())` gives `t` back. A keyframe file is
user input: it is read with bounded size and nesting (`files.read_json`), frame counts and image sizes are
bounded (MAX_FRAMES, MAX_SIDE), and every defect is an `InputError` whose one line names the file and key.
Interpolation between keyframes is SE(3): slerp of the rotation, linear interpolation of the camera centre and
of the intrinsics.
The constructors run eagerly in float64 numpy and return float32 arrays.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput
from any4d_jax.geometry.cameras import Camera

JSON_FORMAT = "any4d_jax.trajectory"
JSON_VERSION = 1  # the only version this reader knows (what to_json writes)
MAX_FRAMES = 10_000  # frames of a trajectory (a 10-minute clip at 16 fps)
MAX_SIDE = 16_384  # image width / height in pixels
MAX_JSON_BYTES = 16 * 2**20  # a keyframe per frame at MAX_FRAMES is about 2 MB
_TOP_KEYS = {"format", "version", "convention", "width", "height", "num_frames", "fov_deg", "keyframes"}
_KEY_KEYS = {"time", "position", "look_at", "up", "quaternion", "fov_deg", "intrinsics"}
_CONVENTIONS = ("opencv", "opengl")


@struct.dataclass
class Trajectory(Camera):
    """The cameras of a video, one per frame (a `Camera` whose batch is the frame axis).

    viewmat: (F, 4, 4) float32 world-to-camera (OpenCV: x right, y down, z forward).
    K:       (F, 3, 3) float32 pixel intrinsics.
    width, height: static ints, the image size the intrinsics refer to.
    Build it with the constructors of this module or `make_trajectory` (checked), not directly.
    """

    @property
    def num_frames(self) -> int:
        return int(self.viewmat.shape[0])

    def relative_to_first(self) -> Trajectory:
        """The same motion in the first camera's frame: viewmat[0] becomes the identity.

        viewmat_i' = viewmat_i @ inv(viewmat_0) (world points are re-expressed as X' = viewmat_0 X), the
        convention of camera-conditioned video models.
        """
        v0_inv = np.linalg.inv(np.asarray(self.viewmat[0], np.float64))
        vm = np.asarray(self.viewmat, np.float64) @ v0_inv
        return self.replace(viewmat=jnp.asarray(vm, jnp.float32))

    def rescale(self, width: int, height: int, mode: str = "crop") -> Trajectory:
        """Intrinsics that follow an image resize to (width, height).

        mode "stretch": x scales by width / self.width and y by height / self.height (pixels may stop being
        square). mode "crop": scale both axes by s = max(width / W, height / H), then crop the centre
        (what `generate.images.fit_image` does to an image with the same arguments).
        """
        width, height = _positive_size(width, height, "Trajectory.rescale")
        K = np.asarray(self.K, np.float64).copy()
        if mode == "stretch":
            sx, sy = width / self.width, height / self.height
            K[:, 0, :] *= sx
            K[:, 1, :] *= sy
        elif mode == "crop":
            s = max(width / self.width, height / self.height)
            ox, oy = 0.5 * (self.width * s - width), 0.5 * (self.height * s - height)
            K[:, :2, :] *= s
            K[:, 0, 2] -= ox
            K[:, 1, 2] -= oy
        else:
            raise ValueError(f"Trajectory.rescale: mode must be 'crop' or 'stretch', got {mode!r}")
        K[:, 2, :] = (0.0, 0.0, 1.0)
        return Trajectory(viewmat=self.viewmat, K=jnp.asarray(K, jnp.float32), width=width, height=height)

    def pluecker(self, height: int | None = None, width: int | None = None) -> jnp.ndarray:
        """(F, H, W, 6) float32 Pluecker rays (o x d, d) through every pixel centre, in world coordinates.

        o is the camera centre and d the unit ray direction. An (H, W) other than the trajectory's size uses
        stretched intrinsics (`rescale(W, H, "stretch")`). Call `relative_to_first()` first for models that
        expect poses relative to the first frame.
        """
        height = self.height if height is None else int(height)
        width = self.width if width is None else int(width)
        traj = (
            self if (width, height) == (self.width, self.height) else self.rescale(width, height, "stretch")
        )
        return _pluecker(traj.viewmat, traj.K, height, width)

    def resample(self, num_frames: int) -> Trajectory:
        """The same path interpolated (SE(3)) to `num_frames` frames, first and last frames kept."""
        c2w = _c2w(self)
        return _interpolate(
            np.arange(self.num_frames, dtype=np.float64),
            c2w[:, :3, :3],
            c2w[:, :3, 3],
            np.asarray(self.K, np.float64),
            np.linspace(0.0, self.num_frames - 1.0, int(num_frames)),
            self.width,
            self.height,
        )

    def to_json(self, path: str | os.PathLike | None = None) -> dict:
        """Every frame as a keyframe (time = frame index, position, quaternion, intrinsics [fx, fy, cx, cy]).

        Returns the dict; also writes it to `path` when given. Skew is not stored (it must be 0).
        """
        c2w = _c2w(self)
        K = np.asarray(self.K, np.float64)
        if np.any(np.abs(K[:, 0, 1]) > 1e-6):
            raise ValueError("Trajectory.to_json: intrinsics with skew cannot be written as keyframes")
        keyframes = [
            {
                "time": float(i),
                "position": [float(x) for x in c2w[i, :3, 3]],
                "quaternion": [float(x) for x in _rotmat_to_quat(c2w[i, :3, :3])],
                "intrinsics": [float(K[i, 0, 0]), float(K[i, 1, 1]), float(K[i, 0, 2]), float(K[i, 1, 2])],
            }
            for i in range(self.num_frames)
        ]
        out = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "convention": "opencv",
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "keyframes": keyframes,
        }
        if path is not None:
            files.write_json(os.fspath(path), out, indent=1)  # atomic: a crash leaves the old file or none
        return out


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _pluecker(viewmat, K, height: int, width: int) -> jnp.ndarray:
    """(F, H, W, 6) rays (o x d, d) of cameras viewmat (F, 4, 4), K (F, 3, 3) through pixel centres."""
    xs = jnp.arange(width, dtype=jnp.float32) + 0.5
    ys = jnp.arange(height, dtype=jnp.float32) + 0.5
    gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
    pix = jnp.stack([gx, gy, jnp.ones_like(gx)], axis=-1)  # (H, W, 3)
    d_cam = jnp.einsum("fij,hwj->fhwi", jnp.linalg.inv(K), pix)
    R = viewmat[:, :3, :3]
    d = jnp.einsum("fji,fhwj->fhwi", R, d_cam)  # R^T d_cam
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    centre = -jnp.einsum("fji,fj->fi", R, viewmat[:, :3, 3])  # -R^T t
    o = jnp.broadcast_to(centre[:, None, None, :], d.shape)
    return jnp.concatenate([jnp.cross(o, d), d], axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Checked construction and small float64 helpers.
# ----------------------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_size(width, height, where: str) -> tuple[int, int]:
    for v in (width, height):
        whole = _is_int(v) or (
            isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer()
        )
        if not whole or not 1 <= int(v) <= MAX_SIDE:
            raise InputError(
                f"{where}: width and height must be integers in [1, {MAX_SIDE}], got {width!r} x {height!r}"
            )
    return int(width), int(height)


def make_trajectory(viewmat, K, width: int, height: int) -> Trajectory:
    """Checked constructor: viewmat (F, 4, 4) rigid world-to-camera, K (F, 3, 3) with positive focals."""
    width, height = _positive_size(width, height, "make_trajectory")
    vm = np.asarray(viewmat, np.float64)
    K = np.asarray(K, np.float64)
    if vm.ndim != 3 or vm.shape[1:] != (4, 4) or vm.shape[0] < 1:
        raise ValueError(f"make_trajectory: viewmat must be (F, 4, 4) with F >= 1, got {vm.shape}")
    if K.shape != (vm.shape[0], 3, 3):
        raise ValueError(f"make_trajectory: K must be {(vm.shape[0], 3, 3)} to match viewmat, got {K.shape}")
    if not (np.all(np.isfinite(vm)) and np.all(np.isfinite(K))):
        raise ValueError("make_trajectory: viewmat and K must be finite")
    R = vm[:, :3, :3]
    if np.max(np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3))) > 1e-3 or np.any(np.linalg.det(R) < 0):
        raise ValueError("make_trajectory: viewmat[:, :3, :3] must be rotations (orthonormal, det +1)")
    if np.max(np.abs(vm[:, 3] - np.array([0.0, 0.0, 0.0, 1.0]))) > 1e-6:
        raise ValueError("make_trajectory: the last row of every viewmat must be [0, 0, 0, 1]")
    if np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
        raise ValueError("make_trajectory: K needs positive focal lengths fx, fy")
    return Trajectory(
        viewmat=jnp.asarray(vm, jnp.float32), K=jnp.asarray(K, jnp.float32), width=width, height=height
    )


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length in pixels of a horizontal field of view over `width` pixels."""
    if not 0.0 < float(fov_deg) < 180.0:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    return 0.5 * width / math.tan(0.5 * math.radians(fov_deg))


def _k_from_fov(num: int, width: int, height: int, fov_deg: float) -> np.ndarray:
    f = focal_from_fov(width, fov_deg)
    K = np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])
    return np.broadcast_to(K, (num, 3, 3)).copy()


def _c2w(traj: Camera) -> np.ndarray:
    """(F, 4, 4) float64 camera-to-world."""
    return np.linalg.inv(np.asarray(traj.viewmat, np.float64))


def _quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """(..., 4) (w, x, y, z) -> (..., 3, 3), float64, normalising first."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """(3, 3) -> (4,) unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method, float64)."""
    tr = np.trace(R)
    cands = np.array([1 + tr, 1 + 2 * R[0, 0] - tr, 1 + 2 * R[1, 1] - tr, 1 + 2 * R[2, 2] - tr])
    i = int(np.argmax(cands))
    s = 2.0 * math.sqrt(max(cands[i], 1e-12))
    if i == 0:
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif i == 1:
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif i == 2:
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def quat_slerp(q0, q1, u) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (w, x, y, z), float64, along the shorter arc.

    q0, q1: (..., 4); u: (...,) in [0, 1]. Returns exactly q0 at u = 0 and (up to sign) q1 at u = 1; falls
    back to normalised linear interpolation when the two are within ~1e-6 rad.
    """
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    u = np.asarray(u, np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_t = np.sin(theta)
    small = sin_t < 1e-6
    safe = np.where(small, 1.0, sin_t)
    a = np.where(small, 1.0 - u, np.sin((1.0 - u) * theta) / safe)
    b = np.where(small, u, np.sin(u * theta) / safe)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _interpolate(key_t, key_R, key_C, key_K, times, width, height) -> Trajectory:
    """SE(3) interpolation of camera-to-world keyframes (rotation slerp, linear centre and intrinsics).

    key_t (K,) strictly increasing; key_R (K, 3, 3) camera-to-world rotations; key_C (K, 3) centres;
    key_K (K, 3, 3); times (F,) inside [key_t[0], key_t[-1]].
    """
    key_t = np.asarray(key_t, np.float64)
    times = np.asarray(times, np.float64)
    if len(key_t) == 1:
        seg, u = np.zeros(len(times), int), np.zeros(len(times))
        nxt = seg
    else:
        seg = np.clip(np.searchsorted(key_t, times, side="right") - 1, 0, len(key_t) - 2)
        nxt = seg + 1
        u = np.clip((times - key_t[seg]) / (key_t[nxt] - key_t[seg]), 0.0, 1.0)
    quats = np.stack([_rotmat_to_quat(r) for r in key_R])
    R = _quat_to_rotmat(quat_slerp(quats[seg], quats[nxt], u))
    # Where u hits a keyframe exactly, use its rotation matrix itself (no quaternion round trip).
    R = np.where((u == 0.0)[:, None, None], key_R[seg], np.where((u == 1.0)[:, None, None], key_R[nxt], R))
    C = (1.0 - u)[:, None] * key_C[seg] + u[:, None] * key_C[nxt]
    K = (1.0 - u)[:, None, None] * key_K[seg] + u[:, None, None] * key_K[nxt]
    vm = np.zeros((len(times), 4, 4))
    Rt = np.swapaxes(R, 1, 2)
    vm[:, :3, :3] = Rt
    vm[:, :3, 3] = -np.einsum("fij,fj->fi", Rt, C)
    vm[:, 3, 3] = 1.0
    return make_trajectory(vm, K, width, height)


def _look_at_np(eyes, targets, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """(F, 4, 4) float64 world-to-camera from eyes/targets (F, 3) (same maths as cameras.look_at)."""
    eyes = np.asarray(eyes, np.float64)
    targets = np.broadcast_to(np.asarray(targets, np.float64), eyes.shape)
    up = np.broadcast_to(np.asarray(up, np.float64), eyes.shape)
    z = targets - eyes
    zn = np.linalg.norm(z, axis=-1, keepdims=True)
    if np.any(zn < 1e-9):
        raise ValueError("look-at: a camera position coincides with its look-at point")
    z = z / zn
    x = np.cross(-up, z)
    xn = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(xn < 1e-9):
        raise ValueError("look-at: the viewing direction is parallel to `up`; pass another `up`")
    x = x / xn
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=-2)
    vm = np.zeros(eyes.shape[:-1] + (4, 4))
    vm[..., :3, :3] = R
    vm[..., :3, 3] = -np.einsum("...ij,...j->...i", R, eyes)
    vm[..., 3, 3] = 1.0
    return vm


def _num(num_frames, where: str = "num_frames") -> int:
    n = num_frames
    whole = _is_int(n) or (isinstance(n, (float, np.floating)) and math.isfinite(n) and float(n).is_integer())
    if not whole or not 1 <= int(n) <= MAX_FRAMES:
        raise InputError(f"{where} must be a positive integer (at most {MAX_FRAMES}), got {num_frames!r}")
    return int(n)


def _vec3(v, name: str) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be 3 finite numbers, got {v!r}")
    return a


# ----------------------------------------------------------------------------------------------------------
# Constructors.
# ----------------------------------------------------------------------------------------------------------


def orbit(
    num_frames: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    radius: float = 2.0,
    arc_deg: float = 30.0,
    elevation_deg: float = 0.0,
    target: Sequence[float] | None = None,
    start_deg: float = 0.0,
) -> Trajectory:
    """A camera on a circle of `radius` around `target`, always looking at it, sweeping `arc_deg` of azimuth.

    Azimuth goes from start_deg to start_deg + arc_deg (positive moves the camera to its right); elevation
    lifts the camera above the target (towards -y). Default target (0, 0, radius): with elevation 0 and
    start 0 the first camera sits at the origin looking down +z.
    """
    n = _num(num_frames)
    target = np.array([0.0, 0.0, radius]) if target is None else _vec3(target, "orbit: target")
    az = np.deg2rad(start_deg + np.linspace(0.0, arc_deg, n))
    el = np.deg2rad(elevation_deg)
    eyes = target + radius * np.stack(
        [np.cos(el) * np.sin(az), -np.sin(el) * np.ones_like(az), -np.cos(el) * np.cos(az)], -1
    )
    return make_trajectory(_look_at_np(eyes, target), _k_from_fov(n, width, height, fov_deg), width, height)


def dolly(
    num_frames: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    distance: float = 0.5,
    start: Sequence[float] = (0.0, 0.0, 0.0),
    target: Sequence[float] = (0.0, 0.0, 2.0),
) -> Trajectory:
    """A camera at `start` looking at `target` that moves straight along its viewing direction.

    distance > 0 dollies in (towards the target), < 0 out; the orientation stays fixed.
    """
    n = _num(num_frames)
    start, target = _vec3(start, "dolly: start"), _vec3(target, "dolly: target")
    fwd = target - start
    if np.linalg.norm(fwd) < 1e-9:
        raise ValueError("dolly: start and target coincide")
    fwd = fwd / np.linalg.norm(fwd)
    eyes = start + np.linspace(0.0, distance, n)[:, None] * fwd
    return make_trajectory(
        _look_at_np(eyes, eyes + fwd), _k_from_fov(n, width, height, fov_deg), width, height
    )


def pan(
    num_frames: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    yaw_deg: float = 30.0,
    pitch_deg: float = 0.0,
    position: Sequence[float] = (0.0, 0.0, 0.0),
) -> Trajectory:
    """A camera fixed at `position` that turns in place from looking down +z.

    yaw_deg > 0 turns right (about the world vertical), pitch_deg > 0 tilts up; both grow linearly.
    """
    n = _num(num_frames)
    position = _vec3(position, "pan: position")
    s = np.linspace(0.0, 1.0, n)
    a, b = np.deg2rad(yaw_deg) * s, np.deg2rad(pitch_deg) * s
    fwd = np.stack([np.sin(a) * np.cos(b), -np.sin(b), np.cos(a) * np.cos(b)], -1)
    eyes = np.broadcast_to(position, fwd.shape)
    return make_trajectory(
        _look_at_np(eyes, eyes + fwd), _k_from_fov(n, width, height, fov_deg), width, height
    )


def spiral(
    num_frames: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    radius: float = 2.0,
    spiral_radius: float = 0.25,
    turns: float = 1.0,
    forward: float = 0.0,
    target: Sequence[float] | None = None,
) -> Trajectory:
    """A camera circling in the image plane (circle of `spiral_radius` through the origin) while it moves
    `forward` along +z, always looking at `target` (default (0, 0, radius)); `turns` full circles."""
    n = _num(num_frames)
    target = np.array([0.0, 0.0, radius]) if target is None else _vec3(target, "spiral: target")
    s = np.linspace(0.0, 1.0, n)
    th = 2.0 * np.pi * turns * s
    eyes = np.stack([spiral_radius * np.sin(th), spiral_radius * (np.cos(th) - 1.0), forward * s], -1)
    return make_trajectory(_look_at_np(eyes, target), _k_from_fov(n, width, height, fov_deg), width, height)


def static(
    num_frames: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    target: Sequence[float] = (0.0, 0.0, 2.0),
) -> Trajectory:
    """The same camera for every frame (a locked-off shot)."""
    n = _num(num_frames)
    eye = np.broadcast_to(_vec3(position, "static: position"), (n, 3))
    vm = _look_at_np(eye, _vec3(target, "static: target"))
    return make_trajectory(vm, _k_from_fov(n, width, height, fov_deg), width, height)


CONSTRUCTORS = {"orbit": orbit, "dolly": dolly, "pan": pan, "spiral": spiral, "static": static}


def novel_view_path(traj: Trajectory, num_frames: int, offset: float, focus_depth: float) -> Trajectory:
    """A path next to `traj` for novel-view videos: `traj` resampled to num_frames, each camera moved on a
    circle of radius `offset` in its own image plane (one turn over the clip) while it keeps looking at the
    point `focus_depth` ahead on its original optical axis."""
    base = traj.resample(num_frames)
    c2w = _c2w(base)
    R, C = c2w[:, :3, :3], c2w[:, :3, 3]
    th = np.linspace(0.0, 2.0 * np.pi, int(num_frames))
    shift_cam = offset * np.stack([np.sin(th), np.cos(th) - 1.0, np.zeros_like(th)], -1)
    eyes = C + np.einsum("fij,fj->fi", R, shift_cam)
    targets = C + focus_depth * R[:, :, 2]
    vm = _look_at_np(eyes, targets, up=-R[:, :, 1])  # keep each camera's own up (no roll)
    return make_trajectory(vm, np.asarray(base.K, np.float64), base.width, base.height)


# ----------------------------------------------------------------------------------------------------------
# Keyframes and JSON.
# ----------------------------------------------------------------------------------------------------------


def _show(value: Any, limit: int = 60) -> str:
    """repr(value) shortened, so that an error message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> float | None:
    """float(value) for a finite JSON number (not a bool, not a string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)  # OverflowError for integers beyond float range
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _numbers(value: Any, n: int, where: str, name: str) -> np.ndarray:
    xs = [_finite(v) for v in value] if isinstance(value, (list, tuple)) else []
    if len(xs) != n or any(x is None for x in xs):
        raise InputError(f"{where}: '{name}' must be {n} finite numbers, got {_show(value)}")
    return np.asarray(xs, np.float64)


def _number(value: Any, where: str, name: str) -> float:
    x = _finite(value)
    if x is None:
        raise InputError(f"{where}: '{name}' must be a finite number, got {_show(value)}")
    return x


def from_keyframes(
    keyframes: Sequence[dict],
    width: int,
    height: int,
    num_frames: int | None = None,
    convention: str = "opencv",
    fov_deg: float | None = None,
    where: str = "keyframes",
) -> Trajectory:
    """Interpolate camera keyframes (SE(3)) to `num_frames` frames evenly spaced in time.

    Each keyframe is a dict with `position` (camera centre, 3 numbers) and exactly one of `look_at` (a point,
    with an optional `up`, default the world up (0, -1, 0) for opencv, (0, 1, 0) for opengl) or `quaternion`
    (w, x, y, z: camera-to-world rotation); optional `fov_deg` (horizontal) or `intrinsics` [fx, fy, cx, cy]
    in pixels of (width, height), else the top-level `fov_deg`; optional `time` (all keyframes or none; the
    keyframe index when absent), strictly increasing. At least 2 keyframes. num_frames defaults to the number
    of keyframes. Frames whose time equals a keyframe's reproduce it exactly.
    """
    width, height = _positive_size(width, height, where)
    if not isinstance(convention, str) or convention not in _CONVENTIONS:
        raise InputError(
            f"{where}: 'convention' must be one of {list(_CONVENTIONS)}, got {_show(convention)}"
        )
    if not isinstance(keyframes, (list, tuple)) or len(keyframes) < 2:
        got = len(keyframes) if isinstance(keyframes, (list, tuple)) else type(keyframes).__name__
        raise InputError(f"{where}: needs at least 2 keyframes, got {got}")
    has_time = [isinstance(k, dict) and "time" in k for k in keyframes]
    if any(has_time) and not all(has_time):
        raise InputError(f"{where}: give 'time' on every keyframe or on none")
    flip = np.diag([1.0, -1.0, -1.0]) if convention == "opengl" else np.eye(3)
    default_up = (0.0, 1.0, 0.0) if convention == "opengl" else (0.0, -1.0, 0.0)
    ts, Rs, Cs, Ks = [], [], [], []
    for i, kf in enumerate(keyframes):
        w = f"{where}: keyframe {i}"
        if not isinstance(kf, dict):
            raise InputError(f"{w} must be an object, got {_show(kf)}")
        unknown = sorted(set(kf) - _KEY_KEYS)
        if unknown:
            unknown = [_show(k, 30) for k in unknown[:5]] if len(repr(unknown)) > 80 else unknown
            raise InputError(f"{w} has unknown key(s) {unknown}; allowed: {sorted(_KEY_KEYS)}")
        ts.append(_number(kf["time"], w, "time") if "time" in kf else float(i))
        if "position" not in kf:
            raise InputError(f"{w} needs 'position' (the camera centre in world coordinates)")
        C = _numbers(kf["position"], 3, w, "position")
        if ("look_at" in kf) == ("quaternion" in kf):
            raise InputError(f"{w} needs exactly one of 'look_at' (a point) or 'quaternion' (w, x, y, z)")
        if "quaternion" in kf:
            if "up" in kf:
                raise InputError(f"{w}: 'up' only goes with 'look_at'")
            q = _numbers(kf["quaternion"], 4, w, "quaternion")
            if abs(np.linalg.norm(q) - 1.0) > 1e-3:
                raise InputError(f"{w}: 'quaternion' must have unit norm, got norm {np.linalg.norm(q):.6f}")
            R = _quat_to_rotmat(q) @ flip
        else:
            tgt = _numbers(kf["look_at"], 3, w, "look_at")
            up = _numbers(kf.get("up", default_up), 3, w, "up")
            try:
                R = _look_at_np(C, tgt, up)[:3, :3].T  # camera-to-world, already OpenCV camera axes
            except ValueError as e:
                raise InputError(f"{w}: {e}") from None
        if "fov_deg" in kf and "intrinsics" in kf:
            raise InputError(f"{w}: give 'fov_deg' or 'intrinsics', not both")
        if "intrinsics" in kf:
            fx, fy, cx, cy = _numbers(kf["intrinsics"], 4, w, "intrinsics")
            if fx <= 0 or fy <= 0:
                raise InputError(f"{w}: 'intrinsics' focal lengths must be positive, got fx={fx}, fy={fy}")
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        else:
            fov = kf.get("fov_deg", fov_deg)
            if fov is None:
                raise InputError(f"{w} needs 'fov_deg' or 'intrinsics' (or a top-level 'fov_deg')")
            fov = _number(fov, w, "fov_deg")
            if not 0.0 < fov < 180.0:
                raise InputError(f"{w}: 'fov_deg' must lie in (0, 180), got {fov}")
            K = _k_from_fov(1, width, height, fov)[0]
        Rs.append(R)
        Cs.append(C)
        Ks.append(K)
    ts = np.asarray(ts)
    if np.any(np.diff(ts) <= 0):
        bad = int(np.argmax(np.diff(ts) <= 0)) + 1
        raise InputError(
            f"{where}: keyframe times must be strictly increasing, but keyframe {bad} has time {ts[bad]:g} "
            f"after {ts[bad - 1]:g}"
        )
    n = _num(len(keyframes) if num_frames is None else num_frames, f"{where}: 'num_frames'")
    try:
        with np.errstate(all="ignore"):  # overflow shows up as non-finite cameras, refused below
            times = np.linspace(ts[0], ts[-1], n)
            return _interpolate(ts, np.stack(Rs), np.stack(Cs), np.stack(Ks), times, width, height)
    except ValueError as e:
        raise InputError(
            f"{where}: interpolating the keyframes failed ({e}): check their magnitudes"
        ) from None


def from_json(source: str | os.PathLike | dict, num_frames: int | None = None) -> Trajectory:
    """A trajectory from a keyframe JSON file (or its parsed dict); see `from_keyframes` for keyframes.

    Top-level keys: `width`, `height` (required: the image size the intrinsics refer to, integers in
    [1, MAX_SIDE]), `keyframes` (required), optional `convention` ("opencv" default, or "opengl"),
    `num_frames` (in [1, MAX_FRAMES]; overridden by the argument), `fov_deg` (default for keyframes),
    `format`, `version` (1). The file is read with bounded size and nesting and strict JSON (no NaN). Unknown
    keys, non-finite numbers, fewer than 2 keyframes, times that do not increase, out-of-range sizes or an
    unknown version are InputErrors naming the file and the key (MissingInput when the file does not exist).
    """
    if isinstance(source, dict):
        where, data = "trajectory JSON", source
    else:
        path = os.fspath(source)
        where = f"trajectory JSON {path}"
        if not os.path.isfile(path):
            raise MissingInput(f"{where}: no such file")
        data = files.read_json(path, max_bytes=MAX_JSON_BYTES, what="trajectory JSON")
    if not isinstance(data, dict):
        raise InputError(
            f"{where}: the top level must be an object with 'keyframes', got {type(data).__name__}"
        )
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        shown = unknown if len(repr(unknown)) <= 80 else [_show(k, 30) for k in unknown[:5]]
        raise InputError(f"{where}: unknown key(s) {shown}; allowed: {sorted(_TOP_KEYS)}")
    if data.get("format", JSON_FORMAT) != JSON_FORMAT:
        raise InputError(f"{where}: 'format' must be {JSON_FORMAT!r}, got {_show(data['format'])}")
    version = data.get("version", JSON_VERSION)
    if not _is_int(version) or version != JSON_VERSION:
        raise InputError(
            f"{where}: 'version' {_show(version)} is not supported (this reader knows version {JSON_VERSION})"
        )
    for k in ("width", "height", "keyframes"):
        if k not in data:
            raise InputError(f"{where}: missing required key '{k}'")
    for k, hi in (("width", MAX_SIDE), ("height", MAX_SIDE), ("num_frames", MAX_FRAMES)):
        v = data.get(k, 1)
        if not _is_int(v) or not 1 <= v <= hi:
            raise InputError(f"{where}: '{k}' must be an integer in [1, {hi}], got {_show(v)}")
    fov = data.get("fov_deg")
    if fov is not None:
        fov = _number(fov, where, "fov_deg")
    if num_frames is not None:
        _num(num_frames, f"{where}: 'num_frames' (asked for by the caller, e.g. camera.num_frames)")
    n = num_frames if num_frames is not None else data.get("num_frames")
    return from_keyframes(
        data["keyframes"],
        data["width"],
        data["height"],
        num_frames=n,
        convention=data.get("convention", "opencv"),
        fov_deg=fov,
        where=where,
    )
