"""A harder, DyCheck-iPhone-like procedural scene: a hand-held monocular video, articulated and non-rigid
motion.

    HandheldConfig                                   sizes, cameras and jitter (frozen, hashable: jit-static)
    build_scene(cfg) -> HandheldScene                canonical (t = 0) Gaussians with group and part labels
    scene_at(scene, cfg, t) -> Splats                the Gaussians at time t (pure jnp, jit/vmap/grad in t)
    means_at(scene, cfg, t) -> (N, 3)                their centres (jitted)
    part_poses(cfg, t) -> (quats (P, 4), origins (P, 3))   the rigid parts' poses (local -> world)
    arm_joints(cfg, t) -> (3, 3)                     the arm's joint 1, joint 2 and tip in world coordinates
    train_cameras(cfg) / eval_cameras(cfg)           hand-held training path (T) / 2 static held-out (E)
    render_frames(scene, cfg, cams, times) -> Frames rgb, z-depth and the moving-object mask, in chunks
    make_dataset(cfg) -> (scene, train, held_out)    train carries ground-truth tracks (train.tracks)
    ground_truth_tracks(scene, cfg, cams, ...)       GT tracks of this scene (through any cameras)
    tracks_from_scene(positions_at, frames, ...)     the same for any scene with analytic Gaussian motion
    track_visibility(points, cams, depth, ...)       inside the image and not occluded (vectorised)

World: OpenCV-like (y points down), the floor is the plane y = FLOOR_Y; 1 scene unit is cfg.metres_per_unit
metres (0.5 by default: the camera stands ~3.6 units = 1.8 m from the subject, as in DyCheck's iPhone
captures). Content (group labels in capitals, part labels per group):
- BACKGROUND (static): floor (part 0), back wall (1), box A (2, an occluder in front of the ball's path) and
  box B (3, back left);
- CAR: a rigid toy car (body 0, cabin 1, wheels 2) driving along a circular arc (translating and yawing);
- ARM: an articulated two-link arm: a yawing turntable (part 0), link 1 (1) rotating about joint 1 on the
  turntable and link 2 (2) rotating about joint 2 at the end of link 1 (its motion composed with link 1's);
- BLOB: a non-rigid jelly (part 0): squash-and-stretch, a height-dependent twist and a bending sway;
- BALL: a small ball rolling (without slipping) back and forth behind box A: occluded part of the time.
Cameras: a hand-held training camera (a small lateral baseline plus smooth seeded jitter in position and
rotation, one view per time step) and DyCheck-like held-out static cameras left and right of the training
path that see every time step. Everything is seeded (cfg.seed).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax.data import synthetic
from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.geometry import cameras, lie
from any4d_jax.render import RenderConfig, Splats, within_budget

BACKGROUND, CAR, ARM, BLOB, BALL = 0, 1, 2, 3, 4
GROUP_NAMES = ("background", "car", "arm", "blob", "ball")
FLOOR, WALL, BOX_A, BOX_B = 0, 1, 2, 3  # background parts
CAR_BODY, CAR_CABIN, CAR_WHEELS = 0, 1, 2  # car parts
ARM_BASE, ARM_LINK1, ARM_LINK2 = 0, 1, 2  # arm parts

DEPTH_RTOL, DEPTH_ATOL = tracks_lib.DEPTH_RTOL, tracks_lib.DEPTH_ATOL  # the occlusion test's tolerances


@dataclasses.dataclass(frozen=True)
class HandheldConfig:
    """Sizes, cameras and motion of the hand-held scene (every field has a default; frozen and hashable)."""

    num_frames: int = 64  # time steps T (DyCheck-like clips: 60-120)
    width: int = 160  # image width in pixels
    height: int = 120  # image height in pixels
    fov_deg: float = 55.0  # horizontal field of view of every camera (degrees)
    seed: int = 0  # PRNG seed of the scene content and of the camera jitter
    num_floor: int = 5000  # Gaussians on the floor
    num_wall: int = 3400  # Gaussians on the back wall
    num_box: int = 700  # Gaussians per static box (two boxes)
    num_car: int = 1400  # Gaussians on the rigid car
    num_arm: int = 1500  # Gaussians on the articulated arm (turntable 20 %, links 40 % each)
    num_blob: int = 1800  # Gaussians on the non-rigid blob
    num_ball: int = 600  # Gaussians on the rolling ball
    background: tuple = (1.0, 1.0, 1.0)  # colour behind the scene (RGB in [0, 1])
    metres_per_unit: float = 0.5  # scale: metres per scene unit (camera ~3.6 units = 1.8 m from the subject)
    radius: float = 3.6  # distance of the cameras to the look-at point (scene units)
    elevation_deg: float = 18.0  # training camera elevation above the horizon (degrees)
    baseline_m: float = 0.3  # lateral travel of the training camera centre over the clip (metres)
    jitter_pos_m: float = 0.02  # amplitude of the smooth hand-held position jitter, per axis (metres)
    jitter_rot_deg: float = 1.0  # amplitude of the smooth hand-held rotation jitter, per axis (degrees)
    jitter_cycles: float = 3.0  # highest jitter frequency (cycles per clip); lowest is 0.5
    eval_azimuths_deg: tuple = (-22.0, 22.0)  # held-out static cameras' azimuths (left, right of training)
    eval_elevations_deg: tuple = (12.0, 24.0)  # held-out static cameras' elevations (degrees)
    car_arc_deg: tuple = (-170.0, 0.0)  # start and end angle of the car on its circular path (degrees)
    num_tracks: int = 1024  # ground-truth tracks on the training frames (train.tracks)
    num_query_frames: int = 4  # query frames of those tracks, spread evenly over the clip
    track_foreground: float = 0.8  # share of the tracks on the moving objects (split evenly among them)


@struct.dataclass
class HandheldScene:
    """Canonical (t = 0) Gaussians with their labels; motion is analytic (see `scene_at`).

    splats: Splats with RGB colours (N, 3) and features (N, 1) = 1 on the moving objects (the mask channel).
    groups: (N,) int32 in {BACKGROUND, CAR, ARM, BLOB, BALL}.
    parts:  (N,) int32 part label within the group (FLOOR..BOX_B, CAR_BODY..CAR_WHEELS, ARM_BASE..ARM_LINK2,
            0 for the blob and the ball).
    rigid:  (N,) int32 index of the Gaussian's rigid part pose in `part_poses` (0: static), or -1 (the blob).
    """

    splats: Splats
    groups: jnp.ndarray
    parts: jnp.ndarray
    rigid: jnp.ndarray


# Layout (numpy constants: importing starts no JAX backend). Top view: x right, z away from the camera.
FLOOR_Y = 0.8
WALL_Z = 2.4
LOOK_AT = np.array([0.0, 0.3, 0.6], np.float32)
BOX_A_CENTRE, BOX_A_HALF = np.array([0.55, 0.55, 0.0], np.float32), np.array([0.22, 0.25, 0.2], np.float32)
BOX_B_CENTRE, BOX_B_HALF = np.array([-1.3, 0.45, 1.5], np.float32), np.array([0.3, 0.35, 0.3], np.float32)
CAR_PATH_CENTRE, CAR_PATH_RADIUS = np.array([-0.7, 0.05], np.float32), 0.5  # (x, z) of the arc's centre
CAR_HALF = np.array([0.25, 0.07, 0.13], np.float32)  # body half-size (length along local x)
WHEEL_RADIUS = 0.06
ARM_BASE_POS = np.array([-0.45, FLOOR_Y, 1.0], np.float32)  # turntable's bottom centre
ARM_BASE_RADIUS, ARM_BASE_HEIGHT = 0.14, 0.1
ARM_L1, ARM_L2 = 0.6, 0.5  # link lengths (joint 1 -> joint 2, joint 2 -> tip)
ARM_W1, ARM_W2 = 0.05, 0.04  # links' half-widths
BLOB_BOTTOM, BLOB_RADIUS = np.array([1.0, FLOOR_Y, 1.15], np.float32), 0.3
BALL_RADIUS, BALL_Z = 0.12, 0.5
BALL_X0, BALL_X1 = -0.05, 1.15  # the ball rolls between these x (passing behind box A twice)
NUM_POSES = 6  # rigid part poses: static, car, turntable, link 1, link 2, ball
POSE_STATIC, POSE_CAR, POSE_BASE, POSE_LINK1, POSE_LINK2, POSE_BALL = range(NUM_POSES)


# ---------------------------------------------------------------------------------------------------------
# Content.
# ---------------------------------------------------------------------------------------------------------


def _box_surface(rng: np.random.Generator, n: int, half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n points on the surface of a centred box with half-sizes half (3,), area-weighted over the faces.

    Returns points (n, 3), the face's normal axis (n,) int and in-face coordinates (n, 2) in [-1, 1].
    """
    half = np.asarray(half, np.float64)
    area = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    face = rng.choice(6, size=n, p=np.repeat(area, 2) / (2.0 * area.sum()))
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    uv = rng.uniform(-1.0, 1.0, (n, 2))
    rows = np.arange(n)
    a1, a2 = (axis + 1) % 3, (axis + 2) % 3
    pts = np.zeros((n, 3))
    pts[rows, axis] = sign * half[axis]
    pts[rows, a1] = uv[:, 0] * half[a1]
    pts[rows, a2] = uv[:, 1] * half[a2]
    return pts, axis, uv


def _box_scales(axis: np.ndarray, size: float, flat: float = 0.006) -> np.ndarray:
    """(n, 3) scales of flat Gaussians on box faces with normal axis `axis` (n,)."""
    sc = np.full((axis.shape[0], 3), size)
    sc[np.arange(axis.shape[0]), axis] = flat
    return sc


def _cylinder_surface(
    rng: np.random.Generator, n: int, radius: float, half_height: float, cap_share: float = 0.3
):
    """n points on a closed cylinder about the local y axis (centred): (n, 3) points and (n,) azimuths."""
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    on_cap = rng.uniform(size=n) < cap_share
    u = rng.uniform(-1.0, 1.0, n)
    r = np.where(on_cap, radius * np.sqrt(np.abs(u)), radius)
    y = np.where(on_cap, np.sign(u) * half_height, u * half_height)
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], -1), phi


def _sphere_dirs(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _sel(mask, a, b) -> np.ndarray:
    """Per-row choice between colours: a where mask (n,) else b (each (3,) or (n, 3))."""
    return np.where(np.asarray(mask)[:, None], a, b)


def _quat_axis(axis, angle) -> jnp.ndarray:
    """(..., 4) quaternion of a rotation by `angle` (...,) about the fixed unit `axis` (3,)."""
    return lie.so3_exp_quat(jnp.asarray(axis, jnp.float32) * jnp.asarray(angle, jnp.float32)[..., None])


def _rotate(q, p) -> jnp.ndarray:
    """Rotate points p (..., 3) by unit quaternions q (..., 4) (broadcast)."""
    return jnp.einsum("...ij,...j->...i", lie.quat_to_rotmat(q), p)


def _phase(cfg: HandheldConfig, t):
    return jnp.asarray(t, jnp.float32) / float(max(cfg.num_frames - 1, 1))  # 0 .. 1 over the clip


@functools.partial(jax.jit, static_argnums=0)
def arm_angles(cfg: HandheldConfig, t) -> tuple:
    """(turntable yaw, joint 1 angle, joint 2 angle) in radians at time t (joint angles about local z)."""
    ph = _phase(cfg, t)
    yaw = 0.5 * jnp.sin(jnp.pi * ph)
    a1 = 0.25 + 0.45 * jnp.sin(2.0 * jnp.pi * ph)
    a2 = 0.9 + 0.7 * jnp.sin(2.0 * jnp.pi * 1.5 * ph + 0.4)
    return yaw, a1, a2


@functools.partial(jax.jit, static_argnums=0)
def part_poses(cfg: HandheldConfig, t) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Poses of the NUM_POSES rigid parts at time t: world = R(q) local + origin.

    Returns quats (P, 4) and origins (P, 3), P = NUM_POSES, in the order POSE_STATIC .. POSE_BALL. Local
    frames: car (origin on the floor under its centre, facing local +x); turntable (origin at its bottom
    centre); link 1 (origin at joint 1, the link along local -y); link 2 (origin at joint 2, along local -y);
    ball (origin at its centre).
    """
    ph = _phase(cfg, t)
    ey, ez = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    ident = jnp.array([1.0, 0.0, 0.0, 0.0])

    # Car: along the circle (x, z) = c + r (cos th, sin th), counter-clockwise in the top view, facing its
    # velocity (-sin th, cos th): yaw psi with R_y(psi) (1, 0, 0) = (cos psi, 0, -sin psi) = that direction.
    th0, th1 = np.deg2rad(cfg.car_arc_deg[0]), np.deg2rad(cfg.car_arc_deg[1])
    th = th0 + (th1 - th0) * ph
    if th1 < th0:  # driving clockwise: face the other way
        th_face = th + jnp.pi
    else:
        th_face = th
    car_o = jnp.stack(
        [
            CAR_PATH_CENTRE[0] + CAR_PATH_RADIUS * jnp.cos(th),
            jnp.asarray(FLOOR_Y, jnp.float32) + 0.0 * th,
            CAR_PATH_CENTRE[1] + CAR_PATH_RADIUS * jnp.sin(th),
        ]
    )
    car_q = _quat_axis(ey, -th_face - 0.5 * jnp.pi)

    # Arm: turntable yaw, link 1 = yaw o R_z(a1) about joint 1, link 2 = link 1 o R_z(a2) about joint 2.
    yaw, a1, a2 = arm_angles(cfg, t)
    base_q = _quat_axis(ey, yaw)
    base_o = jnp.asarray(ARM_BASE_POS)
    l1_q = lie.quat_multiply(base_q, _quat_axis(ez, a1))
    l1_o = base_o + jnp.array([0.0, -ARM_BASE_HEIGHT, 0.0])
    l2_q = lie.quat_multiply(l1_q, _quat_axis(ez, a2))
    l2_o = l1_o + _rotate(l1_q, jnp.array([0.0, -ARM_L1, 0.0]))

    # Ball: x(t) between BALL_X0 and BALL_X1 and back, rolling about z (omega_z = v_x / r with y down).
    x = BALL_X0 + 0.5 * (BALL_X1 - BALL_X0) * (1.0 - jnp.cos(2.0 * jnp.pi * ph))
    ball_o = jnp.stack([x, jnp.asarray(FLOOR_Y - BALL_RADIUS) + 0.0 * x, jnp.asarray(BALL_Z) + 0.0 * x])
    ball_q = _quat_axis(ez, (x - BALL_X0) / BALL_RADIUS)

    quats = jnp.stack([ident, car_q, base_q, l1_q, l2_q, ball_q])
    origins = jnp.stack([jnp.zeros(3), car_o, base_o, l1_o, l2_o, ball_o])
    return quats, origins


@functools.partial(jax.jit, static_argnums=0)
def arm_joints(cfg: HandheldConfig, t) -> jnp.ndarray:
    """(3, 3) world positions of the arm's joint 1, joint 2 and the tip of link 2 at time t."""
    q, o = part_poses(cfg, t)
    tip = o[POSE_LINK2] + _rotate(q[POSE_LINK2], jnp.array([0.0, -ARM_L2, 0.0]))
    return jnp.stack([o[POSE_LINK1], o[POSE_LINK2], tip])


def blob_warp(cfg: HandheldConfig, p: jnp.ndarray, t) -> jnp.ndarray:
    """The blob's non-rigid deformation of canonical points p (n, 3) to time t (identity at t = 0).

    About its bottom point: squash-and-stretch (height x s, width / sqrt(s)), a twist about the vertical
    axis growing with height, and a sway in x growing with the square of height. Smooth in p and t.
    """
    ph = _phase(cfg, t)
    q = p - jnp.asarray(BLOB_BOTTOM)
    h = jnp.clip(-q[:, 1] / (2.0 * BLOB_RADIUS), 0.0, 1.0)  # 0 at the bottom, 1 at the top
    s = 1.0 + 0.2 * jnp.sin(2.0 * jnp.pi * 2.0 * ph)
    twist = 0.9 * jnp.sin(2.0 * jnp.pi * ph) * h
    c, sn = jnp.cos(twist), jnp.sin(twist)
    x, z = q[:, 0] / jnp.sqrt(s), q[:, 2] / jnp.sqrt(s)
    x, z = c * x + sn * z, -sn * x + c * z
    x = x + 0.15 * h**2 * jnp.sin(2.0 * jnp.pi * 1.25 * ph)
    return jnp.stack([x, q[:, 1] * s, z], -1) + jnp.asarray(BLOB_BOTTOM)


@functools.partial(jax.jit, static_argnums=0)
def _poses_at_zero(cfg: HandheldConfig):
    q, o = part_poses(cfg, 0.0)
    return q, lie.quat_to_rotmat(q), o


def build_scene(cfg: HandheldConfig) -> HandheldScene:
    """Sample the canonical (t = 0) Gaussians of the scene (deterministic for cfg.seed; numpy, fast)."""
    rng = np.random.default_rng([cfg.seed, 1])
    flat = 0.006
    q0, R0, o0 = (np.asarray(a, np.float64) for a in _poses_at_zero(cfg))
    cols = {k: [] for k in ("means", "rgb", "scales", "quats", "groups", "parts", "rigid")}

    def add(m, rgb, sc, group, part, pose):
        n = m.shape[0]
        if pose > POSE_STATIC:  # local part coordinates -> world at t = 0
            m = m @ R0[pose].T + o0[pose]
        q = np.tile(q0[pose] if pose > POSE_STATIC else np.array([1.0, 0.0, 0.0, 0.0]), (n, 1))
        new = {"means": m, "rgb": np.broadcast_to(rgb, (n, 3)), "scales": sc, "quats": q}
        new.update(groups=np.full(n, group), parts=np.full(n, part), rigid=np.full(n, pose))
        for k, v in new.items():
            cols[k].append(v)

    # Floor: wooden planks; wall: wallpaper stripes above a dado rail.
    n = cfg.num_floor
    g = rng.uniform([-4.4, -1.3], [4.4, WALL_Z], (n, 2))
    plank = np.floor(g[:, 1] * 3.0)
    rgb = np.array([0.72, 0.55, 0.38]) + np.where(plank % 2 == 0, 0.0, -0.12)[:, None]
    rgb = rgb + 0.06 * np.sin(g[:, 0] * 9.0 + plank * 2.1)[:, None]
    rgb = _sel(np.abs(g[:, 1] * 3.0 - np.round(g[:, 1] * 3.0)) < 0.06, [0.35, 0.25, 0.18], rgb)
    floor = np.stack([g[:, 0], np.full(n, FLOOR_Y), g[:, 1]], -1)
    add(floor, rgb, np.tile([0.06, flat, 0.06], (n, 1)), BACKGROUND, FLOOR, POSE_STATIC)
    n = cfg.num_wall
    w = rng.uniform([-5.0, -1.6], [5.0, FLOOR_Y], (n, 2))
    rgb = _sel(np.floor(w[:, 0] * 2.5) % 2 > 0, [0.62, 0.74, 0.7], [0.78, 0.84, 0.8])
    rgb = _sel(w[:, 1] > 0.1, [0.45, 0.5, 0.62], rgb)
    rgb = _sel(np.abs(w[:, 1] - 0.1) < 0.04, [0.95, 0.95, 0.92], rgb)
    wall = np.stack([w[:, 0], w[:, 1], np.full(n, WALL_Z)], -1)
    add(wall, rgb, np.tile([0.07, 0.07, flat], (n, 1)), BACKGROUND, WALL, POSE_STATIC)

    # Static boxes: A (cardboard with a printed band, the occluder) and B (blue with a white grid).
    pts, axis, uv = _box_surface(rng, cfg.num_box, BOX_A_HALF)
    rgb = _sel((np.abs(uv[:, 1]) < 0.25) & (axis != 1), [0.85, 0.2, 0.15], [0.8, 0.62, 0.38])
    rgb = rgb * (1.0 - 0.12 * (axis == 0))[:, None]
    add(pts + BOX_A_CENTRE, rgb, _box_scales(axis, 0.028), BACKGROUND, BOX_A, POSE_STATIC)
    pts, axis, uv = _box_surface(rng, cfg.num_box, BOX_B_HALF)
    grid = (np.abs(np.sin(uv[:, 0] * 6.0)) < 0.25) | (np.abs(np.sin(uv[:, 1] * 6.0)) < 0.25)
    add(
        pts + BOX_B_CENTRE,
        _sel(grid, [0.9, 0.9, 0.95], [0.2, 0.35, 0.7]),
        _box_scales(axis, 0.028),
        BACKGROUND,
        BOX_B,
        POSE_STATIC,
    )

    # Car (local frame: origin on the floor under its centre, facing +x): body, cabin, four wheels.
    nc = cfg.num_car
    nb, ncab = int(0.55 * nc), int(0.25 * nc)
    nw = nc - nb - ncab
    body_y = -(2.0 * WHEEL_RADIUS - 0.02) - CAR_HALF[1]
    pts, axis, uv = _box_surface(rng, nb, CAR_HALF)
    rgb = _sel((np.abs(uv[:, 1]) < 0.2) & (axis == 2), [0.98, 0.95, 0.9], [0.85, 0.12, 0.12])
    rgb = _sel((axis == 0) & (pts[:, 0] > 0) & (np.abs(uv[:, 1]) > 0.6), [1.0, 0.9, 0.3], rgb)  # headlights
    add(pts + [0.0, body_y, 0.0], rgb, _box_scales(axis, 0.018), CAR, CAR_BODY, POSE_CAR)
    cab_half = np.array([0.12, 0.055, 0.11])
    pts, axis, uv = _box_surface(rng, ncab, cab_half)
    rgb = _sel(
        (axis != 1) & (np.abs(uv[:, 0]) < 0.7) & (np.abs(uv[:, 1]) < 0.6),
        [0.25, 0.35, 0.45],
        [0.85, 0.12, 0.12],
    )
    cab = pts + [-0.03, body_y - CAR_HALF[1] - cab_half[1], 0.0]
    add(cab, rgb, _box_scales(axis, 0.016), CAR, CAR_CABIN, POSE_CAR)
    wheel, phi = _cylinder_surface(rng, nw, WHEEL_RADIUS, 0.025, cap_share=0.5)
    wheel = wheel[:, [0, 2, 1]]  # axle along local z
    offs = np.array([[0.16, 0.14], [0.16, -0.14], [-0.16, 0.14], [-0.16, -0.14]])[rng.integers(0, 4, nw)]
    wheel = wheel + np.stack([offs[:, 0], np.full(nw, -WHEEL_RADIUS), offs[:, 1]], -1)
    rgb = _sel(np.sin(4.0 * phi) > 0.0, [0.12, 0.12, 0.12], [0.5, 0.5, 0.5])
    add(wheel, rgb, np.full((nw, 3), 0.015), CAR, CAR_WHEELS, POSE_CAR)

    # Arm: turntable (striped, so its yaw shows), link 1 (orange bands), link 2 (teal bands).
    na = cfg.num_arm
    nbase, nl1 = int(0.2 * na), int(0.4 * na)
    pts, phi = _cylinder_surface(rng, nbase, ARM_BASE_RADIUS, 0.5 * ARM_BASE_HEIGHT)
    rgb = _sel(np.sin(6.0 * phi) > 0.0, [0.2, 0.2, 0.22], [0.9, 0.85, 0.2])
    add(pts + [0.0, -0.5 * ARM_BASE_HEIGHT, 0.0], rgb, np.full((nbase, 3), 0.02), ARM, ARM_BASE, POSE_BASE)
    for n, L, hw, pose, part, col in [
        (nl1, ARM_L1, ARM_W1, POSE_LINK1, ARM_LINK1, np.array([0.95, 0.5, 0.1])),
        (na - nbase - nl1, ARM_L2, ARM_W2, POSE_LINK2, ARM_LINK2, np.array([0.1, 0.65, 0.65])),
    ]:
        pts, axis, uv = _box_surface(rng, n, [hw, 0.5 * L, hw])
        rgb = _sel(np.floor((pts[:, 1] / L + 0.5) * 6.0) % 2 == 0, col, 0.55 * col)
        add(pts + [0.0, -0.5 * L, 0.0], rgb, _box_scales(axis, 0.016), ARM, part, pose)

    # Blob: a jelly sphere with meridian stripes and a belt (so its twist and squash show).
    d = _sphere_dirs(rng, cfg.num_blob)
    rgb = _sel(np.sin(5.0 * np.arctan2(d[:, 2], d[:, 0])) > 0.0, [0.55, 0.25, 0.8], [0.85, 0.6, 0.95])
    rgb = _sel(np.abs(d[:, 1] + 0.3) < 0.08, [0.2, 0.8, 0.35], rgb)
    blob = BLOB_BOTTOM + np.array([0.0, -BLOB_RADIUS, 0.0]) + BLOB_RADIUS * d
    add(blob, rgb, np.full((cfg.num_blob, 3), 0.024), BLOB, 0, -1)

    # Ball: a beach ball with four coloured segments (its roll shows).
    d = _sphere_dirs(rng, cfg.num_ball)
    seg = (np.floor((np.arctan2(d[:, 1], d[:, 2]) + np.pi) / (0.5 * np.pi)) % 4).astype(np.int64)
    pal = np.array([[0.95, 0.85, 0.1], [0.1, 0.4, 0.9], [0.95, 0.95, 0.95], [0.1, 0.7, 0.3]])
    add(BALL_RADIUS * d, pal[seg], np.full((cfg.num_ball, 3), 0.018), BALL, 0, POSE_BALL)

    cat = {k: np.concatenate(v) for k, v in cols.items()}
    n = cat["groups"].shape[0]
    rgb = np.clip(cat["rgb"] + 0.03 * rng.normal(size=(n, 3)), 0.0, 1.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    splats = Splats(
        means=f32(cat["means"]),
        quats=f32(cat["quats"]),
        scales=f32(cat["scales"]),
        opacities=jnp.full((n,), 0.95, jnp.float32),
        colors=f32(rgb),
        features=f32(cat["groups"] != BACKGROUND)[:, None],
    )
    i32 = lambda a: jnp.asarray(a, jnp.int32)  # noqa: E731
    return HandheldScene(
        splats=splats, groups=i32(cat["groups"]), parts=i32(cat["parts"]), rigid=i32(cat["rigid"])
    )


def scene_at(scene: HandheldScene, cfg: HandheldConfig, t) -> Splats:
    """The ground-truth Gaussians at (float) time t: pure jnp, jit/vmap/grad-able in t.

    Rigid parts move by their pose at t relative to their pose at 0 (so t = 0 gives the stored means); the
    blob by `blob_warp` (its Gaussians keep their orientation); the background stays.
    """
    s = scene.splats
    q0, o0 = part_poses(cfg, 0.0)
    qt, ot = part_poses(cfg, t)
    q_rel = lie.quat_multiply(qt, lie.quat_conjugate(q0))  # (P, 4)
    R_rel = lie.quat_to_rotmat(q_rel)
    idx = jnp.maximum(scene.rigid, 0)
    local = s.means - o0[idx]
    moved = jnp.einsum("nij,nj->ni", R_rel[idx], local) + ot[idx]
    quats = lie.quat_multiply(q_rel[idx], s.quats)
    static = (scene.rigid == POSE_STATIC)[:, None]
    moved = jnp.where(static, s.means, moved)
    quats = jnp.where(static, s.quats, quats)
    is_blob = (scene.rigid < 0)[:, None]
    means = jnp.where(is_blob, blob_warp(cfg, s.means, t), moved)
    quats = jnp.where(is_blob, s.quats, quats)
    return s.replace(means=means, quats=quats)


@functools.partial(jax.jit, static_argnums=1)
def means_at(scene: HandheldScene, cfg: HandheldConfig, t) -> jnp.ndarray:
    """(N, 3) the Gaussians' centres at time t (`scene_at(...).means`, jitted: the ground-truth positions)."""
    return scene_at(scene, cfg, t).means


# ---------------------------------------------------------------------------------------------------------
# Cameras.
# ---------------------------------------------------------------------------------------------------------


def _smooth_noise(
    rng: np.random.Generator, num: int, dims: int, max_cycles: float, waves: int = 4
) -> np.ndarray:
    """(num, dims) smooth random signals in [-1, 1]: sums of `waves` sinusoids of 0.5..max_cycles cycles per
    clip with random phases and 1/k amplitudes, each normalised to a peak of 1 over the clip."""
    s = np.linspace(0.0, 1.0, num)[:, None, None]
    freq = rng.uniform(0.5, max(max_cycles, 0.5), (1, dims, waves))
    phase = rng.uniform(0.0, 2.0 * np.pi, (1, dims, waves))
    amp = 1.0 / np.arange(1, waves + 1)
    x = np.sum(amp * np.sin(2.0 * np.pi * freq * s + phase), axis=-1)
    return x / np.maximum(np.abs(x).max(axis=0, keepdims=True), 1e-9)


def _look_at_np(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(..., 4, 4) world-to-camera of cameras at eye (..., 3) looking at target (..., 3), world -y up in the
    image: `geometry.cameras.look_at` in numpy (no JAX dispatch for these small host-side arrays)."""
    z = target - eye
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(np.broadcast_to([0.0, 1.0, 0.0], z.shape), z)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    R = np.stack([x, np.cross(z, x), z], axis=-2)
    vm = np.zeros(eye.shape[:-1] + (4, 4))
    vm[..., :3, :3] = R
    vm[..., :3, 3] = -np.einsum("...ij,...j->...i", R, eye)
    vm[..., 3, 3] = 1.0
    return vm


def _so3_exp_np(w: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices of axis-angle vectors w (..., 3) (Rodrigues), in numpy."""
    th = np.linalg.norm(w, axis=-1)[..., None, None]
    W = np.zeros(w.shape[:-1] + (3, 3))
    W[..., 0, 1], W[..., 0, 2], W[..., 1, 2] = -w[..., 2], w[..., 1], -w[..., 0]
    W = W - np.swapaxes(W, -1, -2)
    safe = np.maximum(th, 1e-12)
    a = np.where(th > 1e-6, np.sin(safe) / safe, 1.0 - th**2 / 6.0)
    b = np.where(th > 1e-6, (1.0 - np.cos(safe)) / safe**2, 0.5 - th**2 / 24.0)
    return np.eye(3) + a * W + b * (W @ W)


def train_cameras(cfg: HandheldConfig) -> cameras.Camera:
    """One hand-held camera per time step (viewmat (T, 4, 4)).

    The centre slides cfg.baseline_m sideways (an eased sweep along the rig's right axis) at cfg.radius from
    LOOK_AT with smooth seeded jitter of cfg.jitter_pos_m per axis; the camera looks at LOOK_AT (itself
    jittered by 0.05 units) and its rotation is jittered by cfg.jitter_rot_deg per axis about its centre.
    """
    T = cfg.num_frames
    rng = np.random.default_rng([cfg.seed, 7])
    units = 1.0 / cfg.metres_per_unit
    base = synthetic.eye_position(0.0, cfg.elevation_deg, cfg.radius) + LOOK_AT
    ease = -0.5 * np.cos(np.pi * np.linspace(0.0, 1.0, T))  # -0.5 .. 0.5, smooth start and stop
    eyes = base[None] + (cfg.baseline_m * units * ease)[:, None] * np.array([1.0, 0.0, 0.0])
    eyes = eyes + cfg.jitter_pos_m * units * _smooth_noise(rng, T, 3, cfg.jitter_cycles)
    targets = LOOK_AT[None] + 0.05 * _smooth_noise(rng, T, 3, 0.5 * cfg.jitter_cycles)
    vms = _look_at_np(eyes, targets)
    rot = np.deg2rad(cfg.jitter_rot_deg) * _smooth_noise(rng, T, 3, cfg.jitter_cycles)
    R_j = _so3_exp_np(rot)  # in the camera frame
    R = np.einsum("tij,tjk->tik", R_j, vms[:, :3, :3])
    vms[:, :3, :3] = R
    vms[:, :3, 3] = -np.einsum("tij,tj->ti", R, eyes)  # rotate about the centre
    K = jnp.broadcast_to(cameras.from_fov(cfg.width, cfg.height, cfg.fov_deg), (T, 3, 3))
    return cameras.make_camera(jnp.asarray(vms, jnp.float32), K, cfg.width, cfg.height)


def eval_cameras(cfg: HandheldConfig) -> cameras.Camera:
    """The held-out static cameras, E = len(cfg.eval_azimuths_deg) of them (viewmat (E, 4, 4))."""
    az = np.asarray(cfg.eval_azimuths_deg, np.float64)
    el = np.asarray(cfg.eval_elevations_deg, np.float64)
    if az.shape != el.shape:
        raise ValueError(f"HandheldConfig: {az.size} eval azimuths but {el.size} eval elevations")
    eyes = synthetic.eye_position(az, el, cfg.radius) + LOOK_AT
    vms = jnp.asarray(_look_at_np(eyes, np.broadcast_to(LOOK_AT, eyes.shape).astype(np.float64)), jnp.float32)
    K = jnp.broadcast_to(cameras.from_fov(cfg.width, cfg.height, cfg.fov_deg), (az.size, 3, 3))
    return cameras.make_camera(vms, K, cfg.width, cfg.height)


# ---------------------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------------------

RENDER_CHUNK = 16  # frames per compiled render batch (the last batch is padded: one compile per size)


def render_frames(scene: HandheldScene, cfg: HandheldConfig, cams: cameras.Camera, times) -> Frames:
    """Ground-truth frames: camera i (viewmat (F, 4, 4)) at time times[i] (F,): rgb, z-depth and the soft
    mask of the moving objects, rendered RENDER_CHUNK frames at a time."""
    times = jnp.asarray(times, jnp.float32)
    F = times.shape[0]
    B = min(RENDER_CHUNK, cfg.num_frames, F)  # training and held-out renders share one compiled batch size
    outs = []
    for s in range(0, F, B):
        idx = np.minimum(np.arange(s, s + B), F - 1)  # pad the last batch with copies of the last frame
        (rgb, depth, mask), _, _ = within_budget(
            lambda rc, idx=idx: synthetic.render_batch(
                scene_at, scene, cfg, times[idx], cams.viewmat[idx], cams.K[idx], cams.width, cams.height, rc
            ),
            RenderConfig(validate=False),
        )
        n = min(B, F - s)
        outs.append((rgb[:n], depth[:n], mask[:n]))
    rgb, depth, mask = (jnp.concatenate([o[i] for o in outs]) for i in range(3))
    return Frames(
        rgb=jnp.clip(rgb, 0.0, 1.0), cameras=cams, times=times, depth=depth, mask=jnp.clip(mask, 0.0, 1.0)
    )


# ---------------------------------------------------------------------------------------------------------
# Ground-truth tracks (the generic visibility test and sampler live in data/tracks.py).
# ---------------------------------------------------------------------------------------------------------

track_visibility = tracks_lib.visibility
tracks_from_scene = tracks_lib.from_scene


def default_query_frames(num_frames: int, num_query: int) -> list[int]:
    """num_query query frames spread evenly over 0 .. num_frames - 1 (both ends included)."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, max(num_query, 1))})


def ground_truth_tracks(
    scene: HandheldScene,
    cfg: HandheldConfig,
    cams,
    num_tracks: int | None = None,
    query_frames: Sequence[int] | None = None,
    seed: int = 0,
    return_indices: bool = False,
):
    """Ground-truth tracks of this scene through `cams`: a Frames with rendered depth (the training video) or
    a Camera (viewmat (F, 4, 4); frame f at time f, its depth rendered here).

    num_tracks (default cfg.num_tracks) Gaussians visible at their query frame (default
    `default_query_frames(F, cfg.num_query_frames)`): cfg.track_foreground of them on the moving objects
    (evenly split among CAR, ARM, BLOB, BALL), the rest on the background. See `tracks_from_scene`.
    """
    if isinstance(cams, Frames):
        frames = cams
    else:
        frames = render_frames(scene, cfg, cams, jnp.arange(cams.viewmat.shape[0]))
    F = frames.num_frames
    num_tracks = cfg.num_tracks if num_tracks is None else num_tracks
    if query_frames is None:
        query_frames = default_query_frames(F, cfg.num_query_frames)
    fg = cfg.track_foreground / 4.0
    shares = {BACKGROUND: 1.0 - cfg.track_foreground, CAR: fg, ARM: fg, BLOB: fg, BALL: fg}
    n = scene.groups.shape[0]
    return tracks_lib.from_scene(
        functools.partial(means_at, scene, cfg),
        frames,
        np.arange(n),
        num_tracks,
        query_frames,
        seed,
        groups=np.asarray(scene.groups),
        group_shares=shares,
        return_indices=return_indices,
    )


def make_dataset(cfg: HandheldConfig) -> tuple[HandheldScene, Frames, Frames]:
    """(scene, training frames (T, with ground-truth tracks on .tracks), held-out frames (E x T,
    camera-major: row e * T + t is held-out camera e at time t)), all with z-depth and the moving-object
    mask."""
    scene = build_scene(cfg)
    T = cfg.num_frames
    train = render_frames(scene, cfg, train_cameras(cfg), jnp.arange(T))
    train = train.replace(tracks=ground_truth_tracks(scene, cfg, train, seed=cfg.seed))
    ev = eval_cameras(cfg)
    E = ev.viewmat.shape[0]
    ev_all = ev.replace(viewmat=jnp.repeat(ev.viewmat, T, axis=0), K=jnp.repeat(ev.K, T, axis=0))
    held_out = render_frames(scene, cfg, ev_all, jnp.tile(jnp.arange(T), E))
    return scene, train, held_out
