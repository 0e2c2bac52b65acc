"""A Pluecker-ray camera adapter for Wan-style video transformers (camera conditioning, way (a)).

The adapter turns per-pixel Pluecker rays (F, H, W, 6) of the trajectory (poses relative to the first camera)
into one embedding per latent token and adds it to the transformer's patch embeddings, as CameraCtrl / AC3D do
for their DiTs:
  1. time: the first frame's rays are repeated (fold - 1) times so that F + fold - 1 frames split into the
     latent frames, and each latent frame's `fold` frames are stacked as channels (6 fold), the way
     Wan-Fun-Control-Camera folds 4 frames per latent frame;
  2. space: rays are averaged over each token's pool x pool pixels (VAE factor x patch size);
  3. a linear map to the transformer width (zero-initialised, so a new adapter changes nothing until trained);
  4. a forward hook on `transformer.patch_embedding` adds the result (conditional and unconditional passes).
Weights live in a folder (config.json + adapter.safetensors), by default `<pipeline>/camera_adapter/`. No
public checkpoint ships in this format: train one, or convert one, before expecting the model to follow the
trajectory. `any4d_jax` refuses camera_conditioning=pluecker without weights, and `check_weights` /
`from_pretrained` refuse an untrained adapter (projection weights all zero: it would silently change nothing)
and malformed folders, each with an `InputError` whose one line names the file.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput

CONFIG = "config.json"
WEIGHTS = "adapter.safetensors"
CONFIG_KEYS = ("inner_dim", "temporal_fold", "spatial_pool")
MAX_CONFIG_BYTES = 2**16  # three integers
MAX_WEIGHTS_BYTES = 2**30  # 6 fold x inner_dim floats: a few hundred kilobytes for the largest Wan models


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
        """config.json + adapter.safetensors in folder, each written atomically."""
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        cfg = {
            "inner_dim": self.inner_dim,
            "temporal_fold": self.temporal_fold,
            "spatial_pool": self.spatial_pool,
        }
        with files.atomic_path(os.path.join(folder, WEIGHTS)) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, tmp)
        files.write_json(os.path.join(folder, CONFIG), cfg, indent=1)

    @classmethod
    def from_pretrained(cls, folder: str) -> PlueckerAdapter:
        """The adapter in folder; InputError (one line naming the file) if the folder is incomplete or
        malformed, or if the adapter is untrained (all-zero projection weights)."""
        cfg = read_config(folder)
        if cfg is None:
            raise MissingInput(f"{folder}: no camera adapter here (needs {CONFIG} and {WEIGHTS})")
        state = check_weights(folder, cfg)  # before allocating: the shapes are those config.json declares
        adapter = cls(**cfg)
        adapter.load_state_dict(state)
        return adapter.eval()


def read_config(folder: str) -> dict | None:
    """The adapter folder's config.json (without torch weights), or None if there is no adapter there.

    InputError (one line naming the file) when only one of config.json / adapter.safetensors is there, or
    when config.json is not an object with exactly the integer keys inner_dim, temporal_fold, spatial_pool."""
    cfg_path, weights_path = os.path.join(folder, CONFIG), os.path.join(folder, WEIGHTS)
    has_cfg, has_weights = os.path.isfile(cfg_path), os.path.isfile(weights_path)
    if not (has_cfg or has_weights):
        return None
    if not has_weights:
        raise InputError(f"{cfg_path}: camera adapter folder has no {WEIGHTS} next to it (copy the weights)")
    if not has_cfg:
        raise InputError(
            f"{weights_path}: camera adapter folder has no {CONFIG} next to it "
            f"(save the adapter with PlueckerAdapter.save_pretrained)"
        )
    cfg = files.read_json(cfg_path, max_bytes=MAX_CONFIG_BYTES, what="camera adapter config")
    if not isinstance(cfg, dict):
        raise InputError(f"{cfg_path}: expected a JSON object with keys {list(CONFIG_KEYS)}")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise InputError(f"{cfg_path}: unknown key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
    for key in CONFIG_KEYS:
        if key not in cfg:
            raise InputError(f"{cfg_path}: missing key '{key}' (a positive integer)")
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**20:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise InputError(f"{cfg_path}: '{key}' must be an integer in [1, {2**20}], got {shown}")
    return cfg


def check_weights(folder: str, cfg: dict) -> dict[str, torch.Tensor]:
    """The state dict in folder/adapter.safetensors, checked against cfg (read_config): exactly proj.weight
    (inner_dim, 6 temporal_fold) and proj.bias (inner_dim,), finite floats, and a projection that is not all
    zero. InputError with one line naming the file otherwise; an untrained adapter is refused (it would leave
    the video unconditioned while reconstruction assumes the trajectory)."""
    from safetensors.torch import load_file

    path = os.path.join(folder, WEIGHTS)
    size = os.path.getsize(path)
    if size > MAX_WEIGHTS_BYTES:
        raise InputError(f"{path}: {size} bytes, more than the {MAX_WEIGHTS_BYTES} a camera adapter needs")
    try:
        state = load_file(path)
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise InputError(f"{path}: not a readable safetensors file ({reason})") from None
    expect = {
        "proj.weight": (cfg["inner_dim"], 6 * cfg["temporal_fold"]),
        "proj.bias": (cfg["inner_dim"],),
    }
    if sorted(state) != sorted(expect):
        raise InputError(f"{path}: expected the tensors {sorted(expect)}, found {sorted(state)[:8]}")
    for name, shape in expect.items():
        t = state[name]
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise InputError(
                f"{path}: '{name}' is {t.dtype} {tuple(t.shape)} but {os.path.join(folder, CONFIG)} needs a "
                f"float {shape}"
            )
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"{path}: '{name}' holds NaN or infinite values")
    if not bool(state["proj.weight"].any()):
        raise InputError(
            f"{path}: the camera adapter is untrained (its projection weights are all zero, so it would not "
            "steer the video): train or convert one (third_party/camera_adapter.py), or pass "
            "--config.generator.camera_conditioning=none to generate without following the trajectory"
        )
    return state
