"""Tiny random Wan Fun Control-Camera checkpoints in the released layout, written offline (tests and demos).

`write(folder)` produces what VideoX-Fun ships, at toy sizes: config.json with the original key names and
diffusion_pytorch_model.safetensors (or shards + index) with the original tensor names and shapes
(fun_camera.expected_shapes), random values. The defaults pair with tiny_pipelines' Wan image-to-video folder
(`generator.model`): text_dim 32 (its T5 width), 16 latent channels, CLIP width 4, patch (1, 2, 2).

    python -m third_party.tiny_fun_camera /tmp/tiny_fun_camera          # Wan2.1 style ("start", with CLIP)
    python -m third_party.tiny_fun_camera /tmp/tiny_fun_a14b --wan22 --experts
"""

from __future__ import annotations

import argparse
import math
import os

import torch

from any4d_jax import files
from third_party import fun_camera
from third_party.tiny_pipelines import TEXT_DIM


def config(*, wan22: bool = False, z: int = 16, dim: int = 24, num_heads: int = 2, num_layers: int = 1,
           ffn_dim: int = 32, text_dim: int = TEXT_DIM, downscale: int = 8) -> dict:  # fmt: skip
    """A config.json in the released key names: Wan2.1 V1.1 (in_dim 2z, model_type i2v) or Wan2.2 (2z + 4)."""
    return {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "model_type": "i2v" if not wan22 else ("ti2v" if downscale >= 16 else "i2v"),
        "text_len": 512,
        "in_dim": 2 * z + (4 if wan22 else 0),
        "dim": dim,
        "ffn_dim": ffn_dim,
        "freq_dim": 256,
        "text_dim": text_dim,
        "out_dim": z,
        "num_heads": num_heads,
        "num_layers": num_layers,
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
        "add_control_adapter": True,
        "in_dim_control_adapter": 24,
        "downscale_factor_control_adapter": downscale,
    }


def random_tensors(cfg: dict, image_dim: int | None, seed: int = 0, zero_adapter: bool = False) -> dict:
    """{original name: float32 tensor} for cfg (config()), random: weights ~ N(0, 1 / fan_in), biases small,
    norm scales near 1; the camera adapter all zeros when zero_adapter (it then changes nothing)."""
    shapes = fun_camera.expected_shapes(
        dim=cfg["dim"],
        ffn_dim=cfg["ffn_dim"],
        in_dim=cfg["in_dim"],
        out_dim=cfg["out_dim"],
        num_layers=cfg["num_layers"],
        text_dim=cfg["text_dim"],
        freq_dim=cfg["freq_dim"],
        patch=(1, 2, 2),
        qk_norm=cfg["qk_norm"],
        cross_attn_norm=cfg["cross_attn_norm"],
        image_dim=image_dim,
        adapter_in=cfg["in_dim_control_adapter"],
        downscale=cfg["downscale_factor_control_adapter"],
    )
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        x = torch.randn(shape, generator=g)
        if name.endswith("modulation"):
            x = x / math.sqrt(cfg["dim"])
        elif len(shape) == 1 and (".norm" in name or "proj.0" in name or "proj.4" in name):
            x = 1.0 + 0.1 * x  # RMS / layer norm scales and shifts
        elif len(shape) == 1:
            x = 0.02 * x
        else:
            x = x / math.sqrt(math.prod(shape[1:]))
        if name.startswith("control_adapter.") and zero_adapter:
            x = torch.zeros(shape)
        out[name] = x.contiguous()
    return out


def save(folder: str, cfg: dict, tensors: dict, shards: int = 1) -> str:
    """config.json + diffusion_pytorch_model.safetensors (shards > 1: numbered shards and the index json)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    files.write_json(os.path.join(folder, fun_camera.CONFIG), cfg, indent=1)
    if shards <= 1:
        save_file(tensors, os.path.join(folder, fun_camera.WEIGHTS))
        return folder
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        shard = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, os.path.join(folder, shard))
        weight_map |= {n: shard for n in part}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": size}, "weight_map": weight_map}
    files.write_json(os.path.join(folder, fun_camera.INDEX), index, indent=1)
    return folder


def write(folder: str, *, wan22: bool = False, experts: bool = False, image_dim: int | None = 4,
          shards: int = 1, seed: int = 0, zero_adapter: bool = False, **sizes) -> str:  # fmt: skip
    """A tiny released-layout Fun Control-Camera folder; returns folder.

    wan22: the Wan2.2 input (in_dim 2z + 4, no CLIP input: image_dim ignored); experts: two of them in
    low_noise_model/ and high_noise_model/ (Wan2.2 A14B layout); sizes: config() keyword overrides."""
    cfg = config(wan22=wan22, **sizes)
    image_dim = None if wan22 else image_dim
    if not experts:
        return save(folder, cfg, random_tensors(cfg, image_dim, seed, zero_adapter), shards)
    for i, name in enumerate(fun_camera.EXPERTS):
        save(os.path.join(folder, name), cfg, random_tensors(cfg, image_dim, seed + i, zero_adapter), shards)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument(
        "--wan22", action="store_true", help="Wan2.2 input layout (mask + image latents, no CLIP)"
    )
    ap.add_argument("--experts", action="store_true", help="two experts (Wan2.2 A14B layout)")
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()
    print(write(args.folder, wan22=args.wan22, experts=args.experts, shards=args.shards))


if __name__ == "__main__":
    main()
