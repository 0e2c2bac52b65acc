"""Malformed diffusers model folders: `inspect` reads JSON only (no torch), so every defect is one line.

Each case starts from a minimal valid folder (model_index.json + component config.json files) and breaks one
key; the error must be an InputError naming the file and the key.
"""

import json
import os

import pytest

from any4d_jax.errors import InputError
from third_party import diffusers_video

WAN = {
    "model_index.json": {
        "_class_name": "WanPipeline",
        "_diffusers_version": "0.42.1",
        "vae": ["diffusers", "AutoencoderKLWan"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": [None, None],  # an optional component left out
        "boundary_ratio": None,  # pipeline settings are not components
        "expand_timesteps": False,
    },
    "vae/config.json": {"temperal_downsample": [False, True, True], "z_dim": 16},
    "transformer/config.json": {
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "patch_size": [1, 2, 2],
        "rope_max_seq_len": 32,
    },
}
COG = {
    "model_index.json": {
        "_class_name": "CogVideoXImageToVideoPipeline",
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
    },
    "vae/config.json": {"block_out_channels": [128, 256, 256, 512], "temporal_compression_ratio": 4},
    "transformer/config.json": {
        "num_attention_heads": 48,
        "attention_head_dim": 64,
        "in_channels": 32,  # latents + image latents
        "patch_size": 2,
        "patch_size_t": None,
        "use_learned_positional_embeddings": True,
        "sample_height": 60,
        "sample_width": 90,
    },
}
SVD = {
    "model_index.json": {
        "_class_name": "StableVideoDiffusionPipeline",
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
    },
    "vae/config.json": {"block_out_channels": [128, 256, 512, 512]},
    "unet/config.json": {},
}


def _folder(root, files: dict, **edits) -> str:
    """Write `files` (relative path -> JSON value) under root, edited: {"dir__file:key": value} sets a key,
    "dir__file:-key" deletes it, "dir__file:" replaces the whole file by raw text or bytes."""
    files = json.loads(json.dumps(files))
    raw = {}
    for target, value in edits.items():
        name, key = target.split(":")
        name = name.replace("__", "/") + ".json"
        if key == "":
            raw[name] = value
        elif key.startswith("-"):
            del files[name][key[1:]]
        else:
            files[name][key] = value
    for name, value in {**files, **raw}.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = value if isinstance(value, (str, bytes)) else json.dumps(value)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    return str(root)


def _refused(root, files, **edits) -> str:
    folder = _folder(root, files, **edits)
    with pytest.raises(InputError) as e:
        diffusers_video.inspect(folder)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize(
    "files, edits, file, key",
    [
        (
            WAN,
            {"transformer__config:-num_attention_heads": None},
            "transformer/config.json",
            "num_attention_heads",
        ),
        (WAN, {"transformer__config:patch_size": 2}, "transformer/config.json", "patch_size"),
        (WAN, {"transformer__config:patch_size": [1, 2]}, "transformer/config.json", "patch_size"),
        (
            WAN,
            {"transformer__config:attention_head_dim": "12"},
            "transformer/config.json",
            "attention_head_dim",
        ),
        (WAN, {"transformer__config:rope_max_seq_len": 0}, "transformer/config.json", "rope_max_seq_len"),
        (
            WAN,
            {"transformer__config:num_attention_heads": True},
            "transformer/config.json",
            "num_attention_heads",
        ),
        (WAN, {"model_index:vae": []}, "model_index.json", "vae"),
        (WAN, {"model_index:transformer": "WanTransformer3DModel"}, "model_index.json", "transformer"),
        (WAN, {"model_index:_class_name": ["WanPipeline"]}, "model_index.json", "_class_name"),
        (WAN, {"model_index:-_class_name": None}, "model_index.json", "_class_name"),
        (WAN, {"vae__config:temperal_downsample": "yes"}, "vae/config.json", "temperal_downsample"),
        (WAN, {"vae__config:scale_factor_temporal": 2.5}, "vae/config.json", "scale_factor_temporal"),
        (WAN, {"vae__config:": "[1, 2]"}, "vae/config.json", "JSON object"),
        (WAN, {"transformer__config:": "{ not json"}, "transformer/config.json", "not valid JSON"),
        (WAN, {"model_index:": "[" * 100_000}, "model_index.json", "nested deeper"),
        (WAN, {"vae__config:": b"\xff\xfe{\x00}\x00"}, "vae/config.json", "UTF-8"),
        (COG, {"transformer__config:patch_size": [2]}, "transformer/config.json", "patch_size"),
        (COG, {"transformer__config:-sample_height": None}, "transformer/config.json", "sample_height"),
        (COG, {"transformer__config:patch_size_t": -2}, "transformer/config.json", "patch_size_t"),
        (COG, {"vae__config:block_out_channels": []}, "vae/config.json", "block_out_channels"),
        (
            COG,
            {"transformer__config:use_learned_positional_embeddings": "no"},
            "transformer/config.json",
            "use_learned_positional_embeddings",
        ),
        (SVD, {"vae__config:block_out_channels": 512}, "vae/config.json", "block_out_channels"),
        (SVD, {"unet__config:": "null"}, "unet/config.json", "JSON object"),
    ],
)
def test_malformed_model_folder_json_is_one_line_naming_file_and_key(tmp_path, files, edits, file, key):
    msg = _refused(tmp_path, files, **edits)
    assert os.path.join(str(tmp_path), file) in msg and key in msg, msg


def test_valid_folders_inspect_and_missing_parts_are_input_errors(tmp_path):
    # Minimal valid folders (optional components [null, null] and pipeline settings are not components).
    spec = diffusers_video.inspect(_folder(tmp_path / "wan", WAN))
    assert (spec.kind, spec.temporal_factor, spec.spatial_multiple, spec.inner_dim) == ("text", 4, 16, 24)
    spec = diffusers_video.inspect(_folder(tmp_path / "cog", COG))
    assert (spec.kind, spec.spatial_multiple, spec.fixed_size, spec.latent_frame_multiple) == (
        "image",
        16,
        (480, 720),
        1,
    )
    spec = diffusers_video.inspect(_folder(tmp_path / "svd", SVD))
    assert (spec.kind, spec.spatial_multiple, spec.min_frames) == ("image", 8, 2)
    with pytest.raises(InputError, match="no such folder"):
        diffusers_video.inspect(str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="generator.model is empty"):
        diffusers_video.inspect("")
    with pytest.raises(InputError, match="no model_index.json"):
        diffusers_video.inspect(str(tmp_path))
    folder = _folder(tmp_path / "wan", WAN)
    os.remove(os.path.join(folder, "transformer", "config.json"))
    msg = _refused(tmp_path / "wan", {})
    assert os.path.join(folder, "transformer", "config.json") in msg and "missing" in msg


def test_cogvideox_fun_folders_are_refused_before_loading(tmp_path):
    """CogVideoX-Fun control folders say CogVideoXPipeline in model_index.json (so they looked text-to-video
    and failed only after loading); their transformer takes control latents too, which gives them away."""
    text = {**COG, "model_index.json": {**COG["model_index.json"], "_class_name": "CogVideoXPipeline"}}
    text["transformer/config.json"] = {**COG["transformer/config.json"], "in_channels": 16}
    text["transformer/config.json"]["use_learned_positional_embeddings"] = False
    spec = diffusers_video.inspect(_folder(tmp_path / "t2v", text))  # a plain CogVideoX text-to-video
    assert (spec.kind, spec.fixed_frames) == ("text", None)

    msg = _refused(tmp_path / "fun", text, **{"transformer__config:in_channels": 32})
    assert os.path.join(str(tmp_path / "fun"), "transformer", "config.json") in msg
    assert "in_channels=32, but a CogVideoXPipeline transformer takes 16" in msg
    assert "CogVideoX-Fun checkpoints" in msg and "supported: CogVideoXImageToVideoPipeline" in msg
    msg = _refused(tmp_path / "inp", COG, **{"transformer__config:in_channels": 33})  # Fun InP (+ mask)
    assert "in_channels=33, but a CogVideoXImageToVideoPipeline transformer takes 32" in msg

    msg = _refused(tmp_path / "edited", text, **{"model_index:_class_name": "CogVideoXFunControlPipeline"})
    assert os.path.join(str(tmp_path / "edited"), "model_index.json") in msg and "CogVideoX-Fun" in msg


def test_cogvideox_i2v_with_learned_embeddings_makes_only_its_frame_count(tmp_path):
    """CogVideoX-5b-I2V learned its positional embedding for 49 frames; diffusers silently swaps in sin-cos
    ones at any other count, so any other count is refused up front with the fix."""
    spec = diffusers_video.inspect(_folder(tmp_path / "cog", COG))
    assert spec.fixed_frames == 49
    spec.check(49, 480, 720)
    with pytest.raises(InputError, match=r"only generates 49 frames .*--config.camera.num_frames=49$"):
        spec.check(33, 480, 720)  # 4k+1, so only the learned embedding rules it out
    spec = diffusers_video.inspect(
        _folder(tmp_path / "cog81", COG, **{"transformer__config:sample_frames": 81})
    )
    spec.check(81, 480, 720)
