"""Front-to-back alpha compositing of chunked tile lists, with a hand-written backward pass.

Forward, for every pixel and the Gaussians of its tile in depth order:
    sigma_k = 0.5 (a dx^2 + c dy^2) + b dx dy,   d = mean2d - pixel centre
    alpha_k = min(0.99, o_k exp(-sigma_k)),      skipped (alpha_k := 0) when < 1/255
    T_k     = prod_{j<k} (1 - alpha_j)
    k counts iff T_k (1 - alpha_k) > 1e-4        (a prefix of the list: the pixel stops there)
    out     = sum_k alpha_k T_k v_k              v_k: the Gaussian's values (colour, depth, 1, features...)
Putting a constant-1 channel in v makes `out` carry the accumulated alpha = 1 - T_final, so the background
is added outside (by autodiff) and the backward needs no special final-transmittance term:
    dL/dalpha_k = T_k (v_k . g) - S_k / (1 - alpha_k),   S_k = sum_{j>k} alpha_j T_j (v_j . g),  g = dL/dout.

Work layout: chunks (see bin.py) are processed `chunk_batch` at a time in a loop whose trip count is the
number of chunks in use. Inside a batch everything is dense: (B, pixels, Q) tensors. A tile's transmittance
crosses chunk (and batch) boundaries by a segmented scan over the batch plus a carry, in log space.
The backward walks the batches in reverse, recomputing alpha per pair (and each chunk's starting
transmittance from the stored per-batch carry), and carries the suffix sum S across chunks the same way.
Memory: O(pixels + Gaussians) plus one row of tile pixels per batch of chunks; nothing per pair.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from any4d_jax.render.bin import Bins
from any4d_jax.render.types import ALPHA_MAX, ALPHA_MIN, T_MIN

_LOG_T_MIN = math.log(T_MIN)

# Columns of the packed per-Gaussian array: mean x, mean y, conic a, b, c, opacity, values...
_MX, _MY, _CA, _CB, _CC, _OP, _V0 = 0, 1, 2, 3, 4, 5, 6


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static geometry of the tile grid and of the chunk loop."""

    tiles_x: int
    tiles_y: int
    tile_size: int
    chunk_size: int
    chunk_batch: int

    @property
    def num_tiles(self) -> int:
        return self.tiles_x * self.tiles_y

    @property
    def tile_pixels(self) -> int:
        return self.tile_size * self.tile_size


def pack(means2d, conics, opacities, values) -> jnp.ndarray:
    """(N + 1, 6 + C) float32: per-Gaussian inputs of the compositor plus a transparent dummy row N."""
    packed = jnp.concatenate([means2d, conics, opacities[:, None], values], axis=-1)
    return jnp.concatenate([packed, jnp.zeros((1, packed.shape[1]), packed.dtype)], axis=0)


def _pixel_monomials(layout: Layout) -> jnp.ndarray:
    """(P, 6) [1, u, v, u^2, u v, v^2] of the pixel centres in tile-local coordinates (u, v in [0.5, ts))."""
    ts = layout.tile_size
    u = (jnp.arange(layout.tile_pixels) % ts).astype(jnp.float32) + 0.5
    v = (jnp.arange(layout.tile_pixels) // ts).astype(jnp.float32) + 0.5
    return jnp.stack([jnp.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _local_params(layout: Layout, g: jnp.ndarray, tiles: jnp.ndarray):
    """Tile-local mean (mu, mv) and conic (a, b, c) of gathered Gaussians g (B, Q, 6 + C): each (B, Q)."""
    ts = layout.tile_size
    tiles = jnp.minimum(tiles, layout.num_tiles - 1)
    ox = (tiles % layout.tiles_x * ts).astype(jnp.float32)[:, None]
    oy = (tiles // layout.tiles_x * ts).astype(jnp.float32)[:, None]
    return g[..., _MX] - ox, g[..., _MY] - oy, g[..., _CA], g[..., _CB], g[..., _CC]


def _alpha(layout: Layout, g: jnp.ndarray, tiles: jnp.ndarray):
    """Per-pair terms of a batch: exp(-sigma), o exp(-sigma) and alpha, each (B, P, Q).

    Offsets are taken in tile-local coordinates (small numbers), which keeps sigma accurate in float32.
    """
    mu, mv, a, b, c = _local_params(layout, g, tiles)
    mono = _pixel_monomials(layout)
    dx = mu[:, None, :] - mono[None, :, 1, None]
    dy = mv[:, None, :] - mono[None, :, 2, None]
    sigma = 0.5 * (a[:, None, :] * dx * dx + c[:, None, :] * dy * dy) + b[:, None, :] * dx * dy
    e = jnp.exp(-sigma)
    raw = g[:, None, :, _OP] * e
    alpha = jnp.minimum(ALPHA_MAX, raw)
    alpha = jnp.where((alpha >= ALPHA_MIN) & (sigma >= 0.0), alpha, 0.0)
    return e, raw, alpha


def _conic_grads(layout: Layout, g, tiles, dsigma):
    """Chain dL/dsigma (B, P, Q) to (dmx, dmy, da, db, dc), each (B, Q).

    sigma is a quadratic in the pixel position (u, v), so the sums over pixels reduce to six moments
    sum_p dsigma [1, u, v, u^2, uv, v^2] from which every parameter's gradient follows in closed form.
    """
    mu, mv, a, b, c = _local_params(layout, g, tiles)
    mono = _pixel_monomials(layout)
    m = [jnp.sum(dsigma * mono[None, :, k, None], axis=1) for k in range(6)]  # 6 x (B, Q)
    dmx = m[0] * (a * mu + b * mv) - m[1] * a - m[2] * b
    dmy = m[0] * (b * mu + c * mv) - m[1] * b - m[2] * c
    da = 0.5 * m[0] * mu * mu - m[1] * mu + 0.5 * m[3]
    db = m[0] * mu * mv - m[1] * mv - m[2] * mu + m[4]
    dc = 0.5 * m[0] * mv * mv - m[2] * mv + 0.5 * m[5]
    return dmx, dmy, da, db, dc


def _segmented_sum_scan(vals: jnp.ndarray, starts: jnp.ndarray) -> jnp.ndarray:
    """Inclusive sums along axis 0 restarting where starts (L,) is True. vals: (L, ...)."""

    def op(x, y):
        vx, fx = x
        vy, fy = y
        fyb = fy.reshape(fy.shape + (1,) * (vy.ndim - fy.ndim))
        return jnp.where(fyb, vy, vx + vy), fx | fy

    out, _ = jax.lax.associative_scan(op, (vals, starts))
    return out


def _exclusive_with_carry(vals: jnp.ndarray, starts: jnp.ndarray, carry: jnp.ndarray):
    """Segmented exclusive prefix sums of vals (B, ...) continuing a segment from the previous batch.

    carry (...): the running sum of the segment that the batch's first element continues (ignored if it
    starts a segment). Returns (exclusive sums (B, ...), carry for the next batch).
    """
    ext = jnp.concatenate([carry[None], vals], axis=0)
    flags = jnp.concatenate([jnp.ones((1,), bool), starts], axis=0)
    incl = _segmented_sum_scan(ext, flags)
    fb = starts.reshape(starts.shape + (1,) * (vals.ndim - 1))
    excl = jnp.where(fb, 0.0, incl[:-1])
    return excl, incl[-1]


def _triangular(q: int, strict_upper: bool) -> jnp.ndarray:
    """(Q, Q) 0/1 matrix: x @ U gives exclusive prefix sums (upper), x @ L exclusive suffix sums (lower)."""
    i = jnp.arange(q)
    m = i[:, None] < i[None, :] if strict_upper else i[:, None] > i[None, :]
    return m.astype(jnp.float32)


def _transmittance(la: jnp.ndarray, log_t0: jnp.ndarray):
    """log T before each pair. la: (B, P, Q) log(1 - alpha); log_t0: (B, P) at chunk start."""
    excl = jnp.einsum("bpq,qk->bpk", la, _triangular(la.shape[-1], True))
    return log_t0[:, :, None] + excl


def _num_batches(layout: Layout, num_chunks):
    return (num_chunks + layout.chunk_batch - 1) // layout.chunk_batch


class _BatchTerms(NamedTuple):
    """Per-pair terms of one batch of chunks, shared by the forward and the backward pass."""

    gids: jnp.ndarray  # (B, Q) int32 Gaussian ids
    tiles: jnp.ndarray  # (B,) int32 tile of each chunk
    g: jnp.ndarray  # (B, Q, 6 + C) gathered packed rows
    e: jnp.ndarray  # (B, P, Q) exp(-sigma)
    raw: jnp.ndarray  # (B, P, Q) o exp(-sigma), before the clamp
    alpha: jnp.ndarray  # (B, P, Q) clamped alpha, 0 where skipped
    keep: jnp.ndarray  # (B, P, Q) bool: the pair counts (pixel not yet stopped, alpha > 0)
    t: jnp.ndarray  # (B, P, Q) transmittance T_k before the pair
    w: jnp.ndarray  # (B, P, Q) weight alpha_k T_k where kept, else 0
    carry: jnp.ndarray  # (P,) log-transmittance carried into the next batch


def _batch_terms(layout: Layout, packed: jnp.ndarray, bins: Bins, start, carry) -> _BatchTerms:
    """The compositing rule for chunks [start, start + B): the one place forward and backward derive it.

    carry (P,): log-transmittance of the tile continued by the batch's first chunk (ignored if it starts one).
    """
    B = layout.chunk_batch
    gids = jax.lax.dynamic_slice_in_dim(bins.chunk_gids, start, B)
    tiles = jax.lax.dynamic_slice_in_dim(bins.chunk_tiles, start, B)
    first = jax.lax.dynamic_slice_in_dim(bins.chunk_first, start, B)
    g = packed[gids]  # (B, Q, 6 + C)
    e, raw, alpha = _alpha(layout, g, tiles)
    la = jnp.log1p(-alpha)
    log_t0, carry = _exclusive_with_carry(jnp.sum(la, axis=-1), first, carry)
    log_t = _transmittance(la, log_t0)
    keep = (log_t + la > _LOG_T_MIN) & (alpha > 0.0)
    t = jnp.exp(log_t)
    w = jnp.where(keep, alpha * t, 0.0)
    return _BatchTerms(gids, tiles, g, e, raw, alpha, keep, t, w, carry)


def _check_shapes(layout: Layout, packed: jnp.ndarray, bins: Bins) -> None:
    """Static shape contract between bin.py and the chunk loop (raises ValueError)."""
    M, Q = bins.chunk_gids.shape
    B = layout.chunk_batch
    if M % B != 0:
        raise ValueError(
            f"composite_tiles: {M} chunk slots is not a multiple of chunk_batch={B}; the loop reads whole "
            "batches and the carry buffer has M // B rows (bin.num_chunk_slots rounds M up to the batch)"
        )
    if Q != layout.chunk_size:
        raise ValueError(
            f"composite_tiles: bins have chunks of {Q} Gaussians, layout.chunk_size={layout.chunk_size}"
        )
    if packed.ndim != 2 or packed.shape[1] <= _V0:
        raise ValueError(
            f"composite_tiles: packed has shape {packed.shape}, expected (N + 1, {_V0} + C), C >= 1"
        )


def _forward(layout: Layout, packed: jnp.ndarray, bins: Bins):
    """Returns out (num_tiles + 1, P, C) and the log-transmittance carried into each batch (M / B, P).

    The carries are all the backward needs to recompute every chunk's starting transmittance, so the
    residual is one row of pixels per batch of chunks, not one per chunk or per pair.
    """
    _check_shapes(layout, packed, bins)
    M = bins.chunk_gids.shape[0]
    B, P = layout.chunk_batch, layout.tile_pixels
    C = packed.shape[1] - _V0

    def body(i, state):
        out, carry_buf, carry = state
        carry_buf = carry_buf.at[i].set(carry)
        b = _batch_terms(layout, packed, bins, i * B, carry)
        contrib = jnp.einsum("bpq,bqc->bpc", b.w, b.g[:, :, _V0:])
        out = out.at[b.tiles].add(contrib)
        return out, carry_buf, b.carry

    init = (
        jnp.zeros((layout.num_tiles + 1, P, C), packed.dtype),
        jnp.zeros((M // B, P), packed.dtype),
        jnp.zeros((P,), packed.dtype),
    )
    out, carry_buf, _ = jax.lax.fori_loop(0, _num_batches(layout, bins.num_chunks), body, init)
    return out, carry_buf


def _backward(layout: Layout, packed: jnp.ndarray, bins: Bins, carry_buf, g_out):
    """Gradient w.r.t. packed (N + 1, 6 + C) given g_out (num_tiles + 1, P, C)."""
    B = layout.chunk_batch
    lower = _triangular(layout.chunk_size, False)
    nb = _num_batches(layout, bins.num_chunks)

    def body(k, state):
        grad, s_carry = state
        s = (nb - 1 - k) * B
        b = _batch_terms(layout, packed, bins, s, carry_buf[nb - 1 - k])
        last = jax.lax.dynamic_slice_in_dim(bins.chunk_last, s, B)
        gpix = g_out[b.tiles]  # (B, P, C)
        vals = b.g[:, :, _V0:]
        vg = jnp.einsum("bpc,bqc->bpq", gpix, vals)
        wvg = b.w * vg
        # Suffix sums behind each pair: inside the chunk, then over later chunks of the tile (reverse scan).
        s_in = jnp.einsum("bpq,qk->bpk", wvg, lower)
        s_after_rev, s_carry = _exclusive_with_carry(jnp.sum(wvg, axis=-1)[::-1], last[::-1], s_carry)
        s_behind = s_in + s_after_rev[::-1][:, :, None]
        dalpha = jnp.where(b.keep & (b.raw < ALPHA_MAX), b.t * vg - s_behind / (1.0 - b.alpha), 0.0)
        dsigma = -dalpha * b.alpha
        dmx, dmy, da, db, dc = _conic_grads(layout, b.g, b.tiles, dsigma)
        d = jnp.stack([dmx, dmy, da, db, dc, jnp.sum(dalpha * b.e, axis=1)], axis=-1)  # (B, Q, 6)
        dv = jnp.einsum("bpq,bpc->bqc", b.w, gpix)
        grad = grad.at[b.gids].add(jnp.concatenate([d, dv], axis=-1))
        return grad, s_carry

    init = (jnp.zeros_like(packed), jnp.zeros((layout.tile_pixels,), packed.dtype))
    grad, _ = jax.lax.fori_loop(0, nb, body, init)
    return grad


# Why the two non-packed arguments are passed differently:
# - `layout` is static Python data (a hashable dataclass of ints fixing shapes and the loop geometry), so it
#   is a nondiff argnum: never traced, and handed to the fwd/bwd rules as a plain value.
# - `bins` holds arrays computed under jit from the traced projection, and custom_vjp forbids Tracers in
#   nondiff_argnums (JAX PR #4008: array-valued arguments must be regular primals). So it is a primal like
#   `packed`, and the bwd rule must return a cotangent for each of its leaves: all are integer/bool, whose
#   tangent dtype is float0, so it returns float0 zeros. Binning is piecewise constant in the means: by design
#   no gradient flows through it.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def composite_tiles(layout: Layout, packed: jnp.ndarray, bins: Bins) -> jnp.ndarray:
    """Weighted sums per pixel: (num_tiles + 1, tile_pixels, C) (last row is scratch for unused chunks)."""
    out, _ = _forward(layout, packed, bins)
    return out


def _composite_fwd(layout, packed, bins):
    out, carry_buf = _forward(layout, packed, bins)
    return out, (packed, bins, carry_buf)


def _composite_bwd(layout, res, g_out):
    packed, bins, carry_buf = res
    grad = _backward(layout, packed, bins, carry_buf, g_out)
    return grad, zero_cotangents(bins)


def zero_cotangents(bins: Bins) -> Bins:
    """The bins' cotangent: float0 zeros for the integer/bool leaves (binning passes no gradient)."""
    return jax.tree_util.tree_map(
        lambda x: (
            jnp.zeros(x.shape, jax.dtypes.float0)
            if not jnp.issubdtype(x.dtype, jnp.floating)
            else jnp.zeros_like(x)
        ),
        bins,
    )


composite_tiles.defvjp(_composite_fwd, _composite_bwd)


def tiles_to_image(layout: Layout, tiled: jnp.ndarray, width: int, height: int) -> jnp.ndarray:
    """(num_tiles [+ 1], tile_pixels, C) -> (height, width, C)."""
    ts = layout.tile_size
    c = tiled.shape[-1]
    x = tiled[: layout.num_tiles].reshape(layout.tiles_y, layout.tiles_x, ts, ts, c)
    x = x.transpose(0, 2, 1, 3, 4).reshape(layout.tiles_y * ts, layout.tiles_x * ts, c)
    return x[:height, :width]
