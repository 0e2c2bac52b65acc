"""The browser viewer (any4d_jax/viewer/static) against the JAX renderer, through headless Chromium.

A small moving scene is written as .a4d, rendered by `render(scene.splats_at(t), ...)` and captured from the
viewer at the same camera and a non-canonical time; the images must agree (PSNR). Needs Chromium (skipped
without it); WebGL2 runs on SwiftShader, so no GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.data import synthetic
from any4d_jax.geometry import cameras
from any4d_jax.io import a4d
from any4d_jax.render import RenderConfig, render
from any4d_jax.render.sh import rgb_to_sh_dc
from any4d_jax.viewer import capture as viewer_capture

pytestmark = pytest.mark.skipif(
    viewer_capture.find_chromium() is None,
    reason="viewer tests need Chromium (chromium, chromium-browser or google-chrome on PATH)",
)

CFG = synthetic.SyntheticConfig(width=64, height=48, num_frames=12, num_background=240, num_per_object=80)
T_VIEW = 8.6  # non-canonical, fractional time
BACKGROUND = [0.12, 0.18, 0.25]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))


def moving_scene(time_basis: str = "dct") -> a4d.Scene:
    """The synthetic ground-truth Gaussians with random real motion and SH degree 1 colours.

    2 generator channels + 3 learnable bases, 4 coefficients of `time_basis` (dct or bspline), canonical
    frame 3, pivots off the origin,
    each Gaussian blending several bases; random rotations so the covariances are not axis-aligned.
    """
    rng = np.random.default_rng(0)
    splats = synthetic.build_scene(CFG).splats
    n = splats.means.shape[0]
    kt, c, bl = 4, 2, 3
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0] = np.asarray(rgb_to_sh_dc(splats.colors))
    sh[:, 1:] = 0.2 * rng.standard_normal((n, 3, 3))
    quats = rng.standard_normal((n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    weights = np.concatenate([rng.uniform(0.0, 1.0, (n, 6 * c)), rng.dirichlet(np.ones(bl), n)], axis=1)
    cams = synthetic.train_cameras(CFG)
    return a4d.Scene(
        means=np.asarray(splats.means, np.float32),
        quats=quats,
        scales=np.asarray(splats.scales, np.float32) * 1.5,
        opacities=rng.uniform(0.3, 1.0, n).astype(np.float32),
        sh=sh,
        weights=weights.astype(np.float32),
        generator=(0.12 * rng.standard_normal((kt, c, 6))).astype(np.float32),
        learnable=(0.12 * rng.standard_normal((kt, bl, 6))).astype(np.float32),
        generator_pivots=(synthetic.LOOK_AT + 0.5 * rng.standard_normal((c, 3))).astype(np.float32),
        learnable_pivots=(synthetic.LOOK_AT + 0.5 * rng.standard_normal((bl, 3))).astype(np.float32),
        camera_viewmats=np.asarray(cams.viewmat, np.float32),
        camera_Ks=np.asarray(cams.K, np.float32),
        camera_times=np.arange(CFG.num_frames, dtype=np.float32),
        meta={
            "num_frames": CFG.num_frames,
            "canonical_frame": 3,
            "time_basis": time_basis,
            "num_time_coeffs": kt,
            "fps": 12.0,
            "width": CFG.width,
            "height": CFG.height,
            "background": BACKGROUND,
        },
    )


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("viewer") / "scene.a4d"
    a4d.write_a4d(path, moving_scene(), "mixed")
    return path


@pytest.fixture(scope="module")
def bspline_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("viewer") / "bspline.a4d"
    a4d.write_a4d(path, moving_scene("bspline"), "mixed")
    return path


@pytest.mark.parametrize("which", ["dct", "bspline"])
def test_viewer_matches_jax_renderer(request, which):
    scene_file = request.getfixturevalue("scene_file" if which == "dct" else "bspline_file")
    scene = a4d.read_a4d(scene_file)  # the float16-rounded values the viewer sees too
    cam = synthetic.eval_cameras(CFG)
    viewmat, K = np.asarray(cam.viewmat[1]), np.asarray(cam.K[1])
    camera = cameras.make_camera(viewmat, K, CFG.width, CFG.height)

    @jax.jit
    def rgb_at(t):
        return render(scene.splats_at(t), camera, jnp.asarray(BACKGROUND), RenderConfig()).rgb

    def to_uint8(rgb):
        return np.round(np.clip(np.asarray(rgb), 0.0, 1.0) * 255.0).astype(np.uint8)

    ref = to_uint8(rgb_at(T_VIEW))
    canonical = to_uint8(rgb_at(float(scene.meta["canonical_frame"])))
    got = viewer_capture.capture(str(scene_file), viewmat, K, CFG.width, CFG.height, T_VIEW)

    assert got.shape == ref.shape == (CFG.height, CFG.width, 3)
    value = psnr(got, ref)
    static = psnr(canonical, ref)
    print(f"viewer vs JAX at t={T_VIEW}: {value:.2f} dB; JAX canonical vs t: {static:.2f} dB")
    # The motion must matter for the check to mean anything: without it the image is far off.
    assert static < 25.0, f"test scene moves too little ({static:.1f} dB between t0 and t)"
    # Measured ~85 dB (SwiftShader): two pixels off by one level. 40 dB still allows a one-level rounding
    # difference everywhere, but catches e.g. SH evaluated without the view direction (~30 dB).
    assert value >= 40.0, f"viewer differs from the JAX renderer: PSNR {value:.2f} dB"


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) - 100]
    if how == "corrupted":  # one payload byte flipped: payload CRC-32 mismatch
        b = bytearray(data)
        b[-40] ^= 0xFF
        return bytes(b)
    assert how == "newer"  # major version 2
    return data[:4] + (2).to_bytes(2, "little") + data[6:]


@pytest.mark.parametrize("how", ["truncated", "corrupted", "newer"])
def test_viewer_reports_bad_file(tmp_path, scene_file, how):
    bad = tmp_path / f"{how}.a4d"
    bad.write_bytes(_corrupt(scene_file.read_bytes(), how))
    # a4d.js' message (e.g. "truncated.a4d: truncated (...)"), written by the page and raised by capture().
    with pytest.raises(viewer_capture.ViewerError, match=f"reported an error: .*{how}"):
        viewer_capture.capture(str(bad), np.eye(4), np.diag([50.0, 50.0, 1.0]), 8, 8, 0.0)
