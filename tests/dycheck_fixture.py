"""Writes small scenes in the exact DyCheck iPhone layout from analytic ground truth (used by the tests).

The scene (raw world, "metres", OpenCV-like axes with y down): a textured wall on the plane Z = 3 and a ball
of radius 0.3 circling in front of it. Images, z-depth and covisible masks are ray-cast analytically (no
renderer of ours is involved), for every camera, including a camera with lens distortion, whose pixel rays are
found by inverting the distortion with a fixed-point iteration (the loader only ever applies it forwards).

Frames: training camera 0 sweeps sideways over NUM_TRAIN time steps (frames 0_00000..); validation cameras 1
(with skew and a non-square pixel aspect) and 2 (radial + tangential distortion) are static and seen at the
times in VAL. scene.json holds a non-trivial center / scale, so the loader must normalise the world as DyCheck
does: position' = (position - center) * scale, depth' = depth * scale.
"""

from __future__ import annotations

import dataclasses
import json
import os

import imageio.v2 as iio2
import numpy as np

W1, H1 = 96, 72  # 1x image size; 2x is 48 x 36
NUM_TRAIN = 6
VAL = ((1, 1), (1, 3), (2, 2), (2, 4))  # (camera_id, time_id)
CENTER = np.array([0.1, -0.05, 1.4])
SCALE = 0.35
WALL_Z = 3.0
BALL_RADIUS = 0.3
COVISIBLE_MIN = 5  # DyCheck: max(5, len(train) // 10) training views must see a val pixel
DISTORTION = ((-0.12, 0.03, 0.004), (0.002, -0.0015))


@dataclasses.dataclass(frozen=True)
class GTCamera:
    """Ground-truth camera: R (3, 3) world-to-camera, position (3,), intrinsics and distortion, at 1x."""

    R: np.ndarray
    position: np.ndarray
    f: float
    cx: float
    cy: float
    skew: float = 0.0
    aspect: float = 1.0
    radial: tuple = (0.0, 0.0, 0.0)
    tangential: tuple = (0.0, 0.0)
    width: int = W1
    height: int = H1

    def at_factor(self, s: int) -> GTCamera:
        return dataclasses.replace(
            self,
            f=self.f / s,
            cx=self.cx / s,
            cy=self.cy / s,
            skew=self.skew / s,
            width=self.width // s,
            height=self.height // s,
        )

    def pinhole(self) -> GTCamera:
        return dataclasses.replace(self, radial=(0.0, 0.0, 0.0), tangential=(0.0, 0.0))

    def to_json(self) -> dict:
        return {
            "orientation": self.R.tolist(),
            "position": self.position.tolist(),
            "focal_length": self.f,
            "principal_point": [self.cx, self.cy],
            "skew": self.skew,
            "pixel_aspect_ratio": self.aspect,
            "radial_distortion": list(self.radial),
            "tangential_distortion": list(self.tangential),
            "image_size": [self.width, self.height],
        }

    def _lens(self, x, y):
        k1, k2, k3 = self.radial
        p1, p2 = self.tangential
        rr = x**2 + y**2
        gain = 1 + k1 * rr + k2 * rr**2 + k3 * rr**3
        return x * gain + 2 * p1 * x * y + p2 * (rr + 2 * x**2), y * gain + p1 * (
            rr + 2 * y**2
        ) + 2 * p2 * x * y

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels (N, 2) (centres at i + 0.5), z (N,)."""
        c = np.einsum("ij,nj->ni", self.R, X - self.position)
        xd, yd = self._lens(c[:, 0] / c[:, 2], c[:, 1] / c[:, 2])
        fy = self.f * self.aspect
        return np.stack([self.f * xd + self.skew * yd + self.cx, fy * yd + self.cy], -1), c[:, 2]

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) world directions (with z = 1 in camera coordinates) through every pixel centre."""
        v, u = np.mgrid[0 : self.height, 0 : self.width] + 0.5
        fy = self.f * self.aspect
        yd = (v - self.cy) / fy
        xd = (u - self.cx - self.skew * yd) / self.f
        x, y = xd.copy(), yd.copy()
        for _ in range(100):  # x = (xd - tangential(x, y)) / radial(x, y): converges for mild distortion
            dx, dy = self._lens(x, y)
            x, y = x + (xd - dx), y + (yd - dy)
        dx, dy = self._lens(x, y)
        assert max(np.abs(dx - xd).max(), np.abs(dy - yd).max()) < 1e-12, "fixture: distortion did not invert"
        d_cam = np.stack([x, y, np.ones_like(x)], -1)
        return np.einsum("ji,hwj->hwi", self.R, d_cam)


def look_rotation(eye, target, down=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World-to-camera rotation of a camera at eye looking at target (image y along world `down`)."""
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(np.asarray(down, float), z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def ball_center(t: float) -> np.ndarray:
    return np.array([0.35 * np.cos(0.6 * t) - 0.1, 0.15 * np.sin(0.6 * t), 2.0])


def wall_color(P: np.ndarray) -> np.ndarray:
    X, Y = P[..., 0], P[..., 1]
    return np.stack(
        [
            0.5 + 0.35 * np.sin(3.0 * X),
            0.5 + 0.35 * np.cos(2.5 * Y + 0.5),
            0.45 + 0.3 * np.sin(1.5 * (X + Y)),
        ],
        -1,
    )


def _ball_hit(o, d, t):
    """Ray parameter s (o + s d) of the first ball intersection, inf where none. o (3,), d (..., 3)."""
    oc = o - ball_center(t)
    a = np.sum(d * d, -1)
    b = 2 * np.sum(d * oc, -1)
    c = oc @ oc - BALL_RADIUS**2
    disc = b * b - 4 * a * c
    s = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    return np.where((disc > 0) & (s > 0), s, np.inf)


def raycast(cam: GTCamera, t: float):
    """(rgb (H, W, 3), z-depth (H, W), hit points (H, W, 3)) of camera `cam` at time t."""
    d = cam.pixel_rays()
    o = cam.position
    s_wall = (WALL_Z - o[2]) / d[..., 2]
    s_ball = _ball_hit(o, d, t)
    ball = s_ball < s_wall
    s = np.where(ball, s_ball, s_wall)
    P = o + s[..., None] * d
    n = (P - ball_center(t)) / BALL_RADIUS
    ball_rgb = np.stack([0.85 + 0 * n[..., 0], 0.35 + 0.25 * n[..., 1], 0.2 + 0.2 * n[..., 0]], -1)
    rgb = np.where(ball[..., None], ball_rgb, wall_color(P))
    z = np.einsum("j,hwj->hw", cam.R[2], P - o)
    return np.clip(rgb, 0, 1), z, P


def train_camera(i: int) -> GTCamera:
    eye = np.array([np.linspace(-0.25, 0.25, NUM_TRAIN)[i], 0.02 * i, 0.0])
    return GTCamera(R=look_rotation(eye, [0.0, 0.0, 2.5]), position=eye, f=88.0, cx=48.4, cy=35.6)


def val_camera(cam_id: int, distorted: bool = True) -> GTCamera:
    if cam_id == 1:
        eye = np.array([-0.45, 0.08, 0.15])
        return GTCamera(look_rotation(eye, [0.05, 0.0, 2.5]), eye, 84.0, 47.0, 36.5, skew=0.6, aspect=1.03)
    eye = np.array([0.5, -0.06, 0.1])
    radial, tangential = DISTORTION if distorted else ((0.0, 0.0, 0.0), (0.0, 0.0))
    return GTCamera(
        look_rotation(eye, [0.0, 0.05, 2.5]), eye, 90.0, 48.8, 35.2, radial=radial, tangential=tangential
    )


def covisible(points: np.ndarray, factor: int) -> np.ndarray:
    """(H, W) bool: val hit points seen (in view, unoccluded) by >= COVISIBLE_MIN training frames."""
    count = np.zeros(points.shape[:2], int)
    for i in range(NUM_TRAIN):
        cam = train_camera(i).at_factor(factor)
        pix, z = cam.project(points.reshape(-1, 3))
        inside = (
            (z > 0) & (pix[:, 0] >= 0) & (pix[:, 0] < cam.width) & (pix[:, 1] >= 0) & (pix[:, 1] < cam.height)
        )
        d = points.reshape(-1, 3) - cam.position
        unoccluded = (
            _ball_hit(cam.position, d, float(i)) > 1.0 - 1e-6
        )  # the ball at train time i is not in front
        count += (inside & unoccluded).reshape(count.shape)
    return count >= COVISIBLE_MIN


def frame_name(cam_id: int, t: int) -> str:
    return f"{cam_id}_{t:05d}"


def _dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def _png(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    iio2.imwrite(path, img)


def to_u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def raw_camera(cam_id: int, t: int, distorted: bool = True) -> GTCamera:
    return train_camera(t) if cam_id == 0 else val_camera(cam_id, distorted)


def write_scene(root: str, distorted: bool = True, factors=(1, 2), with_points: bool = True) -> str:
    """Write the scene into `root` (created) in the DyCheck iPhone layout; returns root."""
    train = [(0, t) for t in range(NUM_TRAIN)]
    frames = train + list(VAL)
    for cam_id, t in frames:
        name = frame_name(cam_id, t)
        _dump(os.path.join(root, "camera", f"{name}.json"), raw_camera(cam_id, t, distorted).to_json())
        for s in factors:
            cam = raw_camera(cam_id, t, distorted).at_factor(s)
            rgb, z, P = raycast(cam, float(t))
            alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
            _png(os.path.join(root, "rgb", f"{s}x", f"{name}.png"), np.concatenate([to_u8(rgb), alpha], -1))
            if cam_id == 0:
                os.makedirs(os.path.join(root, "depth", f"{s}x"), exist_ok=True)
                np.save(os.path.join(root, "depth", f"{s}x", f"{name}.npy"), z[..., None].astype(np.float32))
            else:
                m = to_u8(covisible(P, s).astype(float))
                m = m if cam_id == 1 else np.repeat(m[..., None], 3, -1)  # grey and RGB PNGs both occur
                _png(os.path.join(root, "covisible", f"{s}x", "val", f"{name}.png"), m)
    ids = [frame_name(c, t) for c, t in frames]
    _dump(
        os.path.join(root, "metadata.json"),
        {frame_name(c, t): {"warp_id": t, "appearance_id": t, "camera_id": c} for c, t in frames},
    )
    _dump(
        os.path.join(root, "dataset.json"),
        {
            "count": len(ids),
            "num_exemplars": NUM_TRAIN,
            "ids": ids,
            "train_ids": ids[:NUM_TRAIN],
            "val_ids": ids[NUM_TRAIN:],
        },
    )
    for split, rows in (("train", train), ("val", list(VAL))):
        _dump(
            os.path.join(root, "splits", f"{split}.json"),
            {
                "frame_names": [frame_name(c, t) for c, t in rows],
                "time_ids": [t for _, t in rows],
                "camera_ids": [c for c, _ in rows],
            },
        )
    _dump(
        os.path.join(root, "scene.json"),
        {"scale": SCALE, "center": CENTER.tolist(), "near": 1.0 * SCALE, "far": 4.0 * SCALE},
    )
    bbox = (np.array([[-2.0, -1.5, 0.0], [2.0, 1.5, WALL_Z]]) - CENTER) * SCALE
    _dump(
        os.path.join(root, "extra.json"),
        {
            "factor": 2,
            "fps": 30.0,
            "bbox": bbox.tolist(),
            "lookat": ((np.array([0, 0, 2.5]) - CENTER) * SCALE).tolist(),
            "up": [0, -1, 0],
        },
    )
    if with_points:
        np.save(os.path.join(root, "points.npy"), wall_points())
    return root


def wall_points() -> np.ndarray:
    """(M, 3) raw points on the wall (the scene's static background cloud)."""
    X, Y = np.meshgrid(np.linspace(-1.2, 1.2, 25), np.linspace(-0.9, 0.9, 19))
    return np.stack([X.ravel(), Y.ravel(), np.full(X.size, WALL_Z)], -1).astype(np.float32)


# experiments.run overrides of a tiny iPhone run (seconds on a CPU), shared by the end-to-end tests.
TINY_RUN = [
    "--config.model.capacity=3000",
    "--config.model.sh_degree=0",
    "--config.motion.num_generator_channels=1",
    "--config.motion.num_learnable_bases=2",
    "--config.motion.num_time_coeffs=3",
    "--config.train.num_steps=6",
    "--config.train.time_ramp_steps=4",
    "--config.train.densify_from=3",
    "--config.train.densify_until=3",
    "--config.train.densify_every=3",
    "--config.train.checkpoint_every=6",
    "--config.train.log_every=3",
    "--config.render.tile_capacity=256",
    "--config.eval.train_stride=2",
    "--config.data.max_points=200",
]


def run_iphone(root, workdir, overrides, fast_compile: dict):
    """experiments.run of configs/iphone.py on the scene folder `root` in a subprocess, with the override
    flags and XLA's fast-compile options (conftest's, probed there) as XLA flags: they cut the compile
    time, which is most of a tiny run, without changing what is computed."""
    import os
    import subprocess
    import sys

    flags = " ".join(
        [os.environ.get("XLA_FLAGS", "")] + [f"--{k}={str(v).lower()}" for k, v in fast_compile.items()]
    ).strip()
    root_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "--config=configs/iphone.py",
        f"--config.data.root={root}",
    ]
    return subprocess.run(
        [*cmd, f"--workdir={workdir}", *overrides],
        cwd=root_dir,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XLA_FLAGS": flags},
    )
