"""A procedural dynamic scene with ground truth: the default, weight-free data source.

Contents (world: OpenCV-like, y points down; the ground is the plane y = +0.8):
- static background: a checkered ground and a striped back wall (flat Gaussians);
- a rigidly spinning cube (coloured faces) turning about the vertical axis;
- a bouncing ball (translating rigidly, with a bounce);
- a non-rigid waving sheet pinned on its left edge.
Cameras: a monocular training camera sweeping an arc (one view per time step, like a phone video) and held-out
static evaluation cameras that see every time step, inside the span of the training arc. Frames come with
z-depth and a soft foreground mask (the dynamic objects), rendered with our rasterizer. All of it is seeded.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct

from any4d_jax.data import tracks as tracks_lib
from any4d_jax.data.frames import Frames
from any4d_jax.geometry import cameras, lie
from any4d_jax.render import RenderConfig, Splats, render, within_budget

BACKGROUND, SPINNER, BOUNCER, SHEET = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and cameras of the synthetic scene (every field has a default)."""

    num_frames: int = 24  # time steps T
    width: int = 128  # image width
    height: int = 96  # image height
    fov_deg: float = 55.0  # horizontal field of view
    seed: int = 0  # PRNG seed of the scene content
    num_background: int = 6000  # Gaussians on the ground and wall
    num_per_object: int = 1200  # Gaussians per dynamic object
    radius: float = 3.6  # camera distance to the look-at point
    elevation_deg: float = 14.0  # camera elevation above the horizon
    train_arc_deg: float = 50.0  # azimuth span swept by the training camera
    eval_azimuths_deg: tuple = (-12.0, 12.0)  # static held-out cameras (inside the training span)
    background: tuple = (1.0, 1.0, 1.0)  # colour behind the scene
    spin_deg: float = 90.0  # total turn of the spinning cube over the clip
    bounces: int = 2  # bounces of the ball over the clip
    # Metres per scene unit, for scores in metres (3D tracking's 5 / 10 cm): the camera then stands 1.44 m
    # from the subject and the cube is 24 cm wide, the scale of DyCheck's iPhone captures.
    metres_per_unit: float = 0.4

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> SyntheticConfig:
        """From an experiment config (config.data, config.seed, config.render.background)."""
        d = config.data
        return cls(
            num_frames=d.num_frames,
            width=d.width,
            height=d.height,
            fov_deg=d.fov_deg,
            seed=config.seed,
            num_background=d.num_background,
            num_per_object=d.num_per_object,
            train_arc_deg=d.train_arc_deg,
            eval_azimuths_deg=tuple(d.eval_azimuths_deg),
            background=tuple(config.render.background),
            spin_deg=d.spin_deg,
            bounces=d.bounces,
        )


@struct.dataclass
class SyntheticScene:
    """Canonical (t = 0) Gaussians with their group labels; motion is analytic (see `scene_at`).

    splats: Splats with RGB colours (N, 3) and features (N, 1) = 1 for dynamic Gaussians (the mask channel).
    groups: (N,) int32 in {BACKGROUND, SPINNER, BOUNCER, SHEET}.
    """

    splats: Splats
    groups: jnp.ndarray


SPINNER_CENTRE = np.array([-0.95, 0.35, 0.3], np.float32)  # numpy: importing starts no JAX backend
BOUNCER_CENTRE = np.array([0.95, 0.35, 0.1], np.float32)
SHEET_ORIGIN = np.array([-0.45, -0.75, 0.55], np.float32)  # top-left corner of the sheet
SHEET_SIZE = (1.0, 0.7)


def _quat_identity(n):
    return jnp.tile(jnp.array([[1.0, 0.0, 0.0, 0.0]]), (n, 1))


def build_scene(cfg: SyntheticConfig) -> SyntheticScene:
    """Sample the canonical Gaussians of the scene (deterministic for cfg.seed)."""
    k = jax.random.split(jax.random.PRNGKey(cfg.seed), 10)
    nb, no = cfg.num_background, cfg.num_per_object
    flat = 0.006

    # Ground (2/3 of the background) and back wall.
    ng = 2 * nb // 3
    nw = nb - ng
    g = jax.random.uniform(k[0], (ng, 2), minval=jnp.array([-2.8, -1.6]), maxval=jnp.array([2.8, 2.6]))
    ground = jnp.stack([g[:, 0], jnp.full((ng,), 0.8), g[:, 1]], -1)
    check = (jnp.floor(g[:, 0] * 2.0) + jnp.floor(g[:, 1] * 2.0)) % 2
    ground_rgb = jnp.where(check[:, None] > 0, jnp.array([0.9, 0.86, 0.78]), jnp.array([0.32, 0.38, 0.45]))
    ground_s = jnp.tile(jnp.array([[0.07, flat, 0.07]]), (ng, 1))
    w = jax.random.uniform(k[1], (nw, 2), minval=jnp.array([-3.6, -1.8]), maxval=jnp.array([3.6, 0.8]))
    wall = jnp.stack([w[:, 0], w[:, 1], jnp.full((nw,), 2.6)], -1)
    stripe = jnp.floor(w[:, 1] * 3.0) % 3
    wall_pal = jnp.array([[0.85, 0.55, 0.45], [0.95, 0.9, 0.7], [0.55, 0.7, 0.8]])
    wall_rgb = wall_pal[stripe.astype(jnp.int32)]
    wall_s = jnp.tile(jnp.array([[0.08, 0.08, flat]]), (nw, 1))

    # Spinner: surface of a cube of half-size 0.3, faces coloured.
    face = jax.random.randint(k[2], (no,), 0, 6)
    uv = jax.random.uniform(k[3], (no, 2), minval=-0.3, maxval=0.3)
    axis, sign = face // 2, jnp.where(face % 2 == 0, 1.0, -1.0)
    cube = jnp.zeros((no, 3))
    cube = cube.at[jnp.arange(no), axis].set(0.3 * sign)
    cube = cube.at[jnp.arange(no), (axis + 1) % 3].set(uv[:, 0])
    cube = cube.at[jnp.arange(no), (axis + 2) % 3].set(uv[:, 1])
    face_pal = jnp.array(
        [
            [0.9, 0.2, 0.2],
            [0.2, 0.75, 0.3],
            [0.2, 0.35, 0.9],
            [0.95, 0.8, 0.1],
            [0.8, 0.3, 0.85],
            [0.1, 0.8, 0.85],
        ]
    )
    dots = (jnp.sin(uv[:, 0] * 25) * jnp.sin(uv[:, 1] * 25) > 0.3)[:, None]
    cube_rgb = jnp.where(dots, 0.35 * face_pal[face], face_pal[face])
    cube_s = jnp.full((no, 3), 0.035).at[jnp.arange(no), axis].set(flat)
    spinner = cube + SPINNER_CENTRE

    # Bouncer: a sphere shell of radius 0.28 with latitude stripes.
    d = jax.random.normal(k[4], (no, 3))
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    bouncer = 0.28 * d + BOUNCER_CENTRE
    band = (jnp.floor((d[:, 1] + 1.0) * 4.0) % 2)[:, None]
    ball_rgb = jnp.where(band > 0, jnp.array([0.95, 0.45, 0.1]), jnp.array([0.2, 0.2, 0.25]))
    ball_s = jnp.full((no, 3), 0.03)

    # Sheet: a grid-ish flag in the plane z = const, pinned at x = SHEET_ORIGIN.x.
    s = jax.random.uniform(k[5], (no, 2)) * jnp.array(SHEET_SIZE)
    sheet = SHEET_ORIGIN + jnp.stack([s[:, 0], s[:, 1], jnp.zeros((no,))], -1)
    sheet_rgb = jnp.stack(
        [
            0.2 + 0.7 * s[:, 0] / SHEET_SIZE[0],
            0.3 + 0.5 * s[:, 1] / SHEET_SIZE[1],
            0.9 - 0.6 * s[:, 0] / SHEET_SIZE[0],
        ],
        -1,
    )
    sheet_s = jnp.tile(jnp.array([[0.03, 0.03, flat]]), (no, 1))

    means = jnp.concatenate([ground, wall, spinner, bouncer, sheet])
    rgb = jnp.concatenate([ground_rgb, wall_rgb, cube_rgb, ball_rgb, sheet_rgb])
    scales = jnp.concatenate([ground_s, wall_s, cube_s, ball_s, sheet_s])
    groups = jnp.concatenate(
        [
            jnp.full((nb,), BACKGROUND),
            jnp.full((no,), SPINNER),
            jnp.full((no,), BOUNCER),
            jnp.full((no,), SHEET),
        ]
    ).astype(jnp.int32)
    n = means.shape[0]
    noise = 0.04 * jax.random.normal(k[6], (n, 3))
    splats = Splats(
        means=means,
        quats=_quat_identity(n),
        scales=scales,
        opacities=jnp.full((n,), 0.95),
        colors=jnp.clip(rgb + noise, 0.0, 1.0),
        features=(groups != BACKGROUND).astype(jnp.float32)[:, None],
    )
    return SyntheticScene(splats=splats, groups=groups)


def scene_at(scene: SyntheticScene, cfg: SyntheticConfig, t) -> Splats:
    """The ground-truth Gaussians at (float) time t: pure jnp, jit/vmap-able over t."""
    s = scene.splats
    T = float(max(cfg.num_frames - 1, 1))
    phase = t / T  # 0 .. 1 over the clip
    g = scene.groups[:, None]

    # Spinner: cfg.spin_deg about the vertical axis through its centre.
    ang = jnp.deg2rad(cfg.spin_deg) * phase
    R = lie.so3_exp(jnp.array([0.0, 1.0, 0.0]) * ang)
    spun = (s.means - SPINNER_CENTRE) @ R.T + SPINNER_CENTRE
    q_spin = lie.quat_multiply(lie.so3_exp_quat(jnp.array([0.0, 1.0, 0.0]) * ang), s.quats)

    # Bouncer: cfg.bounces bounces, moving up (-y) and sideways.
    lift = -0.7 * jnp.abs(jnp.sin(cfg.bounces * jnp.pi * phase))
    bounced = s.means + jnp.stack([-0.35 * phase, lift, 0.0 * phase])

    # Sheet: a travelling wave in z whose amplitude grows from the pinned edge.
    x = (s.means[:, 0] - SHEET_ORIGIN[0]) / SHEET_SIZE[0]
    # (minus its t = 0 value, so the stored means are the sheet at t = 0).
    wave = 0.18 * x * (jnp.sin(2.0 * jnp.pi * (1.2 * x - 1.5 * phase)) - jnp.sin(2.0 * jnp.pi * 1.2 * x))
    waved = s.means + jnp.stack([jnp.zeros_like(x), jnp.zeros_like(x), wave], -1)

    means = jnp.where(
        g == SPINNER, spun, jnp.where(g == BOUNCER, bounced, jnp.where(g == SHEET, waved, s.means))
    )
    quats = jnp.where(g == SPINNER, q_spin, s.quats)
    return s.replace(means=means, quats=quats)


def eye_position(az_deg, el_deg, radius):
    """(..., 3) camera centres at azimuth / elevation (degrees) and distance `radius` from the origin (y down:
    positive elevation is above the horizon, azimuth 0 looks along +z)."""
    az, el = np.deg2rad(az_deg), np.deg2rad(el_deg)
    return np.stack(
        [
            radius * np.cos(el) * np.sin(az),
            -radius * np.sin(el) * np.ones_like(az),
            -radius * np.cos(el) * np.cos(az),
        ],
        -1,
    )


LOOK_AT = np.array([0.0, 0.1, 0.5])


def train_cameras(cfg: SyntheticConfig) -> cameras.Camera:
    """One camera per time step sweeping the azimuth arc (monocular, like a hand-held video)."""
    az = np.linspace(-0.5 * cfg.train_arc_deg, 0.5 * cfg.train_arc_deg, cfg.num_frames)
    el = cfg.elevation_deg + 3.0 * np.sin(np.linspace(0, 2 * np.pi, cfg.num_frames))  # hand-held bob
    eyes = eye_position(az, el, cfg.radius) + LOOK_AT
    vms = cameras.look_at(jnp.asarray(eyes), jnp.broadcast_to(jnp.asarray(LOOK_AT), eyes.shape))
    K = jnp.broadcast_to(cameras.from_fov(cfg.width, cfg.height, cfg.fov_deg), (cfg.num_frames, 3, 3))
    return cameras.make_camera(vms, K, cfg.width, cfg.height)


def eval_cameras(cfg: SyntheticConfig) -> cameras.Camera:
    """The held-out static cameras, E of them (viewmat (E, 4, 4))."""
    az = np.asarray(cfg.eval_azimuths_deg, np.float64)
    eyes = eye_position(az, cfg.elevation_deg, cfg.radius) + LOOK_AT
    vms = cameras.look_at(jnp.asarray(eyes), jnp.broadcast_to(jnp.asarray(LOOK_AT), eyes.shape))
    K = jnp.broadcast_to(cameras.from_fov(cfg.width, cfg.height, cfg.fov_deg), (len(az), 3, 3))
    return cameras.make_camera(vms, K, cfg.width, cfg.height)


@functools.partial(jax.jit, static_argnames=("at", "cfg", "width", "height", "rcfg"))
def render_batch(at, scene, cfg, times, viewmat, K, width, height, rcfg):
    """Camera i (viewmat (F, 4, 4), K (F, 3, 3)) at time times[i] of a procedural scene whose Gaussians at
    time t are at(scene, cfg, t) (features channel 0: the moving-object mask) -> ((rgb, depth, mask),
    stats). Shared by every procedural scene (this one, data/handheld.py)."""
    bg = jnp.asarray(cfg.background, jnp.float32)

    def one(t, vm, k):
        cam = cameras.Camera(viewmat=vm, K=k, width=width, height=height)
        out = render(at(scene, cfg, t), cam, bg, rcfg)
        return (out.rgb, out.depth, out.features[..., 0]), out.stats

    return jax.vmap(one)(times, viewmat, K)


def render_frames(scene: SyntheticScene, cfg: SyntheticConfig, cams: cameras.Camera, times) -> Frames:
    """Ground-truth frames: camera i at time times[i] (rgb, z-depth, foreground mask)."""
    times = jnp.asarray(times, jnp.float32)
    (rgb, depth, mask), _, _ = within_budget(
        lambda rcfg: render_batch(
            scene_at, scene, cfg, times, cams.viewmat, cams.K, cams.width, cams.height, rcfg
        ),
        RenderConfig(validate=False),
    )
    return Frames(
        rgb=jnp.clip(rgb, 0.0, 1.0), cameras=cams, times=times, depth=depth, mask=jnp.clip(mask, 0.0, 1.0)
    )


def make_dataset(cfg: SyntheticConfig) -> tuple[SyntheticScene, Frames, Frames]:
    """(scene, training frames (T), evaluation frames (E x T, camera-major))."""
    scene = build_scene(cfg)
    T = cfg.num_frames
    train = render_frames(scene, cfg, train_cameras(cfg), jnp.arange(T))
    ev = eval_cameras(cfg)
    E = ev.viewmat.shape[0]
    ev_all = ev.replace(viewmat=jnp.repeat(ev.viewmat, T, axis=0), K=jnp.repeat(ev.K, T, axis=0))
    evaluation = render_frames(scene, cfg, ev_all, jnp.tile(jnp.arange(T), E))
    return scene, train, evaluation


def novel_orbit(cfg: SyntheticConfig, num: int, arc_deg: float) -> cameras.Camera:
    """`num` cameras sweeping a wider arc than training, at a varying height (rendered while time runs)."""
    az = np.linspace(-0.5 * arc_deg, 0.5 * arc_deg, num)
    el = cfg.elevation_deg + 8.0 * np.sin(np.linspace(0, np.pi, num))
    eyes = eye_position(az, el, cfg.radius) + LOOK_AT
    vms = cameras.look_at(jnp.asarray(eyes), jnp.broadcast_to(jnp.asarray(LOOK_AT), eyes.shape))
    K = jnp.broadcast_to(cameras.from_fov(cfg.width, cfg.height, cfg.fov_deg), (num, 3, 3))
    return cameras.make_camera(vms, K, cfg.width, cfg.height)


def point_positions(scene: SyntheticScene, cfg: SyntheticConfig, times) -> np.ndarray:
    """(N, F, 3) every scene Gaussian's centre at each of the times (F,): the scene's exact point motion."""
    means = jax.jit(jax.vmap(lambda t: scene_at(scene, cfg, t).means))(jnp.asarray(times, jnp.float32))
    return np.swapaxes(np.asarray(means), 0, 1)


def ground_truth_tracks(
    scene: SyntheticScene,
    cfg: SyntheticConfig,
    frames: Frames,
    num_tracks: int,
    num_query_frames: int,
    seed: int,
    dynamic_fraction: float = 0.75,
):
    """Exact tracks of scene Gaussians through `frames` (data/tracks.Tracks, with 3D points): a fraction
    `dynamic_fraction` on the moving objects (split evenly between them), the rest on the background,
    queried at num_query_frames frames spread over the clip; visibility from the frames' rendered depth
    (data/tracks.visibility)."""
    f = frames.num_frames
    queries = sorted({int(round(x)) for x in np.linspace(0, f - 1, max(1, num_query_frames))})
    share = dynamic_fraction / 3.0
    shares = {BACKGROUND: 1.0 - dynamic_fraction, SPINNER: share, BOUNCER: share, SHEET: share}
    groups = np.asarray(scene.groups)
    return tracks_lib.from_scene(
        jax.jit(lambda t: scene_at(scene, cfg, t).means),
        frames,
        np.arange(groups.size),
        num_tracks,
        queries,
        seed,
        groups=groups,
        group_shares=shares,
    )
