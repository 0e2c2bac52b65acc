"""Where and how a diffusers pipeline sits: device and dtype defaults, per-component dtypes, offload modes,
VAE tiling and weight variants (third_party/diffusers_video.py), on a tiny Wan pipeline built offline.

CUDA is not here: offload modes are checked on a stand-in pipeline that records the calls, and refused on the
CPU; the dtype, variant and tiling paths load and run the real tiny pipeline.
"""

import os

import pytest

for _mod in ("torch", "diffusers", "transformers", "ftfy"):
    pytest.importorskip(_mod, reason=f"needs the gen extra ({_mod}): pip install -e '.[gen]'")

import torch  # noqa: E402

from any4d_jax.errors import InputError  # noqa: E402
from third_party import diffusers_video, tiny_pipelines  # noqa: E402


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    """A tiny Wan text-to-video folder, saved twice: plain weights and the fp16 variant's file names."""
    root = tmp_path_factory.mktemp("placement")
    plain = tiny_pipelines.build("t2v", str(root / "plain"))
    pipe = tiny_pipelines.wan_t2v()
    pipe.save_pretrained(str(root / "fp16"), variant="fp16")
    return {"plain": plain, "fp16": str(root / "fp16")}


def test_auto_device_and_dtype_follow_what_torch_sees():
    resolve = diffusers_video.resolve_auto
    assert resolve("auto", "auto", False) == ("cpu", "float32")
    assert resolve("auto", "auto", True) == ("cuda", "bfloat16")
    assert resolve("cuda:1", "auto", True) == ("cuda:1", "bfloat16")
    assert resolve("cpu", "auto", True) == ("cpu", "float32")  # an explicit device wins
    assert resolve("auto", "float16", True) == ("cuda", "float16")  # and an explicit dtype
    with pytest.raises(InputError, match=r"generator.dtype='fp8': must be one of auto, float32"):
        resolve("auto", "fp8", True)


def test_component_dtypes_keep_the_vae_in_float32(wan):
    spec = diffusers_video.inspect(wan["plain"])
    pipe = diffusers_video.load(spec, "bfloat16", "cpu")  # vae_dtype defaults to float32
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32
    video = diffusers_video.run(pipe, spec, num_frames=5, height=32, width=32, seed=0, text="a red fox",
                                num_inference_steps=2)  # fmt: skip
    assert tuple(video.shape) == (5, 3, 32, 32) and bool(torch.isfinite(video.float()).all())
    pipe = diffusers_video.load(spec, "float32", "cpu", vae_dtype="bfloat16")
    assert pipe.transformer.dtype == torch.float32 and pipe.vae.dtype == torch.bfloat16


def test_weight_variants_load_and_a_missing_one_is_one_line(wan):
    files = os.listdir(os.path.join(wan["fp16"], "transformer"))
    assert any(".fp16." in f for f in files), files
    spec = diffusers_video.inspect(wan["fp16"])
    pipe = diffusers_video.load(spec, "float32", "cpu", variant="fp16")
    assert pipe.transformer.dtype == torch.float32
    with pytest.raises(InputError) as e:
        diffusers_video.load(diffusers_video.inspect(wan["plain"]), "float32", "cpu", variant="bf16")
    msg = str(e.value)
    assert "\n" not in msg and "is there a 'bf16' variant of every weight file?" in msg, msg


def test_vae_tiling_is_switched_on(wan):
    spec = diffusers_video.inspect(wan["plain"])
    assert not diffusers_video.load(spec, "float32", "cpu").vae.use_tiling
    assert diffusers_video.load(spec, "float32", "cpu", vae_tiling=True).vae.use_tiling


class _Recorder:
    """Stands in for a pipeline: records how it was placed."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a, k))


@pytest.mark.parametrize(
    "offload, method, key",
    [
        ("none", "to", None),
        ("model", "enable_model_cpu_offload", "device"),
        ("sequential", "enable_sequential_cpu_offload", "device"),
        ("group", "enable_group_offload", "onload_device"),
    ],
)
def test_offload_modes_place_the_pipeline(offload, method, key):
    pipe = _Recorder()
    diffusers_video.place(pipe, "cuda:1", offload)
    [(name, args, kwargs)] = pipe.calls
    assert name == method
    assert str(args[0] if key is None else kwargs[key]) == "cuda:1"
    if offload == "group":
        assert str(kwargs["offload_device"]) == "cpu" and kwargs["offload_type"] == "block_level"


def test_offload_needs_a_cuda_device_and_bad_settings_are_one_line():
    for offload in ("model", "group", "sequential"):
        with pytest.raises(InputError) as e:
            diffusers_video.check_placement("cpu", offload, "float32")
        assert str(e.value) == (
            f"--config.generator.offload={offload} streams weights between the CPU and a CUDA GPU, but the "
            "generator runs on cpu: use --config.generator.offload=none or a CUDA generator.device"
        )
    diffusers_video.check_placement("cuda:0", "sequential", "float32")
    with pytest.raises(InputError, match=r"generator.offload='disk': must be one of none, model, group"):
        diffusers_video.check_placement("cuda", "disk", "float32")
    with pytest.raises(InputError, match=r"generator.vae_dtype='auto': must be one of float32"):
        diffusers_video.check_placement("cuda", "none", "auto")
