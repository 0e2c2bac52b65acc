"""The tile rasterizer against the dense reference: values, gradients, budgets, and bad input.

Every value and gradient test runs for both compositing backends: "xla" and "pallas" (the Pallas kernels,
interpreted on this CPU).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import fast_jit, pinhole, random_splats

from any4d_jax.geometry import cameras
from any4d_jax.render import RenderConfig, Splats, render
from any4d_jax.render.bin import bucket_pairs, tile_grid
from any4d_jax.render.project import project
from any4d_jax.render.reference import render_reference

CFG = RenderConfig(chunk_size=16, chunk_batch=8, backend="xla")
BG = jnp.array([0.2, 0.4, 0.6])
BACKENDS = ["xla", "pallas"]


def _cfg(backend, **kw):
    return dataclasses.replace(CFG, backend=backend, **kw)


def mixed_scene(key, n=160, sh_degree=None, num_features=0):
    """Overlapping Gaussians plus the awkward ones: behind the camera, off-screen, huge, tiny, faint."""
    s = random_splats(key, n, scale=0.06, sh_degree=sh_degree, num_features=num_features)
    means = s.means
    means = means.at[0].set(jnp.array([0.1, 0.0, -1.0]))  # behind the camera
    means = means.at[1].set(jnp.array([0.0, 0.0, 0.005]))  # inside the near plane
    means = means.at[2].set(jnp.array([9.0, 0.5, 2.0]))  # off-screen right
    means = means.at[3].set(jnp.array([-0.4, -8.0, 3.0]))  # off-screen top
    means = means.at[4].set(jnp.array([1.3, 0.2, 3.0]))  # centre off-screen, tail on-screen
    scales = s.scales
    scales = scales.at[5].set(jnp.array([1.5, 0.8, 0.3]))  # huge: covers every tile
    scales = scales.at[6].set(jnp.array([0.6, 0.02, 0.4]))  # large and thin
    scales = scales.at[4].set(jnp.array([0.5, 0.5, 0.5]))
    scales = scales.at[7].set(jnp.array([1e-4, 1e-4, 1e-4]))  # tiny: below a pixel
    opac = s.opacities.at[8].set(0.002)  # below 1/255: culled
    opac = opac.at[5].set(0.35)
    return s.replace(means=means, scales=scales, opacities=opac)


@functools.cache
def _fns(width, height, cfg=CFG):
    cam = pinhole(width, height)

    def outs(f, splats, viewmat, K, bg):
        c = cam.replace(viewmat=viewmat, K=K)
        return f(splats, c, bg, cfg)

    def loss(f, splats, viewmat, K, bg, wr, wa, wd, wf):
        o = outs(f, splats, viewmat, K, bg)
        val = jnp.sum(o.rgb * wr) + jnp.sum(o.alpha * wa) + jnp.sum(o.depth * wd)
        if o.features is not None:
            val = val + jnp.sum(o.features * wf)
        return val

    fast = fast_jit(functools.partial(outs, render))
    ref = fast_jit(functools.partial(outs, render_reference))
    g_fast = fast_jit(jax.grad(functools.partial(loss, render), argnums=(0, 1, 2, 3)))
    g_ref = fast_jit(jax.grad(functools.partial(loss, render_reference), argnums=(0, 1, 2, 3)))
    return cam, fast, ref, g_fast, g_ref


def _weights(key, h, w, f):
    k = jax.random.split(key, 4)
    return (
        jax.random.uniform(k[0], (h, w, 3)),
        jax.random.normal(k[1], (h, w)),
        0.1 * jax.random.uniform(k[2], (h, w)),
        jax.random.normal(k[3], (h, w, max(f, 1)))[..., :f],
    )


SIZES = [(37, 29), (70, 45)]  # neither divisible by 16


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width,height", SIZES)
def test_forward_matches_dense_reference(width, height, backend, key):
    cam, fast, ref, _, _ = _fns(width, height, _cfg(backend))
    splats = mixed_scene(key, num_features=2)
    a = fast(splats, cam.viewmat, cam.K, BG)
    b = ref(splats, cam.viewmat, cam.K, BG)
    assert a.rgb.shape == (height, width, 3) and a.features.shape == (height, width, 2)
    np.testing.assert_allclose(a.rgb, b.rgb, atol=1e-5)
    np.testing.assert_allclose(a.alpha, b.alpha, atol=1e-5)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-5 * float(jnp.max(b.depth)))
    assert int(a.stats["dropped_pairs"]) == 0
    # The scene must actually exercise overlap and the background.
    assert float(jnp.max(b.alpha)) > 0.9 and float(jnp.min(b.alpha)) < 0.5
    assert np.all(np.isfinite(np.asarray(a.rgb)))


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_reference_for_every_input(backend, key):
    width, height = SIZES[1]
    cam, _, _, g_fast, g_ref = _fns(width, height, _cfg(backend))
    # A rotated camera and SH degree 3 make colours view dependent.
    vm = cameras.look_at(jnp.array([0.4, -0.3, -0.2]), jnp.array([0.0, 0.0, 3.0]))
    splats = mixed_scene(jax.random.fold_in(key, 1), sh_degree=3, num_features=2)
    w = _weights(jax.random.fold_in(key, 2), height, width, 2)
    ga = g_fast(splats, vm, cam.K, BG, *w)
    gb = g_ref(splats, vm, cam.K, BG, *w)
    names = ["splats", "viewmat", "K", "background"]
    for name, x, y in zip(names, ga, gb, strict=True):
        for path, u in jax.tree_util.tree_leaves_with_path(x):
            v = functools.reduce(lambda t, k: getattr(t, k.name) if hasattr(k, "name") else t[k.idx], path, y)
            label = f"{name}{jax.tree_util.keystr(path)}"
            if name == "K":  # only fx, skew, cx, fy, cy are parameters; the rest is structure
                sel = (jnp.array([0, 0, 0, 1, 1]), jnp.array([0, 1, 2, 1, 2]))
                u, v = u[sel], v[sel]
            assert np.all(np.isfinite(np.asarray(u))), label
            assert float(jnp.max(jnp.abs(v))) > 0, f"{label}: reference gradient is zero, the test is vacuous"
            assert _rel_err(u, v) < 1e-3, (label, _rel_err(u, v))
            np.testing.assert_allclose(u, v, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(v))), err_msg=label)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_spot_checks_by_finite_differences(backend, key):
    """Directional derivatives of the tile renderer against central differences, in float64.

    Splatting is only piecewise smooth (alpha is skipped below 1/255, pixels stop at T < 1e-4), so the step
    must be small enough that no threshold is crossed: float64 makes h = 1e-6 usable.
    """
    width, height = SIZES[0]
    with jax.enable_x64(True):
        cam = pinhole(width, height)
        cam = cam.replace(viewmat=cam.viewmat.astype(jnp.float64), K=cam.K.astype(jnp.float64))
        splats = jax.tree_util.tree_map(
            lambda x: x.astype(jnp.float64), random_splats(jax.random.fold_in(key, 3), 40, scale=0.12)
        )
        splats = splats.replace(opacities=0.3 + 0.4 * splats.opacities)
        w = [x.astype(jnp.float64) for x in _weights(jax.random.fold_in(key, 4), height, width, 0)[:3]]

        def loss_fn(s, viewmat):
            o = render(s, cam.replace(viewmat=viewmat), BG, _cfg(backend))
            return jnp.sum(o.rgb * w[0]) + jnp.sum(o.alpha * w[1]) + jnp.sum(o.depth * w[2])

        loss = fast_jit(loss_fn)
        grads = fast_jit(jax.grad(loss_fn, argnums=(0, 1)))(splats, cam.viewmat)
        h = 1e-6
        for i, field in enumerate(("means", "scales", "opacities", "colors", "quats", "viewmat")):
            x = cam.viewmat if field == "viewmat" else getattr(splats, field)
            d = jax.random.normal(jax.random.fold_in(key, 100 + i), x.shape, jnp.float64)
            if field == "viewmat":
                d = d.at[3].set(0.0)
                fd = (loss(splats, x + h * d) - loss(splats, x - h * d)) / (2 * h)
                an = jnp.vdot(grads[1], d)
            else:
                plus = loss(splats.replace(**{field: x + h * d}), cam.viewmat)
                minus = loss(splats.replace(**{field: x - h * d}), cam.viewmat)
                fd = (plus - minus) / (2 * h)
                an = jnp.vdot(getattr(grads[0], field), d)
            assert abs(float(fd) - float(an)) <= 1e-4 * abs(float(an)) + 1e-6, (field, float(fd), float(an))


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_vmap_over_cameras_and_grad(backend, key):
    width, height = SIZES[0]
    cfg = _cfg(backend)
    cam = pinhole(width, height)
    splats = random_splats(jax.random.fold_in(key, 5), 60)
    eyes = jnp.array([[0.0, 0.0, 0.0], [0.3, 0.0, -0.2], [-0.2, 0.3, 0.1]])
    vms = cameras.look_at(eyes, jnp.broadcast_to(jnp.array([0.0, 0.0, 3.0]), eyes.shape))
    cams = cam.replace(viewmat=vms, K=jnp.broadcast_to(cam.K, (3, 3, 3)))

    def rgb(c):
        return render(splats, c, BG, cfg).rgb

    one = fast_jit(rgb)
    batched = fast_jit(jax.vmap(rgb))(cams)
    for i in range(3):
        single = one(cam.replace(viewmat=vms[i]))
        np.testing.assert_allclose(batched[i], single, atol=1e-6)
    assert float(jnp.std(batched[0] - batched[1])) > 1e-3  # the cameras really differ

    def loss(s):
        return jnp.mean(jax.vmap(lambda c: render(s, c, BG, cfg).rgb)(cams))

    g = fast_jit(jax.grad(loss))(splats)
    assert float(jnp.linalg.norm(g.means)) > 0 and np.all(np.isfinite(np.asarray(g.means)))


def _count_pairs_numpy(splats, cam, cfg):
    """Independent count of tile-Gaussian pairs per tile from the projected boxes."""
    p = project(splats.means, splats.quats, splats.scales, splats.opacities, cam, cfg.near, cfg.far)
    tx, ty = tile_grid(cam.width, cam.height, cfg.tile_size)
    counts = np.zeros((ty, tx), np.int64)
    m, r, v = np.asarray(p.means2d), np.asarray(p.radii), np.asarray(p.valid)
    ts = cfg.tile_size
    for i in np.nonzero(v)[0]:
        for yy in range(ty):
            for xx in range(tx):
                if (
                    m[i, 0] + r[i, 0] > xx * ts
                    and m[i, 0] - r[i, 0] < (xx + 1) * ts
                    and m[i, 1] + r[i, 1] > yy * ts
                    and m[i, 1] - r[i, 1] < (yy + 1) * ts
                ):
                    counts[yy, xx] += 1
    return counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_tile_capacity_and_pair_budget_overflow_are_reported(backend, key):
    width, height = SIZES[0]
    cam = pinhole(width, height)
    splats = random_splats(jax.random.fold_in(key, 6), 120, scale=0.15)
    counts = _count_pairs_numpy(splats, cam, CFG)
    full = fast_jit(lambda s: render(s, cam, BG, _cfg(backend)))(splats)
    assert int(full.stats["num_pairs"]) == counts.sum()
    assert int(full.stats["max_per_tile"]) == counts.max()
    assert int(full.stats["dropped_pairs"]) == 0

    cap = 10
    capped = fast_jit(lambda s: render(s, cam, BG, _cfg(backend, tile_capacity=cap)))(splats)
    assert int(capped.stats["dropped_pairs"]) == np.maximum(counts - cap, 0).sum() > 0
    assert float(jnp.max(jnp.abs(capped.rgb - full.rgb))) > 1e-3  # dropping is visible, and reported

    budget = int(counts.sum()) - 50
    short_cfg = _cfg(backend, max_pairs=budget)
    short = fast_jit(lambda s: render(s, cam, BG, short_cfg))(splats)  # under jit: reported, not grown
    assert int(short.stats["dropped_pairs"]) == int(short.stats["over_budget"]) == 50
    assert int(short.stats["num_pairs"]) == counts.sum()
    assert int(short.stats["max_pairs"]) == budget
    assert float(jnp.max(jnp.abs(short.rgb - full.rgb))) > 1e-3

    # Outside jit the same call grows the budget to a power of two and drops nothing.
    grown = render(splats, cam, BG, short_cfg)
    assert int(grown.stats["over_budget"]) == int(grown.stats["dropped_pairs"]) == 0
    assert int(grown.stats["max_pairs"]) == bucket_pairs(int(counts.sum()))
    np.testing.assert_allclose(np.asarray(grown.rgb), np.asarray(full.rgb), atol=1e-6)


def test_bucket_pairs_is_a_power_of_two_with_headroom():
    for needed in (1, 7, 100, 1000, 4096, 123_457, 2_000_000):
        b = bucket_pairs(needed)
        assert b & (b - 1) == 0 and b >= 1.25 * needed and b < 2.5 * needed + 2
    with pytest.raises(ValueError, match="more than the binning supports"):
        bucket_pairs(1 << 30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tile_with_more_gaussians_than_the_old_cap_composites_all_of_them(backend, key):
    """1300 faint, wide Gaussians over one 16 x 16 tile: every one contributes (T stays > 1e-4), so the
    default (no per-tile cap) must match the dense reference while a cap of 1024 visibly drops 276."""
    n = 1300
    cam = pinhole(16, 16, focal=16.0)
    k1, k2 = jax.random.split(key)
    means = jnp.concatenate(
        [0.05 * jax.random.normal(k1, (n, 2)), jnp.linspace(2.0, 6.0, n)[:, None]], axis=-1
    )
    splats = Splats(
        means=means,
        quats=jnp.tile(jnp.array([1.0, 0.0, 0.0, 0.0]), (n, 1)),
        scales=jnp.full((n, 3), 4.0),
        opacities=jnp.full((n,), 0.005),
        colors=jax.random.uniform(k2, (n, 3)),
    )
    ref = render_reference(splats, cam, BG)
    out = render(splats, cam, BG, _cfg(backend))
    assert int(out.stats["max_per_tile"]) == n and int(out.stats["dropped_pairs"]) == 0
    np.testing.assert_allclose(np.asarray(out.rgb), np.asarray(ref.rgb), atol=2e-5)
    capped = render(splats, cam, BG, _cfg(backend, tile_capacity=1024))
    assert int(capped.stats["dropped_pairs"]) == n - 1024
    assert float(jnp.max(jnp.abs(capped.rgb - ref.rgb))) > 1e-3


def test_fit_200_gaussians_to_a_target_image(key):
    """A tiny optimisation: recover an image rendered from other Gaussians (PSNR > 25 dB)."""
    width = height = 48
    cam = pinhole(width, height, focal=50.0)
    source = random_splats(jax.random.fold_in(key, 7), 150, scale=0.08, spread=0.9)
    target = jax.jit(lambda s: render(s, cam, BG, CFG).rgb)(source)
    init = random_splats(jax.random.fold_in(key, 8), 200, scale=0.06, spread=0.9)
    params = {
        "means": init.means,
        "quats": init.quats,
        "log_scales": jnp.log(init.scales),
        "logit_opacity": jnp.zeros(200),
        "colors": jnp.full((200, 3), 0.5),
    }

    def loss_fn(p):
        s = Splats(
            p["means"], p["quats"], jnp.exp(p["log_scales"]), jax.nn.sigmoid(p["logit_opacity"]), p["colors"]
        )
        return jnp.mean((render(s, cam, BG, CFG).rgb - target) ** 2)

    opt = optax.multi_transform(
        {
            k: optax.adam(lr)
            for k, lr in [
                ("means", 3e-3),
                ("quats", 1e-2),
                ("log_scales", 1e-2),
                ("logit_opacity", 5e-2),
                ("colors", 2e-2),
            ]
        },
        {k: k for k in params},
    )

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = opt.init(params)
    for _ in range(400):
        params, state, loss = step(params, state)
    psnr = -10 * np.log10(float(loss))
    assert psnr > 25.0, psnr


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda s, c: (s, c.replace(viewmat=c.viewmat.at[0, 3].set(jnp.nan))), "camera.viewmat"),
        (lambda s, c: (s, c.replace(K=c.K.at[0, 0].set(jnp.inf))), "camera.K"),
        (lambda s, c: (s.replace(quats=s.quats.at[3].set(0.0)), c), "splats.quats"),
        (lambda s, c: (s.replace(scales=s.scales.at[2, 1].set(-0.1)), c), "splats.scales"),
        (lambda s, c: (s.replace(opacities=s.opacities.at[1].set(1.5)), c), "splats.opacities"),
        (lambda s, c: (s.replace(means=s.means[:-1]), c), "splats.means"),
        (lambda s, c: (s.replace(colors=s.colors[:, :2]), c), "splats.colors"),
        (lambda s, c: (s.replace(colors=jnp.zeros((s.num, 5, 3))), c), "SH coefficient count"),
    ],
)
def test_bad_input_raises_naming_the_argument(mutate, needle, key):
    splats, cam = mutate(random_splats(key, 10), pinhole(20, 20))
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        render(splats, cam, BG, CFG)
