"""Persistent 3D Gaussians with a fixed capacity, their activation into renderer input, init and PLY I/O.

A `Gaussians` pytree holds N slots (N fixed, so jitted training steps keep one shape while densification and
pruning only flip the `active` mask). Parameters are stored unconstrained (log scales, opacity logits, raw
quaternions); `activate` maps them to the renderer's `Splats`.

PLY files follow the layout of the original 3D Gaussian splatting code, which common splat viewers read:
binary_little_endian, one `vertex` element with float properties
    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1} opacity scale_0..2 rot_0..3
where f_rest is channel-major (all K-1 higher-band coefficients of R, then of G, then of B), opacity is the
logit, scales are logs, rot is the normalised quaternion (w, x, y, z) and the normals are zero.
"""

from __future__ import annotations

import functools
import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from any4d_jax import motion
from any4d_jax.cameras import Camera
from any4d_jax.render.sh import num_sh_bases, rgb_to_sh_dc, sh_degree_from_bases
from any4d_jax.render.types import Splats

__all__ = [
    "Gaussians",
    "activate",
    "at_time",
    "check",
    "empty",
    "from_points",
    "knn_mean_distance",
    "ply_property_names",
    "points_from_depth",
    "read_ply",
    "write_ply",
]


@struct.dataclass
class Gaussians:
    """Canonical Gaussians in unconstrained parameters, N slots of which `active` ones are in use.

    means:           (N, 3)    float32 centres (world, canonical frame).
    quats:           (N, 4)    float32 rotations (w, x, y, z), unnormalised (non-zero).
    log_scales:      (N, 3)    float32 log standard deviations along the local axes.
    opacity_logits:  (N,)      float32 opacity logits (opacity = sigmoid(logit)).
    sh:              (N, K, 3) float32 SH coefficients, K = (d + 1)^2 for degree d in 0..3; DC in sh[:, 0].
    active:          (N,)      bool, which slots hold a Gaussian.
    """

    means: jnp.ndarray
    quats: jnp.ndarray
    log_scales: jnp.ndarray
    opacity_logits: jnp.ndarray
    sh: jnp.ndarray
    active: jnp.ndarray

    @property
    def capacity(self) -> int:
        """N, the number of slots (active or not)."""
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """Degree d of the stored SH bands (K = (d + 1)^2)."""
        return sh_degree_from_bases(self.sh.shape[1])

    @property
    def num_active(self) -> jnp.ndarray:
        """int32 scalar count of active slots."""
        return jnp.sum(self.active.astype(jnp.int32))


def check(g: Gaussians) -> None:
    """Shape and dtype checks of a `Gaussians` (works on tracers too). Raises ValueError."""
    if g.means.ndim != 2 or g.sh.ndim != 3:
        raise ValueError(
            f"Gaussians: means must be (N, 3) and sh (N, K, 3); got {g.means.shape}, {g.sh.shape}"
        )
    n = g.means.shape[0]
    expected = {
        "means": (n, 3),
        "quats": (n, 4),
        "log_scales": (n, 3),
        "opacity_logits": (n,),
        "sh": (n, g.sh.shape[1], 3),
        "active": (n,),
    }
    bad = {k: getattr(g, k).shape for k, v in expected.items() if getattr(g, k).shape != v}
    if bad:
        raise ValueError(f"Gaussians: fields with wrong shapes {bad}; expected {expected}")
    sh_degree_from_bases(g.sh.shape[1])  # raises ValueError for K not in {1, 4, 9, 16}
    if g.active.dtype != jnp.bool_:
        raise ValueError(f"Gaussians: active must be bool, got {g.active.dtype}")


# ----------------------------------------------------------------------------------------------------------
# Activation.
# ----------------------------------------------------------------------------------------------------------


def activate(g: Gaussians, means: jnp.ndarray | None = None, quats: jnp.ndarray | None = None) -> Splats:
    """The renderer's input: exp scales, sigmoid opacities (0 for inactive slots), colours = the SH array.

    `means` (N, 3) / `quats` (N, 4) replace the canonical ones (e.g. Gaussians moved to time t). Inactive
    slots get opacity exactly 0, below the renderer's 1/255 threshold, so they are culled. Jit- and grad-safe.
    """
    check(g)
    means = g.means if means is None else means
    quats = g.quats if quats is None else quats
    chex.assert_shape(means, (g.capacity, 3))
    chex.assert_shape(quats, (g.capacity, 4))
    opacities = jnp.where(g.active, jax.nn.sigmoid(g.opacity_logits), 0.0)
    return Splats(
        means=means,
        quats=quats,
        scales=jnp.exp(g.log_scales),
        opacities=opacities,
        colors=g.sh,
    )


def at_time(
    g: Gaussians, motion_params: motion.MotionParams, motion_cfg: motion.MotionConfig, t, mask=None
) -> Splats:
    """Splats of the Gaussians moved to time t by the motion model (`motion.apply_motion`), then activated.

    mask: optional (B,) active-basis mask (`motion.basis_mask`).
    """
    check(g)
    chex.assert_shape(motion_params.weights, (g.capacity, motion_cfg.num_bases))
    means_t, quats_t = motion.apply_motion(g.means, g.quats, motion_params, motion_cfg, t, mask)
    return activate(g, means_t, quats_t)


# ----------------------------------------------------------------------------------------------------------
# Construction.
# ----------------------------------------------------------------------------------------------------------


def _identity_quats(n: int) -> np.ndarray:
    q = np.zeros((n, 4), np.float32)
    q[:, 0] = 1.0
    return q


def empty(capacity: int, sh_degree: int = 3) -> Gaussians:
    """`capacity` inactive slots: zero means, identity quats, unit scales, zero logits, zero SH."""
    capacity = int(capacity)
    if capacity < 0:
        raise ValueError(f"gaussians.empty: capacity must be >= 0, got {capacity}")
    if not 0 <= int(sh_degree) <= 3:
        raise ValueError(f"gaussians.empty: sh_degree must be in 0..3, got {sh_degree}")
    k = num_sh_bases(int(sh_degree))
    return Gaussians(
        means=jnp.zeros((capacity, 3), jnp.float32),
        quats=jnp.asarray(_identity_quats(capacity)),
        log_scales=jnp.zeros((capacity, 3), jnp.float32),
        opacity_logits=jnp.zeros((capacity,), jnp.float32),
        sh=jnp.zeros((capacity, k, 3), jnp.float32),
        active=jnp.zeros((capacity,), bool),
    )


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _knn_mean_distance(points: jnp.ndarray, k: int, block: int) -> jnp.ndarray:
    n = points.shape[0]
    p = points - jnp.mean(points, axis=0)  # centring reduces cancellation in |a|^2 + |b|^2 - 2 a.b
    sq = jnp.sum(p * p, axis=-1)
    nb = -(-n // block)
    ids = jnp.arange(nb * block).reshape(nb, block)

    def rows(r):
        r = jnp.minimum(r, n - 1)
        q = p[r]
        d2 = sq[r][:, None] + sq[None, :] - 2.0 * q @ p.T
        d2 = jnp.where(r[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)  # never its own neighbour
        nbr = jax.lax.top_k(-d2, k)[1]  # (block, k)
        # Exact distances of the selected neighbours (the expansion above only ranks them).
        diff = q[:, None, :] - p[nbr]
        return jnp.mean(jnp.sqrt(jnp.sum(diff * diff, axis=-1)), axis=-1)

    return jax.lax.map(rows, ids).reshape(-1)[:n]


def knn_mean_distance(points, k: int = 3, block: int | None = None) -> jnp.ndarray:
    """(M,) mean Euclidean distance of each point to its k nearest other points (brute force, row blocks).

    With fewer than k + 1 points the available neighbours are used; a single point gets distance 0.
    """
    points = jnp.asarray(points, jnp.float32)
    chex.assert_rank(points, 2)
    chex.assert_axis_dimension(points, 1, 3)
    m = points.shape[0]
    k = min(int(k), m - 1)
    if k <= 0:
        return jnp.zeros((m,), jnp.float32)
    if block is None:  # bound the (block, M) distance tile to ~64 Mi entries
        block = int(max(1, min(1024, (1 << 26) // m, m)))
    return _knn_mean_distance(points, k=k, block=int(block))


def from_points(
    points,
    colors,
    capacity: int,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    key: jax.Array | None = None,
    min_scale: float = 1e-6,
) -> Gaussians:
    """Gaussians initialised from a point cloud, as 3DGS does; runs eagerly (not under jit).

    points: (M, 3) world positions; colors: (M, 3) RGB in [0, 1]. The first M slots become active. Scales are
    isotropic: log of the mean distance to the 3 nearest neighbours (clamped to `min_scale`); opacity logits
    are logit(init_opacity); SH DC is `rgb_to_sh_dc(colors)`, higher bands zero. Quaternions are the identity,
    or, when `key` is given, uniformly random rotations (indistinguishable for the isotropic initial scales,
    but they break the symmetry once the scales become anisotropic).
    """
    points = np.asarray(points, np.float32)
    colors = np.asarray(colors, np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"from_points: points must have shape (M, 3), got {points.shape}")
    m = points.shape[0]
    if colors.shape != (m, 3):
        raise ValueError(
            f"from_points: colors must have shape ({m}, 3) to match the points, got {colors.shape}"
        )
    capacity = int(capacity)
    if m > capacity:
        raise ValueError(
            f"from_points: {m} points do not fit in capacity {capacity}; raise the capacity or subsample "
            "the points (e.g. a larger stride in points_from_depth)"
        )
    if not 0.0 < float(init_opacity) < 1.0:
        raise ValueError(f"from_points: init_opacity must lie in (0, 1), got {init_opacity}")
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(colors))):
        raise ValueError("from_points: points and colors must be finite")
    g = empty(capacity, sh_degree)
    if m == 0:
        return g
    dist = np.asarray(knn_mean_distance(points, 3)) if m > 1 else np.zeros((1,), np.float32)
    log_scale = np.log(np.maximum(dist, np.float32(min_scale))).astype(np.float32)
    if key is None:
        quats = _identity_quats(m)
    else:
        q = np.asarray(jax.random.normal(key, (m, 4), jnp.float32))
        quats = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        quats = (quats * np.where(quats[:, :1] < 0, -1.0, 1.0)).astype(np.float32)
    logit = np.float32(np.log(init_opacity) - np.log1p(-init_opacity))
    dc = np.asarray(rgb_to_sh_dc(colors), np.float32)

    def put(base, value):
        out = np.array(base)
        out[:m] = value
        return jnp.asarray(out)

    return Gaussians(
        means=put(g.means, points),
        quats=put(g.quats, quats),
        log_scales=put(g.log_scales, np.repeat(log_scale[:, None], 3, axis=1)),
        opacity_logits=put(g.opacity_logits, logit),
        sh=put(g.sh, np.concatenate([dc[:, None, :], np.zeros((m, g.sh.shape[1] - 1, 3), np.float32)], 1)),
        active=put(g.active, True),
    )


def points_from_depth(
    depth, rgb, cameras: Camera, stride: int = 4, mask=None
) -> tuple[np.ndarray, np.ndarray]:
    """Unproject every `stride`-th pixel of depth maps to a coloured world point cloud (eager numpy).

    depth:   (F, H, W) z-depth (along the optical axis), <= 0 or non-finite means no depth.
    rgb:     (F, H, W, 3) colours (float in [0, 1], or uint8 which is divided by 255).
    cameras: Camera with viewmat (F, 4, 4), K (F, 3, 3) (OpenCV, world-to-camera), width W, height H.
    stride:  pixels (col, row) with col % stride == 0 and row % stride == 0 are used.
    mask:    optional (F, H, W) bool, False pixels are skipped.
    Pixel (col, row) has its centre at (col + 0.5, row + 0.5): X_cam = z K^-1 (u, v, 1), X = R^T (X_cam - t).
    Returns points (M, 3) and colors (M, 3) float32, ordered by frame, then row, then column.
    """
    depth = np.asarray(depth, np.float64)
    rgb_in = np.asarray(rgb)
    rgb = rgb_in.astype(np.float64) / 255.0 if rgb_in.dtype == np.uint8 else rgb_in.astype(np.float64)
    if depth.ndim != 3:
        raise ValueError(f"points_from_depth: depth must be (F, H, W), got {depth.shape}")
    f, h, w = depth.shape
    if rgb.shape != (f, h, w, 3):
        raise ValueError(f"points_from_depth: rgb must be {(f, h, w, 3)} to match depth, got {rgb.shape}")
    if mask is not None and np.shape(mask) != (f, h, w):
        raise ValueError(f"points_from_depth: mask must be {(f, h, w)}, got {np.shape(mask)}")
    if (cameras.width, cameras.height) != (w, h):
        raise ValueError(
            f"points_from_depth: cameras are {cameras.width} x {cameras.height} but depth maps are {w} x {h}"
        )
    viewmat = np.asarray(cameras.viewmat, np.float64)
    K = np.asarray(cameras.K, np.float64)
    if viewmat.shape != (f, 4, 4) or K.shape != (f, 3, 3):
        raise ValueError(
            f"points_from_depth: need one camera per frame, viewmat ({f}, 4, 4) and K ({f}, 3, 3); "
            f"got {viewmat.shape} and {K.shape}"
        )
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"points_from_depth: stride must be >= 1, got {stride}")

    rows = np.arange(0, h, stride)
    cols = np.arange(0, w, stride)
    uu, vv = np.meshgrid(cols + 0.5, rows + 0.5, indexing="xy")  # (h', w')
    pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1).reshape(-1, 3)
    all_points, all_colors = [], []
    for i in range(f):
        z = depth[i][np.ix_(rows, cols)].reshape(-1)
        keep = np.isfinite(z) & (z > 0)
        if mask is not None:
            keep &= np.asarray(mask[i], bool)[np.ix_(rows, cols)].reshape(-1)
        rays = np.linalg.solve(K[i], pix[keep].T).T  # K^-1 (u, v, 1): points at z = 1
        x_cam = rays * z[keep][:, None]
        R, t = viewmat[i, :3, :3], viewmat[i, :3, 3]
        all_points.append((x_cam - t) @ R)  # rows of R^T (x - t)
        all_colors.append(rgb[i][np.ix_(rows, cols)].reshape(-1, 3)[keep])
    points = np.concatenate(all_points, axis=0).astype(np.float32)
    colors = np.concatenate(all_colors, axis=0).astype(np.float32)
    return points, colors


# ----------------------------------------------------------------------------------------------------------
# PLY I/O.
# ----------------------------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex properties of a 3DGS PLY with SH up to `sh_degree`, in file order."""
    k = num_sh_bases(int(sh_degree))
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * (k - 1))]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _normalise_quats(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    ident = np.zeros_like(q)
    ident[:, 0] = 1.0
    return np.where(norm > 1e-30, q / np.maximum(norm, 1e-30), ident)


def write_ply(path: str | os.PathLike, gaussians: Gaussians | Splats, active=None) -> int:
    """Write the active Gaussians to a 3DGS-layout binary PLY; returns the number written.

    gaussians: `Gaussians` (its `active` slots are written), or activated `Splats` (log of scales, logit of
               opacities clipped to [1e-6, 1 - 1e-6]; RGB colours (N, 3) become SH DC; features are not
               stored). For Splats, slots with opacity exactly 0 (inactive slots from `activate`) are skipped.
    active:    optional (N,) bool overriding which slots are written.
    """
    if isinstance(gaussians, Gaussians):
        check(gaussians)
        means = np.asarray(gaussians.means, np.float32)
        quats = np.asarray(gaussians.quats)
        log_scales = np.asarray(gaussians.log_scales, np.float32)
        logits = np.asarray(gaussians.opacity_logits, np.float32)
        sh = np.asarray(gaussians.sh, np.float32)
        keep = np.asarray(gaussians.active, bool)
    elif isinstance(gaussians, Splats):
        means = np.asarray(gaussians.means, np.float32)
        n = means.shape[0]
        chex.assert_shape(means, (n, 3))
        chex.assert_shape(gaussians.quats, (n, 4))
        chex.assert_shape(gaussians.scales, (n, 3))
        chex.assert_shape(gaussians.opacities, (n,))
        quats = np.asarray(gaussians.quats)
        scales = np.asarray(gaussians.scales, np.float64)
        if not np.all(scales > 0):
            raise ValueError("write_ply: Splats.scales must be > 0 (activated scales)")
        log_scales = np.log(scales).astype(np.float32)
        opac = np.asarray(gaussians.opacities, np.float64)
        p = np.clip(opac, 1e-6, 1.0 - 1e-6)
        logits = (np.log(p) - np.log1p(-p)).astype(np.float32)
        colors = np.asarray(gaussians.colors, np.float32)
        if colors.shape == (n, 3):
            sh = np.asarray(rgb_to_sh_dc(colors), np.float32)[:, None, :]
        elif colors.ndim == 3 and colors.shape[0] == n and colors.shape[2] == 3:
            sh_degree_from_bases(colors.shape[1])
            sh = colors
        else:
            raise ValueError(
                f"write_ply: Splats.colors has shape {colors.shape}, expected ({n}, 3) or ({n}, K, 3)"
            )
        keep = opac > 0
    else:
        raise ValueError(f"write_ply: expected Gaussians or Splats, got {type(gaussians).__name__}")
    if active is not None:
        keep = np.asarray(active, bool)
        if keep.shape != (means.shape[0],):
            raise ValueError(f"write_ply: active must have shape ({means.shape[0]},), got {keep.shape}")

    k = sh.shape[1]
    names = ply_property_names(sh_degree_from_bases(k))
    m = int(np.sum(keep))
    rest = np.transpose(sh[keep, 1:, :], (0, 2, 1)).reshape(m, 3 * (k - 1))  # channel-major
    columns = [
        means[keep],
        np.zeros((m, 3), np.float32),
        sh[keep, 0, :],
        rest,
        logits[keep][:, None],
        log_scales[keep],
        _normalise_quats(quats[keep]).astype(np.float32),
    ]
    table = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    if table.shape[1] != len(names):  # internal consistency
        raise AssertionError(f"write_ply: {table.shape[1]} columns for {len(names)} properties")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {m}"]
    header += [f"property float {name}" for name in names]
    header.append("end_header")
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(table.tobytes())
    return m


def _parse_header(fh, path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    first = fh.readline()
    if first.strip() != b"ply":
        raise ValueError(f"read_ply: {path} is not a PLY file (first line {first[:20]!r})")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    while True:
        raw = fh.readline()
        if not raw:
            raise ValueError(f"read_ply: {path}: header has no end_header line")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise ValueError(f"read_ply: {path}: header is not ASCII") from err
        if line == "end_header":
            break
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3:
                raise ValueError(f"read_ply: {path}: malformed format line {line!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not re.fullmatch(r"\d+", words[2]):
                raise ValueError(f"read_ply: {path}: malformed element line {line!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise ValueError(f"read_ply: {path}: property before any element: {line!r}")
            if len(words) >= 2 and words[1] == "list":
                raise ValueError(
                    f"read_ply: {path}: list property {line!r} in element {elements[-1][0]!r} "
                    "is not supported"
                )
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise ValueError(f"read_ply: {path}: unsupported property line {line!r}")
            elements[-1][2].append((words[2], words[1]))
        else:
            raise ValueError(f"read_ply: {path}: unexpected header line {line!r}")
    if fmt is None:
        raise ValueError(f"read_ply: {path}: header has no format line")
    return fmt, elements


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS-layout PLY (ASCII header, binary_little_endian body; float or double properties in any
    order; other scalar elements are skipped). Returns `Gaussians` with capacity = vertex count, all active.
    Raises ValueError for unsupported formats, missing properties or truncated files.
    """
    with open(path, "rb") as fh:
        fmt, elements = _parse_header(fh, path)
        body = fh.read()
    if fmt != "binary_little_endian":
        raise ValueError(f"read_ply: {path}: format {fmt!r} is not supported (only binary_little_endian)")
    offset = 0
    vertex = None
    for name, count, props in elements:
        dtype = np.dtype([(p, "<" + _PLY_TYPES[t]) for p, t in props])
        if name == "vertex":
            vertex = (count, dtype, offset)
            break
        offset += count * dtype.itemsize
    if vertex is None:
        raise ValueError(f"read_ply: {path}: no 'vertex' element")
    n, dtype, offset = vertex
    names = set(dtype.names or ())
    n_rest = len([p for p in names if p.startswith("f_rest_")])
    if n_rest % 3 != 0 or n_rest // 3 + 1 not in (1, 4, 9, 16):
        raise ValueError(
            f"read_ply: {path}: {n_rest} f_rest properties, expected 3 * (K - 1) for K in 1, 4, 9, 16"
        )
    degree = sh_degree_from_bases(n_rest // 3 + 1)
    required = [p for p in ply_property_names(degree) if p not in ("nx", "ny", "nz")]
    missing = [p for p in required if p not in names]
    if missing:
        raise ValueError(f"read_ply: {path}: vertex element lacks properties {missing}")
    if len(body) < offset + n * dtype.itemsize:
        raise ValueError(
            f"read_ply: {path}: body has {len(body)} bytes, the header needs {offset + n * dtype.itemsize}"
        )
    data = np.frombuffer(body, dtype=dtype, count=n, offset=offset)

    def cols(props):
        return np.stack([np.asarray(data[p], np.float32) for p in props], axis=-1).reshape(n, len(props))

    k = num_sh_bases(degree)
    dc = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    rest = cols([f"f_rest_{i}" for i in range(3 * (k - 1))]) if k > 1 else np.zeros((n, 0), np.float32)
    sh = np.concatenate([dc[:, None, :], rest.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    return Gaussians(
        means=jnp.asarray(cols(["x", "y", "z"])),
        quats=jnp.asarray(cols(["rot_0", "rot_1", "rot_2", "rot_3"])),
        log_scales=jnp.asarray(cols(["scale_0", "scale_1", "scale_2"])),
        opacity_logits=jnp.asarray(cols(["opacity"])[:, 0]),
        sh=jnp.asarray(sh),
        active=jnp.ones((n,), bool),
    )
