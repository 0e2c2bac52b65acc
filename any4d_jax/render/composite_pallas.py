"""The compositing stage as a Pallas kernel pair (Triton lowering): one program per tile, as gsplat does it.

Same contract as `composite.composite_tiles` (same inputs `layout, packed, bins`; same output
(num_tiles + 1, tile_pixels, C), last row scratch; same compositing rule, see composite.py), selected by
`RenderConfig.backend`. Where the XLA compositor streams dense (batch, pixels, chunk) tensors through memory,
here one program owns a tile:

Forward (`_forward_kernel`), program t = tile t:
    the tile's pixels are the block (tile_size^2 lanes); its chunks [start[t], start[t + 1]) are walked front
    to back, Q = chunk_size Gaussians at a time (their ids from bins.chunk_gids, their parameters gathered
    column by column from the packed table). Per chunk the (pixels, Q) alpha tile lives in registers, the
    transmittance within the chunk is a cumsum of log(1 - alpha), and each value channel is a weighted row
    sum. The loop exits as soon as every pixel of the tile has stopped (T <= 1e-4) or the list ends. Per
    pixel it stores the sums, the final log-transmittance and the position of the last Gaussian that
    counted: O(pixels) residuals.
Backward (`_backward_kernel`), program t = tile t:
    walks the same chunks back to front, starting at the chunk of the tile's last counted Gaussian. The
    transmittance before every pair is recovered from the stored final one (log T before a chunk = log T
    after it - the sum of the chunk's counted log(1 - alpha)); the colour behind a pair is a running suffix
    sum. dL/dalpha, the six pixel moments of dL/dsigma (see composite._conic_grads), the opacity term and
    dL/dvalues are reduced over the tile's pixels in the block and added to the per-Gaussian gradient with
    atomic adds (a Gaussian appears once per tile list, so the adds of one chunk never collide; across tiles
    they do, which is what the atomics are for).
No matmuls: value channels are rank-1 updates and reductions, one column at a time, which keeps operands out
of shared memory and the register count down (`benchmarks/triton_regs.py` compiles both kernels for sm_90 on
any host and prints registers and spills).

Why Triton rather than Mosaic GPU: this is a gather/scatter kernel with data-dependent trip counts. Triton's
model (a program over a block of lanes, pointer gathers `ref[ids]`, `while` loops, cross-lane reductions,
cumsum, `atomic_add`) says it directly and runs on every CUDA GPU jax supports (Ampere, Hopper, Blackwell)
and on ROCm. Mosaic GPU targets Hopper+ only and is built around TMA copies of dense, aligned blocks and
warpgroup matmuls; per-row gathers of Gaussians and scattered gradient adds are what it does not model. The
Triton lowering also builds its IR in Python on any host, so CI checks on CPU that the kernels lower for
CUDA (`jax.export(..., platforms=("cuda",))`).

On CPU the same kernels run under `interpret=True` (the Pallas HLO interpreter): exact, slow, for tests. The
choice is made at lowering time per platform (`lax.platform_dependent`), so a function exported for CUDA on
a CPU host carries the real Triton kernels.

Constraints (checked, ValueError): tile_size and chunk_size powers of two (Triton block shapes).
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
# Triton launch parameters. 8 warps = 256 threads, one per pixel of a 16 x 16 tile; see
# benchmarks/triton_regs.py for the registers and spills of each choice (compiled for sm_90 on any host).
NUM_WARPS = 8
NUM_STAGES = 1  # the loops are data-dependent (gathers), software pipelining has nothing to prefetch


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def check_layout(layout: Layout) -> None:
    """Raise ValueError when the Pallas kernels cannot take this tile/chunk geometry."""
    if not _pow2(layout.tile_size) or layout.tile_size < 2:
        raise ValueError(
            f"render backend 'pallas': tile_size={layout.tile_size} must be a power of two >= 2 "
            "(its pixels are one Triton block); use tile_size=16 or backend='xla'"
        )
    if not _pow2(layout.chunk_size) or layout.chunk_size < 2:
        raise ValueError(
            f"render backend 'pallas': chunk_size={layout.chunk_size} must be a power of two >= 2 "
            "(a Triton block dimension); use chunk_size=16 or backend='xla'"
        )


def tile_starts(bins: Bins, num_tiles: int) -> jnp.ndarray:
    """(num_tiles + 1,) int32: tile t's chunks are slots [starts[t], starts[t + 1]) (bins keep them in tile
    order; unused slots carry tile id num_tiles and sort last)."""
    return jnp.searchsorted(bins.chunk_tiles, jnp.arange(num_tiles + 1, dtype=jnp.int32), side="left").astype(
        jnp.int32
    )


# --------------------------------------------------------------------------------------------- in-kernel math
# Everything per pair is a (P, Q) register tile (P = tile pixels, Q = chunk_size); everything per Gaussian a
# (Q,) vector gathered column by column from the packed table; everything per pixel a (P,) vector. Value
# channels are handled one column at a time (rank-1 updates and reductions): no matmul, so no operand layout
# shuffles through shared memory and no padded tables.
def _pixel_coords(layout: Layout, dtype):
    """(P,) tile-local pixel centres u, v (0.5 .. ts - 0.5), row-major in the tile."""
    p = lax.broadcasted_iota(jnp.int32, (layout.tile_pixels,), 0)
    ts = layout.tile_size
    return (p % ts).astype(dtype) + 0.5, (p // ts).astype(dtype) + 0.5


def _tile_origin(layout: Layout, t, dtype):
    ts = layout.tile_size
    return ((t % layout.tiles_x) * ts).astype(dtype), ((t // layout.tiles_x) * ts).astype(dtype)


def _gather_params(table_ref, ids, ox, oy):
    """Tile-local (mu, mv, a, b, c, o), each (Q,), of the chunk's Gaussians ids (Q,)."""
    col = [table_ref[ids, k] for k in range(_V0)]
    return (col[0] - ox, col[1] - oy, col[2], col[3], col[4], col[5])


def _pair_alpha(params, u, v):
    """(P, Q) alpha (0 where skipped, as composite._alpha) and whether it is below the clamp (free: where
    alpha = o exp(-sigma), so d alpha / d o = alpha / o and d alpha / d sigma = -alpha)."""
    mu, mv, a, b, c, o = params
    dx = mu[None, :] - u[:, None]
    dy = mv[None, :] - v[:, None]
    sigma = 0.5 * (a[None, :] * dx * dx + c[None, :] * dy * dy) + b[None, :] * dx * dy
    raw = o[None, :] * jnp.exp(-sigma)
    alpha = jnp.where((raw >= ALPHA_MIN) & (sigma >= 0.0), jnp.minimum(ALPHA_MAX, raw), 0.0)
    return alpha, raw < ALPHA_MAX


def _any(mask):
    """Cross-lane 'any' (Triton has no reduce_or)."""
    return jnp.max(jnp.where(mask, 1, 0)) > 0


# ------------------------------------------------------------------------------------------------- kernels
def _forward_kernel(layout: Layout, starts_ref, gids_ref, table_ref, out_ref, logt_ref, last_ref):
    t = pl.program_id(0)
    Q, P = layout.chunk_size, layout.tile_pixels
    C = table_ref.shape[1] - _V0
    dt = table_ref.dtype
    u, v = _pixel_coords(layout, dt)
    ox, oy = _tile_origin(layout, t, dt)
    begin, end = starts_ref[t], starts_ref[t + 1]
    q = lax.broadcasted_iota(jnp.int32, (1, Q), 1)

    def cond(s):
        m, log_t = s[0], s[1]
        return (m < end) & _any(log_t > _LOG_T_MIN)

    def body(s):
        m, log_t, log_t_kept, last, acc = s
        ids = gids_ref[m, :]
        alpha, _ = _pair_alpha(_gather_params(table_ref, ids, ox, oy), u, v)
        la = jnp.log1p(-alpha)
        before = log_t[:, None] + jnp.cumsum(la, axis=1) - la  # log T before each pair
        keep = (before + la > _LOG_T_MIN) & (alpha > 0.0)
        w = jnp.where(keep, alpha * jnp.exp(before), 0.0)
        acc = tuple(a + jnp.sum(w * table_ref[ids, _V0 + k][None, :], axis=1) for k, a in enumerate(acc))
        last = jnp.maximum(last, jnp.max(jnp.where(keep, m * Q + q, -1), axis=1))
        log_t_kept = log_t_kept + jnp.sum(jnp.where(keep, la, 0.0), axis=1)
        return m + 1, log_t + jnp.sum(la, axis=1), log_t_kept, last, acc

    zeros = jnp.zeros((P,), dt)
    init = (begin, zeros, zeros, jnp.full((P,), -1, jnp.int32), (zeros,) * C)
    _, _, log_t_kept, last, acc = lax.while_loop(cond, body, init)
    for k in range(C):
        out_ref[:, k] = acc[k]
    logt_ref[...] = log_t_kept
    last_ref[...] = last


def _backward_kernel(
    layout: Layout,
    masked: bool,
    starts_ref,
    gids_ref,
    table_ref,
    logt_ref,
    last_ref,
    gout_ref,
    _zeros,
    grad_ref,
):
    t = pl.program_id(0)
    Q, P = layout.chunk_size, layout.tile_pixels
    C = table_ref.shape[1] - _V0
    dt = table_ref.dtype
    u, v = _pixel_coords(layout, dt)
    ox, oy = _tile_origin(layout, t, dt)
    begin = starts_ref[t]
    last = last_ref[...]  # (P,) position of the last counted pair, -1 if none
    gcols = [gout_ref[:, k] for k in range(C)]  # (P,) each: dL/dout of the tile's pixels, per channel
    q = lax.broadcasted_iota(jnp.int32, (1, Q), 1)
    mono = (u, v, u * u, u * v, v * v)
    top = jnp.max(last)
    stop = jnp.where(top >= 0, lax.div(top, jnp.int32(Q)) + 1, begin)  # one past the last chunk that counted

    def cond(s):
        return s[0] >= begin

    def body(s):
        m, log_t_after, s_after = s
        ids = gids_ref[m, :]
        params = _gather_params(table_ref, ids, ox, oy)
        alpha, free = _pair_alpha(params, u, v)
        keep = (alpha > 0.0) & (m * Q + q <= last[:, None])
        la = jnp.where(keep, jnp.log1p(-alpha), 0.0)
        log_t_before = log_t_after - jnp.sum(la, axis=1)
        tr = jnp.exp(log_t_before[:, None] + jnp.cumsum(la, axis=1) - la)  # T before each pair
        w = jnp.where(keep, alpha * tr, 0.0)
        vg = sum(g[:, None] * table_ref[ids, _V0 + k][None, :] for k, g in enumerate(gcols))  # (P, Q) v . g
        wvg = w * vg
        row = jnp.sum(wvg, axis=1)
        s_behind = (s_after + row)[:, None] - jnp.cumsum(wvg, axis=1)  # sum over counted pairs behind
        dalpha = jnp.where(keep & free, tr * vg - s_behind / (1.0 - alpha), 0.0)
        dsigma = -dalpha * alpha
        m0 = jnp.sum(dsigma, axis=0)
        m1, m2, m3, m4, m5 = (jnp.sum(dsigma * x[:, None], axis=0) for x in mono)
        mu, mv, a, b, c, o = params
        grads = (
            m0 * (a * mu + b * mv) - m1 * a - m2 * b,
            m0 * (b * mu + c * mv) - m1 * b - m2 * c,
            0.5 * m0 * mu * mu - m1 * mu + 0.5 * m3,
            m0 * mu * mv - m1 * mv - m2 * mu + m4,
            0.5 * m0 * mv * mv - m2 * mv + 0.5 * m5,
            jnp.where(o > 0.0, -m0 / o, 0.0),  # sum dalpha alpha / o (m0 = -sum dalpha alpha)
            *(jnp.sum(w * g[:, None], axis=0) for g in gcols),
        )
        # Compiled, the adds skip the padding ids (the transparent dummy row N, whose gradient is exactly 0,
        # would otherwise collect every tile's adds). The interpreter has no masked atomics; unmasked, it
        # adds the same zeros.
        real = (ids < grad_ref.shape[0] - 1) if masked else None
        for k, g in enumerate(grads):
            plt.atomic_add(grad_ref, (ids, k), g, mask=real)
        return m - 1, log_t_before, s_after + row

    lax.while_loop(cond, body, (stop - 1, logt_ref[...], jnp.zeros((P,), dt)))


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


def forward(layout: Layout, packed, starts, gids):
    """(out (T, P, C), log T final (T, P), last counted position (T, P) int32) for packed (N + 1, 6 + C)."""
    T, P, C = layout.num_tiles, layout.tile_pixels, packed.shape[1] - _V0
    shapes = [(T, P, C), (T, P), (T, P)]

    def make(interpret):
        return pl.pallas_call(
            functools.partial(_forward_kernel, layout),
            grid=(T,),
            in_specs=[_full(x.shape) for x in (starts, gids, packed)],
            out_specs=[_per_tile(s) for s in shapes],
            out_shape=[
                jax.ShapeDtypeStruct(shapes[0], packed.dtype),
                jax.ShapeDtypeStruct(shapes[1], packed.dtype),
                jax.ShapeDtypeStruct(shapes[2], jnp.int32),
            ],
            compiler_params=_params(),
            interpret=interpret,
            name="any4d_composite_fwd",
        )

    return _platform_call(make, starts, gids, packed)


def backward(layout: Layout, packed, starts, gids, log_t, last, g_out):
    """dL/dpacked (N + 1, 6 + C) given g_out (T, P, C)."""
    T, P, C = layout.num_tiles, layout.tile_pixels, packed.shape[1] - _V0

    def make(interpret):
        return pl.pallas_call(
            functools.partial(_backward_kernel, layout, not interpret),
            grid=(T,),
            in_specs=[_full(x.shape) for x in (starts, gids, packed)]
            + [_per_tile((T, P)), _per_tile((T, P)), _per_tile((T, P, C)), _full(packed.shape)],
            out_specs=_full(packed.shape),
            out_shape=jax.ShapeDtypeStruct(packed.shape, packed.dtype),
            input_output_aliases={6: 0},  # gradients accumulate (atomic adds) into a zeroed buffer
            compiler_params=_params(),
            interpret=interpret,
            name="any4d_composite_bwd",
        )

    return _platform_call(make, starts, gids, packed, log_t, last, g_out, jnp.zeros_like(packed))


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
    starts = tile_starts(bins, layout.num_tiles)
    out, log_t, last = forward(layout, packed, starts, bins.chunk_gids)
    C = packed.shape[1] - _V0
    tiled = jnp.concatenate([out, jnp.zeros((1, layout.tile_pixels, C), out.dtype)], axis=0)
    return tiled, (starts, log_t, last)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def composite_tiles(layout: Layout, packed: jnp.ndarray, bins: Bins) -> jnp.ndarray:
    """Weighted sums per pixel: (num_tiles + 1, tile_pixels, C), last row zero scratch (as composite.py)."""
    return _outputs(layout, packed, bins)[0]


def _fwd(layout, packed, bins):
    tiled, (starts, log_t, last) = _outputs(layout, packed, bins)
    # Residuals: the packed table (Gaussians), the bins, and two rows of pixels per tile. Nothing per pair.
    return tiled, (packed, bins, starts, log_t, last)


def _bwd(layout, res, g_out):
    packed, bins, starts, log_t, last = res
    g = g_out[: layout.num_tiles].astype(packed.dtype)
    grad = backward(layout, packed, starts, bins.chunk_gids, log_t, last, g)
    return grad, zero_cotangents(bins)


composite_tiles.defvjp(_fwd, _bwd)
