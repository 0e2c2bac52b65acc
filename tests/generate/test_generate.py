"""Generation without torch: images, warp and synthetic backends, the registry, prompt -> 4D end to end."""

import json
import math
import os
import struct
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gen_helpers import NUM_FRAMES, SIZE, generate_frames, image_config, reconstruct, text_config
from PIL import Image

from any4d_jax.data import synthetic
from any4d_jax.errors import InputError
from any4d_jax.evaluation import metrics
from any4d_jax.generate import (
    Prompt,
    images,
    make_generator,
    trajectory_from_config,
    warp,
)
from any4d_jax.geometry import cameras
from any4d_jax.geometry import trajectory as tj
from any4d_jax.jobs import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------------------------------------


def test_images_are_converted_or_refused_with_one_line(tmp_path):
    rgb = (np.arange(12 * 10 * 3).reshape(10, 12, 3) % 256).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(images.load_image(tmp_path / "rgb.png"), rgb / 255.0, atol=1e-6)
    Image.fromarray(rgb[..., 0]).convert("L").save(tmp_path / "grey.png")  # grey: replicated to RGB
    g = images.load_image(tmp_path / "grey.png")
    assert g.shape == (10, 12, 3) and np.array_equal(g[..., 0], g[..., 2])
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 255, np.uint8)], -1)
    rgba[:5, :, 3] = 0  # top half transparent: composited over the background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    a = images.load_image(tmp_path / "rgba.png", background=(0.0, 1.0, 0.0))
    np.testing.assert_allclose(a[:5], np.broadcast_to([0.0, 1.0, 0.0], (5, 12, 3)))
    np.testing.assert_allclose(a[5:], rgb[5:] / 255.0, atol=1e-6)

    Image.fromarray(np.full((10, 12), 4000, np.uint16)).save(tmp_path / "depth16.png")  # mode I;16 / I
    with pytest.raises(ValueError) as e:
        images.load_image(tmp_path / "depth16.png")
    assert "unsupported image mode" in _one_line(e) and "depth16.png" in str(e.value)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ValueError) as e:
        images.load_image(tmp_path / "corrupt.png")
    assert "cannot read the image" in _one_line(e)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError) as e:
        images.load_image(tmp_path / "anim.gif")
    assert "has 2 frames" in _one_line(e)
    with pytest.raises(InputError) as e:
        images.load_image(tmp_path / "missing.png")
    assert "prompt.image: no such file" in _one_line(e)

    np.save(tmp_path / "d.npy", np.full((10, 12), np.nan, np.float32))
    with pytest.raises(ValueError) as e:
        images.load_depth(tmp_path / "d.npy")
    assert "finite and > 0" in _one_line(e)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size: signature, IHDR (8-bit RGB), IEND; 45 bytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_oversized_or_malformed_images_are_one_line_input_errors(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))  # 45 bytes claiming 900 Mpx: PIL's DecompressionBombError
    assert bomb.stat().st_size == 45
    with pytest.raises(InputError) as e:
        images.load_image(bomb)
    msg = _one_line(e)
    assert "bomb.png" in msg and "30000 x 30000" in msg and "prompt.image" in msg
    warn = tmp_path / "warn.png"  # 100 Mpx: PIL only warns (DecompressionBombWarning), we refuse
    warn.write_bytes(_png_header(10000, 10000))
    with pytest.raises(InputError) as e:
        images.load_image(warn)
    assert "10000 x 10000" in _one_line(e)
    ours = tmp_path / "ours.png"  # 72 Mpx: under PIL's limits, over ours
    ours.write_bytes(_png_header(9000, 8000))
    with pytest.raises(InputError) as e:
        images.load_image(ours)
    assert "9000 x 8000" in _one_line(e) and f"{images.MAX_PIXELS / 1e6:g} Mpx" in str(e.value)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError) as e:
        images.load_image(tmp_path / "small.png", max_pixels=500)  # the bound is a parameter
    assert "30 x 20" in _one_line(e)
    assert images.load_image(tmp_path / "small.png", max_pixels=600).shape == (20, 30, 3)
    # PIL failures that are not OSError: ValueError (PPM header, truncated PNG IHDR), TypeError (TIFF).
    (tmp_path / "bad.ppm").write_bytes(b"P6\n16 1x\n255\n" + bytes(48))
    (tmp_path / "ihdr.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR\x00\x00")
    for name in ("bad.ppm", "ihdr.png"):
        with pytest.raises(InputError) as e:
            images.load_image(tmp_path / name)
        assert name in _one_line(e) and "cannot read the image" in str(e.value)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(InputError) as e:
        images.load_image(tmp_path / "folder.png")
    assert "folder.png" in _one_line(e)
    # Depth maps: the size bound, and a .npy header declaring a huge array over 64 bytes of data.
    np.save(tmp_path / "d.npy", np.ones((20, 30), np.float32))
    with pytest.raises(InputError) as e:
        images.load_depth(tmp_path / "d.npy", max_pixels=500)
    assert "30 x 20" in _one_line(e)
    header = {"descr": "<f4", "fortran_order": False, "shape": (200_000, 200_000)}
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(64))
    with pytest.raises(InputError) as e:
        images.load_depth(tmp_path / "huge.npy")
    assert "huge.npy" in _one_line(e)
    np.save(tmp_path / "short.npy", np.ones((4, 5), np.float32))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])  # truncated data
    with pytest.raises(InputError) as e:
        images.load_depth(tmp_path / "short.npy")
    assert "short.npy" in _one_line(e)


@pytest.mark.parametrize("mode", ["crop", "stretch"])
def test_fit_image_lands_where_the_rescaled_intrinsics_project(mode):
    src_w, src_h = 60, 40
    traj = tj.static(1, src_w, src_h, fov_deg=60.0)
    point = np.array([[0.37, -0.21, 2.0]])  # a world point, seen in the source image at (u, v)
    vm, K = np.asarray(traj.viewmat[0], np.float64), np.asarray(traj.K[0], np.float64)
    pc = point @ vm[:3, :3].T + vm[:3, 3]
    u, v = (pc @ K.T)[0, :2] / pc[0, 2]
    yy, xx = np.mgrid[0:src_h, 0:src_w] + 0.5
    img = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 2.0**2))[..., None].repeat(3, -1)  # a blob at (u, v)
    fitted = images.fit_image(img, 32, 32, mode)[..., 0]
    small = traj.rescale(32, 32, mode)
    vm2, K2 = np.asarray(small.viewmat[0], np.float64), np.asarray(small.K[0], np.float64)
    pc2 = point @ vm2[:3, :3].T + vm2[:3, 3]
    u2, v2 = (pc2 @ K2.T)[0, :2] / pc2[0, 2]
    w = np.clip(fitted, 0, None) ** 4
    yy2, xx2 = np.mgrid[0:32, 0:32] + 0.5
    centroid = np.array([np.sum(w * xx2), np.sum(w * yy2)]) / np.sum(w)
    np.testing.assert_allclose(centroid, [u2, v2], atol=0.15)


def test_depth_prior_is_a_tilted_plane_with_a_centre_bulge():
    K = np.asarray(tj.static(1, 40, 30, fov_deg=60.0).K[0])
    flat = warp.depth_prior(K, 40, 30, warp.WarpSettings(depth=2.0, tilt_deg=0.0, bulge=0.0))
    np.testing.assert_allclose(flat, 2.0, rtol=1e-6)
    s = warp.WarpSettings(depth=2.0, tilt_deg=25.0, bulge=0.0)
    tilted = warp.depth_prior(K, 40, 30, s)
    assert tilted[0].mean() > 2.0 > tilted[-1].mean()  # the top of the picture recedes
    # Every pixel's 3D point lies on the plane n . X = depth cos(a) with n = (0, sin a, cos a).
    u, v = np.meshgrid(np.arange(40) + 0.5, np.arange(30) + 0.5, indexing="xy")
    y = (v - K[1, 2]) / K[1, 1] * tilted
    a = math.radians(25.0)
    np.testing.assert_allclose(math.sin(a) * y + math.cos(a) * tilted, 2.0 * math.cos(a), rtol=1e-5)
    bulged = warp.depth_prior(K, 40, 30, warp.WarpSettings(depth=2.0, tilt_deg=0.0, bulge=0.3))
    assert bulged[15, 20] == pytest.approx(2.0 * 0.7, rel=0.02) and bulged[0, 0] > bulged[15, 20]


# ----------------------------------------------------------------------------------------------------------
# Backends.
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warp_run():
    c = image_config()
    gen, prompt, traj, frames = generate_frames(c)
    return c, gen, prompt, traj, frames


def test_warp_first_frame_is_the_image_and_later_frames_are_consistent_geometry(warp_run):
    c, gen, prompt, traj, frames = warp_run
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and frames.depth.shape == (NUM_FRAMES, SIZE, SIZE)
    assert frames.cameras is traj
    np.testing.assert_array_equal(frames.times, np.arange(NUM_FRAMES))
    fitted = images.fit_image(images.load_image(EXAMPLE), SIZE, SIZE, "crop")
    assert float(metrics.psnr(frames.rgb[0], jnp.asarray(fitted))) > 21.0  # the picture, re-rendered
    mask = np.asarray(frames.mask)
    assert mask[0].mean() == 1.0  # camera 0 sees every lifted pixel
    assert 0.6 < mask[-1].mean() < 1.0  # the orbit uncovers what the picture did not show
    depth = np.asarray(frames.depth)
    assert np.all(depth[mask == 0] == 0) and np.all(depth[mask > 0] > 0)
    prior = warp.depth_prior(traj.K[0], SIZE, SIZE, gen.settings)
    np.testing.assert_allclose(depth[0], prior, rtol=0.03)
    # Unproject the last frame's valid pixels with its depth and camera; camera 0 must see them at the depth
    # of the surface it lifted (the prior), at those pixels.
    f = NUM_FRAMES - 1
    vm, K = np.asarray(traj.viewmat, np.float64), np.asarray(traj.K, np.float64)
    rows, cols = np.nonzero(mask[f] > 0)
    pix = np.stack([cols + 0.5, rows + 0.5, np.ones_like(rows, float)], -1)
    x_cam = (pix @ np.linalg.inv(K[f]).T) * depth[f, rows, cols][:, None]
    world = (x_cam - vm[f, :3, 3]) @ vm[f, :3, :3]
    p0 = world @ vm[0, :3, :3].T + vm[0, :3, 3]
    uv = (p0 @ K[0].T)[:, :2] / p0[:, 2:3]
    inside = np.all((uv > 1) & (uv < SIZE - 1), -1)
    assert inside.mean() > 0.9
    ref = prior[uv[inside, 1].astype(int), uv[inside, 0].astype(int)]
    assert np.median(np.abs(p0[inside, 2] / ref - 1.0)) < 0.02


def test_warp_uses_a_given_depth_map(tmp_path):
    c = image_config()
    np.save(tmp_path / "depth.npy", np.full((192, 256), 1.5, np.float32))  # the example image is 256 x 192
    c.prompt.depth = str(tmp_path / "depth.npy")
    _, _, _, frames = generate_frames(c)
    np.testing.assert_allclose(np.asarray(frames.depth[0]), 1.5, rtol=0.02)
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.float32))
    c.prompt.depth = str(tmp_path / "small.npy")
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "is 10 x 10 but prompt.image" in _one_line(e)


def test_synthetic_backend_puts_the_scene_where_the_users_trajectory_looks():
    c = image_config()
    c.generator.name, c.camera.radius, c.camera.elevation_deg = "synthetic", 3.6, 12.0
    gen = make_generator(c)
    traj = trajectory_from_config(c)
    gen.check(Prompt(), traj)
    # Independent reference: the same orbit written in the scene's own world, where it circles LOOK_AT. The
    # backend renders the scene with these cameras (data.synthetic.render_frames), so equal viewmats mean the
    # user's orbit around (0, 0, radius) sees the scene's centre exactly as the reference does.
    az = np.deg2rad(np.linspace(0.0, c.camera.arc_deg, NUM_FRAMES))
    el = math.radians(12.0)
    offsets = np.stack(
        [np.cos(el) * np.sin(az), -np.sin(el) * np.ones_like(az), -np.cos(el) * np.cos(az)], -1
    )
    eyes = jnp.asarray(synthetic.LOOK_AT + 3.6 * offsets, jnp.float32)
    ref = cameras.look_at(eyes, jnp.broadcast_to(jnp.asarray(synthetic.LOOK_AT, jnp.float32), eyes.shape))
    np.testing.assert_allclose(gen._scene_cameras(traj).viewmat, ref, atol=2e-5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        gen.check(Prompt(), tj.static(1, 8, 8))


def test_trajectory_from_config_builds_every_kind_and_reads_json(tmp_path):
    c = image_config()
    for name in sorted(tj.CONSTRUCTORS):
        c.camera.trajectory = name
        t = trajectory_from_config(c)
        assert (t.num_frames, t.width, t.height) == (NUM_FRAMES, SIZE, SIZE), name
    big = tj.orbit(3, 64, 48, fov_deg=50.0, radius=2.0, arc_deg=30)
    big.to_json(tmp_path / "k.json")
    c.camera.trajectory = str(tmp_path / "k.json")
    t = trajectory_from_config(c)  # interpolated to camera.num_frames, intrinsics cropped to 32 x 32
    assert (t.num_frames, t.width, t.height) == (NUM_FRAMES, SIZE, SIZE)
    np.testing.assert_allclose(np.asarray(t.viewmat)[[0, 2, 4]], big.viewmat, atol=2e-6)
    np.testing.assert_allclose(t.K[0], big.rescale(SIZE, SIZE, "crop").K[0], rtol=1e-6)
    c.camera.trajectory = "zoom"
    with pytest.raises(ValueError) as e:
        trajectory_from_config(c)
    assert "camera.trajectory must be one of" in _one_line(e)


def test_registry_and_missing_gen_extra_are_clear(tmp_path, monkeypatch):
    c = image_config()
    c.generator.name = "sora"
    with pytest.raises(ValueError) as e:
        make_generator(c)
    assert "generator.name 'sora' is unknown" in _one_line(e)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    c = text_config()
    c.generator.model = str(tmp_path)
    with pytest.raises(ImportError) as e:
        make_generator(c)
    assert "needs torch" in _one_line(e) and "pip install -e '.[gen]'" in str(e.value)


def test_text_prompt_without_a_model_fails_fast_naming_the_flag(tmp_path):
    with pytest.raises(ValueError) as e:
        run.train_and_evaluate(text_config(), str(tmp_path / "run"))
    assert "--config.generator.model=" in _one_line(e)
    assert not (tmp_path / "run").exists()  # nothing was written or loaded


def test_bad_image_prompt_fails_before_any_rendering(tmp_path):
    c = image_config()
    c.prompt.image = str(tmp_path / "nope.jpg")
    with pytest.raises(InputError) as e:
        run.train_and_evaluate(c, str(tmp_path / "run"))
    assert "nope.jpg" in _one_line(e)
    c.prompt.image = ""
    with pytest.raises(ValueError) as e:
        run.train_and_evaluate(c, str(tmp_path / "run"))
    assert "--config.prompt.image=" in _one_line(e)
    assert not (tmp_path / "run").exists()


def test_core_imports_without_torch():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'diffusers', 'transformers'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import any4d_jax, any4d_jax.geometry.cameras, any4d_jax.generate, any4d_jax.jobs.run\n"
        "from any4d_jax.generate import warp, synthetic_gen, dlpack\n"
        "assert not any(m.split('.')[0] in ('torch', 'diffusers') for m in sys.modules)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# Prompt -> 4D.
# ----------------------------------------------------------------------------------------------------------


def test_image_to_4d_end_to_end_writes_videos_metrics_and_ply(warp_run, tmp_path):
    c = image_config()
    result = run.train_and_evaluate(c, str(tmp_path))  # train.num_steps = 0: init from the frames
    for name in ["generated.mp4", "generated_mask.mp4", "reconstruction.mp4", "novel.mp4", "metrics.json"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "ply" / f"frame_{NUM_FRAMES - 1:03d}.ply").stat().st_size > 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["generator"] == "warp" and len(m["per_frame"]["recon"]) == NUM_FRAMES
    assert m["summary"]["recon/psnr"] > 16.0  # Gaussians initialised from the generated depth already fit
    assert "heldout/psnr" in m["summary"] and len(m["per_frame"]["heldout"]) == c.eval.novel_views
    assert result["summary"] == m["summary"]
    saved = tj.from_json(tmp_path / "trajectory.json")  # the cameras the video was generated under
    np.testing.assert_allclose(saved.viewmat, warp_run[3].viewmat, atol=2e-6)
    # A few real train steps on the generated frames (with their cameras) keep fitting them.
    _, log = reconstruct(c, warp_run[4], steps=4)
    assert log[0]["psnr"] > 18.0 and log[-1]["psnr"] > 18.0
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda r: np.isfinite(r), log))
