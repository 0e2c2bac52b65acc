"""Text -> first frame with a local diffusers text-to-image pipeline (`generator.image_model`), no download.

Models that need a first frame (image-to-video, video-conditioned warp, camera-conditioned world models) get
one from the text prompt when no `prompt.image` is given: the folder's own pipeline class (model_index.json
`_class_name`, e.g. PixArtSigmaPipeline, SanaPipeline, StableDiffusionXLPipeline, FluxPipeline) is loaded
with `from_pretrained(folder, local_files_only=True)`, run once, and dropped. `inspect` reads JSON and the
class's call signature only (no weights), so a wrong folder fails before anything loads.

The image is generated at `size_for(...)`: the trajectory's aspect ratio, its long side `long_side` (default
the trajectory's), both sides rounded up to a multiple of 64 (every diffusers T2I VAE x patch size divides
64); the caller fits it to the trajectory's size (images.fit_image, the same crop as a prompt image).
"""

from __future__ import annotations

import dataclasses
import inspect as pyinspect
import os
from typing import Any

import numpy as np

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput

WHERE = "generator.image_model"
MULTIPLE = 64
MAX_CONFIG_BYTES = 4 * 2**20
# Call parameters that mark a pipeline as something else than text -> image (video, editing, inpainting).
_NOT_T2I = ("num_frames", "image", "video", "mask_image", "control_image")


@dataclasses.dataclass(frozen=True)
class TextToImageSpec:
    """A text-to-image pipeline folder: its class and the names of its __call__ parameters."""

    path: str
    class_name: str
    parameters: tuple[str, ...]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def inspect(path: str) -> TextToImageSpec:
    """The TextToImageSpec of a local diffusers folder; JSON and the class's signature only (no weights).

    MissingInput / InputError, one line naming the folder (or model_index.json) and the fix, for a missing
    folder or index, an unknown class, or a pipeline that is not text -> image (it takes frames or images)."""
    if not path:
        raise InputError(f"{WHERE} is empty: pass a local diffusers text-to-image pipeline folder")
    if not os.path.isdir(path):
        raise MissingInput(f"{WHERE} {path}: no such folder")
    index_path = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_path):
        raise InputError(
            f"{WHERE} {path} is not a diffusers pipeline folder (no model_index.json); save one with "
            "pipeline.save_pretrained(folder)"
        )
    index = files.read_json(index_path, max_bytes=MAX_CONFIG_BYTES, what="config file")
    cls_name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(cls_name, str):
        raise InputError(f"{WHERE} {index_path}: missing '_class_name' (the pipeline class, a string)")
    import diffusers

    cls = getattr(diffusers, cls_name, None) if cls_name.isidentifier() else None
    if not isinstance(cls, type) or not callable(cls):
        raise InputError(f"{WHERE} {index_path}: {cls_name!r} is not a diffusers pipeline class")
    params = tuple(pyinspect.signature(cls.__call__).parameters)
    other = [p for p in _NOT_T2I if p in params]
    if "prompt" not in params or "height" not in params or other:
        why = f"it takes {', '.join(other)}" if other else "it takes no prompt / height"
        raise InputError(
            f"{WHERE} {path}: {cls_name} is not a text-to-image pipeline ({why}); give a text-to-image "
            "folder (e.g. PixArtSigmaPipeline, SanaPipeline, StableDiffusionXLPipeline, FluxPipeline)"
        )
    return TextToImageSpec(path=path, class_name=cls_name, parameters=params)


def size_for(width: int, height: int, long_side: int | None = None) -> tuple[int, int]:
    """(width, height) to generate at: the (width, height) aspect ratio with the long side `long_side`
    (None: max(width, height)), each side rounded up to a multiple of MULTIPLE."""
    scale = 1.0 if not long_side else long_side / max(width, height)

    def up(x: float) -> int:
        return max(MULTIPLE, -(-round(x) // MULTIPLE) * MULTIPLE)

    return up(width * scale), up(height * scale)


def load(
    spec: TextToImageSpec,
    dtype: str = "float32",
    device: str = "cpu",
    *,
    vae_dtype: str = "float32",
    variant: str = "",
) -> Any:
    """The pipeline from its folder (local_files_only=True) on `device`, progress bar off; transformer and
    text encoder at `dtype`, the VAE at `vae_dtype`. InputError (one line naming the folder) on failure."""
    import diffusers
    import torch

    cls = getattr(diffusers, spec.class_name)
    dtypes = {"default": getattr(torch, dtype), "vae": getattr(torch, vae_dtype)}
    try:
        pipe = cls.from_pretrained(spec.path, local_files_only=True, dtype=dtypes, variant=variant or None)
    except Exception as e:  # OSError, ValueError, EnvironmentError, safetensors errors, ...
        raise InputError(
            f"{WHERE} {spec.path}: could not load the {spec.class_name} pipeline ({_one_line(e)})"
        ) from None
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(
    pipe: Any,
    spec: TextToImageSpec,
    *,
    text: str,
    width: int,
    height: int,
    seed: int,
    negative_text: str = "",
    num_inference_steps: int = 30,
    guidance_scale: float = 4.5,
    max_sequence_length: int = 512,
) -> np.ndarray:
    """One image (height, width, 3) float32 in [0, 1] for `text`.

    Only the parameters the pipeline's __call__ takes are passed: resolution binning (PixArt, Sana) is off,
    so the image has exactly the size asked; caption cleaning (PixArt, needs bs4) is off."""
    import torch

    kw: dict[str, Any] = dict(
        prompt=text,
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        output_type="np",
    )
    extra = dict(
        use_resolution_binning=False,
        clean_caption=False,
        max_sequence_length=max_sequence_length,
    )
    if negative_text:  # else the pipeline's own default ("" or None: they differ)
        extra["negative_prompt"] = negative_text
    kw.update({k: v for k, v in extra.items() if k in spec.parameters})
    with torch.no_grad():
        out = pipe(**kw)
    img = np.asarray(out.images[0], np.float32)
    if img.shape != (height, width, 3):
        raise RuntimeError(
            f"{spec.class_name} returned an image of shape {img.shape}, expected {(height, width, 3)}"
        )
    return np.clip(img, 0.0, 1.0)


def generate(
    spec: TextToImageSpec, *, dtype: str, device: str, vae_dtype: str = "float32", variant: str = "", **run_kw
) -> np.ndarray:
    """`load`, `run` (run_kw), drop the pipeline (gc, torch's CUDA cache): (height, width, 3) in [0, 1]."""
    from third_party import diffusers_video

    pipe = load(spec, dtype, device, vae_dtype=vae_dtype, variant=variant)
    try:
        return run(pipe, spec, **run_kw)
    finally:
        del pipe
        diffusers_video.free_memory(device)
