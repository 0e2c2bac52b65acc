"""Warp -> VACE inputs, monocular depth from a local model, and text-only prompts via text -> first frame.

Hand-made expectations for the VACE control (gray holes, dilated masks, frame 0 the photo), what the tiny
WanVACEPipeline receives (its call kwargs captured), the depth model's raw output converted to scale-fitted
z-depth, and text -> PixArt-Sigma image -> warp -> VACE -> DLPack -> reconstruction. Every model is tiny,
random and built offline once per module (third_party/tiny_pipelines.py, third_party/tiny_t2i.py).
"""

import dataclasses
import json
import logging
import os
import types

import numpy as np
import pytest

for _mod in ("torch", "diffusers", "transformers", "ftfy"):
    pytest.importorskip(_mod, reason=f"needs the gen extra ({_mod}): pip install -e '.[gen]'")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from gen_helpers import NUM_FRAMES, SIZE, image_config, reconstruct, text_config  # noqa: E402

from any4d_jax.errors import InputError, MissingInput  # noqa: E402
from any4d_jax.generate import (  # noqa: E402
    Prompt,
    diffusers_gen,
    images,
    make_generator,
    prompt_from_config,
    trajectory_from_config,
    warp,
)
from any4d_jax.jobs import checks  # noqa: E402
from third_party import depth_model, text_to_image, tiny_pipelines, tiny_t2i  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")
TEXT = "a red robot walking on the beach"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny folders: a WanVACE pipeline, a PixArt-Sigma text-to-image pipeline, Depth Anything (relative and
    metric)."""
    root = tmp_path_factory.mktemp("vace_depth")
    out = {"vace": tiny_pipelines.build("vace", str(root / "vace"))}
    for kind in tiny_t2i.KINDS:
        out[kind] = tiny_t2i.build(kind, str(root / kind))
    return out


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _reference_dilation(mask: np.ndarray, r: int) -> np.ndarray:
    """Brute force: every pixel within Euclidean distance r of a hole pixel (clipped at the border)."""
    out = np.zeros_like(mask, dtype=np.float32)
    for idx in np.argwhere(mask > 0.5):
        *lead, y, x = (int(i) for i in idx)
        for yy in range(mask.shape[-2]):
            for xx in range(mask.shape[-1]):
                if (yy - y) ** 2 + (xx - x) ** 2 <= r * r:
                    out[(*lead, yy, xx)] = 1.0
    return out


# ----------------------------------------------------------------------------------------------------------
# The VACE control, by hand.
# ----------------------------------------------------------------------------------------------------------


def test_vace_control_gray_holes_dilated_masks_and_the_photo_as_frame_0():
    f, h, w = 3, 12, 14
    rng = np.random.default_rng(0)
    colour = rng.uniform(0.1, 0.9, (f, h, w, 3)).astype(np.float32)
    alpha = np.ones((f, h, w), np.float32)
    alpha[1, 4:6, 5:8] = 0.0  # a 2 x 3 hole
    alpha[1, 4, 8] = 0.3  # a rim pixel below mask_threshold: part of the hole
    alpha[1, 6, 6] = 0.7  # a half-covered rim pixel, kept (>= mask_threshold) but blended with white
    alpha[2, 0, 0] = 0.0  # a hole in the corner: the dilation stops at the border
    bg = np.array([1.0, 1.0, 1.0], np.float32)
    rgb = colour * alpha[..., None] + (1.0 - alpha[..., None]) * bg  # what the renderer returns
    valid = (alpha >= 0.5).astype(np.float32)
    photo = rng.uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)

    for r in (0, 1, 2, 4):
        s = warp.WarpSettings(mask_dilate=r, background=tuple(bg))
        c = warp.vace_control(photo, rgb, alpha, valid, s)
        assert c.video.dtype == np.float32 and c.mask.dtype == np.float32
        assert c.video.shape == (f, h, w, 3) and c.mask.shape == (f, h, w)
        expected = _reference_dilation(1.0 - valid, r)
        expected[0] = 0.0  # frame 0: keep everything
        np.testing.assert_array_equal(c.mask, expected)
        assert np.array_equal(c.video[0], photo)  # the photo bit for bit, not its re-rendered blur
        assert np.all(c.video[c.mask == 1] == 0.5)  # gray exactly, not the white background
        keep = (c.mask == 0) & (alpha == 1.0)
        keep[0] = False
        np.testing.assert_array_equal(c.video[keep], rgb[keep])  # fully seen pixels: the render itself
    assert _reference_dilation(1.0 - valid, 2)[2, :3, :3].sum() == 6  # the corner hole: a quarter disk
    # Without dilation the half-covered rim is kept, re-composited over gray (no white leaks in).
    c0 = warp.vace_control(photo, rgb, alpha, valid, warp.WarpSettings(mask_dilate=0))
    np.testing.assert_allclose(c0.video[1, 6, 6], 0.7 * colour[1, 6, 6] + 0.3 * 0.5, atol=1e-6)
    np.testing.assert_array_equal(warp.dilate(1.0 - valid, 0), 1.0 - valid)
    with pytest.raises(InputError, match="generator.warp.mask_dilate"):
        warp.WarpSettings(mask_dilate=-1)


# ----------------------------------------------------------------------------------------------------------
# Depth from a local model.
# ----------------------------------------------------------------------------------------------------------


def test_hand_made_disparity_and_metric_depth_become_the_scene_depth():
    h, w = 16, 20
    yy, xx = np.mgrid[0:h, 0:w]
    true_z = 1.0 + 2.0 * xx / (w - 1) + 0.5 * yy / (h - 1)  # z in [1, 3.5]
    target, ratio = 2.0, 4.0
    fitted = true_z * target / np.median(depth_model.central(true_z))
    # Relative inverse depth (disparity), any scale: 1 / z recovered, then scale-fitted.
    d = depth_model.to_depth(7.0 / true_z, "inverse", target, ratio)
    np.testing.assert_allclose(d, fitted, rtol=1e-5)
    assert np.median(depth_model.central(d)) == pytest.approx(target, rel=1e-6)
    # Metric depth in metres: scale-fitted the same way (trajectory units are not metres).
    np.testing.assert_allclose(depth_model.to_depth(13.0 * true_z, "depth", target, ratio), fitted, rtol=1e-5)
    # Nearer = larger disparity = smaller depth; zero disparity (sky) lands on the far clamp.
    disp = 1.0 / true_z
    disp[0, -1] = 0.0
    d = depth_model.to_depth(disp, "inverse", target, ratio)
    assert d[0, -1] == pytest.approx(target * ratio) and d.min() >= target / ratio
    assert d[0, 0] < d[0, w // 2] < d[0, w - 2]
    with pytest.raises(InputError, match="no positive value"):
        depth_model.to_depth(np.zeros((h, w)), "inverse", target, ratio)


def test_the_tiny_depth_models_raw_output_converts_to_the_target_depth(models):
    rgb = images.fit_image(images.load_image(EXAMPLE), SIZE, SIZE)
    for kind, output in (("depth_relative", "inverse"), ("depth_metric", "depth")):
        spec = depth_model.inspect(models[kind])
        assert (spec.model_type, spec.output) == ("depth_anything", output)
        model, processor = depth_model.load(spec, "cpu")
        raw = depth_model.predict(model, processor, rgb, "cpu")
        assert raw.shape == (SIZE, SIZE) and raw.std() > 1e-3  # varies over the image
        d = depth_model.to_depth(raw, spec.output, 2.0, 4.0)
        assert np.median(depth_model.central(d)) == pytest.approx(2.0, rel=1e-5)
        free = (d > 0.5 + 1e-6) & (d < 8.0 - 1e-6)  # not on a clamp
        order = np.argsort(raw[free])
        step = np.diff(d[free][order])
        if output == "inverse":  # larger disparity = nearer
            assert np.all(step <= 1e-6)
        else:
            assert np.all(step >= -1e-6)
        np.testing.assert_array_equal(depth_model.estimate(models[kind], rgb, 2.0, 4.0, device="cpu"), d)


def test_depth_model_folders_missing_or_malformed_fail_in_one_line_naming_them(models, tmp_path):
    with pytest.raises(MissingInput) as e:
        depth_model.inspect(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in _one_line(e) and "generator.depth_model" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        depth_model.inspect(str(empty))
    assert str(empty) in _one_line(e) and "no config.json" in str(e.value)
    (empty / "config.json").write_text("{ not json")
    with pytest.raises(InputError) as e:
        depth_model.inspect(str(empty))
    assert str(empty / "config.json") in _one_line(e)
    (empty / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError) as e:
        depth_model.inspect(str(empty))
    assert "'bert' is not a supported depth model" in _one_line(e)
    for model_type, output in (("depth_pro", "inverse"), ("zoedepth", "depth"), ("dpt", "inverse")):
        (empty / "config.json").write_text(json.dumps({"model_type": model_type}))
        (empty / "preprocessor_config.json").write_text("{}")
        assert depth_model.inspect(str(empty)).output == output
    os.remove(empty / "preprocessor_config.json")
    with pytest.raises(InputError) as e:
        depth_model.inspect(str(empty))
    assert "preprocessor_config.json" in _one_line(e)
    # Right JSON, no weights: refused when loading, still in one line naming the folder.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        with open(os.path.join(models["depth_relative"], name)) as src:
            (broken / name).write_text(src.read())
    with pytest.raises(InputError) as e:
        depth_model.load(depth_model.inspect(str(broken)))
    assert str(broken) in _one_line(e) and "could not load the depth model" in str(e.value)
    # Through the config: the warp generator refuses the folder in check(), before anything loads.
    c = image_config()
    c.generator.depth_model = str(tmp_path / "nowhere")
    gen = make_generator(c)
    with pytest.raises(MissingInput) as e:
        gen.check(prompt_from_config(c), trajectory_from_config(c))
    assert "generator.depth_model" in _one_line(e)


def test_warp_generator_lifts_with_the_depth_model_and_the_prior_says_so(models, caplog):
    c = image_config()
    traj = trajectory_from_config(c)
    prompt = prompt_from_config(c)
    s = warp.settings_from_config(c)
    with caplog.at_level(logging.WARNING, logger=warp.__name__):
        warp.first_frame_depth(prompt, traj, s, rgb0=np.zeros((SIZE, SIZE, 3), np.float32))
    assert "--config.generator.depth_model=" in caplog.text  # the fallback is named, with the key to set
    c.generator.depth_model = models["depth_relative"]
    gen = make_generator(c)
    frames = gen.generate(prompt, traj, jax.random.PRNGKey(0))
    rgb0 = images.fit_image(images.load_image(EXAMPLE), SIZE, SIZE)
    want = depth_model.estimate(models["depth_relative"], rgb0, c.camera.radius, 4.0, device="cpu")
    lifted = warp.first_frame_depth(prompt, traj, gen.settings, rgb0)
    np.testing.assert_array_equal(lifted, want)
    d0 = np.asarray(frames.depth[0])  # the render from camera 0 sees the lifted surface
    seen = np.asarray(frames.mask[0]) > 0
    assert np.median(np.abs(d0[seen] - want[seen]) / want[seen]) < 0.05


# ----------------------------------------------------------------------------------------------------------
# What the tiny WanVACE pipeline receives.
# ----------------------------------------------------------------------------------------------------------


def _spy(gen):
    seen = {}
    real = gen.pipeline()

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    gen._pipe = spy
    return seen


def _received(seen):
    """(video (F, H, W, 3), mask (F, H, W)) float32 numpy from the captured WanVACEPipeline kwargs."""
    video, mask = seen["video"], seen["mask"]
    assert isinstance(video, torch.Tensor) and video.dtype == torch.float32
    assert tuple(video.shape) == (1, NUM_FRAMES, 3, SIZE, SIZE) and tuple(mask.shape) == tuple(video.shape)
    m = mask[0].numpy()
    assert np.array_equal(m[:, 0], m[:, 1]) and np.array_equal(m[:, 0], m[:, 2])
    return video[0].permute(0, 2, 3, 1).numpy(), m[:, 0]


def test_vace_receives_the_photo_gray_holes_and_dilated_masks_with_the_depth_model(models):
    c = text_config()
    c.generator.model, c.prompt.image = models["vace"], EXAMPLE
    c.generator.depth_model = models["depth_relative"]
    assert c.generator.warp.mask_dilate == warp.MASK_DILATE == 4
    gen = make_generator(c)
    assert gen.conditioning == "warp"
    seen = _spy(gen)
    frames = gen.generate(prompt_from_config(c), trajectory_from_config(c), jnp.zeros(2, jnp.uint32))
    video, mask = _received(seen)
    photo = images.fit_image(images.load_image(EXAMPLE), SIZE, SIZE)
    assert np.array_equal(video[0], photo) and mask[0].max() == 0.0  # frame 0: the photo, all keep
    holes = 1.0 - np.asarray(frames.mask)  # the renders' own (undilated) valid mask, kept for reconstruction
    np.testing.assert_array_equal(mask[1:], warp.dilate(holes[1:], 4))
    assert mask[1:].sum() > holes[1:].sum() and mask[-1].max() == 1.0  # grown, and the orbit opens holes
    assert np.all(video[mask == 1] == 0.5)  # gray exactly where VACE generates
    assert np.abs(video[1:][mask[1:] == 0] - 0.5).mean() > 0.05  # elsewhere the renders
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and float(frames.mask[0].mean()) == 1.0


# ----------------------------------------------------------------------------------------------------------
# Text-only prompts: text -> first frame.
# ----------------------------------------------------------------------------------------------------------


def test_every_model_that_needs_an_image_refuses_text_only_without_image_model(models, tmp_path):
    kinds = {
        k: diffusers_gen.needs_image(types.SimpleNamespace(kind=k)) for k in ("text", "image", "control")
    }
    assert kinds == {"text": False, "image": True, "control": True}
    assert diffusers_gen.needs_image(types.SimpleNamespace(kind="camera"))  # SanaWM: keyed on kind != text
    c = text_config()
    c.generator.model, c.prompt.image, c.prompt.text = models["vace"], "", TEXT
    gen = make_generator(c)
    traj = trajectory_from_config(c)
    for kind in ("control", "image", "camera"):
        gen.spec = dataclasses.replace(gen.spec, kind=kind)
        with pytest.raises(InputError) as e:
            gen.check(prompt_from_config(c), traj)
        msg = _one_line(e)
        assert "--config.generator.image_model=/path" in msg and "--config.prompt.image" in msg, msg
    c.generator.image_model = models["pixart"]
    gen = make_generator(c)
    gen.check(prompt_from_config(c), traj)  # text + image_model: accepted
    with pytest.raises(InputError) as e:
        gen.check(Prompt(text=" "), traj)
    assert "--config.prompt.text=" in _one_line(e)
    # A folder that is no text-to-image pipeline, or no pipeline at all: refused when the generator is made.
    for bad, why in ((models["vace"], "is not a text-to-image pipeline"), (str(tmp_path), "no model_index")):
        c.generator.image_model = bad
        with pytest.raises(InputError) as e:
            make_generator(c)
        assert bad in _one_line(e) and why in str(e.value)
    assert gen._pipe is None  # nothing loaded by any of the above


def test_text_only_prompt_to_t2i_to_warp_to_vace_to_reconstruction(models):
    c = text_config()
    c.generator.model, c.prompt.image, c.prompt.text = models["vace"], "", TEXT
    c.generator.image_model, c.generator.image_steps = models["pixart"], 2
    gen = make_generator(c)
    seen = _spy(gen)
    prompt, traj, key = prompt_from_config(c), trajectory_from_config(c), jax.random.PRNGKey(c.seed)
    frames = gen.generate(prompt, traj, key)
    video, mask = _received(seen)
    # Frame 0 given to VACE is the text-to-image picture fitted to the trajectory, made independently here.
    spec = text_to_image.inspect(models["pixart"])
    assert text_to_image.size_for(SIZE, SIZE) == (64, 64) and text_to_image.size_for(96, 48, 512) == (
        512,
        256,
    )
    img = text_to_image.generate(
        spec,
        dtype="float32",
        device="cpu",
        text=TEXT,
        width=64,
        height=64,
        seed=int(jax.random.randint(key, (), 0, 2**31 - 1)),
        num_inference_steps=2,
        guidance_scale=c.generator.image_guidance_scale,
        max_sequence_length=c.generator.max_sequence_length,
    )
    assert img.shape == (64, 64, 3) and img.std() > 1e-3
    fitted = images.fit_image(img, SIZE, SIZE, c.camera.fit)
    assert np.array_equal(video[0], fitted) and mask[0].max() == 0.0
    assert np.all(video[mask == 1] == 0.5) and mask[-1].max() == 1.0
    assert seen["prompt"] == TEXT
    # The video crossed into JAX (DLPack) and reconstructs.
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and frames.rgb.dtype == jnp.float32
    _, log = reconstruct(c, frames, steps=3)
    assert all(np.isfinite(r["loss"]) for r in log)


def test_the_new_config_keys_have_rules():
    c = text_config()
    checks.check_config(c)
    for key, bad in (
        ("generator.warp.mask_dilate", -1),
        ("generator.image_size", 16),
        ("generator.image_steps", 0),
        ("generator.image_guidance_scale", -1.0),
    ):
        sub, name = key.rsplit(".", 1)
        node = c
        for part in sub.split("."):
            node = node[part]
        good = node[name]
        node[name] = bad
        with pytest.raises(InputError, match=f"--config.{key}="):
            checks.check_config(c)
        node[name] = good
