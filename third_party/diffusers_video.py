"""Adapter around diffusers video pipelines: inspect a local folder (no torch), load it offline, run it.

`inspect(path)` reads only JSON (model_index.json and the component configs), so every check on the request
(pipeline class, frame count, resolution) runs before torch or any weight is loaded. The JSON is read with
`files.read_json` (bounded size and nesting) and every key used is type-checked: a malformed folder is an
`InputError` whose one line names the file and the key. `load` calls
`from_pretrained(path, local_files_only=True)`: nothing is ever downloaded. `run` returns the video as a torch
tensor (F, 3, H, W) in [0, 1].

Supported pipeline classes (model_index.json `_class_name`):
  text-to-video:      WanPipeline, CogVideoXPipeline
  image-to-video:     WanImageToVideoPipeline, CogVideoXImageToVideoPipeline, StableVideoDiffusionPipeline
  video-conditioned:  WanVACEPipeline (video + mask: white = generate)
  camera-controlled:  SanaWMPipeline (image + text + per-frame camera-to-world poses and intrinsics; 6-DoF)
Refused with the reason (REFUSED): CogVideoX-Fun checkpoints, whether their model_index.json says
CogVideoXFunControlPipeline or, as the released folders do, CogVideoXPipeline (recognised by the
transformer's in_channels).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
from typing import Any

import numpy as np

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput

# class name -> (kind, family); kind: "text" | "image" | "control" | "camera".
SUPPORTED = {
    "WanPipeline": ("text", "wan"),
    "WanImageToVideoPipeline": ("image", "wan"),
    "WanVACEPipeline": ("control", "wan"),
    "CogVideoXPipeline": ("text", "cogvideox"),
    "CogVideoXImageToVideoPipeline": ("image", "cogvideox"),
    "StableVideoDiffusionPipeline": ("image", "svd"),
    "SanaWMPipeline": ("camera", "sana_wm"),  # image + text + c2w poses + intrinsics (run: c2w, intrinsics)
}
_FUN = (
    "CogVideoX-Fun checkpoints (control or InP) are not supported: they are trained on Canny/Depth/Pose/MLSD "
    "or masked videos, not on renders, and their pipeline takes no frame count"
)
# class name -> why it is refused (one line, completed with the supported classes).
REFUSED = {"CogVideoXFunControlPipeline": _FUN}
MAX_SIDE = 4096  # sanity limit on the generated width / height in pixels
MAX_CONFIG_BYTES = 4 * 2**20  # model_index.json and component config.json files are a few kilobytes
# Components a pipeline's model_index.json lists as [library, class]; any other non-list key is a setting.
COMPONENTS = (
    "vae",
    "transformer",
    "transformer_2",
    "unet",
    "text_encoder",
    "tokenizer",
    "scheduler",
    "image_encoder",
    "image_processor",
    "feature_extractor",
)


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """What a pipeline folder can produce, read from its JSON configs.

    kind: "text" | "image" | "control" | "camera"; family: "wan" | "cogvideox" | "svd" | "sana_wm".
    temporal_factor: frame counts must be temporal_factor k + 1 (1: any count >= min_frames).
    latent_frame_multiple: the latent frame count must also be a multiple of this (CogVideoX 1.5).
    spatial_multiple: width and height must be multiples of this (VAE downsampling x patch size).
    max_tokens_per_axis: limit on latent patches per axis (Wan's RoPE table), or None.
    fixed_size: (height, width) the model only works at (learned positional embeddings), or None.
    inner_dim: the transformer's hidden width (camera adapters), or None for UNets.
    takes_text: the pipeline takes a text prompt.
    fixed_frames: the only frame count the model works at (learned positional embeddings), or None.
    """

    path: str
    class_name: str
    kind: str
    family: str
    temporal_factor: int
    latent_frame_multiple: int
    spatial_multiple: int
    max_tokens_per_axis: int | None
    fixed_size: tuple[int, int] | None
    inner_dim: int | None
    takes_text: bool
    min_frames: int = 1
    fixed_frames: int | None = None

    def latent_frames(self, num_frames: int) -> int:
        return (num_frames - 1) // self.temporal_factor + 1

    def valid_frame_counts(self, near: int) -> list[int]:
        """The valid frame counts just below and above `near` (for error messages)."""
        step = self.temporal_factor * self.latent_frame_multiple
        first = max(self.min_frames, 1 + self.temporal_factor * (self.latent_frame_multiple - 1))
        if near <= first:
            return [first]
        below = first + (near - first) // step * step
        return [below, below + step] if below != near else [near]

    def check(self, num_frames: int, height: int, width: int) -> None:
        """Raise InputError (one line, with the fix) if the request cannot be produced as asked.

        diffusers would otherwise round the frame count or the size silently, and the video would no longer
        match the cameras.
        """
        name = f"generator.model {self.path} ({self.class_name})"
        ok = num_frames >= self.min_frames and (num_frames - 1) % self.temporal_factor == 0
        ok = ok and self.latent_frames(num_frames) % self.latent_frame_multiple == 0
        if not ok:
            rule = "any number of" if self.temporal_factor == 1 else f"{self.temporal_factor}k+1"
            if self.latent_frame_multiple > 1:
                rule += f" (with k+1 a multiple of {self.latent_frame_multiple})"
            if self.min_frames > 1:
                rule += f" (at least {self.min_frames})"
            good = " or ".join(str(c) for c in self.valid_frame_counts(num_frames))
            raise InputError(
                f"{name} makes {rule} frames; camera.num_frames={num_frames} is not one: use "
                f"--config.camera.num_frames={good}"
            )
        if self.fixed_frames is not None and num_frames != self.fixed_frames:
            raise InputError(
                f"{name} only generates {self.fixed_frames} frames (learned positional embeddings, which "
                f"diffusers would silently replace at {num_frames}): use "
                f"--config.camera.num_frames={self.fixed_frames}"
            )
        m = self.spatial_multiple
        if height % m or width % m:
            fix_w, fix_h = max(m, round(width / m) * m), max(m, round(height / m) * m)
            raise InputError(
                f"{name} needs width and height that are multiples of {m}; got {width} x {height}: use "
                f"--config.camera.width={fix_w} --config.camera.height={fix_h}"
            )
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            fh, fw = self.fixed_size
            raise InputError(
                f"{name} only generates {fw} x {fh} (learned positional embeddings); got {width} x {height}: "
                f"use --config.camera.width={fw} --config.camera.height={fh}"
            )
        if max(height, width) > MAX_SIDE:
            raise InputError(f"{name}: {width} x {height} exceeds the {MAX_SIDE}-pixel limit of this adapter")
        if self.max_tokens_per_axis is not None:
            axes = {
                "latent frames": self.latent_frames(num_frames),
                "rows of patches": height // m,
                "columns of patches": width // m,
            }
            over = {k: v for k, v in axes.items() if v > self.max_tokens_per_axis}
            if over:
                listing = ", ".join(f"{v} {k}" for k, v in over.items())
                raise InputError(
                    f"{name} handles at most {self.max_tokens_per_axis} positions per axis "
                    f"(rope_max_seq_len); {num_frames} frames at {width} x {height} need {listing}: lower "
                    "the size or the frame count"
                )


def _show(value: Any, limit: int = 60) -> str:
    """repr(value), shortened: error messages stay one short line whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


_REQUIRED = object()


def _read_json(path: str, where: str) -> dict:
    """The JSON object in `path`; InputError (one line naming the file) when missing or malformed."""
    if not os.path.isfile(path):
        raise MissingInput(f"{where}: missing {path}")
    data = files.read_json(path, max_bytes=MAX_CONFIG_BYTES, what="config file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {_kind(data)}")
    return data


def _int(cfg: dict, key: str, path: str, default: Any = _REQUIRED, minimum: int = 1) -> int:
    """cfg[key] as an integer >= minimum; absent or null gives `default` (an error if required)."""
    value = cfg.get(key)
    if value is None:
        if default is _REQUIRED:
            raise InputError(f"{path}: missing key '{key}' (an integer >= {minimum})")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{path}: '{key}' must be an integer >= {minimum}, got {_show(value)}")
    return value


def _int_list(cfg: dict, key: str, path: str, default: list[int], length: int | None = None) -> list[int]:
    """cfg[key] as a list of positive integers (of `length` items if given, else 1 to 8)."""
    value = cfg.get(key)
    if value is None:
        return list(default)
    ok = isinstance(value, list) and (len(value) == length if length else 1 <= len(value) <= 8)
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        count = f"{length}" if length else "1 to 8"
        raise InputError(f"{path}: '{key}' must be a list of {count} positive integers, got {_show(value)}")
    return value


def _bool(cfg: dict, key: str, path: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{path}: '{key}' must be true or false, got {_show(value)}")
    return value


def _bool_list(cfg: dict, key: str, path: str, default: list[bool]) -> list[bool]:
    value = cfg.get(key)
    if value is None:
        return list(default)
    if not (isinstance(value, list) and 1 <= len(value) <= 8 and all(isinstance(v, bool) for v in value)):
        raise InputError(f"{path}: '{key}' must be a list of 1 to 8 booleans, got {_show(value)}")
    return value


def _class_name(index: dict, index_path: str) -> str:
    cls = index.get("_class_name")
    if cls is None:
        raise InputError(
            f"{index_path}: missing key '_class_name' (the pipeline class, e.g. \"WanPipeline\")"
        )
    if not isinstance(cls, str):
        raise InputError(
            f"{index_path}: '_class_name' must be a string naming the pipeline class, got {_show(cls)}"
        )
    if cls in REFUSED:
        raise InputError(f"{index_path}: {REFUSED[cls]}; supported: {', '.join(sorted(SUPPORTED))}")
    if cls not in SUPPORTED:
        raise InputError(
            f"{index_path}: pipeline class {_show(cls)} is not supported; supported: "
            f"{', '.join(sorted(SUPPORTED))}"
        )
    return cls


def _check_components(index: dict, index_path: str, folder: str) -> None:
    """Every component entry is [library, class] ([null, null]: a component left out); its folder exists."""
    for comp, entry in index.items():
        if comp.startswith("_") or (
            not isinstance(entry, list) and (comp not in COMPONENTS or entry is None)
        ):
            continue  # "_class_name", "_diffusers_version", ...; pipeline settings such as "boundary_ratio"
        ok = isinstance(entry, list) and len(entry) == 2
        ok = (
            ok
            and all(v is None or isinstance(v, str) for v in entry)
            and (entry[0] is None) == (entry[1] is None)
        )
        if not ok:
            raise InputError(
                f"{index_path}: entry '{comp}' must be [library, class] (or [null, null] for a component "
                f"left out), got {_show(entry)}"
            )
        if entry[0] is not None and not os.path.isdir(os.path.join(folder, comp)):
            raise InputError(
                f"{index_path} lists component '{comp}' but the folder {comp}/ is missing in {folder}"
            )


def _heads_width(tr: dict, tr_path: str) -> int:
    return _int(tr, "num_attention_heads", tr_path) * _int(tr, "attention_head_dim", tr_path)


SANA_WM_ROPE_LEN = 1024  # SanaWMTransformer3DModel's RoPE table (SanaWMRotaryPosEmbed, max_seq_len fixed)


def _ltx2_downsamplings(vae: dict, vae_path: str) -> int:
    """How many blocks of an AutoencoderKLLTX2Video encoder downsample, read as the class reads its config:
    `spatio_temporal_scaling` is a list of booleans, or one boolean for every block but the last
    (len(layers_per_block) - 1 blocks); absent = the class default (True, True, True, True)."""
    value = vae.get("spatio_temporal_scaling")
    if value is None:
        return 4
    if isinstance(value, bool):
        return len(_int_list(vae, "layers_per_block", vae_path, [4, 6, 6, 2, 2])) - 1 if value else 0
    return sum(_bool_list(vae, "spatio_temporal_scaling", vae_path, []))


def _sana_wm_spec(path: str, cls: str, vae: dict, vae_path: str, where: str) -> PipelineSpec:
    """The PipelineSpec of a SanaWMPipeline folder (LTX-2 VAE + SANA-WM DiT), from their config.json files.

    Frames: temporal_compression_ratio k + 1 (8k+1 for the public LTX-2 VAE), at least one latent frame past
    the first (the first latent frame is the encoded image, held clean). The VAE's
    `temporal_compression_ratio` / `spatial_compression_ratio` keys win, as in AutoencoderKLLTX2Video;
    without them its formula (patch_size_t or patch_size, x 2 per downsampling block). The pipeline itself
    would snap another count to the nearest 8k+1 and cut the poses to it silently.
    Size: multiples of spatial_compression_ratio x the DiT's patch size (32 x 1 for the public model). Height
    and width are free otherwise: the DiT's positions are RoPE (SANA_WM_ROPE_LEN per axis) and its camera
    branch rescales the intrinsics to the latent grid; 704 x 1280 is the public model's training resolution
    and the pipeline's default (cam_utils.TARGET_HEIGHT / TARGET_WIDTH), so other sizes work but are
    off-distribution.
    """
    tr_path = os.path.join(path, "transformer", "config.json")
    tr = _read_json(tr_path, where)
    downs = _ltx2_downsamplings(vae, vae_path)
    fold_t = _int(vae, "patch_size_t", vae_path, 1) * 2**downs
    fold_s = _int(vae, "patch_size", vae_path, 4) * 2**downs
    temporal = _int(vae, "temporal_compression_ratio", vae_path, fold_t)
    spatial = _int(vae, "spatial_compression_ratio", vae_path, fold_s)
    patch = _int_list(tr, "patch_size", tr_path, [1, 1, 1], length=3)
    if patch[0] != 1:
        raise InputError(f"{tr_path}: 'patch_size' must start with 1 (SANA-WM patches frames one by one)")
    latent, got = _int(vae, "latent_channels", vae_path, 128), _int(tr, "in_channels", tr_path, 128)
    if got != latent:
        raise InputError(f"{tr_path}: in_channels={got}, but the VAE ({vae_path}) has {latent} channels")
    if _bool(tr, "use_chunk_plucker_post_attn", tr_path, True):
        got = _int(tr, "chunk_plucker_channels", tr_path, 48)
        if got != 6 * temporal:
            raise InputError(
                f"{tr_path}: chunk_plucker_channels={got}, but the VAE ({vae_path}) folds {temporal} frames "
                f"into a latent frame: its camera branch takes 6 x {temporal} = {6 * temporal} channels"
            )
    return PipelineSpec(
        path=path,
        class_name=cls,
        kind="camera",
        family="sana_wm",
        temporal_factor=temporal,
        latent_frame_multiple=1,
        spatial_multiple=spatial * max(patch[1], patch[2]),
        max_tokens_per_axis=SANA_WM_ROPE_LEN,
        fixed_size=None,
        inner_dim=_int(tr, "hidden_size", tr_path, 2240),
        takes_text=True,
        min_frames=temporal + 1,
    )


def inspect(path: str) -> PipelineSpec:
    """The PipelineSpec of a local diffusers pipeline folder; reads JSON only (no torch, no weights).

    InputError (one line naming the file and the key) for a missing folder or file and for malformed JSON."""
    where = f"generator.model {path}"
    if not path:
        raise InputError("generator.model is empty: pass a local diffusers pipeline folder")
    if not os.path.isdir(path):
        raise MissingInput(f"{where}: no such folder")
    index_path = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_path):
        raise InputError(
            f"{where} is not a diffusers pipeline folder (no model_index.json); save one with "
            "pipeline.save_pretrained(folder)"
        )
    index = _read_json(index_path, where)
    cls = _class_name(index, index_path)
    kind, family = SUPPORTED[cls]
    _check_components(index, index_path, path)
    vae_path = os.path.join(path, "vae", "config.json")
    vae = _read_json(vae_path, where)
    if family == "wan":
        tr_path = os.path.join(path, "transformer", "config.json")
        tr = _read_json(tr_path, where)
        down = _bool_list(vae, "temperal_downsample", vae_path, [False, True, True])
        temporal = _int(vae, "scale_factor_temporal", vae_path, 2 ** sum(down))
        spatial = _int(vae, "scale_factor_spatial", vae_path, 2 ** len(down))
        patch = _int_list(tr, "patch_size", tr_path, [1, 2, 2], length=3)
        return PipelineSpec(
            path=path,
            class_name=cls,
            kind=kind,
            family=family,
            temporal_factor=temporal,
            latent_frame_multiple=patch[0],
            spatial_multiple=spatial * max(patch[1], patch[2]),
            max_tokens_per_axis=_int(tr, "rope_max_seq_len", tr_path, 1024),
            fixed_size=None,
            inner_dim=_heads_width(tr, tr_path),
            takes_text=True,
        )
    if family == "cogvideox":
        tr_path = os.path.join(path, "transformer", "config.json")
        tr = _read_json(tr_path, where)
        spatial = 2 ** (len(_int_list(vae, "block_out_channels", vae_path, [128, 256, 256, 512])) - 1)
        p = _int(tr, "patch_size", tr_path, 2)
        # A plain CogVideoX transformer takes the VAE's latents (text) or latents + image latents (image);
        # CogVideoX-Fun folders name the same classes but take control or mask latents too.
        latent = _int(vae, "latent_channels", vae_path, 16)
        want = latent if kind == "text" else 2 * latent
        got = _int(tr, "in_channels", tr_path, 16)
        if got != want:
            raise InputError(
                f"{tr_path}: in_channels={got}, but a {cls} transformer takes {want} (vae latent_channels="
                f"{latent}{'' if kind == 'text' else ' x 2'}): {_FUN}; supported: "
                f"{', '.join(sorted(SUPPORTED))}"
            )
        fixed, frames = None, None
        if _bool(tr, "use_learned_positional_embeddings", tr_path, False) and kind == "image":
            fixed = (
                _int(tr, "sample_height", tr_path) * spatial,
                _int(tr, "sample_width", tr_path) * spatial,
            )
            frames = _int(tr, "sample_frames", tr_path, 49)
        return PipelineSpec(
            path=path,
            class_name=cls,
            kind=kind,
            family=family,
            temporal_factor=_int(vae, "temporal_compression_ratio", vae_path, 4),
            latent_frame_multiple=_int(tr, "patch_size_t", tr_path, 1),
            spatial_multiple=spatial * p,
            max_tokens_per_axis=None,
            fixed_size=fixed,
            inner_dim=_heads_width(tr, tr_path),
            takes_text=True,
            fixed_frames=frames,
        )
    if family == "sana_wm":
        return _sana_wm_spec(path, cls, vae, vae_path, where)
    # Stable Video Diffusion: a spatio-temporal UNet; any frame count >= 2, sizes multiple of the VAE factor.
    _read_json(os.path.join(path, "unet", "config.json"), where)
    return PipelineSpec(
        path=path,
        class_name=cls,
        kind=kind,
        family=family,
        temporal_factor=1,
        latent_frame_multiple=1,
        spatial_multiple=2 ** (len(_int_list(vae, "block_out_channels", vae_path, [128, 256, 512, 512])) - 1),
        max_tokens_per_axis=None,
        fixed_size=None,
        inner_dim=None,
        takes_text=False,
        min_frames=2,
    )


_DTYPES = ("float32", "bfloat16", "float16")
DTYPES = ("auto",) + _DTYPES  # generator.dtype: auto = bfloat16 on a CUDA GPU, float32 on the CPU
DEVICES = "auto, cpu, cuda or cuda:K (K = a CUDA GPU index, e.g. cuda:1; auto = cuda when torch sees a GPU)"
_DEVICE = re.compile(r"auto|cpu|cuda(?::(\d{1,4}))?")
# generator.offload: how the pipeline's weights sit on a CUDA GPU while it generates.
#   none:       every component on the GPU (fastest; the most memory);
#   model:      one component at a time on the GPU, moved there when it runs (enable_model_cpu_offload);
#   group:      groups of transformer blocks streamed to the GPU (enable_group_offload, block level);
#   sequential: one layer at a time (enable_sequential_cpu_offload; the least memory, the slowest).
OFFLOADS = ("none", "model", "group", "sequential")
# Components at generator.vae_dtype (float32 by default, as Wan's own pipelines keep them): the VAE, whose
# decoder loses detail in half precision, and the image encoder (CLIP). Everything else, the transformer(s)
# and the text encoder, is at generator.dtype.
VAE_LIKE = ("vae", "image_encoder")


def parse_device(device: str) -> tuple[str, int | None]:
    """generator.device -> ("auto", None) | ("cpu", None) | ("cuda", None) | ("cuda", K). Pure (no torch).

    InputError (one line naming the key) for anything else: "gpu", "cuda:", "cuda:-1", "mps", "cuda:0,1"."""
    m = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if m is None:
        raise InputError(f"--config.generator.device={device!r}: must be {DEVICES}")
    if device in ("auto", "cpu"):
        return device, None
    return "cuda", None if m.group(1) is None else int(m.group(1))


def resolve_auto(device: str, dtype: str, cuda_available: bool) -> tuple[str, str]:
    """(device, dtype) with "auto" settled: cuda and bfloat16 when torch sees a CUDA GPU, else cpu and
    float32 (half precision on a CPU is slow and poorly supported). Pure: pass torch.cuda.is_available()."""
    parse_device(device)
    if dtype not in DTYPES:
        raise InputError(f"--config.generator.dtype={dtype!r}: must be one of {', '.join(DTYPES)}")
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, dtype


def check_placement(device: str, offload: str, vae_dtype: str) -> None:
    """Refuse an offload mode without a CUDA device, and unknown modes or dtypes (one line, with the fix)."""
    if offload not in OFFLOADS:
        raise InputError(f"--config.generator.offload={offload!r}: must be one of {', '.join(OFFLOADS)}")
    if vae_dtype not in _DTYPES:
        raise InputError(f"--config.generator.vae_dtype={vae_dtype!r}: must be one of {', '.join(_DTYPES)}")
    if offload != "none" and parse_device(device)[0] != "cuda":
        raise InputError(
            f"--config.generator.offload={offload} streams weights between the CPU and a CUDA GPU, but the "
            f"generator runs on {device}: use --config.generator.offload=none or a CUDA generator.device"
        )


def check_cuda(device: str, available: bool, count: int) -> None:
    """Refuse a CUDA generator.device torch cannot use (pure: pass torch.cuda.is_available() and
    torch.cuda.device_count()); one-line InputError naming the key and the fix. "cpu" and "auto" (settled by
    `resolve_auto` to what torch sees) always pass."""
    kind, index = parse_device(device)
    if kind in ("cpu", "auto"):
        return
    if not available:
        raise InputError(
            f"--config.generator.device={device}: torch sees no CUDA GPU (torch.cuda.is_available() is "
            "False: a CPU-only torch wheel, no driver, or CUDA_VISIBLE_DEVICES empty); use "
            "--config.generator.device=cpu or install a CUDA build of torch"
        )
    if index is not None and index >= count:
        raise InputError(
            f"--config.generator.device={device}: torch sees {count} CUDA GPU(s) "
            f"(cuda:0 to cuda:{count - 1}); pick one of them"
        )


def cuda_status() -> tuple[bool, int]:
    """(torch.cuda.is_available(), torch.cuda.device_count()): what `check_cuda` needs. Imports torch."""
    import torch

    available = bool(torch.cuda.is_available())
    return available, int(torch.cuda.device_count()) if available else 0


def free_memory(device: str) -> None:
    """Collect unreachable torch objects (a dropped pipeline's modules hold reference cycles) and, on a CUDA
    device, hand torch's cached blocks back to the driver so that JAX can use them."""
    gc.collect()
    if parse_device(device)[0] == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load(
    spec: PipelineSpec,
    dtype: str = "float32",
    device: str = "cpu",
    *,
    vae_dtype: str = "float32",
    offload: str = "none",
    vae_tiling: bool = False,
    variant: str = "",
    components: dict | None = None,
) -> Any:
    """The pipeline, from its folder only (local_files_only=True), progress bar off. The caller drops it after
    generating (`free_memory`).

    dtype: of the transformer(s) and text encoder; vae_dtype: of VAE_LIKE components (see there).
    device: a torch device string, cpu | cuda | cuda:K ("auto" settled by `resolve_auto` first).
    offload: one of OFFLOADS (not "none" only on CUDA, `check_placement`).
    vae_tiling: decode the video in tiles (less memory for large frames; the VAE must support it).
    variant: the weight files' variant ("fp16" loads *.fp16.safetensors), "" for the plain ones.
    components: loaded modules that replace the folder's (e.g. {"transformer": ..., "transformer_2": None},
    the Fun Control-Camera transformers of third_party/camera_adapter.py); the folder's are then not loaded.
    """
    import diffusers
    import torch

    if dtype not in _DTYPES:
        raise InputError(f"generator.dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    check_placement(device, offload, vae_dtype)
    cls = getattr(diffusers, spec.class_name)
    dtypes = {"default": getattr(torch, dtype), **{k: getattr(torch, vae_dtype) for k in VAE_LIKE}}
    try:
        pipe = cls.from_pretrained(
            spec.path, local_files_only=True, dtype=dtypes, variant=variant or None, **(components or {})
        )
    except Exception as e:  # diffusers raises many types here (OSError, ValueError, EnvironmentError, ...)
        msg = str(e).splitlines()[0] if str(e) else ""
        hint = f" (is there a {variant!r} variant of every weight file?)" if variant else ""
        raise InputError(
            f"generator.model {spec.path}: could not load the {spec.class_name} pipeline{hint} "
            f"({type(e).__name__}: {msg})"
        ) from None
    if vae_tiling:
        vae = getattr(pipe, "vae", None)
        if not hasattr(vae, "enable_tiling"):
            raise InputError(
                f"generator.vae_tiling: the {type(vae).__name__} of {spec.class_name} has no tiled decoding; "
                "use --config.generator.vae_tiling=False"
            )
        vae.enable_tiling()
    place(pipe, device, offload)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place(pipe: Any, device: str, offload: str) -> None:
    """Put a loaded pipeline on `device` as `offload` says (OFFLOADS)."""
    import torch

    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
        )
    else:
        raise InputError(f"--config.generator.offload={offload!r}: must be one of {', '.join(OFFLOADS)}")


def _pil(rgb: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _video_tensor(video: np.ndarray):
    """(F, H, W, 3) float in [0, 1] -> a float32 torch tensor (1, F, 3, H, W) (one video, frames first)."""
    import torch

    v = np.clip(np.asarray(video, np.float32), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2)))[None]


def run(
    pipe: Any,
    spec: PipelineSpec,
    *,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    text: str = "",
    negative_text: str = "",
    image: np.ndarray | None = None,
    control_video: np.ndarray | None = None,
    control_mask: np.ndarray | None = None,
    c2w: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
    num_inference_steps: int = 30,
    guidance_scale: float = 5.0,
    max_sequence_length: int = 512,
) -> Any:
    """Generate one video; returns a torch tensor (F, 3, H, W) float in [0, 1].

    image: (H, W, 3) float in [0, 1] (image-to-video, and a reference for control pipelines).
    control_video: (F, H, W, 3) float in [0, 1], frames rendered along the trajectory (control pipelines;
    generate/warp.py `vace_control`: gray 0.5 where to generate, frame 0 the photo). WanVACE gets it, and the
    mask, as float32 tensors (1, F, 3, H, W), unrounded.
    control_mask: (F, H, W) float, 1 where the model must generate (disoccluded), 0 where it must keep the
    control frame (WanVACE's convention: white = generate).
    c2w: (F, 4, 4) camera-to-world poses, OpenCV axes; intrinsics: (F, 4) [fx, fy, cx, cy] in the pixels of
    `image` (camera pipelines, SanaWMPipeline; generate/diffusers_gen.py converts a Trajectory).
    SanaWMPipeline keeps its own prompt length (300 tokens, as trained): max_sequence_length is Wan's.
    """
    import torch

    spec.check(num_frames, height, width)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    kw: dict[str, Any] = dict(
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=num_inference_steps,
        generator=gen,
        output_type="pt",
    )
    if spec.takes_text:
        kw.update(prompt=text, negative_prompt=negative_text or None, guidance_scale=guidance_scale)
    if spec.family == "wan":
        kw["max_sequence_length"] = max_sequence_length
    if spec.kind in ("image", "camera"):
        if image is None:
            raise InputError(f"{spec.class_name} is image-to-video: it needs an image prompt")
        kw["image"] = _pil(image)
    if spec.kind == "camera":
        if c2w is None or intrinsics is None:
            raise InputError(f"{spec.class_name} is camera-controlled: it needs c2w poses and intrinsics")
        c2w, intrinsics = np.asarray(c2w, np.float32), np.asarray(intrinsics, np.float32)
        if c2w.shape != (num_frames, 4, 4) or intrinsics.shape != (num_frames, 4):
            raise ValueError(
                f"c2w {c2w.shape} / intrinsics {intrinsics.shape}: expected "
                f"{(num_frames, 4, 4)} / {(num_frames, 4)}"
            )
        kw.update(c2w=c2w, intrinsics=intrinsics, negative_prompt=negative_text)  # a str there, never None
        if spec.family == "svd":
            kw.update(max_guidance_scale=guidance_scale, decode_chunk_size=num_frames)
    if spec.kind == "control":
        if control_video is None:
            raise InputError(f"{spec.class_name} is video-conditioned: it needs control frames")
        if spec.family == "wan":
            # Float tensors (1, F, 3, H, W) in [0, 1], not 8-bit PIL frames: the 0.5 gray of the holes
            # (-> exactly 0 after VACE's [-1, 1] normalisation, as it was trained) and the photo of frame 0
            # reach the VAE unrounded. A 5-D tensor is also the one video form whose size VACE reads right.
            kw["video"] = _video_tensor(control_video)
            if control_mask is not None:
                kw["mask"] = _video_tensor(np.repeat(np.asarray(control_mask)[..., None], 3, axis=-1))
        else:
            kw["control_video"] = [_pil(f) for f in control_video]
    with torch.no_grad():
        out = pipe(**kw)
    video = out.frames
    if isinstance(video, (list, tuple)):
        video = video[0]
    if video.ndim == 5:
        video = video[0]
    if tuple(video.shape) != (num_frames, 3, height, width):
        raise RuntimeError(
            f"{spec.class_name} returned a video of shape {tuple(video.shape)}, expected "
            f"{(num_frames, 3, height, width)}"
        )
    return video
