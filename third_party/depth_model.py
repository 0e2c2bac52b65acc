"""Monocular depth from a local transformers depth-estimation folder, as z-depth in the trajectory's units.

`generator.depth_model` is a folder saved with `save_pretrained` (config.json, the weights and
preprocessor_config.json), loaded with `AutoModelForDepthEstimation` and `AutoImageProcessor`,
local_files_only=True: nothing is ever downloaded. `inspect` reads config.json only (no torch), so a wrong
folder fails before anything loads; torch and transformers are imported inside `load` / `predict` only.

What the raw head output (`outputs.predicted_depth`, before any post-processing) means, from the config:
  depth_anything, depth_estimation_type "relative" (Depth Anything V1/V2 relative): affine-invariant
      inverse depth (disparity: nearer = larger);
  depth_anything, depth_estimation_type "metric" (Depth Anything V2 metric): depth in metres
      (sigmoid x max_depth);
  depth_pro (DepthPro): canonical inverse depth; the processor's post-processing turns it into metric
      depth as 1 / (raw x width / focal), so the raw output is inverse depth, up to a global scale;
  dpt (DPT / MiDaS v3): relative inverse depth;  zoedepth, glpn: metric depth.
`to_depth` turns either into z-depth (inverse: 1 / raw; the unknown shift of affine-invariant disparity is
ignored) and then fits the one free scale to the scene: the median depth of the central region (the middle
half of each axis, where the subject is framed) becomes `target` (camera.radius / generator.warp.depth), and
the result is clamped to [target / max_ratio, target x max_ratio] (inverse depth near 0 -- sky, far
background -- lands on the far clamp). Metric models are scale-fitted too: the trajectory's units are not
metres.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput

WHERE = "generator.depth_model"
MAX_CONFIG_BYTES = 4 * 2**20
# model_type -> what the raw output is ("inverse" | "depth"); None: read depth_estimation_type.
OUTPUTS: dict[str, str | None] = {
    "depth_anything": None,
    "depth_pro": "inverse",
    "dpt": "inverse",
    "zoedepth": "depth",
    "glpn": "depth",
}
CENTER = 0.5  # the central region: this fraction of each axis, centred


@dataclasses.dataclass(frozen=True)
class DepthModelSpec:
    """A depth model folder, read from its config.json: model_type and what its raw output is."""

    path: str
    model_type: str
    output: str  # "inverse" (disparity-like: nearer = larger) | "depth" (z-depth, nearer = smaller)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def inspect(path: str) -> DepthModelSpec:
    """The DepthModelSpec of a local depth-estimation folder; reads JSON only (no torch, no weights).

    MissingInput / InputError, one line naming the folder (or file) and the fix, for a missing folder, a
    missing or malformed config.json or preprocessor_config.json, and an unsupported model_type."""
    if not path:
        raise InputError(f"{WHERE} is empty: pass a local depth model folder, e.g. Depth Anything V2")
    if not os.path.isdir(path):
        raise MissingInput(f"{WHERE} {path}: no such folder")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise InputError(
            f"{WHERE} {path} is not a transformers model folder (no config.json); save one with "
            "model.save_pretrained(folder) and processor.save_pretrained(folder)"
        )
    cfg = files.read_json(cfg_path, max_bytes=MAX_CONFIG_BYTES, what="config file")
    if not isinstance(cfg, dict):
        raise InputError(f"{WHERE} {cfg_path}: expected a JSON object")
    model_type = cfg.get("model_type")
    if model_type not in OUTPUTS:
        raise InputError(
            f"{WHERE} {cfg_path}: model_type {model_type!r} is not a supported depth model; supported: "
            f"{', '.join(sorted(OUTPUTS))} (Depth Anything V2: depth_anything; DepthPro: depth_pro)"
        )
    output = OUTPUTS[model_type]
    if output is None:
        kind = cfg.get("depth_estimation_type", "relative")
        if kind not in ("relative", "metric"):
            raise InputError(
                f"{WHERE} {cfg_path}: depth_estimation_type must be 'relative' or 'metric', got {kind!r}"
            )
        output = "inverse" if kind == "relative" else "depth"
    if not os.path.isfile(os.path.join(path, "preprocessor_config.json")):
        raise InputError(
            f"{WHERE} {path} has no preprocessor_config.json (the image processor): save it there with "
            "AutoImageProcessor.save_pretrained(folder)"
        )
    return DepthModelSpec(path=path, model_type=model_type, output=output)


def _device(device: str) -> str:
    """ "auto" -> cuda when torch sees a GPU, else cpu; any other torch device string as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(spec: DepthModelSpec, device: str = "cpu") -> tuple[Any, Any]:
    """(model in eval mode on `device`, image processor), local_files_only=True; one-line InputError naming
    the folder on any failure (missing or broken weights, a config transformers cannot build)."""
    import transformers

    try:
        model = transformers.AutoModelForDepthEstimation.from_pretrained(spec.path, local_files_only=True)
        processor = transformers.AutoImageProcessor.from_pretrained(spec.path, local_files_only=True)
    except Exception as e:  # OSError (no weights), ValueError (bad config), safetensors errors, ...
        raise InputError(f"{WHERE} {spec.path}: could not load the depth model ({_one_line(e)})") from None
    return model.eval().to(device), processor


def predict(model: Any, processor: Any, rgb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """The model's raw output (`predicted_depth`, see the module docstring) for rgb (H, W, 3) in [0, 1],
    resized bilinearly to (H, W): float32 (H, W)."""
    import torch

    rgb = np.asarray(rgb, np.float32)
    h, w = rgb.shape[:2]
    pixels = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    inputs = processor(images=pixels, return_tensors="pt")
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    with torch.no_grad():
        raw = model(**inputs).predicted_depth  # (1, h', w') at the processor's size
    raw = raw.reshape(1, 1, *raw.shape[-2:]).float()
    raw = torch.nn.functional.interpolate(raw, size=(h, w), mode="bilinear", align_corners=False)
    return raw[0, 0].cpu().numpy().astype(np.float32)


def central(x: np.ndarray, fraction: float = CENTER) -> np.ndarray:
    """The central `fraction` of each axis of an (H, W) array (at least one pixel)."""
    h, w = x.shape
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return x[y0 : y0 + ch, x0 : x0 + cw]


def to_depth(raw: np.ndarray, output: str, target: float, max_ratio: float, where: str = WHERE) -> np.ndarray:
    """(H, W) float32 z-depth from a raw model output (H, W) (see the module docstring).

    output "inverse": z = 1 / max(raw, 1e-6 x its maximum); "depth": z = raw (raw <= 0: at the far clamp).
    Then z is scaled so that the median of `central(z)` is `target` (the median stays `target` after the
    clamp to [target / max_ratio, target x max_ratio] unless the centre itself is clamped). InputError
    naming `where` when the output has no usable value.
    """
    if output not in ("inverse", "depth"):
        raise ValueError(f"to_depth: output must be 'inverse' or 'depth', got {output!r}")
    if not (target > 0 and max_ratio > 1):
        raise ValueError(f"to_depth: need target > 0 and max_ratio > 1, got {target}, {max_ratio}")
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 2 or not np.all(np.isfinite(raw)):
        raise InputError(f"{where}: the depth model returned a non-finite or non-(H, W) output {raw.shape}")
    top = raw.max()
    if not top > 0:
        raise InputError(f"{where}: the depth model returned no positive value (max {top:g}): wrong weights?")
    if output == "inverse":
        z = 1.0 / np.maximum(raw, 1e-6 * top)
    else:
        z = np.where(raw > 0, raw, np.inf)
    med = np.median(central(z))  # far / invalid pixels are the largest: they only move the median up
    if not np.isfinite(med):  # the centre is mostly invalid (metric output <= 0): fit on the whole image
        med = np.median(z[np.isfinite(z)])
    z = z * (target / med)
    return np.clip(z, target / max_ratio, target * max_ratio).astype(np.float32)


def free(device: str) -> None:
    """Collect the dropped model and hand CUDA's cached blocks back (JAX shares the GPU)."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def estimate(path: str, rgb: np.ndarray, target: float, max_ratio: float, device: str = "auto") -> np.ndarray:
    """(H, W) float32 z-depth of rgb (H, W, 3) in [0, 1] from the depth model in `path`: inspect, load,
    predict, `to_depth`; the model is dropped before returning."""
    spec = inspect(path)
    dev = _device(device)
    model, processor = load(spec, dev)
    try:
        raw = predict(model, processor, rgb, dev)
    finally:
        del model, processor
        free(dev)
    return to_depth(raw, spec.output, target, max_ratio, where=f"{WHERE} {path}")
