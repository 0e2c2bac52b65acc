"""A Pluecker-ray camera adapter for Wan-style video transformers (camera conditioning, way (a)).

The adapter turns per-pixel Pluecker rays (F, H, W, 6) of the trajectory (poses relative to the first camera)
into one embedding per latent token and adds it to the transformer's patch embeddings, as CameraCtrl / AC3D do
for their DiTs:
  1. time: the first frame's rays are repeated (fold - 1) times so that F + fold - 1 frames split into the
     latent frames, and each latent frame's `fold` frames are stacked as channels (6 fold), the way
     Wan-Fun-Control-Camera folds 4 frames per latent frame;
  2. space: rays are averaged over each token's pool x pool pixels (VAE factor x patch size);
  3. a linear map to the transformer width (zero-initialised: an untrained adapter changes nothing);
  4. a forward hook on `transformer.patch_embedding` adds the result (conditional and unconditional passes).
Weights live in a folder (config.json + adapter.safetensors), by default `<pipeline>/camera_adapter/`. No
public checkpoint ships in this format: train one, or convert one, before expecting the model to follow the
trajectory; `any4d_jax` refuses to run camera_conditioning=pluecker without weights.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

CONFIG = "config.json"
WEIGHTS = "adapter.safetensors"


class PlueckerAdapter(nn.Module):
    """Pluecker rays -> per-token embeddings added to a video transformer's patch embeddings."""

    def __init__(self, inner_dim: int, temporal_fold: int = 4, spatial_pool: int = 16):
        super().__init__()
        self.inner_dim, self.temporal_fold, self.spatial_pool = (
            int(inner_dim),
            int(temporal_fold),
            int(spatial_pool),
        )
        self.proj = nn.Linear(6 * self.temporal_fold, self.inner_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def encode(self, pluecker: torch.Tensor) -> torch.Tensor:
        """(F, H, W, 6) rays -> (1, inner_dim, L, H / pool, W / pool) with L = (F - 1) / fold + 1."""
        f, h, w, c = pluecker.shape
        fold, pool = self.temporal_fold, self.spatial_pool
        if c != 6 or (f - 1) % fold or h % pool or w % pool:
            raise ValueError(
                f"PlueckerAdapter: rays {tuple(pluecker.shape)} need F = {fold}k+1 frames, 6 channels and "
                f"H, W multiples of {pool}"
            )
        x = torch.cat([pluecker[:1].expand(fold - 1, h, w, c), pluecker], 0)  # (L fold, H, W, 6)
        x = (
            x.reshape(-1, fold, h, w, c).permute(0, 2, 3, 1, 4).reshape(-1, h, w, fold * c)
        )  # (L, H, W, 6 fold)
        x = x.reshape(-1, h // pool, pool, w // pool, pool, fold * c).mean(dim=(2, 4))  # (L, H', W', 6 fold)
        x = self.proj(x.to(self.proj.weight.dtype))  # (L, H', W', inner)
        return x.permute(3, 0, 1, 2)[None]

    def attach(self, transformer: nn.Module, pluecker: torch.Tensor):
        """Add the embedding of `pluecker` to every output of transformer.patch_embedding; returns the hook
        handle (call .remove() after generation)."""
        emb_cache: dict = {}

        def hook(module, inputs, output):
            if "emb" not in emb_cache:
                emb_cache["emb"] = self.encode(pluecker.to(self.proj.weight.device)).to(output.dtype)
            emb = emb_cache["emb"]
            if tuple(output.shape[1:]) != tuple(emb.shape[1:]):
                raise RuntimeError(
                    f"PlueckerAdapter: patch embeddings {tuple(output.shape)} do not match the camera tokens "
                    f"{tuple(emb.shape)}"
                )
            return output + emb

        return transformer.patch_embedding.register_forward_hook(hook)

    def save_pretrained(self, folder: str) -> None:
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        cfg = {
            "inner_dim": self.inner_dim,
            "temporal_fold": self.temporal_fold,
            "spatial_pool": self.spatial_pool,
        }
        with open(os.path.join(folder, CONFIG), "w") as f:
            json.dump(cfg, f, indent=1)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, os.path.join(folder, WEIGHTS))

    @classmethod
    def from_pretrained(cls, folder: str) -> PlueckerAdapter:
        from safetensors.torch import load_file

        with open(os.path.join(folder, CONFIG)) as f:
            cfg = json.load(f)
        adapter = cls(**cfg)
        adapter.load_state_dict(load_file(os.path.join(folder, WEIGHTS)))
        return adapter.eval()


def read_config(folder: str) -> dict | None:
    """The adapter folder's config.json (without torch weights), or None if there is no adapter there."""
    if not (os.path.isfile(os.path.join(folder, CONFIG)) and os.path.isfile(os.path.join(folder, WEIGHTS))):
        return None
    with open(os.path.join(folder, CONFIG)) as f:
        return json.load(f)
