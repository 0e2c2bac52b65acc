"""Wan Fun Control-Camera (VideoX-Fun's released layout) through the diffusers backend, with tiny random
checkpoints written offline (third_party/tiny_fun_camera.py) next to tiny_pipelines' Wan I2V folder.

Checks: the released layout loads strictly and runs generate -> DLPack -> reconstruction; the adapter's input
is the Pluecker embedding VideoX-Fun computes (checked against numpy written here from its formulas) folded as
it folds; the key map (hand-picked names, a round trip, component forwards written from the original tensors);
the camera steers the video and a zero adapter changes nothing; malformed folders fail in one line naming the
file. Needs the gen extra: skipped with the reason where it is absent.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

for _mod in ("torch", "diffusers", "transformers", "ftfy", "safetensors"):
    pytest.importorskip(_mod, reason=f"needs the gen extra ({_mod}): pip install -e '.[gen]'")

import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gen_helpers import NUM_FRAMES, SIZE, generate_frames, image_config, reconstruct  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from any4d_jax.errors import InputError  # noqa: E402
from any4d_jax.generate import make_generator, prompt_from_config, trajectory_from_config  # noqa: E402
from any4d_jax.geometry.trajectory import make_trajectory  # noqa: E402
from third_party import camera_adapter, fun_camera, tiny_fun_camera, tiny_pipelines  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "docs", "prompt_example.png")


@pytest.fixture(scope="module")
def fun(tmp_path_factory):
    """The tiny Wan I2V folder (generator.model) and Fun Control-Camera folders: Wan2.1 style in two shards,
    the same with an all-zero adapter, and a Wan2.2 A14B style (two experts, mask + image latents)."""
    root = tmp_path_factory.mktemp("fun_camera")
    return {
        "i2v": tiny_pipelines.build("i2v", str(root / "i2v")),
        "t2v": tiny_pipelines.build("t2v", str(root / "t2v")),
        "cam": tiny_fun_camera.write(str(root / "cam"), shards=2),
        "zero": tiny_fun_camera.write(str(root / "zero"), zero_adapter=True),
        "a14b": tiny_fun_camera.write(str(root / "a14b"), wan22=True, experts=True),
        "root": root,
    }


def _config(fun, camera_model):
    c = image_config()
    c.generator.name, c.generator.model, c.generator.camera_model = "diffusers", fun["i2v"], camera_model
    c.prompt.image = EXAMPLE
    return c


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_released_layout_loads_strictly_and_runs_end_to_end(fun, monkeypatch):
    seen = []
    forward = camera_adapter.CameraAdapter.forward
    monkeypatch.setattr(camera_adapter.CameraAdapter, "forward", lambda m, x: seen.append(x) or forward(m, x))
    c = _config(fun, fun["cam"])
    gen, prompt, traj, frames = generate_frames(c)
    assert gen.conditioning == "pluecker" and gen.pairing.layout == "start"  # auto: camera_model is set
    assert frames.rgb.shape == (NUM_FRAMES, SIZE, SIZE, 3) and frames.rgb.dtype == jnp.float32
    assert float(jnp.std(frames.rgb)) > 1e-3 and float(frames.rgb.min()) >= 0.0
    # The adapter ran once per generation (cached across steps and both CFG passes) on the folded rays.
    assert len(seen) == 1 and tuple(seen[0].shape) == (1, 24, 2, SIZE, SIZE)
    torch.testing.assert_close(seen[0], camera_adapter.camera_input(traj), rtol=0, atol=0)
    _, log = reconstruct(c, frames, steps=3)
    assert log[0]["psnr"] > 15.0, log

    # Wan2.2 A14B layout: two experts (high-noise for t >= 900), mask + image latents, no CLIP input.
    c = _config(fun, fun["a14b"])
    gen = make_generator(c)
    assert gen.pairing.layout == "inpaint" and gen.pairing.boundary == 0.9
    pipe = gen.pipeline()
    assert pipe.transformer.config.in_channels == 36 and pipe.transformer.config.image_dim is None
    calls = []
    for name in ("transformer", "transformer_2"):
        getattr(pipe, name).register_forward_pre_hook(
            lambda m, a, k, n=name: calls.append(n), with_kwargs=True
        )
    image = gen._image(prompt, traj)
    video = gen._video(prompt, traj, image, None, seed=0)
    assert tuple(video.shape) == (NUM_FRAMES, 3, SIZE, SIZE) and bool(torch.isfinite(video).all())
    # Two steps of shift-7 flow matching: t = 1000 (high-noise expert), then 875 (low-noise), CFG x 2 each.
    assert calls == ["transformer_2"] * 2 + ["transformer"] * 2, calls
    gen.release()


def _rot(axis: int, deg: float) -> np.ndarray:
    a, (i, j) = np.deg2rad(deg), [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = np.cos(a)
    r[i, j], r[j, i] = -np.sin(a), np.sin(a)
    return r


def test_the_adapter_input_is_videox_funs_pluecker_embedding_folded_channel_major():
    # Two cameras (OpenCV world-to-camera), neither at the origin, with different intrinsics.
    w, h = 6, 4
    vm = np.tile(np.eye(4), (2, 1, 1))
    vm[0, :3, :3], vm[0, :3, 3] = _rot(1, 10.0), (0.1, -0.2, 0.3)
    vm[1, :3, :3], vm[1, :3, 3] = _rot(0, 5.0) @ _rot(1, -20.0), (-0.4, 0.05, 0.6)
    K = np.array([[[5.0, 0, 3.0], [0, 4.5, 2.0], [0, 0, 1]], [[6.0, 0, 2.5], [0, 6.0, 2.2], [0, 0, 1]]])
    traj = make_trajectory(vm, K, w, h)
    got = camera_adapter.camera_rays(traj).numpy()
    # By hand, as VideoX-Fun's process_pose_file / get_relative_pose / ray_condition do it.
    c2w = np.linalg.inv(vm)
    rel = [np.eye(4)] + [vm[0] @ c2w[1]]  # target_cam_c2w @ w2c_0 @ c2w_i, target = identity
    want = np.zeros((2, h, w, 6))
    for f in range(2):
        fx, fy, cx, cy = K[f, 0, 0], K[f, 1, 1], K[f, 0, 2], K[f, 1, 2]
        for row in range(h):
            for col in range(w):
                d = np.array([(col + 0.5 - cx) / fx, (row + 0.5 - cy) / fy, 1.0])
                d = rel[f][:3, :3] @ (d / np.linalg.norm(d))
                o = rel[f][:3, 3]
                want[f, row, col] = np.concatenate([np.cross(o, d), d])
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.abs(got[0, ..., :3]).max() < 1e-6  # frame 0 sits at the origin of the relative frame
    # The fold: frame 0 four times, then 4 frames per latent frame, channel 4c + k.
    rays = torch.arange(5 * 2 * 3 * 6, dtype=torch.float32).reshape(5, 2, 3, 6)
    x = camera_adapter.fold(rays)
    assert tuple(x.shape) == (1, 24, 2, 2, 3)
    frames = [0, 0, 0, 0, 1, 2, 3, 4]  # the padded sequence
    for g in range(2):
        for c in range(6):
            for k in range(4):
                torch.testing.assert_close(
                    x[0, 4 * c + k, g], rays[frames[4 * g + k], ..., c], rtol=0, atol=0
                )
    with pytest.raises(ValueError, match=r"need \(4k\+1, H, W, 6\)"):
        camera_adapter.fold(rays[:4])


def test_the_key_map_against_the_original_layout(fun, tmp_path):
    to = fun_camera.to_diffusers
    for original, mapped in {
        "blocks.3.self_attn.o.weight": "blocks.3.attn1.to_out.0.weight",
        "blocks.0.self_attn.norm_q.weight": "blocks.0.attn1.norm_q.weight",
        "blocks.0.cross_attn.k_img.bias": "blocks.0.attn2.add_k_proj.bias",
        "blocks.1.cross_attn.norm_k_img.weight": "blocks.1.attn2.norm_added_k.weight",
        "blocks.0.norm3.weight": "blocks.0.norm2.weight",
        "blocks.0.ffn.0.weight": "blocks.0.ffn.net.0.proj.weight",
        "blocks.0.ffn.2.bias": "blocks.0.ffn.net.2.bias",
        "blocks.0.modulation": "blocks.0.scale_shift_table",
        "head.modulation": "scale_shift_table",
        "head.head.weight": "proj_out.weight",
        "time_projection.1.bias": "condition_embedder.time_proj.bias",
        "text_embedding.2.weight": "condition_embedder.text_embedder.linear_2.weight",
        "img_emb.proj.3.weight": "condition_embedder.image_embedder.ff.net.2.weight",
        "img_emb.proj.4.bias": "condition_embedder.image_embedder.norm2.bias",
    }.items():
        assert to(original) == mapped and to(mapped, reverse=True) == original
    assert to("control_adapter.conv.weight") is None and to("blocks.0.cam_encoder.weight") is None

    # Round trip: a diffusers model's state -> original names (exactly the expected layout) -> loaded back.
    cam = fun_camera.inspect(fun["cam"])
    from diffusers import WanTransformer3DModel

    torch.manual_seed(1)
    ref = WanTransformer3DModel(**camera_adapter.diffusers_config(cam))
    original = {to(k, reverse=True): v.clone() for k, v in ref.state_dict().items()}
    adapter = camera_adapter.CameraAdapter(24, cam.dim, (2, 2), 8)
    original |= {f"control_adapter.{k}": v.clone() for k, v in adapter.state_dict().items()}
    expect = fun_camera.expected_shapes(
        **{k: getattr(cam, k) for k in ("dim", "ffn_dim", "in_dim", "out_dim", "num_layers", "text_dim")},
        freq_dim=cam.freq_dim,
        patch=cam.patch,
        qk_norm=True,
        cross_attn_norm=True,
        image_dim=cam.image_dim,
        adapter_in=24,
        downscale=8,
    )
    assert {k: tuple(v.shape) for k, v in original.items()} == expect
    folder = tiny_fun_camera.save(str(tmp_path / "round"), tiny_fun_camera.config(), original)
    back = fun_camera.inspect(folder)
    model = camera_adapter.load_expert(back, back.experts[0])
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    for k, v in adapter.state_dict().items():
        assert torch.equal(model.camera_adapter.state_dict()[k], v), k

    # Components of the loaded model against forwards written from the original tensors.
    sd = {}
    for file in sorted({f for f, _ in cam.experts[0].tensors.values()}):
        sd |= load_file(file)
    model = camera_adapter.load_transformers(cam)["transformer"]
    g = torch.Generator().manual_seed(0)

    def lin(x, prefix):  # an original nn.Linear, from its tensors
        return F.linear(x, sd[prefix + "weight"], sd[prefix + "bias"])

    def conv(x, prefix, **kw):
        return F.conv2d(x, sd[prefix + "weight"], sd[prefix + "bias"], **kw)

    with torch.no_grad():
        t = torch.randn(2, 7, cam.text_dim, generator=g)
        text = lin(F.gelu(lin(t, "text_embedding.0."), approximate="tanh"), "text_embedding.2.")
        torch.testing.assert_close(model.condition_embedder.text_embedder(t), text)
        i = torch.randn(2, 5, cam.image_dim, generator=g)
        p = "img_emb.proj."
        img = F.layer_norm(i, (cam.image_dim,), sd[p + "0.weight"], sd[p + "0.bias"])
        img = lin(F.gelu(lin(img, p + "1.")), p + "3.")  # exact GELU in MLPProj
        img = F.layer_norm(img, (cam.dim,), sd[p + "4.weight"], sd[p + "4.bias"])
        torch.testing.assert_close(model.condition_embedder.image_embedder(i), img)
        x = torch.randn(2, 9, cam.dim, generator=g)
        b = "blocks.0."
        ffn = lin(F.gelu(lin(x, b + "ffn.0."), approximate="tanh"), b + "ffn.2.")
        torch.testing.assert_close(model.blocks[0].ffn(x), ffn)
        q = lin(x, b + "self_attn.q.")
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + cam.eps) * sd[b + "self_attn.norm_q.weight"]
        attn = model.blocks[0].attn1
        torch.testing.assert_close(attn.norm_q(attn.to_q(x)), q)
        cam_in = torch.randn(1, 24, 2, 16, 32, generator=g)
        y = conv(F.pixel_unshuffle(cam_in[0].permute(1, 0, 2, 3), 8), "control_adapter.conv.", stride=2)
        r = "control_adapter.residual_blocks.0."
        y = y + conv(F.relu(conv(y, r + "conv1.", padding=1)), r + "conv2.", padding=1)
        torch.testing.assert_close(model.camera_adapter(cam_in), y.permute(1, 0, 2, 3)[None])


def test_the_camera_steers_the_video_and_a_zero_adapter_changes_nothing(fun, monkeypatch):
    c = _config(fun, fun["cam"])
    prompt, orbit = prompt_from_config(c), trajectory_from_config(c)
    c.camera.trajectory = "dolly"
    dolly = trajectory_from_config(c)
    assert orbit.num_frames == dolly.num_frames and orbit.width == dolly.width

    def videos(camera_model):
        gen = make_generator(_config(fun, camera_model))
        image = gen._image(prompt, orbit)
        return gen, image, [gen._video(prompt, traj, image, None, seed=3) for traj in (orbit, dolly)]

    gen, _, (a, b) = videos(fun["cam"])
    gen.release()
    assert float((a - b).abs().max()) > 1e-3  # same seed, image and text: only the cameras differ
    gen, image, (za, zb) = videos(fun["zero"])
    torch.testing.assert_close(za, zb, rtol=0, atol=0)
    # No adapter at all (the hook adds nothing): the same video as the zero adapter's.
    monkeypatch.setattr(camera_adapter, "attach", lambda t, cam: t.register_forward_hook(lambda *a: None))
    plain = gen._video(prompt, orbit, image, None, seed=3)
    gen.release()
    torch.testing.assert_close(za, plain, rtol=0, atol=0)


def _rewrite(folder, edit):
    path = os.path.join(folder, fun_camera.WEIGHTS)
    state = load_file(path)
    edit(state)
    save_file(state, path)
    return path


def test_malformed_folders_fail_in_one_line_naming_the_file(fun, tmp_path):
    def refused(folder, *needles, call=fun_camera.inspect) -> str:
        with pytest.raises(InputError) as e:
            call(folder)
        msg = _one_line(e)
        assert all(n in msg for n in needles), msg
        return msg

    good = tiny_fun_camera.write(str(tmp_path / "good"))
    cfg_path = os.path.join(good, "config.json")
    spec = fun_camera.inspect(good)
    assert (spec.dim, spec.in_dim, spec.image_dim, spec.downscale, len(spec.experts)) == (24, 32, 4, 8, 1)

    def variant(name, cfg_edit=None, weights_edit=None):
        folder = str(tmp_path / name)
        shutil.copytree(good, folder)
        if cfg_edit:
            cfg = json.loads(open(cfg_path).read())
            cfg_edit(cfg)
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(cfg, f)
        if weights_edit:
            _rewrite(folder, weights_edit)
        return folder

    folder = variant("no_dim", cfg_edit=lambda c: c.pop("dim"))
    refused(folder, os.path.join(folder, "config.json"), "missing key 'dim'")
    folder = variant("narrow", cfg_edit=lambda c: c.update(ffn_dim=40))  # weights have ffn_dim 32
    refused(
        folder,
        os.path.join(folder, fun_camera.WEIGHTS),
        "'blocks.0.ffn.0.weight' has shape [32, 24]",
        "[40, 24]",
    )
    folder = variant("lost", weights_edit=lambda s: s.pop("blocks.0.self_attn.k.bias"))
    refused(folder, os.path.join(folder, fun_camera.WEIGHTS), "1 missing", "blocks.0.self_attn.k.bias")
    folder = variant("extra", weights_edit=lambda s: s.update({"blocks.0.extra.weight": torch.zeros(2)}))
    refused(folder, os.path.join(folder, fun_camera.WEIGHTS), "1 unexpected", "blocks.0.extra.weight")
    drop = lambda s: [s.pop(k) for k in [k for k in s if k.startswith("control_adapter.")]]  # noqa: E731
    folder = variant("plain_wan", weights_edit=drop)  # a Wan transformer without the camera adapter
    refused(folder, os.path.join(folder, fun_camera.WEIGHTS), "no control_adapter weights")
    folder = variant("no_weights")
    os.remove(os.path.join(folder, fun_camera.WEIGHTS))
    refused(folder, folder, "no diffusion_pytorch_model.safetensors")
    folder = variant("junk")
    with open(os.path.join(folder, fun_camera.WEIGHTS), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    refused(folder, os.path.join(folder, fun_camera.WEIGHTS), "not a readable safetensors file")
    refused(os.path.join(fun["i2v"], "transformer"), "diffusers WanTransformer3DModel config")  # wrong layout
    refused(str(tmp_path), str(tmp_path), "not a Fun Control-Camera folder")
    # Shards: the index names a shard that is not there.
    shard_dir = str(tmp_path / "shards")
    shutil.copytree(fun["cam"], shard_dir)
    index = os.path.join(shard_dir, fun_camera.INDEX)
    os.remove(os.path.join(shard_dir, json.load(open(index))["weight_map"]["head.head.weight"]))
    refused(shard_dir, index, "lists the shard")

    # Pairing with generator.model, refused by the generator before anything loads (JSON only).
    wide = tiny_fun_camera.write(str(tmp_path / "wide_text"), text_dim=48)
    refused(
        _config(fun, wide),
        "text_dim 48",
        os.path.join(fun["i2v"], "text_encoder", "config.json"),
        call=make_generator,
    )
    big_z = tiny_fun_camera.write(str(tmp_path / "z48"), z=48)
    refused(
        _config(fun, big_z), "z_dim 16", os.path.join(fun["i2v"], "vae", "config.json"), call=make_generator
    )
    c = _config(fun, fun["cam"])
    c.generator.model = fun["t2v"]  # no CLIP image encoder for the Wan2.1 camera model's img_emb
    refused(c, "no image_encoder", os.path.join(fun["t2v"], "model_index.json"), call=make_generator)
    c = _config(fun, fun["cam"])
    c.generator.camera_conditioning = "warp"
    refused(c, "camera_conditioning=warp", "generator.camera_model", call=make_generator)
    c.generator.camera_conditioning, c.generator.camera_model = "pluecker", ""
    refused(c, "--config.generator.camera_model=/path", call=make_generator)
    # All of it reads JSON and safetensors headers only: torch is never imported.
    code = "import sys; from third_party import fun_camera; fun_camera.inspect(sys.argv[1]); "
    code += "print('torch' in sys.modules)"
    cmd = [sys.executable, "-c", code, fun["a14b"]]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
