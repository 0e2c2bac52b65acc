"""`render`: the differentiable tile rasterizer of 3D Gaussians.

Pipeline: projection -> colours (RGB or SH) -> bins (tiles, chunks) -> composite (custom VJP).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.geometry.cameras import Camera
from any4d_jax.render import bin as binning
from any4d_jax.render import composite as comp
from any4d_jax.render import composite_pallas
from any4d_jax.render.project import project
from any4d_jax.render.sh import eval_sh, sh_degree_from_bases
from any4d_jax.render.types import (
    CHANNELS,
    RenderConfig,
    RenderOut,
    Splats,
    auto_chunk_batch,
    resolve_backend,
)


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def check_inputs(splats: Splats, camera: Camera, background: jnp.ndarray | None) -> None:
    """Shape checks always; value checks when the inputs are concrete (outside jit). Raises ValueError."""
    n = splats.means.shape[0]
    fields = {"means": (3,), "quats": (4,), "scales": (3,), "opacities": ()}
    shapes = {name: getattr(splats, name).shape for name in fields}
    if any(shapes[name] != (n,) + tail for name, tail in fields.items()):
        listing = ", ".join(f"splats.{k} {v}" for k, v in shapes.items())
        raise ValueError(
            f"render: expected means (N, 3), quats (N, 4), scales (N, 3), opacities (N,); got {listing}"
        )
    if splats.colors.shape[0] != n or splats.colors.shape[-1] != 3 or splats.colors.ndim not in (2, 3):
        raise ValueError(
            f"render: splats.colors has shape {splats.colors.shape}, expected ({n}, 3) or ({n}, K, 3)"
        )
    if splats.colors.ndim == 3:
        sh_degree_from_bases(splats.colors.shape[1])
    if splats.features is not None and (splats.features.ndim != 2 or splats.features.shape[0] != n):
        raise ValueError(f"render: splats.features has shape {splats.features.shape}, expected ({n}, F)")
    if camera.viewmat.shape[-2:] != (4, 4) or camera.K.shape[-2:] != (3, 3):
        raise ValueError(
            f"render: camera.viewmat {camera.viewmat.shape} / K {camera.K.shape} must be (4,4)/(3,3)"
        )
    if camera.viewmat.ndim != 2:
        raise ValueError(
            f"render: camera.viewmat has batch dims {camera.viewmat.shape[:-2]}; render one camera and use "
            "jax.vmap over cameras for a batch"
        )
    if background is not None and jnp.shape(background) not in ((3,), ()):
        raise ValueError(f"render: background has shape {jnp.shape(background)}, expected (3,)")
    if not _is_concrete(splats, camera, background):
        return
    checks = [
        ("camera.viewmat", np.all(np.isfinite(np.asarray(camera.viewmat))), "must be finite"),
        ("camera.K", np.all(np.isfinite(np.asarray(camera.K))), "must be finite"),
        ("camera.K", float(camera.K[0, 0]) > 0 and float(camera.K[1, 1]) > 0, "needs positive focal lengths"),
        ("splats.means", np.all(np.isfinite(np.asarray(splats.means))), "must be finite"),
        ("splats.quats", np.all(np.isfinite(np.asarray(splats.quats))), "must be finite"),
        (
            "splats.quats",
            np.all(np.linalg.norm(np.asarray(splats.quats), axis=-1) > 1e-12),
            "has a zero-norm row",
        ),
        (
            "splats.scales",
            np.all(np.asarray(splats.scales) > 0),
            "must be > 0 (activated, e.g. exp(log_scales))",
        ),
        ("splats.scales", np.all(np.isfinite(np.asarray(splats.scales))), "must be finite"),
        (
            "splats.opacities",
            np.all((np.asarray(splats.opacities) >= 0) & (np.asarray(splats.opacities) <= 1)),
            "must lie in [0, 1] (activated, e.g. sigmoid(logits))",
        ),
        ("splats.colors", np.all(np.isfinite(np.asarray(splats.colors))), "must be finite"),
    ]
    if splats.features is not None:
        checks.append(("splats.features", np.all(np.isfinite(np.asarray(splats.features))), "must be finite"))
    if background is not None:
        checks.append(("background", np.all(np.isfinite(np.asarray(background))), "must be finite"))
    for name, ok, what in checks:
        if not ok:
            raise ValueError(f"render: {name} {what}")


def splat_colors(splats: Splats, camera: Camera, sh_degree: int | None) -> jnp.ndarray:
    """(N, 3) colours: RGB as given, or SH evaluated along the view direction (camera centre -> mean)."""
    if splats.colors.ndim == 2:
        return splats.colors
    return eval_sh(splats.colors, splats.means - camera.center, sh_degree)


def pack_values(colors: jnp.ndarray, depths: jnp.ndarray, features: jnp.ndarray | None) -> jnp.ndarray:
    """(N, 5 + F) values to composite, columns as `types.CHANNELS` names them (rgb, depth, one, features)."""
    ch = CHANNELS
    parts = [
        (ch.rgb.start, colors),
        (ch.depth, depths[:, None]),
        (ch.alpha, jnp.ones((colors.shape[0], 1), colors.dtype)),  # composites to the accumulated alpha
    ]
    if features is not None:
        parts.append((ch.features.start, features))
    parts.sort(key=lambda p: p[0])
    col = 0
    for start, x in parts:  # static check: the parts tile the columns exactly as CHANNELS declares
        assert start == col, f"pack_values: a part of width {x.shape[-1]} lands at column {col}, not {start}"
        col += x.shape[-1]
    return jnp.concatenate([x for _, x in parts], axis=-1)


def resolve_max_pairs(cfg: RenderConfig, num: int, width: int, height: int) -> int:
    if cfg.max_pairs is not None:
        return int(cfg.max_pairs)
    return binning.auto_max_pairs(num, width, height, cfg.tile_size, cfg.tile_capacity)


def render(
    splats: Splats,
    camera: Camera,
    background: jnp.ndarray | None = None,
    cfg: RenderConfig | None = None,
    means2d_offset: jnp.ndarray | None = None,
) -> RenderOut:
    """Render Gaussians into one camera. Pure, jit-able, vmap-able over cameras, differentiable.

    splats: Splats with N Gaussians (see types.Splats for shapes).
    camera: one Camera (viewmat (4, 4), K (3, 3); width/height static). For a batch use jax.vmap.
    background: (3,) colour behind everything (default black).
    means2d_offset: optional (N, 2) zeros added to the projected centres; the gradient of a loss w.r.t. it is
        the screen-space positional gradient that adaptive density control accumulates.
    Returns RenderOut (rgb (H, W, 3), alpha (H, W), depth (H, W), features (H, W, F) or None, stats, aux).

    Pair budget: on concrete inputs (called outside jit/grad) a render that overflows `cfg.max_pairs` is
    re-run with the budget grown (`cfg.grow_pairs`), so it never drops pairs; under tracing the overflow is
    reported in stats["over_budget"] and the caller decides (the training loop redoes the step).
    """
    cfg = RenderConfig() if cfg is None else cfg
    if cfg.validate:
        check_inputs(splats, camera, background)
    out = _render(splats, camera, background, cfg, means2d_offset)
    if cfg.grow_pairs and _is_concrete(splats, camera, background, means2d_offset):
        if int(out.stats["over_budget"]) > 0:
            grown = binning.bucket_pairs(int(out.stats["num_pairs"]))
            return _render(
                splats, camera, background, dataclasses.replace(cfg, max_pairs=grown), means2d_offset
            )
    return out


def within_budget(fn, cfg: RenderConfig):
    """Run `fn(cfg) -> (outputs, stats)` (a jitted batch of renders whose stats hold over_budget and num_pairs
    of any shape) and, when a render overflowed and cfg.grow_pairs, once more with the budget grown to
    `bin.bucket_pairs` of the most pairs wanted (enough by construction: the inputs are the same).

    Returns (outputs, stats, the RenderConfig used). For renders many frames at a time (evaluation,
    ground truth, warp views), where `render`'s own growth cannot act because it runs under jit.
    """
    out, stats = fn(cfg)
    if cfg.grow_pairs and np.any(np.asarray(stats["over_budget"]) > 0):
        cfg = dataclasses.replace(cfg, max_pairs=binning.bucket_pairs(int(np.max(stats["num_pairs"]))))
        out, stats = fn(cfg)
    return out, stats, cfg


def _render(splats: Splats, camera: Camera, background, cfg: RenderConfig, means2d_offset) -> RenderOut:
    """`render` with the budget as given."""
    chex.assert_rank(camera.viewmat, 2)
    W, H = camera.width, camera.height
    n = splats.means.shape[0]
    bg = jnp.zeros((3,), jnp.float32) if background is None else jnp.broadcast_to(background, (3,))

    proj = project(splats.means, splats.quats, splats.scales, splats.opacities, camera, cfg.near, cfg.far)
    if means2d_offset is not None:
        proj = proj.replace(means2d=proj.means2d + means2d_offset)
    colors = splat_colors(splats, camera, cfg.sh_degree)
    values = pack_values(colors, proj.depths, splats.features)  # (N, 3 + 1 + 1 + F)

    tiles_x, tiles_y = binning.tile_grid(W, H, cfg.tile_size)
    platform = jax.default_backend()
    chunk_batch = cfg.chunk_batch or auto_chunk_batch(platform)
    layout = comp.Layout(tiles_x, tiles_y, cfg.tile_size, cfg.chunk_size, chunk_batch)
    if resolve_backend(cfg.backend, platform) == "pallas":
        composite_pallas.check_layout(layout)
        composite = composite_pallas.composite_tiles
    else:
        composite = comp.composite_tiles
    bins = binning.bin_gaussians(
        proj.means2d,
        proj.radii,
        proj.depths,
        proj.valid,
        W,
        H,
        cfg.tile_size,
        cfg.tile_capacity,
        resolve_max_pairs(cfg, n, W, H),
        cfg.chunk_size,
        chunk_batch,
    )
    # Culled Gaussians are never binned; zeroing their opacity also keeps NaN-free inputs to the compositor.
    opac = jnp.where(proj.valid, splats.opacities, 0.0)
    packed = comp.pack(proj.means2d, proj.conics, opac, values)
    acc = comp.tiles_to_image(layout, composite(layout, packed, bins), W, H)

    ch = CHANNELS
    alpha = acc[..., ch.alpha]
    rgb = acc[..., ch.rgb] + (1.0 - alpha)[..., None] * bg
    depth = jnp.where(alpha > 1e-6, acc[..., ch.depth] / jnp.maximum(alpha, 1e-6), 0.0)
    features = acc[..., ch.features] if splats.features is not None else None
    aux = {"means2d": proj.means2d, "radii": proj.radii, "depths": proj.depths}
    return RenderOut(rgb=rgb, alpha=alpha, depth=depth, features=features, stats=bins.stats, aux=aux)
