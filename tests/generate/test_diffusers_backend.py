"""The diffusers backend with real (tiny, randomly initialised) pipelines built offline and saved to disk.

Needs the gen extra (torch, diffusers, transformers, ftfy): skipped with the reason where it is absent. The
pipelines are built from configs (third_party/tiny_pipelines.py, as diffusers' own fast tests do), saved with
save_pretrained and loaded back through our loader (local_files_only=True); then generate -> DLPack ->
reconstruction with the same cameras, on 5 frames of 32 x 32.
"""

import json
import os
import shutil

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
from third_party import camera_adapter, diffusers_video, tiny_pipelines  # noqa: E402
from third_party.camera_adapter import PlueckerAdapter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny pipeline folders: t2v and i2v (each with a random camera adapter), vace, and a bare t2v."""
    root = tmp_path_factory.mktemp("pipelines")
    out = {kind: tiny_pipelines.build(kind, str(root / kind)) for kind in ("t2v", "i2v", "vace")}
    out["t2v_bare"] = str(root / "t2v_bare")  # the same pipeline without its camera adapter
    shutil.copytree(root / "t2v", out["t2v_bare"], ignore=shutil.ignore_patterns("camera_adapter"))
    zero = root / "zero_adapter"  # an untrained (zero-initialised) adapter for the t2v transformer
    PlueckerAdapter(24, temporal_fold=4, spatial_pool=16).save_pretrained(str(zero))
    out["zero_adapter"] = str(zero)
    return out


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
    gen, prompt, traj, frames = generate_frames(c, str(tmp_path))
    assert gen.conditioning == "pluecker"  # the folder carries camera adapter weights
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
    gen, prompt, traj, frames = generate_frames(c)
    assert gen.spec.kind == "image" and gen.conditioning == "pluecker"
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3)
    _, log = reconstruct(c, frames, steps=4)  # same sizes and cameras: the compiled step is reused
    assert log[0]["psnr"] > 18.0, log


def test_the_camera_adapter_steers_the_model_and_an_untrained_one_is_refused(models):
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "none"
    traj = trajectory_from_config(c)
    plain = generate_frames(c)[3].rgb
    # An untrained (zero-initialised) adapter would change nothing: refused before any weight is loaded,
    # whether asked for explicitly or picked by auto.
    for asked in ("pluecker", "auto"):
        c.generator.camera_conditioning, c.generator.adapter = asked, models["zero_adapter"]
        with pytest.raises(InputError) as e:
            make_generator(c)
        msg = _one_line(e)
        assert os.path.join(models["zero_adapter"], "adapter.safetensors") in msg and "untrained" in msg
        assert "camera_conditioning=none" in msg
    with pytest.raises(InputError, match="untrained"):
        PlueckerAdapter.from_pretrained(models["zero_adapter"])
    c.generator.camera_conditioning, c.generator.adapter = "pluecker", ""  # the folder's random adapter
    steered = generate_frames(c)[3].rgb
    assert float(jnp.abs(steered - plain).max()) > 1e-3
    # The adapter's tokens: first frame repeated 3x, 4 frames per latent frame, 16 x 16 pixels per token.
    rays = torch.from_dlpack(traj.relative_to_first().pluecker())
    tokens = PlueckerAdapter(24).encode(rays)
    assert tuple(tokens.shape) == (1, 24, 2, SIZE // 16, SIZE // 16)


def _adapter(folder, inner_dim=24, seed=0, **cfg) -> str:
    adapter = PlueckerAdapter(inner_dim, **cfg)
    with torch.no_grad():
        adapter.proj.weight.copy_(
            torch.randn(adapter.proj.weight.shape, generator=torch.Generator().manual_seed(seed))
        )
    adapter.save_pretrained(str(folder))
    return str(folder)


def test_malformed_adapter_folders_are_one_line_naming_the_file(tmp_path):
    folder = _adapter(tmp_path / "good")
    assert camera_adapter.read_config(folder) == {"inner_dim": 24, "temporal_fold": 4, "spatial_pool": 16}
    back = PlueckerAdapter.from_pretrained(folder)
    assert float(back.proj.weight.detach().abs().max()) > 0
    assert camera_adapter.read_config(str(tmp_path / "none")) is None  # no adapter there at all
    assert sorted(os.listdir(folder)) == ["adapter.safetensors", "config.json"]  # no temporary files left
    cfg_path = os.path.join(folder, "config.json")
    good_cfg = open(cfg_path).read()

    def refused(text, call=camera_adapter.read_config) -> str:
        with open(cfg_path, "w") as f:
            f.write(text)
        with pytest.raises(InputError) as e:
            call(folder)
        msg = _one_line(e)
        assert cfg_path in msg, msg
        return msg

    assert "not valid JSON" in refused("{ inner_dim: 24")
    assert "JSON object" in refused("[24, 4, 16]")
    assert "unknown key(s) ['scale']" in refused(json.dumps({**json.loads(good_cfg), "scale": 2}))
    assert "missing key 'spatial_pool'" in refused(json.dumps({"inner_dim": 24, "temporal_fold": 4}))
    assert "'inner_dim'" in refused(json.dumps({**json.loads(good_cfg), "inner_dim": "24"}))
    assert "'temporal_fold'" in refused(json.dumps({**json.loads(good_cfg), "temporal_fold": 0}))
    assert "'spatial_pool'" in refused(json.dumps({**json.loads(good_cfg), "spatial_pool": 16.5}))
    assert "unknown key(s)" in refused(
        json.dumps({**json.loads(good_cfg), "x": 1}), PlueckerAdapter.from_pretrained
    )
    with open(cfg_path, "w") as f:
        f.write(good_cfg)
    weights = os.path.join(folder, "adapter.safetensors")
    with open(weights, "wb") as f:
        f.write(b"not safetensors")
    with pytest.raises(InputError) as e:
        PlueckerAdapter.from_pretrained(folder)
    assert weights in _one_line(e)
    os.remove(weights)  # config without weights: half an adapter is not silently "no adapter"
    with pytest.raises(InputError) as e:
        camera_adapter.read_config(folder)
    assert "adapter.safetensors" in _one_line(e)
    other = _adapter(tmp_path / "other", inner_dim=8)  # weights of another shape than config.json says
    with open(os.path.join(folder, "adapter.safetensors"), "wb") as f:
        f.write(open(os.path.join(other, "adapter.safetensors"), "rb").read())
    with pytest.raises(InputError) as e:
        PlueckerAdapter.from_pretrained(folder)
    assert "proj.weight" in _one_line(e) and weights in str(e.value)


def test_video_conditioned_pipeline_gets_warp_renders_and_hole_masks(models):
    c = _config(models["vace"], EXAMPLE)
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
    video = np.stack([np.asarray(f, np.float32) / 255 for f in seen["video"]])
    mask = np.stack([np.asarray(m, np.float32)[..., 0] / 255 for m in seen["mask"]])
    np.testing.assert_allclose(mask, 1.0 - np.asarray(frames.mask), atol=1 / 255)  # white = inpaint the holes
    assert mask[0].max() == 0.0 and mask[-1].max() == 1.0
    assert np.abs(video[0] - np.asarray(frames.rgb[0])).mean() < 0.5  # frame 0 is the warped picture


def test_bad_requests_fail_before_any_weight_is_loaded(models, tmp_path):
    c = _config(models["t2v"])
    c.camera.num_frames = 6
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "camera.num_frames=6 is not one" in _one_line(e)
    c = _config(models["t2v"])
    c.prompt.text = " "
    with pytest.raises(ValueError) as e:
        generate_frames(c)
    assert "--config.prompt.text=" in _one_line(e)
    with pytest.raises(ValueError) as e:
        generate_frames(_config(models["i2v"]))
    assert "is image-to-video: pass --config.prompt.image" in _one_line(e)
    with pytest.raises(ValueError) as e:
        make_generator(_config(models["t2v_bare"]))  # no adapter, no control input: cannot follow cameras
    assert "has no camera control" in _one_line(e) and "camera_conditioning=none" in str(e.value)
    c = _config(models["t2v"])
    c.generator.camera_conditioning = "warp"
    with pytest.raises(ValueError) as e:
        make_generator(c)
    assert "is not video-conditioned" in _one_line(e)
    c = _config(models["t2v"])
    c.generator.adapter = _adapter(tmp_path / "narrow", inner_dim=8)
    with pytest.raises(ValueError) as e:
        make_generator(c)
    assert "inner_dim 8" in _one_line(e)
    with pytest.raises(InputError) as e:
        make_generator(_config(str(tmp_path / "nowhere")))
    assert "no such folder" in _one_line(e)
    gen = make_generator(_config(models["t2v"]))
    with pytest.raises(ValueError):
        gen.check(prompt_from_config(_config(models["t2v"])), trajectory_from_config(c).rescale(40, 32))
    assert gen._pipe is None  # nothing was loaded by any of the above
