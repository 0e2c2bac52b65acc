"""The diffusers backend with real (tiny, randomly initialised) pipelines built offline and saved to disk.

Needs the gen extra (torch, diffusers, transformers, ftfy): skipped with the reason where it is absent. The
pipelines are built from configs (third_party/tiny_pipelines.py, as diffusers' own fast tests do), saved with
save_pretrained and loaded back through our loader (local_files_only=True); then generate -> DLPack ->
reconstruction with the same cameras, on 5 frames of 32 x 32.
"""

import json
import os

import numpy as np
import pytest

for _mod in ("torch", "diffusers", "transformers", "ftfy"):
    pytest.importorskip(_mod, reason=f"needs the gen extra ({_mod}): pip install -e '.[gen]'")

import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from gen_helpers import NUM_FRAMES, SIZE, generate_frames, reconstruct, text_config  # noqa: E402

from any4d_jax.errors import InputError  # noqa: E402
from any4d_jax.generate import dlpack, make_generator, prompt_from_config, trajectory_from_config  # noqa: E402
from any4d_jax.jobs import run  # noqa: E402
from third_party import diffusers_video, tiny_pipelines  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny pipeline folders: t2v, i2v, vace (the Fun Control-Camera path: test_fun_camera.py)."""
    root = tmp_path_factory.mktemp("pipelines")
    return {kind: tiny_pipelines.build(kind, str(root / kind)) for kind in ("t2v", "i2v", "vace")}


def _config(model, image=""):
    c = text_config()
    c.generator.model, c.prompt.image = model, image
    return c


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_dlpack_bridge_shares_the_buffer_and_the_values():
    video = torch.rand(NUM_FRAMES, 3, 8, 12)
    x = dlpack.to_jax(video)
    assert x.unsafe_buffer_pointer() == video.data_ptr()  # zero copy
    hwc = dlpack.video_to_jax(video[None])  # (1, F, 3, H, W) -> (F, H, W, 3): a permuted view, still shared
    assert hwc.shape == (NUM_FRAMES, 8, 12, 3) and hwc.unsafe_buffer_pointer() == video.data_ptr()
    video.mul_(0.5)  # the memory really is shared: torch's write (before JAX reads) shows in both arrays
    np.testing.assert_array_equal(np.asarray(x), video.numpy())
    np.testing.assert_array_equal(np.asarray(hwc), video.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(np.asarray(hwc * 1.0), video.permute(0, 2, 3, 1).numpy())  # via XLA too
    # Cases that cannot be shared still give the right values: grad, float64, strided slices.
    g = torch.rand(4, 5, requires_grad=True)
    np.testing.assert_array_equal(np.asarray(dlpack.to_jax(g)), g.detach().numpy())
    d = torch.rand(3, 4, dtype=torch.float64)
    assert dlpack.to_jax(d).dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dlpack.to_jax(d)), d.numpy(), rtol=1e-7)
    s = torch.rand(6, 8)[:, ::2]
    np.testing.assert_array_equal(np.asarray(dlpack.to_jax(s)), s.numpy())
    with pytest.raises(ValueError, match=r"expected \(F, 3, H, W\)"):
        dlpack.video_to_jax(torch.rand(4, 8, 8, 3))


def test_inspect_reads_the_rules_from_json_and_refuses_what_the_model_cannot_make(models, tmp_path):
    spec = diffusers_video.inspect(models["t2v"])
    assert (spec.class_name, spec.kind, spec.temporal_factor, spec.spatial_multiple) == (
        "WanPipeline",
        "text",
        4,
        16,
    )
    assert spec.max_tokens_per_axis == 32 and spec.inner_dim == 24
    assert diffusers_video.inspect(models["i2v"]).kind == "image"
    assert diffusers_video.inspect(models["vace"]).kind == "control"
    spec.check(5, 32, 48)
    with pytest.raises(ValueError) as e:
        spec.check(6, 32, 32)
    assert "makes 4k+1 frames" in _one_line(e) and "--config.camera.num_frames=5 or 9" in str(e.value)
    with pytest.raises(ValueError) as e:
        spec.check(5, 32, 40)
    assert "multiples of 16" in _one_line(e) and "--config.camera.width=" in str(e.value)
    with pytest.raises(ValueError) as e:
        spec.check(5, 32, 16 * 40)  # 40 columns of patches > rope_max_seq_len 32
    assert "at most 32 positions per axis" in _one_line(e)

    with pytest.raises(ValueError) as e:
        diffusers_video.inspect(str(tmp_path))
    assert "is not a diffusers pipeline folder (no model_index.json)" in _one_line(e)
    (tmp_path / "model_index.json").write_text("{ not json")
    with pytest.raises(ValueError) as e:
        diffusers_video.inspect(str(tmp_path))
    assert "not valid JSON" in _one_line(e)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError) as e:
        diffusers_video.inspect(str(tmp_path))
    assert "'StableDiffusionPipeline' is not supported" in _one_line(e)
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "WanPipeline", "vae": ["diffusers", "AutoencoderKLWan"]})
    )
    with pytest.raises(ValueError) as e:
        diffusers_video.inspect(str(tmp_path))
    assert "the folder vae/ is missing" in _one_line(e)


def test_text_to_video_end_to_end_through_dlpack_and_reconstruction(models, tmp_path):
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "none"  # a plain T2V folder has no camera control of its own
    gen, prompt, traj, frames = generate_frames(c, str(tmp_path))
    assert gen.conditioning == "none"
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and frames.rgb.dtype == jnp.float32
    assert frames.cameras is traj and float(frames.rgb.min()) >= 0.0 and float(frames.rgb.max()) <= 1.0
    assert float(jnp.std(frames.rgb)) > 1e-3  # a video, not a constant
    assert frames.depth.shape == (NUM_FRAMES, SIZE, SIZE) and float(frames.mask[0].mean()) == 1.0
    assert (tmp_path / "generated.mp4").stat().st_size > 0
    # Reconstruction with the same cameras, initialised from the generated frames: the first frames fit.
    _, log = reconstruct(c, frames, steps=4)
    assert log[0]["psnr"] > 18.0, log
    # The whole prompt -> 4D job on this folder (train.num_steps = 0: evaluation of the initialisation).
    out = run.train_and_evaluate(c, str(tmp_path / "job"))
    assert out["summary"]["recon/psnr"] > 15.0 and "heldout/psnr" not in out["summary"]  # no ground truth
    assert (tmp_path / "job" / "novel.mp4").stat().st_size > 0


def test_image_to_video_end_to_end_through_dlpack_and_reconstruction(models):
    c = _config(models["i2v"], EXAMPLE)
    c.generator.camera_conditioning = "none"  # with generator.camera_model: test_fun_camera.py
    gen, prompt, traj, frames = generate_frames(c)
    assert gen.spec.kind == "image" and gen.conditioning == "none"
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3)
    _, log = reconstruct(c, frames, steps=4)  # same sizes and cameras: the compiled step is reused
    assert log[0]["psnr"] > 18.0, log


def test_video_conditioned_pipeline_gets_warp_renders_and_hole_masks(models):
    c = _config(models["vace"], EXAMPLE)
    c.generator.warp.mask_dilate = 0  # the raw hole masks (dilation: tests/generate/test_vace_depth.py)
    gen = make_generator(c)
    assert gen.conditioning == "warp"  # chosen from model_index.json
    seen = {}
    real = gen.pipeline()

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    gen._pipe = spy
    frames = gen.generate(prompt_from_config(c), trajectory_from_config(c), jnp.zeros(2, jnp.uint32))
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3)
    video = seen["video"][0].permute(0, 2, 3, 1).numpy()  # float tensors (1, F, 3, H, W) -> (F, H, W, 3)
    mask = seen["mask"][0, :, 0].numpy()
    np.testing.assert_array_equal(mask[1:], 1.0 - np.asarray(frames.mask[1:]))  # 1 = inpaint the holes
    assert mask[0].max() == 0.0 and mask[-1].max() == 1.0  # frame 0: the picture itself, all kept
    assert np.abs(video[0] - np.asarray(frames.rgb[0])).mean() < 0.5  # frame 0 is the picture


def test_bad_requests_fail_before_any_weight_is_loaded(models, tmp_path):
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "none"
    c.camera.num_frames = 6
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "camera.num_frames=6 is not one" in _one_line(e)
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "none"
    c.prompt.text = " "
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "--config.prompt.text=" in _one_line(e)
    c = _config(models["i2v"])
    c.generator.camera_conditioning = "none"
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "is image-to-video: pass --config.prompt.image" in _one_line(e)
    with pytest.raises(ValueError) as e:
        make_generator(_config(models["t2v"]))  # no camera model, no control input: cannot follow cameras
    assert "has no camera control" in _one_line(e) and "camera_conditioning=none" in str(e.value)
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "warp"
    with pytest.raises(ValueError) as e:
        make_generator(c)
    assert "is not video-conditioned" in _one_line(e)
    with pytest.raises(InputError) as e:
        make_generator(_config(str(tmp_path / "nowhere")))
    assert "no such folder" in _one_line(e)
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "none"
    gen = make_generator(c)
    with pytest.raises(ValueError):
        gen.check(prompt_from_config(c), trajectory_from_config(c).rescale(40, 32))
    assert gen._pipe is None  # nothing was loaded by any of the above
