"""The Pallas compositing kernels beyond values and gradients (those are in test_composite.py and
test_render.py, for both backends): backend choice, layout rules, the per-pixel residuals, early exit, and
that the kernels lower for CUDA on this CPU-only jax (so shape and lowering errors show up in CI)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import pinhole
from jax import export

from any4d_jax.render import RenderConfig, Splats, render
from any4d_jax.render import bin as binning
from any4d_jax.render import composite as comp
from any4d_jax.render import composite_pallas as cp
from any4d_jax.render.api import pack_values
from any4d_jax.render.project import project
from any4d_jax.render.types import AUTO_PALLAS_PLATFORMS, CHANNELS, T_MIN, resolve_backend

_TRITON = "__gpu$xla.gpu.triton"


def test_backend_choice():
    assert resolve_backend("xla", "gpu") == "xla"
    assert resolve_backend("pallas", "gpu") == "pallas"
    assert resolve_backend("pallas", "cpu") == "pallas"  # interpreted
    # Until the kernels are measured on a GPU, auto is the XLA compositor on every platform.
    assert AUTO_PALLAS_PLATFORMS == ()
    for platform in ("cpu", "gpu", "tpu"):
        assert resolve_backend("auto", platform) == "xla"
    with pytest.raises(ValueError, match="none for tpu; use backend='xla'"):
        resolve_backend("pallas", "tpu")
    with pytest.raises(ValueError, match="backend='triton', expected one of auto, xla, pallas"):
        RenderConfig(backend="triton")


def _scene(n=40, width=32, height=32):
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    means = jnp.concatenate(
        [jax.random.uniform(k[0], (n, 2), minval=-0.5, maxval=0.5), jnp.linspace(2.0, 4.0, n)[:, None]], -1
    )
    return Splats(
        means=means,
        quats=jax.random.normal(k[1], (n, 4)),
        scales=0.1 * jnp.exp(0.3 * jax.random.normal(k[2], (n, 3))),
        opacities=jnp.full((n,), 0.6),
        colors=jax.random.uniform(k[3], (n, 3)),
    ), pinhole(width, height)


def test_render_uses_the_chosen_backend():
    """The jaxpr holds pallas_call exactly when the pallas backend is chosen (no silent fallback)."""
    splats, cam = _scene()
    for backend, want in (("pallas", True), ("xla", False), ("auto", False)):
        cfg = RenderConfig(backend=backend, validate=False)
        text = str(jax.make_jaxpr(lambda s, c=cfg: render(s, cam, None, c).rgb)(splats))
        assert ("pallas_call" in text) == want, backend


@pytest.mark.parametrize(
    "kw,needle", [({"chunk_size": 12}, "chunk_size=12"), ({"tile_size": 12}, "tile_size=12")]
)
def test_layouts_the_kernels_cannot_take_are_refused(kw, needle):
    splats, cam = _scene()
    cfg = RenderConfig(backend="pallas", **kw)
    with pytest.raises(ValueError, match=needle):
        render(splats, cam, None, cfg)
    xla = dataclasses.replace(cfg, backend="xla", validate=False)
    jax.eval_shape(lambda s: render(s, cam, None, xla).rgb, splats)  # the XLA compositor takes them


def _packed_and_bins(splats, cam, chunk=16):
    p = project(splats.means, splats.quats, splats.scales, splats.opacities, cam, 0.01, 1e10)
    packed = comp.pack(p.means2d, p.conics, splats.opacities, pack_values(splats.colors, p.depths, None))
    tx, ty = binning.tile_grid(cam.width, cam.height, 16)
    layout = comp.Layout(tx, ty, 16, chunk, 4)
    bins = binning.bin_gaussians(
        p.means2d, p.radii, p.depths, p.valid, cam.width, cam.height, 16, None, 4096, chunk, 4
    )
    return layout, packed, bins


def test_residuals_and_early_exit():
    """Per pixel the forward keeps log T_final (= log(1 - accumulated alpha)) and the list position of the
    last Gaussian that counted. Behind an opaque front layer that position is in the first chunk (the tile's
    loop exits there), while the tile's list is 200 long."""
    n = 200
    splats, cam = _scene(n, 16, 16)
    # Five wide opaque Gaussians in front of everything: every pixel's T falls below 1e-4 in the first chunk.
    front = jnp.arange(5)
    splats = splats.replace(
        means=splats.means.at[front].set(jnp.array([[0.0, 0.0, 1.0]] * 5)),
        scales=splats.scales.at[front].set(2.0),
        opacities=splats.opacities.at[front].set(0.99),
    )
    layout, packed, bins = _packed_and_bins(splats, cam)
    starts = cp.tile_starts(bins, layout.num_tiles)
    out, log_t, last = jax.jit(lambda *a: cp.forward(layout, *a))(packed, starts, bins.chunk_gids)
    assert int(bins.stats["max_per_tile"]) == n
    alpha = np.asarray(out[0, :, CHANNELS.alpha])
    np.testing.assert_allclose(np.exp(np.asarray(log_t[0])), 1.0 - alpha, rtol=1e-4, atol=1e-7)
    assert np.all(np.exp(np.asarray(log_t[0])) > T_MIN)  # stopped before T reached 1e-4
    assert int(np.max(np.asarray(last[0]))) <= 4  # the front five take T to 1e-4: the loop stopped there

    # Without the front layer the same pixels see Gaussians deep in the list.
    layout, packed, bins = _packed_and_bins(
        splats.replace(opacities=splats.opacities.at[front].set(0.0)), cam
    )
    _, _, last = jax.jit(lambda *a: cp.forward(layout, *a))(packed, cp.tile_starts(bins, 1), bins.chunk_gids)
    assert int(np.max(np.asarray(last))) > 100


def test_kernels_lower_for_cuda_at_iphone_scale():
    """jax.export for CUDA on this CPU: value and gradient of a render of 300,000 Gaussians at 480 x 360 (the
    iPhone job's shapes, traced abstractly) lower to the two Triton kernels, named, with no interpreter."""
    n, width, height = 300_000, 480, 360
    cam = pinhole(width, height)
    cfg = RenderConfig(backend="pallas", validate=False)
    shapes = Splats(
        means=jax.ShapeDtypeStruct((n, 3), jnp.float32),
        quats=jax.ShapeDtypeStruct((n, 4), jnp.float32),
        scales=jax.ShapeDtypeStruct((n, 3), jnp.float32),
        opacities=jax.ShapeDtypeStruct((n,), jnp.float32),
        colors=jax.ShapeDtypeStruct((n, 3), jnp.float32),
    )
    target = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)

    def loss(splats, target):
        return jnp.mean((render(splats, cam, None, cfg).rgb - target) ** 2)

    exp = export.export(
        jax.jit(jax.value_and_grad(loss)),
        platforms=("cuda",),
        disabled_checks=[export.DisabledSafetyCheck.custom_call(_TRITON)],
    )(shapes, target)
    text = exp.mlir_module()
    calls = [line for line in text.splitlines() if "stablehlo.custom_call" in line]
    triton = [c for c in calls if _TRITON in c]
    assert len(triton) == 2, calls
    assert any('name = "any4d_composite_fwd"' in c for c in triton)
    assert any('name = "any4d_composite_bwd"' in c for c in triton)
    assert "grid_x = 690" in text  # one program per 16 x 16 tile: 30 x 23 tiles


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="compiles the Triton kernels: needs a GPU")
def test_compiled_kernels_match_the_xla_compositor_on_gpu():
    """On a GPU: the compiled Triton kernels against the XLA compositor, values and gradients, on a scene
    with busy tiles (what the interpreter cannot check: Triton's own compilation and the atomics)."""
    n, size = 3000, 128
    k = jax.random.split(jax.random.PRNGKey(7), 5)
    means = jnp.concatenate(
        [
            jax.random.uniform(k[0], (n, 2), minval=-1, maxval=1),
            jax.random.uniform(k[1], (n, 1), minval=2.0, maxval=4.0),
        ],
        -1,
    )
    splats = Splats(
        means=means,
        quats=jax.random.normal(k[2], (n, 4)),
        scales=0.04 * jnp.exp(0.3 * jax.random.normal(k[3], (n, 3))),
        opacities=jax.nn.sigmoid(jax.random.normal(k[4], (n,))),
        colors=jax.random.uniform(k[4], (n, 3)),
    )
    cam = pinhole(size, size)
    w = jax.random.normal(jax.random.PRNGKey(8), (size, size, 3))
    grads = {}
    for backend in ("xla", "pallas"):
        cfg = RenderConfig(backend=backend, validate=False, max_pairs=1 << 16)

        def loss(s, cfg=cfg):
            out = render(s, cam, None, cfg)
            return jnp.sum(out.rgb * w), out

        (_, out), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(splats)
        assert int(out.stats["dropped_pairs"]) == 0
        grads[backend] = (out.rgb, g)
    np.testing.assert_allclose(grads["pallas"][0], grads["xla"][0], atol=1e-5)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        u, v = np.asarray(getattr(grads["pallas"][1], name)), np.asarray(getattr(grads["xla"][1], name))
        assert np.linalg.norm(u - v) <= 1e-3 * np.linalg.norm(v), name
