"""3DGS PLY files: the Gaussians of one frame, and a sequence of frames of a trained model.

The layout of the original 3D Gaussian splatting code, which common splat viewers read:
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

from any4d_jax import files
from any4d_jax.errors import InputError
from any4d_jax.model.gaussians import Gaussians, ModelParams, check, splats_at
from any4d_jax.model.motion import MotionConfig
from any4d_jax.render.sh import num_sh_bases, rgb_to_sh_dc, sh_degree_from_bases
from any4d_jax.render.types import Splats

__all__ = ["ply_property_names", "read_ply", "write_ply", "write_sequence"]

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
    with files.atomic_write(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(table.tobytes())
    return m


def _parse_header(fh, path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    first = fh.readline()
    if first.strip() != b"ply":
        raise InputError(f"read_ply: {path} is not a PLY file (first line {first[:20]!r})")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    while True:
        raw = fh.readline()
        if not raw:
            raise InputError(f"read_ply: {path}: header has no end_header line")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise InputError(f"read_ply: {path}: header is not ASCII") from err
        if line == "end_header":
            break
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3:
                raise InputError(f"read_ply: {path}: malformed format line {line!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not re.fullmatch(r"\d+", words[2]):
                raise InputError(f"read_ply: {path}: malformed element line {line!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise InputError(f"read_ply: {path}: property before any element: {line!r}")
            if len(words) >= 2 and words[1] == "list":
                raise InputError(
                    f"read_ply: {path}: list property {line!r} in element {elements[-1][0]!r} "
                    "is not supported"
                )
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise InputError(f"read_ply: {path}: unsupported property line {line!r}")
            elements[-1][2].append((words[2], words[1]))
        else:
            raise InputError(f"read_ply: {path}: unexpected header line {line!r}")
    if fmt is None:
        raise InputError(f"read_ply: {path}: header has no format line")
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
        raise InputError(f"read_ply: {path}: format {fmt!r} is not supported (only binary_little_endian)")
    offset = 0
    vertex = None
    for name, count, props in elements:
        dtype = np.dtype([(p, "<" + _PLY_TYPES[t]) for p, t in props])
        if name == "vertex":
            vertex = (count, dtype, offset)
            break
        offset += count * dtype.itemsize
    if vertex is None:
        raise InputError(f"read_ply: {path}: no 'vertex' element")
    n, dtype, offset = vertex
    names = set(dtype.names or ())
    n_rest = len([p for p in names if p.startswith("f_rest_")])
    if n_rest % 3 != 0 or n_rest // 3 + 1 not in (1, 4, 9, 16):
        raise InputError(
            f"read_ply: {path}: {n_rest} f_rest properties, expected 3 * (K - 1) for K in 1, 4, 9, 16"
        )
    degree = sh_degree_from_bases(n_rest // 3 + 1)
    required = [p for p in ply_property_names(degree) if p not in ("nx", "ny", "nz")]
    missing = [p for p in required if p not in names]
    if missing:
        raise InputError(f"read_ply: {path}: vertex element lacks properties {missing}")
    if len(body) < offset + n * dtype.itemsize:
        raise InputError(
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


@functools.partial(jax.jit, static_argnames=("motion_cfg",))
def _splats_at(params, active, motion_cfg, t):
    return splats_at(params, active, motion_cfg, t)


def write_sequence(
    folder: str, params: ModelParams, active, motion_cfg: MotionConfig, num_frames: int
) -> list[str]:
    """ply/frame_XXX.ply: the model's Gaussians at every frame 0..num_frames-1 (one compiled program)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for t in range(int(num_frames)):
        path = os.path.join(folder, f"frame_{t:03d}.ply")
        write_ply(path, _splats_at(params, active, motion_cfg, jnp.float32(t)), active=active)
        paths.append(path)
    return paths
