"""The compositing stage as a Pallas kernel pair (Triton lowering): one program per tile, as gsplat does it.

Same contract as `composite.composite_tiles` (same inputs `layout, packed, bins`; same output
(num_tiles + 1, tile_pixels, C), last row scratch; same compositing rule, see composite.py), selected by
`RenderConfig.backend`. Where the XLA compositor streams dense (batch, pixels, chunk) tensors through memory,
here one program owns a tile:

Forward (`_forward_kernel`), program t = tile t:
    the tile's pixels are the block (tile_size^2 lanes); its chunks [start[t], start[t + 1]) are walked front
    to back, Q = chunk_size Gaussians at a time (their ids from bins.chunk_gids, their rows gathered from the
    packed table); per chunk the (pixels, Q) alpha tile lives in registers, the transmittance within the chunk
    is a cumsum of log(1 - alpha), and the colour sum is a (pixels, Q) @ (Q, C) product. The loop exits as
    soon as every pixel of the tile has stopped (T <= 1e-4) or the list ends. Per pixel it stores the sum,
    the final log-transmittance and the position of the last Gaussian that counted: O(pixels) residuals.
Backward (`_backward_kernel`), program t = tile t:
    walks the same chunks back to front, starting at the chunk of the tile's last counted Gaussian. The
    transmittance before every pair is recovered from the stored final one (log T before a chunk = log T
    after it - the sum of the chunk's counted log(1 - alpha)); the colour behind a pair is a running suffix
    sum. dL/dalpha, the six pixel moments of dL/dsigma (see composite._conic_grads) and dL/dvalues are
    reduced over the tile's pixels in the block and added to the per-Gaussian gradient with atomic adds
    (a Gaussian appears once per tile list, so the adds of one chunk never collide; across tiles they do,
    which is what the atomics are for).

Why Triton rather than Mosaic GPU: this is a gather/scatter kernel with data-dependent trip counts. Triton's
model (a program over a block of lanes, pointer gathers `ref[ids]`, masked loads, `while` loops, cross-lane
reductions, cumsum, `atomic_add`) says it directly and runs on every CUDA GPU jax supports (Ampere, Hopper,
Blackwell) and on ROCm. Mosaic GPU targets Hopper+ only and is built around TMA copies of dense, aligned
blocks and warpgroup matmuls; per-row gathers of Gaussians and scattered gradient adds are what it does not
model. The Triton lowering also builds its IR in Python on any host, so CI checks on CPU that the kernels
lower for CUDA (`jax.export(..., platforms=("cuda",))`).

On CPU the same kernels run under `interpret=True` (the Pallas HLO interpreter): exact, slow, for tests. The
choice is made at lowering time per platform (`lax.platform_dependent`), so a function exported for CUDA on
a CPU host carries the real Triton kernels.

Constraints (checked, ValueError): tile_size and chunk_size powers of two with tile_size^2 >= 16 and
chunk_size >= 16 (Triton's block shapes are powers of two and its matmul needs dims >= 16).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from any4d_jax.render.bin import Bins
from any4d_jax.render.composite import _V0, Layout, zero_cotangents
from any4d_jax.render.types import ALPHA_MAX, ALPHA_MIN, T_MIN

_LOG_T_MIN = math.log(T_MIN)
_GEO = 8  # columns of the geometry table: mean x, mean y, conic a, b, c, opacity, 2 zero pads
_HIGHEST = lax.Precision.HIGHEST  # fp32 matmuls on the GPU (IEEE, not TF32): sums must match the XLA path
# Triton launch parameters. 8 warps = 256 threads, one per pixel of a 16 x 16 tile.
NUM_WARPS = 8
NUM_STAGES = 1  # the loops are data-dependent (gathers), software pipelining has nothing to prefetch


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def value_columns(num_values: int) -> int:
    """Padded value columns Cp: a power of two >= 16 (Triton block shapes, matmul dims >= 16)."""
    return max(16, 1 << (num_values - 1).bit_length())


def check_layout(layout: Layout) -> None:
    """Raise ValueError when the Pallas kernels cannot take this tile/chunk geometry."""
    if not _pow2(layout.tile_size) or layout.tile_pixels < 16:
        raise ValueError(
            f"render backend 'pallas': tile_size={layout.tile_size} must be a power of two >= 4 "
            "(its pixels are one Triton block); use tile_size=16 or backend='xla'"
        )
    if not _pow2(layout.chunk_size) or layout.chunk_size < 16:
        raise ValueError(
            f"render backend 'pallas': chunk_size={layout.chunk_size} must be a power of two >= 16 "
            "(Triton matmul dimension); use chunk_size=16 or backend='xla'"
        )


def split_packed(packed: jnp.ndarray):
    """packed (N + 1, 6 + C) -> geometry (N + 1, 8) and values (N + 1, Cp), zero-padded columns."""
    n1, k = packed.shape
    c = k - _V0
    geo = jnp.concatenate([packed[:, :_V0], jnp.zeros((n1, _GEO - _V0), packed.dtype)], axis=1)
    vals = jnp.concatenate([packed[:, _V0:], jnp.zeros((n1, value_columns(c) - c), packed.dtype)], axis=1)
    return geo, vals


def tile_starts(bins: Bins, num_tiles: int) -> jnp.ndarray:
    """(num_tiles + 1,) int32: tile t's chunks are slots [starts[t], starts[t + 1]) (bins keep them in tile
    order; unused slots carry tile id num_tiles and sort last)."""
    return jnp.searchsorted(bins.chunk_tiles, jnp.arange(num_tiles + 1, dtype=jnp.int32), side="left").astype(
        jnp.int32
    )


# --------------------------------------------------------------------------------------------- in-kernel math
def _pixel_coords(layout: Layout, dtype):
    """(P,) tile-local pixel centres u, v (0.5 .. ts - 0.5), row-major in the tile."""
    p = lax.broadcasted_iota(jnp.int32, (layout.tile_pixels,), 0)
    ts = layout.tile_size
    return (p % ts).astype(dtype) + 0.5, (p // ts).astype(dtype) + 0.5


def _tile_origin(layout: Layout, t, dtype):
    ts = layout.tile_size
    return ((t % layout.tiles_x) * ts).astype(dtype), ((t // layout.tiles_x) * ts).astype(dtype)


def _gather_chunk(geo_ref, vals_ref, ids, ox, oy):
    """Tile-local (mu, mv, a, b, c, o), each (Q,), and values (Q, Cp) of the chunk's Gaussians ids (Q,)."""
    col = [geo_ref[ids, k] for k in range(6)]
    cols = lax.broadcasted_iota(jnp.int32, (1, vals_ref.shape[1]), 1)
    vals = vals_ref[ids[:, None], cols]
    return (col[0] - ox, col[1] - oy, col[2], col[3], col[4], col[5]), vals


def _pair_alpha(params, u, v):
    """(P, Q) exp(-sigma), o exp(-sigma) and alpha (0 where skipped), as composite._alpha."""
    mu, mv, a, b, c, o = params
    dx = mu[None, :] - u[:, None]
    dy = mv[None, :] - v[:, None]
    sigma = 0.5 * (a[None, :] * dx * dx + c[None, :] * dy * dy) + b[None, :] * dx * dy
    e = jnp.exp(-sigma)
    raw = o[None, :] * e
    alpha = jnp.minimum(ALPHA_MAX, raw)
    alpha = jnp.where((alpha >= ALPHA_MIN) & (sigma >= 0.0), alpha, 0.0)
    return e, raw, alpha


def _any(mask):
    """Cross-lane 'any' (Triton has no reduce_or)."""
    return jnp.max(jnp.where(mask, 1, 0)) > 0


# ------------------------------------------------------------------------------------------------- kernels
def _forward_kernel(layout: Layout, starts_ref, gids_ref, geo_ref, vals_ref, out_ref, logt_ref, last_ref):
    t = pl.program_id(0)
    Q = layout.chunk_size
    dt = vals_ref.dtype
    u, v = _pixel_coords(layout, dt)
    ox, oy = _tile_origin(layout, t, dt)
    begin, end = starts_ref[t], starts_ref[t + 1]
    P, Cp = layout.tile_pixels, vals_ref.shape[1]
    q = lax.broadcasted_iota(jnp.int32, (1, Q), 1)

    def cond(s):
        m, log_t = s[0], s[1]
        return (m < end) & _any(log_t > _LOG_T_MIN)

    def body(s):
        m, log_t, log_t_kept, last, acc = s
        ids = gids_ref[m, :]
        params, vals = _gather_chunk(geo_ref, vals_ref, ids, ox, oy)
        _, _, alpha = _pair_alpha(params, u, v)
        la = jnp.log1p(-alpha)
        before = log_t[:, None] + jnp.cumsum(la, axis=1) - la  # log T before each pair
        keep = (before + la > _LOG_T_MIN) & (alpha > 0.0)
        w = jnp.where(keep, alpha * jnp.exp(before), 0.0)
        acc = acc + jnp.dot(w, vals, precision=_HIGHEST)
        last = jnp.maximum(last, jnp.max(jnp.where(keep, m * Q + q, -1), axis=1))
        log_t_kept = log_t_kept + jnp.sum(jnp.where(keep, la, 0.0), axis=1)
        return m + 1, log_t + jnp.sum(la, axis=1), log_t_kept, last, acc

    init = (
        begin,
        jnp.zeros((P,), dt),
        jnp.zeros((P,), dt),
        jnp.full((P,), -1, jnp.int32),
        jnp.zeros((P, Cp), dt),
    )
    _, _, log_t_kept, last, acc = lax.while_loop(cond, body, init)
    out_ref[...] = acc
    logt_ref[...] = log_t_kept
    last_ref[...] = last


def _backward_kernel(
    layout: Layout,
    num_values: int,
    masked: bool,
    starts_ref,
    gids_ref,
    geo_ref,
    vals_ref,
    logt_ref,
    last_ref,
    gout_ref,
    _ggeo_in,
    _gvals_in,
    ggeo_ref,
    gvals_ref,
):
    t = pl.program_id(0)
    Q = layout.chunk_size
    dt = vals_ref.dtype
    u, v = _pixel_coords(layout, dt)
    ox, oy = _tile_origin(layout, t, dt)
    begin = starts_ref[t]
    last = last_ref[...]  # (P,) position of the last counted pair, -1 if none
    gpix = gout_ref[...]  # (P, Cp) dL/dout of the tile's pixels
    P, Cp = layout.tile_pixels, vals_ref.shape[1]
    q = lax.broadcasted_iota(jnp.int32, (1, Q), 1)
    cols = lax.broadcasted_iota(jnp.int32, (1, Cp), 1)
    mono = (u, v, u * u, u * v, v * v)
    top = jnp.max(last)
    stop = jnp.where(top >= 0, lax.div(top, jnp.int32(Q)) + 1, begin)  # one past the last chunk that counted

    def cond(s):
        return s[0] >= begin

    def body(s):
        m, log_t_after, s_after = s
        ids = gids_ref[m, :]
        params, vals = _gather_chunk(geo_ref, vals_ref, ids, ox, oy)
        e, raw, alpha = _pair_alpha(params, u, v)
        keep = (alpha > 0.0) & (m * Q + q <= last[:, None])
        la = jnp.where(keep, jnp.log1p(-alpha), 0.0)
        log_t_before = log_t_after - jnp.sum(la, axis=1)
        tr = jnp.exp(log_t_before[:, None] + jnp.cumsum(la, axis=1) - la)  # T before each pair
        w = jnp.where(keep, alpha * tr, 0.0)
        vg = lax.dot_general(gpix, vals, (((1,), (1,)), ((), ())), precision=_HIGHEST)  # (P, Q) v_k . g
        wvg = w * vg
        row = jnp.sum(wvg, axis=1)
        s_behind = (s_after + row)[:, None] - jnp.cumsum(wvg, axis=1)  # sum over counted pairs behind
        dalpha = jnp.where(keep & (raw < ALPHA_MAX), tr * vg - s_behind / (1.0 - alpha), 0.0)
        dsigma = -dalpha * alpha
        m0 = jnp.sum(dsigma, axis=0)
        m1, m2, m3, m4, m5 = (jnp.sum(dsigma * x[:, None], axis=0) for x in mono)
        mu, mv, a, b, c, _ = params
        grads = (
            m0 * (a * mu + b * mv) - m1 * a - m2 * b,
            m0 * (b * mu + c * mv) - m1 * b - m2 * c,
            0.5 * m0 * mu * mu - m1 * mu + 0.5 * m3,
            m0 * mu * mv - m1 * mv - m2 * mu + m4,
            0.5 * m0 * mv * mv - m2 * mv + 0.5 * m5,
            jnp.sum(dalpha * e, axis=0),
        )
        # Compiled, the adds skip the padding ids (the transparent dummy row N, whose gradient is exactly 0,
        # would otherwise collect every tile's adds) and the zero-padded value columns. The interpreter has no
        # masked atomics; unmasked, it adds the same zeros.
        real = ids < ggeo_ref.shape[0] - 1
        for k, g in enumerate(grads):
            plt.atomic_add(ggeo_ref, (ids, k), g, mask=real if masked else None)
        dv = lax.dot_general(w, gpix, (((0,), (0,)), ((), ())), precision=_HIGHEST)  # (Q, Cp)
        vmask = real[:, None] & (cols < num_values) if masked else None
        plt.atomic_add(gvals_ref, (ids[:, None], cols), dv, mask=vmask)
        return m - 1, log_t_before, s_after + row

    init = (stop - 1, logt_ref[...], jnp.zeros((P,), dt))
    lax.while_loop(cond, body, init)


# ---------------------------------------------------------------------------------------------- pallas_calls
def _full(shape):
    return pl.BlockSpec(shape, lambda t: (0,) * len(shape))


def _per_tile(shape):
    return pl.BlockSpec((None,) + tuple(shape[1:]), lambda t: (t,) + (0,) * (len(shape) - 1))


def _params():
    return plt.CompilerParams(num_warps=NUM_WARPS, num_stages=NUM_STAGES)


def _platform_call(make, *args):
    """Run `make(interpret)(*args)`: interpreted on CPU, compiled Triton on CUDA/ROCm (chosen at lowering)."""
    return lax.platform_dependent(
        *args, cpu=make(True), cuda=make(False), rocm=make(False), default=make(True)
    )


def forward(layout: Layout, geo, vals, starts, gids):
    """(out (T, P, Cp), log T final (T, P), last counted position (T, P) int32)."""
    T, P, Cp = layout.num_tiles, layout.tile_pixels, vals.shape[1]
    shapes = [(T, P, Cp), (T, P), (T, P)]

    def make(interpret):
        return pl.pallas_call(
            functools.partial(_forward_kernel, layout),
            grid=(T,),
            in_specs=[_full(x.shape) for x in (starts, gids, geo, vals)],
            out_specs=[_per_tile(s) for s in shapes],
            out_shape=[
                jax.ShapeDtypeStruct(shapes[0], vals.dtype),
                jax.ShapeDtypeStruct(shapes[1], vals.dtype),
                jax.ShapeDtypeStruct(shapes[2], jnp.int32),
            ],
            compiler_params=_params(),
            interpret=interpret,
            name="any4d_composite_fwd",
        )

    return _platform_call(make, starts, gids, geo, vals)


def backward(layout: Layout, geo, vals, starts, gids, log_t, last, g_out, num_values: int):
    """Gradients (geo (N + 1, 8), vals (N + 1, Cp)) given g_out (T, P, Cp); num_values: the real C <= Cp."""
    T, P, Cp = layout.num_tiles, layout.tile_pixels, vals.shape[1]
    zg, zv = jnp.zeros_like(geo), jnp.zeros_like(vals)

    def make(interpret):
        return pl.pallas_call(
            functools.partial(_backward_kernel, layout, num_values, not interpret),
            grid=(T,),
            in_specs=[_full(x.shape) for x in (starts, gids, geo, vals)]
            + [
                _per_tile((T, P)),
                _per_tile((T, P)),
                _per_tile((T, P, Cp)),
                _full(geo.shape),
                _full(vals.shape),
            ],
            out_specs=[_full(geo.shape), _full(vals.shape)],
            out_shape=[
                jax.ShapeDtypeStruct(geo.shape, geo.dtype),
                jax.ShapeDtypeStruct(vals.shape, vals.dtype),
            ],
            input_output_aliases={7: 0, 8: 1},  # gradients accumulate (atomic adds) into zeroed buffers
            compiler_params=_params(),
            interpret=interpret,
            name="any4d_composite_bwd",
        )

    return _platform_call(make, starts, gids, geo, vals, log_t, last, g_out, zg, zv)


# ------------------------------------------------------------------------------------------- the custom VJP
def _outputs(layout: Layout, packed, bins: Bins):
    check_layout(layout)
    if packed.ndim != 2 or packed.shape[1] <= _V0:
        raise ValueError(
            f"composite_tiles: packed has shape {packed.shape}, expected (N + 1, {_V0} + C), C >= 1"
        )
    if bins.chunk_gids.shape[1] != layout.chunk_size:
        raise ValueError(
            f"composite_tiles: bins have chunks of {bins.chunk_gids.shape[1]} Gaussians, "
            f"layout.chunk_size={layout.chunk_size}"
        )
    geo, vals = split_packed(packed)
    starts = tile_starts(bins, layout.num_tiles)
    out, log_t, last = forward(layout, geo, vals, starts, bins.chunk_gids)
    C = packed.shape[1] - _V0
    tiled = jnp.concatenate([out[:, :, :C], jnp.zeros((1, layout.tile_pixels, C), out.dtype)], axis=0)
    return tiled, (geo, vals, starts, log_t, last)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def composite_tiles(layout: Layout, packed: jnp.ndarray, bins: Bins) -> jnp.ndarray:
    """Weighted sums per pixel: (num_tiles + 1, tile_pixels, C), last row zero scratch (as composite.py)."""
    return _outputs(layout, packed, bins)[0]


def _fwd(layout, packed, bins):
    tiled, (geo, vals, starts, log_t, last) = _outputs(layout, packed, bins)
    # Residuals: the packed table (Gaussians), the bins, and two rows of pixels per tile. Nothing per pair.
    return tiled, (packed, bins, starts, log_t, last)


def _bwd(layout, res, g_out):
    packed, bins, starts, log_t, last = res
    geo, vals = split_packed(packed)
    C = packed.shape[1] - _V0
    g = jnp.zeros((layout.num_tiles, layout.tile_pixels, vals.shape[1]), vals.dtype)
    g = g.at[:, :, :C].set(g_out[: layout.num_tiles].astype(vals.dtype))
    ggeo, gvals = backward(layout, geo, vals, starts, bins.chunk_gids, log_t, last, g, C)
    grad = jnp.concatenate([ggeo[:, :_V0], gvals[:, :C]], axis=1)
    return grad, zero_cotangents(bins)


composite_tiles.defvjp(_fwd, _bwd)
