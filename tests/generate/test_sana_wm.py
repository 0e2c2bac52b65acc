"""SanaWMPipeline (SANA-WM: image + text + 6-DoF cameras -> video) as the diffusers generator's `camera` kind.

A tiny randomly initialised SanaWMPipeline (third_party/tiny_sana_wm.py) is built once, saved with
save_pretrained and loaded back through our loader (local_files_only=True), then run end to end: generation ->
DLPack -> reconstruction steps, on the 5 frames of 32 x 32 every generation test shares (the tiny LTX-2 VAE
compresses 4x in time and 8x in space, so 5 = 4k+1 frames and 32 px are legal; the public model's 8k+1 /
multiple-of-32 rules are tested on its config JSON). Needs the gen extra (torch, diffusers, transformers).
"""

import json
import os

import numpy as np
import pytest

for _mod in ("torch", "diffusers", "transformers", "ftfy"):
    pytest.importorskip(_mod, reason=f"needs the gen extra ({_mod}): pip install -e '.[gen]'")

import jax.numpy as jnp  # noqa: E402
from gen_helpers import NUM_FRAMES, SIZE, reconstruct, text_config  # noqa: E402

from any4d_jax.errors import InputError  # noqa: E402
from any4d_jax.generate import make_generator, prompt_from_config, trajectory_from_config  # noqa: E402
from any4d_jax.generate.diffusers_gen import sana_wm_cameras  # noqa: E402
from any4d_jax.geometry import trajectory as tj  # noqa: E402
from third_party import diffusers_video, tiny_sana_wm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")
KEY = jnp.zeros(2, jnp.uint32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_sana_wm.build(str(tmp_path_factory.mktemp("sana_wm") / "tiny_sana_wm"))


def _config(model, trajectory="orbit"):
    c = text_config()
    c.generator.model, c.prompt.image, c.camera.trajectory = model, EXAMPLE, trajectory
    return c


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _json_folder(root, class_name: str, configs: dict) -> str:
    """A pipeline folder with JSON only (no weights): anything that tried to load it would fail."""
    index = {"_class_name": class_name}
    for comp, (library, cls, cfg) in configs.items():
        index[comp] = [library, cls]
        os.makedirs(os.path.join(root, comp))
        with open(os.path.join(root, comp, "config.json"), "w") as f:
            json.dump({"_class_name": cls, **cfg}, f)
    with open(os.path.join(root, "model_index.json"), "w") as f:
        json.dump(index, f)
    return str(root)


def _public_like(model, root) -> str:
    """The tiny folder's JSON with the public LTX-2 VAE's compression (8x time, 32x space), no weights."""
    with open(os.path.join(model, "vae", "config.json")) as f:
        vae = json.load(f)
    with open(os.path.join(model, "transformer", "config.json")) as f:
        tr = json.load(f)
    vae.update(temporal_compression_ratio=8, spatial_compression_ratio=32)
    tr.update(chunk_plucker_channels=48)
    return _json_folder(
        root,
        "SanaWMPipeline",
        {
            "vae": ("diffusers", "AutoencoderKLLTX2Video", vae),
            "transformer": ("diffusers", "SanaWMTransformer3DModel", tr),
        },
    )


def _spy(gen):
    """Replace the generator's pipeline by a wrapper that records its call kwargs and the intrinsics after the
    pipeline's own resize + crop (SanaWMImageProcessor.preprocess_with_intrinsics)."""
    real, seen = gen.pipeline(), {}
    proc = real.image_processor
    preprocess = proc.preprocess_with_intrinsics

    def after_crop(image, intrinsics, height, width):
        pixels, intr = preprocess(image, intrinsics, height, width)
        seen["cropped_intrinsics"], seen["pixels"] = intr, pixels
        return pixels, intr

    proc.preprocess_with_intrinsics = after_crop

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    gen._pipe = spy
    return seen


def test_inspect_reads_the_rules_from_the_vae_and_transformer_configs(model, tmp_path):
    spec = diffusers_video.inspect(model)
    assert (spec.class_name, spec.kind, spec.family) == ("SanaWMPipeline", "camera", "sana_wm")
    assert (spec.temporal_factor, spec.spatial_multiple, spec.min_frames) == (4, 8, 5)
    assert spec.fixed_size is None and spec.max_tokens_per_axis == 1024 and spec.inner_dim == 32
    spec.check(NUM_FRAMES, SIZE, SIZE)
    spec.check(9, 24, 40)  # height and width are free (RoPE), multiples of 8 here
    # The public compression (8x time, 32x space) read from the VAE config: 8k+1 frames, at least 9.
    public = diffusers_video.inspect(_public_like(model, tmp_path / "public"))
    assert (public.temporal_factor, public.spatial_multiple, public.min_frames) == (8, 32, 9)
    with pytest.raises(InputError) as e:
        public.check(NUM_FRAMES, SIZE, SIZE)
    msg = _one_line(e)
    assert "8k+1" in msg and "--config.camera.num_frames=9" in msg
    with pytest.raises(InputError) as e:
        public.check(17, 720, 1280)
    assert "multiples of 32" in _one_line(e) and "--config.camera.height=704" in str(e.value)
    public.check(17, 704, 1280)
    # Without the ratio keys the VAE's own formula: patch_size_t (1) / patch_size (2) x 2 per downsampling.
    with open(os.path.join(model, "vae", "config.json")) as f:
        vae = json.load(f)
    with open(os.path.join(model, "transformer", "config.json")) as f:
        tr = json.load(f)
    del vae["temporal_compression_ratio"], vae["spatial_compression_ratio"]
    folder = _json_folder(
        tmp_path / "formula",
        "SanaWMPipeline",
        {
            "vae": ("diffusers", "AutoencoderKLLTX2Video", vae),
            "transformer": ("diffusers", "SanaWMTransformer3DModel", tr),
        },
    )
    formula = diffusers_video.inspect(folder)
    assert (formula.temporal_factor, formula.spatial_multiple) == (4, 8)
    # A camera branch that does not match the VAE's temporal folding is refused, naming the file.
    tr["chunk_plucker_channels"] = 48
    bad = _json_folder(
        tmp_path / "bad",
        "SanaWMPipeline",
        {
            "vae": ("diffusers", "AutoencoderKLLTX2Video", vae),
            "transformer": ("diffusers", "SanaWMTransformer3DModel", tr),
        },
    )
    with pytest.raises(InputError) as e:
        diffusers_video.inspect(bad)
    assert "chunk_plucker_channels=48" in _one_line(e) and os.path.join(bad, "transformer") in str(e.value)


def test_cameras_are_inverse_viewmats_in_opencv_with_half_pixel_intrinsics():
    traj = tj.orbit(NUM_FRAMES, SIZE, SIZE, fov_deg=55.0, radius=2.0, arc_deg=24.0)
    c2w, intr = sana_wm_cameras(traj)
    assert c2w.shape == (NUM_FRAMES, 4, 4) and intr.shape == (NUM_FRAMES, 4) and c2w.dtype == np.float32
    np.testing.assert_allclose(c2w, np.linalg.inv(np.asarray(traj.viewmat, np.float64)), atol=1e-5)
    np.testing.assert_allclose(c2w[0], np.eye(4), atol=1e-6)  # the first camera: origin, looking down +z
    f = 0.5 * SIZE / np.tan(np.deg2rad(27.5))  # horizontal fov 55 degrees, square pixels, centred
    np.testing.assert_allclose(
        intr, np.tile([f, f, SIZE / 2 - 0.5, SIZE / 2 - 0.5], (NUM_FRAMES, 1)), rtol=1e-6
    )
    # The same axes as SANA-WM's own action DSL (OpenCV): dollying in is its "w", panning right its "l".
    from diffusers.pipelines.sana_wm.cam_utils import action_string_to_c2w

    dolly = sana_wm_cameras(tj.dolly(NUM_FRAMES, SIZE, SIZE, distance=0.5))[0]
    w = action_string_to_c2w(f"w-{NUM_FRAMES - 1}")
    np.testing.assert_allclose(dolly[-1, :3, 3] / 0.5, w[-1, :3, 3] / np.linalg.norm(w[-1, :3, 3]), atol=1e-6)
    pan = sana_wm_cameras(tj.pan(NUM_FRAMES, SIZE, SIZE, yaw_deg=4.8))[0]
    right = action_string_to_c2w(f"l-{NUM_FRAMES - 1}")  # 1.2 degrees a frame: 4.8 in all
    np.testing.assert_allclose(pan[:, :3, :3], right[:, :3, :3], atol=1e-5)


def test_translation_scale_scales_the_translations_the_model_sees(model):
    traj = tj.orbit(NUM_FRAMES, SIZE, SIZE, fov_deg=55.0, radius=2.0, arc_deg=24.0, start_deg=10.0)
    base, intr = sana_wm_cameras(traj)
    scaled, intr2 = sana_wm_cameras(traj, 2.5)
    np.testing.assert_allclose(scaled[:, :3, 3], 2.5 * base[:, :3, 3], rtol=1e-6)
    np.testing.assert_array_equal(scaled[:, :3, :3], base[:, :3, :3])
    np.testing.assert_array_equal(intr, intr2)
    # Relative to frame 0 (what the pipeline's prepare_camera feeds the DiT), translations scale the same.
    from diffusers.pipelines.sana_wm.cam_utils import prepare_camera

    def rel(c2w):
        return prepare_camera(c2w, intr, target_size=(SIZE, SIZE), vae_stride=(4, 8, 8))["raymap"][:, :16]

    a, b = rel(base).reshape(-1, 4, 4).numpy(), rel(scaled).reshape(-1, 4, 4).numpy()
    assert np.abs(a[1:, :3, 3]).max() > 0.1
    np.testing.assert_allclose(b[:, :3, 3], 2.5 * a[:, :3, 3], atol=1e-5)
    # Through the config key, and refused before anything loads when not positive.
    c = _config(model)
    c.generator.sana_wm.translation_scale = 2.5
    traj = trajectory_from_config(c)
    want = 2.5 * np.linalg.inv(np.asarray(traj.viewmat, np.float64))[:, :3, 3]
    np.testing.assert_allclose(make_generator(c)._camera_inputs(traj)["c2w"][:, :3, 3], want, atol=1e-5)
    c.generator.sana_wm.translation_scale = 0.0
    with pytest.raises(InputError) as e:
        make_generator(c).check(prompt_from_config(c), trajectory_from_config(c))
    assert "--config.generator.sana_wm.translation_scale=0.0" in _one_line(e)


def test_end_to_end_the_pipeline_gets_the_trajectory_and_the_frames_reconstruct(model):
    c = _config(model)
    gen = make_generator(c)
    assert gen.conditioning == "camera"  # chosen by auto from model_index.json
    traj = trajectory_from_config(c)
    seen = _spy(gen)
    frames = gen.generate(prompt_from_config(c), traj, KEY)
    assert gen._pipe is None  # released once the frames are out
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and frames.rgb.dtype == jnp.float32
    assert float(frames.rgb.min()) >= 0.0 and float(frames.rgb.max()) <= 1.0
    assert float(jnp.std(frames.rgb)) > 1e-3 and frames.cameras is traj
    # What the pipeline received, against a hand computation: inv(viewmat) and K from the 55-degree fov.
    assert (seen["num_frames"], seen["height"], seen["width"]) == (NUM_FRAMES, SIZE, SIZE)
    np.testing.assert_allclose(seen["c2w"], np.linalg.inv(np.asarray(traj.viewmat, np.float64)), atol=1e-5)
    f = 0.5 * SIZE / np.tan(np.deg2rad(27.5))
    want = np.tile([f, f, SIZE / 2 - 0.5, SIZE / 2 - 0.5], (NUM_FRAMES, 1))
    np.testing.assert_allclose(seen["intrinsics"], want, rtol=1e-6)
    np.testing.assert_allclose(seen["cropped_intrinsics"], want, rtol=1e-6)  # its resize + crop: identity
    assert seen["image"].size == (SIZE, SIZE) and seen["prompt"] == c.prompt.text
    # Reconstruction with the same cameras, initialised from the generated frames.
    _, log = reconstruct(c, frames, steps=4)
    # (The tiny model's random VAE decodes noise-like frames, so the bar sits below the Wan tests' 18 dB.)
    assert log[0]["psnr"] > 14.0 and log[-1]["loss"] < 2 * log[0]["loss"], log


def test_the_camera_steers_the_video_and_the_seed_fixes_it(model):
    c = _config(model)
    gen = make_generator(c)
    prompt = prompt_from_config(c)
    orbit = trajectory_from_config(c)
    c.camera.trajectory = "dolly"
    dolly = trajectory_from_config(c)
    image = gen._image(prompt, orbit)  # the same fitted picture for every call (same size)
    seen = _spy(gen)

    def video(traj, scale=1.0):  # the generator's pipeline call (cameras converted as generate does), seed 7
        gen.cfg.sana_wm.translation_scale = scale
        out = gen._video(prompt, traj, image, None, seed=7).numpy()
        return out, seen["c2w"].copy()

    try:
        (first, c2w), (again, _), (other, _), (far, c2w_far) = (
            video(orbit),
            video(orbit),
            video(dolly),
            video(orbit, 3.0),
        )
    finally:
        gen.release()
    np.testing.assert_array_equal(first, again)  # same seed, same cameras: the same video
    # The first latent frame is the encoded image, held clean: frame 0 does not depend on the cameras.
    np.testing.assert_allclose(other[0], first[0], atol=1e-6)
    assert np.abs(other[1:] - first[1:]).max() > 1e-2  # the later frames follow the cameras
    # translation_scale reaches the pipeline (translations x 3, rotations as they were) and the video.
    np.testing.assert_allclose(c2w_far[:, :3, 3], 3.0 * c2w[:, :3, 3], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(c2w_far[:, :3, :3], c2w[:, :3, :3])
    assert np.abs(far[1:] - first[1:]).max() > 1e-2


def test_bad_requests_fail_in_one_line_before_any_weight_loads(model, tmp_path):
    # Frame counts and sizes against the tiny model (4k+1, multiples of 8) ...
    c = _config(model)
    c.camera.num_frames = 6
    gen = make_generator(c)
    with pytest.raises(InputError) as e:
        gen.generate(prompt_from_config(c), trajectory_from_config(c), KEY)
    assert "4k+1" in _one_line(e) and "--config.camera.num_frames=5 or 9" in str(e.value)
    c = _config(model)
    c.camera.width = 36
    with pytest.raises(InputError) as e:
        gen.generate(prompt_from_config(c), trajectory_from_config(c), KEY)
    assert "multiples of 8" in _one_line(e) and "--config.camera.width=" in str(e.value)
    # ... and against a JSON-only folder with the public compression: refused before loading (no weights).
    c = _config(_public_like(model, tmp_path / "public"))
    public = make_generator(c)
    with pytest.raises(InputError) as e:
        public.generate(prompt_from_config(c), trajectory_from_config(c), KEY)
    assert "8k+1" in _one_line(e) and "--config.camera.num_frames=9" in str(e.value)
    c.camera.num_frames, c.camera.width = 9, 48
    with pytest.raises(InputError) as e:
        public.generate(prompt_from_config(c), trajectory_from_config(c), KEY)
    assert "multiples of 32" in _one_line(e)
    # No image: SANA-WM starts from a first frame.
    c = _config(model)
    c.prompt.image = ""
    with pytest.raises(InputError) as e:
        gen.check(prompt_from_config(c), trajectory_from_config(c))
    assert "--config.prompt.image=" in _one_line(e)
    # Other conditionings on SANA-WM, and `camera` on a pipeline that takes no poses.
    for asked in ("none", "pluecker", "warp"):
        c = _config(model)
        c.generator.camera_conditioning = asked
        with pytest.raises(InputError) as e:
            make_generator(c)
        _one_line(e)
    wan = _json_folder(
        tmp_path / "wan",
        "WanPipeline",
        {
            "vae": ("diffusers", "AutoencoderKLWan", {}),
            "transformer": (
                "diffusers",
                "WanTransformer3DModel",
                {"num_attention_heads": 2, "attention_head_dim": 12},
            ),
        },
    )
    c = _config(wan)
    c.generator.camera_conditioning = "camera"
    with pytest.raises(InputError) as e:
        make_generator(c)
    assert "takes no camera poses" in _one_line(e) and "camera_conditioning=auto" in str(e.value)
    assert gen._pipe is None and public._pipe is None  # nothing was loaded by any of the above
