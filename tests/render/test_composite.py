"""The compositor stage alone: `composite_tiles` (forward and custom VJP) against a dense compositor.

The inputs are made as `render` makes them (project -> pack_values -> pack, bin_gaussians), for one tiny
scene, but the reference below is written from the compositing rule only: every pixel looks at every
Gaussian of its tile's set in depth order, in linear space (cumprod), no tiles, chunks, batches, carries or
custom VJP. Gradients of the reference come from plain autodiff.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fast_jit, pinhole, random_splats

from any4d_jax.render import bin as binning
from any4d_jax.render import composite as comp
from any4d_jax.render import composite_pallas
from any4d_jax.render.api import pack_values
from any4d_jax.render.project import project
from any4d_jax.render.types import ALPHA_MAX, ALPHA_MIN, CHANNELS, T_MIN

WIDTH, HEIGHT, TILE = 48, 32, 16  # 3 x 2 tiles
CHUNK, BATCH = 8, 4  # small, so tiles span several chunks and batches (carries across batch boundaries)
N, F = 64, 2
# The two implementations of the stage: the XLA chunk-batch loop, and the Pallas kernels (interpreted on CPU;
# their chunks are >= 16 Gaussians, Triton's matmul minimum, so tiles span fewer of them).
BACKENDS = {"xla": (comp.composite_tiles, CHUNK), "pallas": (composite_pallas.composite_tiles, 16)}


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


def dense_composite(packed, order, member, alpha_max=ALPHA_MAX, alpha_min=ALPHA_MIN, t_min=T_MIN):
    """(H', W', C) front-to-back sums over the whole tile grid (H' = tiles_y * TILE, W' likewise).

    packed: (N + 1, 6 + C) as comp.pack makes it: mean x, mean y, conic a, b, c, opacity, values.
    order:  (K,) ids of the Gaussians to composite, nearest first.
    member: (num_tiles, K) bool, Gaussian order[k] is in tile t's list (all True: every Gaussian everywhere).
    The rule: sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, alpha = min(alpha_max, o exp(-sigma)), skipped where
    alpha < alpha_min (or sigma < 0), and a pixel stops before the Gaussian that would take T to <= t_min.
    """
    tx, ty = -(-WIDTH // TILE), -(-HEIGHT // TILE)
    h, w = ty * TILE, tx * TILE
    g = packed[order]
    ys, xs = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")
    tile = (ys // TILE).astype(jnp.int32) * tx + (xs // TILE).astype(jnp.int32)
    dx = g[None, None, :, 0] - xs[..., None]  # (h, w, K)
    dy = g[None, None, :, 1] - ys[..., None]
    sigma = 0.5 * (g[:, 2] * dx * dx + g[:, 4] * dy * dy) + g[:, 3] * dx * dy
    alpha = jnp.minimum(alpha_max, g[:, 5] * jnp.exp(-sigma))
    alpha = jnp.where((alpha >= alpha_min) & (sigma >= 0.0) & member[tile], alpha, 0.0)
    after = jnp.cumprod(1.0 - alpha, axis=-1)  # T after each Gaussian
    before = jnp.concatenate([jnp.ones_like(after[..., :1]), after[..., :-1]], axis=-1)
    weight = jnp.where((after > t_min) & (alpha > 0.0), alpha * before, 0.0)
    return jnp.einsum("hwk,kc->hwc", weight, g[:, 6:])


@pytest.fixture(scope="module")
def scene():
    """Packed Gaussians and bins for a 48 x 32 image: overlapping, some opaque stacks, some big ones."""
    key = jax.random.PRNGKey(11)
    cam = pinhole(WIDTH, HEIGHT)
    s = random_splats(key, N, scale=0.07, spread=0.6, num_features=F)
    # Opaque Gaussians stacked in front, over the middle: alpha reaches the 0.99 clamp and pixels stop there
    # (T would fall to 1e-4), cutting off the Gaussians behind them.
    k = jax.random.split(jax.random.fold_in(key, 1), 3)
    stack = jnp.arange(8)
    means = s.means.at[stack, :2].set(jax.random.uniform(k[0], (8, 2), minval=-0.08, maxval=0.08))
    means = means.at[stack, 2].set(jax.random.uniform(k[2], (8,), minval=1.5, maxval=1.9))
    scales = s.scales.at[stack].set(0.2 * jnp.exp(0.2 * jax.random.normal(k[1], (8, 3))))
    opac = s.opacities.at[stack].set(0.995)
    scales = scales.at[8].set(jnp.array([0.9, 0.6, 0.3]))  # covers every tile
    s = s.replace(means=means, scales=scales, opacities=opac)

    p = project(s.means, s.quats, s.scales, s.opacities, cam, 0.01, 1e10)
    assert bool(jnp.all(p.valid))
    values = pack_values(s.colors, p.depths, s.features)
    packed = comp.pack(p.means2d, p.conics, s.opacities, values)
    tx, ty = binning.tile_grid(WIDTH, HEIGHT, TILE)

    def layout(backend="xla"):
        return comp.Layout(tx, ty, TILE, BACKENDS[backend][1], BATCH)

    def make_bins(capacity, backend="xla"):
        chunk = BACKENDS[backend][1]
        return binning.bin_gaussians(
            p.means2d, p.radii, p.depths, p.valid, WIDTH, HEIGHT, TILE, capacity, 1024, chunk, BATCH
        )

    order = np.argsort(np.asarray(p.depths), kind="stable")
    return {"layout": layout, "packed": packed, "order": jnp.asarray(order), "make_bins": make_bins}


@functools.cache
def _fns(layout, backend="xla"):
    composite = BACKENDS[backend][0]
    fwd = fast_jit(lambda packed, bins: composite(layout, packed, bins))

    def vjp(packed, bins, ct):
        _, pull = jax.vjp(lambda pk, b: composite(layout, pk, b), packed, bins)
        return pull(ct)

    def ref_loss(packed, order, member, ct_img):
        return jnp.vdot(dense_composite(packed, order, member), ct_img)

    ref = fast_jit(dense_composite, static_argnames=("alpha_max", "alpha_min", "t_min"))
    return fwd, fast_jit(vjp), ref, fast_jit(jax.grad(ref_loss))


def _image(layout, tiled):
    """(num_tiles [+ 1], P, C) -> the whole tile grid (tiles_y * ts, tiles_x * ts, C)."""
    return comp.tiles_to_image(
        layout, tiled, layout.tiles_x * layout.tile_size, layout.tiles_y * layout.tile_size
    )


def _members_from_bins(bins, num_tiles, order):
    """(num_tiles, K) bool: which Gaussians each tile's chunk lists hold (membership only, not order)."""
    gids, tiles = np.asarray(bins.chunk_gids), np.asarray(bins.chunk_tiles)
    rank = np.full(int(np.max(order)) + 2, -1)
    rank[np.asarray(order)] = np.arange(len(order))
    member = np.zeros((num_tiles, len(order)), bool)
    for m in range(int(bins.num_chunks)):
        ids = gids[m][gids[m] < len(order)]
        member[tiles[m], rank[ids]] = True
    return jnp.asarray(member)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("capacity", [1024, 12], ids=["all_kept", "tile_overflow"])
def test_forward_matches_dense_compositor(scene, capacity, backend):
    """Outputs within 1e-5 of the dense compositor; the scratch row and the dropped pairs behave.

    all_kept: the reference composites every Gaussian at every pixel (it does not look at the bins at all).
    tile_overflow: each tile keeps its nearest 12 pairs; the compositor's contract is to composite exactly the
    lists in `bins`, so the reference takes each tile's set (not order) from the bins.
    """
    layout, packed, order = scene["layout"](backend), scene["packed"], scene["order"]
    bins = scene["make_bins"](capacity, backend)
    fwd, _, ref, _ = _fns(layout, backend)
    out = fwd(packed, bins)
    C = packed.shape[1] - 6
    assert out.shape == (layout.num_tiles + 1, layout.tile_pixels, C)
    assert np.all(np.isfinite(np.asarray(out)))

    if capacity >= N:
        assert int(bins.stats["dropped_pairs"]) == 0
        member = jnp.ones((layout.num_tiles, N), bool)
    else:
        assert int(bins.stats["dropped_pairs"]) > 0
        member = _members_from_bins(bins, layout.num_tiles, order)
        assert not bool(jnp.all(member))
    img = _image(layout, out)
    want = ref(packed, order, member)
    np.testing.assert_allclose(img, want, atol=1e-5)
    # The constant-1 channel is the accumulated alpha in [0, 1).
    acc_alpha = np.asarray(img[..., CHANNELS.alpha])
    assert acc_alpha.min() >= 0.0 and acc_alpha.max() < 1.0

    # The comparison is not vacuous: every rule of the compositor changes the answer on this scene.
    assert (
        float(jnp.max(want[..., CHANNELS.alpha])) > 0.99 and float(jnp.min(want[..., CHANNELS.alpha])) < 0.5
    )
    for mutant in ({"t_min": 0.0}, {"alpha_max": 1.0}, {"alpha_min": 0.0}):
        wrong = ref(packed, order, member, **mutant)
        assert float(jnp.max(jnp.abs(img - wrong))) > 1e-4, f"rule {mutant} is not exercised by the scene"
    if capacity < N:  # and dropping pairs is visible: the full lists give another image
        full = ref(packed, order, jnp.ones_like(member))
        assert float(jnp.max(jnp.abs(img - full))) > 1e-3


def test_scene_exercises_chunks_batches_and_carries(scene):
    """Tiles span several chunks, and some tile continues across a batch boundary (the carry path)."""
    wide = scene["make_bins"](1024, "pallas")  # the Pallas kernels walk several chunks per tile too
    assert (
        int(jnp.max(composite_pallas.tile_starts(wide, 6)[1:] - composite_pallas.tile_starts(wide, 6)[:-1]))
        > 2
    )
    bins = scene["make_bins"](1024)
    nc = int(bins.num_chunks)
    first = np.asarray(bins.chunk_first)[:nc]
    starts = np.arange(0, nc, BATCH)
    assert nc > 2 * BATCH, nc
    assert np.any(~first[starts[1:]]), "no tile crosses a batch boundary"
    runs = np.diff(np.flatnonzero(np.append(first, True)))  # chunks per tile
    assert runs.max() > BATCH, runs  # one tile fills a whole batch, carried in and out


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_vjp_matches_autodiff_of_dense_compositor(scene, backend):
    """The custom VJP w.r.t. packed (every column) against jax.grad of the dense reference.

    packed is the stage's only differentiable input (the background is added after it, in api.render);
    bins get float0 zero cotangents. The cotangent is random everywhere, including the scratch row
    num_tiles, which must not leak into the gradient.
    """
    layout, packed, order = scene["layout"](backend), scene["packed"], scene["order"]
    bins = scene["make_bins"](1024, backend)
    _, vjp, _, ref_grad = _fns(layout, backend)
    C = packed.shape[1] - 6
    ct = jax.random.normal(jax.random.PRNGKey(5), (layout.num_tiles + 1, layout.tile_pixels, C))
    member = jnp.ones((layout.num_tiles, N), bool)

    got, bins_ct = vjp(packed, bins, ct)
    want = ref_grad(packed, order, member, _image(layout, ct))
    assert got.shape == packed.shape and np.all(np.isfinite(np.asarray(got)))
    for leaf in jax.tree_util.tree_leaves(bins_ct):
        assert leaf.dtype == jax.dtypes.float0
    np.testing.assert_array_equal(got[N], 0.0)  # the transparent dummy row

    names = ["mean_x", "mean_y", "conic_a", "conic_b", "conic_c", "opacity"] + [f"value{i}" for i in range(C)]
    for col, name in enumerate(names):
        u, v = got[:N, col], want[:N, col]
        assert float(jnp.max(jnp.abs(v))) > 0, f"{name}: reference gradient is zero, the test is vacuous"
        assert _rel_err(u, v) < 1e-3, (name, _rel_err(u, v))
        np.testing.assert_allclose(u, v, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(v))), err_msg=name)

    # A wrong cotangent (shifted by one pixel) gives a clearly different gradient: the check can fail.
    wrong = ref_grad(packed, order, member, jnp.roll(_image(layout, ct), 1, axis=1))
    assert _rel_err(got[:N], wrong[:N]) > 0.1


def test_chunk_slots_must_be_a_multiple_of_the_batch(scene):
    layout, packed = scene["layout"](), scene["packed"]
    bins = scene["make_bins"](1024)
    assert bins.chunk_gids.shape[0] % BATCH == 0  # bin.num_chunk_slots rounds up
    short = bins.replace(
        chunk_gids=bins.chunk_gids[:-1],
        chunk_tiles=bins.chunk_tiles[:-1],
        chunk_first=bins.chunk_first[:-1],
        chunk_last=bins.chunk_last[:-1],
    )
    with pytest.raises(ValueError, match="multiple of chunk_batch"):
        jax.eval_shape(lambda pk, b: comp.composite_tiles(layout, pk, b), packed, short)
