"""VideoX-Fun's Wan Fun Control-Camera in diffusers: the camera adapter and input, the weights, a sampler.

The released transformer (third_party/fun_camera.py reads and checks its folder) is a Wan transformer plus a
`control_adapter` (VideoX-Fun's SimpleAdapter, ported here as `CameraAdapter`):
  camera input  (1, 24, L, H, W): Pluecker rays (o x d, d) of the trajectory relative to its first camera, in
                pixels of the generated size; the first frame's rays repeated to 4 frames (F + 3 = 4L frames),
                each 4 consecutive frames stacked channel-major (channel 4c + k = ray channel c of frame k);
  adapter       per latent frame: PixelUnshuffle(downscale) -> Conv2d(kernel = stride = patch) -> one
                residual block (conv3x3, ReLU, conv3x3, + skip) -> (1, dim, L, H / (downscale ph), W / ...);
  where         added to the patch embedding's output, before the tokens are flattened (a forward hook on
                `transformer.patch_embedding`), in the conditional and the unconditional pass alike
                (VideoX-Fun feeds the same camera latents to both halves of its CFG batch).
The transformer's other weights are renamed into diffusers' `WanTransformer3DModel` (fun_camera.to_diffusers),
strictly: every tensor of the files consumed, every parameter filled. The VAE, text encoder, tokenizer, image
encoder and scheduler come from the diffusers folder `generator.model`; `generate` runs VideoX-Fun's sampling
(its Wan2.1 / Wan2.2 Fun control pipelines with a camera and a start image) with those components.
"""

from __future__ import annotations

import torch
from torch import nn

from any4d_jax.errors import InputError
from third_party import fun_camera


class _Residual(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class CameraAdapter(nn.Module):
    """VideoX-Fun's SimpleAdapter: (B, in_dim, L, H, W) camera input -> (B, dim, L, H / s, W / s) with
    s = downscale x patch, the patch embedding's token grid. Parameter names match the released
    `control_adapter.*` tensors (conv, residual_blocks.0.conv1 / conv2)."""

    def __init__(self, in_dim: int, dim: int, patch: tuple[int, int] = (2, 2), downscale: int = 8):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(downscale)
        self.conv = nn.Conv2d(in_dim * downscale * downscale, dim, kernel_size=patch, stride=patch)
        self.residual_blocks = nn.Sequential(_Residual(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = self.residual_blocks(self.conv(self.unshuffle(x)))  # (B L, dim, H / s, W / s)
        return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def fold(rays: torch.Tensor, frames_per_latent: int = fun_camera.TEMPORAL_FOLD) -> torch.Tensor:
    """(F, H, W, 6) Pluecker rays, F = 4k + 1 -> (1, 24, k + 1, H, W) camera input, as VideoX-Fun builds
    control_camera_latents: frame 0 repeated 4 times, then 4 frames per latent frame, channel-major."""
    f, h, w, c = rays.shape
    n = frames_per_latent
    if c != 6 or (f - 1) % n:
        raise ValueError(f"camera rays {tuple(rays.shape)}: need ({n}k+1, H, W, 6)")
    x = rays.permute(3, 0, 1, 2)  # (6, F, H, W)
    x = torch.cat([x[:, :1].expand(c, n - 1, h, w), x], dim=1)  # (6, F + n - 1, H, W)
    x = x.reshape(c, -1, n, h, w).permute(1, 0, 2, 3, 4).reshape(-1, c * n, h, w)  # (L, 6 n, H, W)
    return x.permute(1, 0, 2, 3)[None]


def camera_rays(trajectory) -> torch.Tensor:
    """(F, H, W, 6) float32 Pluecker rays (o x d, d) of an any4d_jax Trajectory as VideoX-Fun's ray_condition
    makes them: poses relative to the first camera (RealEstate10K-style, c2w_i' = w2c_0 c2w_i, so frame 0 is
    the identity), OpenCV axes, unit directions through pixel centres (+0.5) with the pixel intrinsics of the
    generated size, o the camera centre."""
    return torch.from_dlpack(trajectory.relative_to_first().pluecker())  # JAX -> torch, no copy


def camera_input(trajectory) -> torch.Tensor:
    """(1, 24, L, H, W) float32: the adapter's input for a Trajectory, fold(camera_rays(trajectory))."""
    return fold(camera_rays(trajectory))


def diffusers_config(cam: fun_camera.CameraSpec) -> dict:
    """WanTransformer3DModel keyword arguments equivalent to the original config."""
    return dict(
        patch_size=tuple(cam.patch),
        num_attention_heads=cam.num_heads,
        attention_head_dim=cam.dim // cam.num_heads,
        in_channels=cam.in_dim,
        out_channels=cam.out_dim,
        text_dim=cam.text_dim,
        freq_dim=cam.freq_dim,
        ffn_dim=cam.ffn_dim,
        num_layers=cam.num_layers,
        cross_attn_norm=cam.cross_attn_norm,
        qk_norm="rms_norm_across_heads" if cam.qk_norm else None,
        eps=cam.eps,
        image_dim=cam.image_dim,
        added_kv_proj_dim=cam.dim if cam.image_dim is not None else None,
        rope_max_seq_len=1024,
    )


def _dtype_for(model, name: str, dtype: torch.dtype) -> torch.dtype:
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    return torch.float32 if any(k in name.split(".") for k in keep) else dtype


def load_expert(cam: fun_camera.CameraSpec, expert: fun_camera.Expert, dtype: torch.dtype = torch.float32):
    """The diffusers WanTransformer3DModel of one expert, with its CameraAdapter as `.camera_adapter`, on the
    CPU at `dtype` (diffusers' fp32 modules stay float32). Strict: InputError naming the file if a tensor is
    left over or a parameter unfilled."""
    from diffusers import WanTransformer3DModel
    from safetensors import safe_open

    kwargs = diffusers_config(cam)
    with torch.device("meta"):
        model = WanTransformer3DModel(**kwargs)
        adapter = CameraAdapter(cam.adapter_in, cam.dim, tuple(cam.patch[1:]), cam.downscale)
    by_file: dict[str, list[str]] = {}
    for name, (file, _) in expert.tensors.items():
        by_file.setdefault(file, []).append(name)
    state, adapter_state, first_file = {}, {}, {}
    for file, names in by_file.items():
        with safe_open(file, framework="pt") as f:
            for name in names:
                if name.startswith("control_adapter."):
                    adapter_state[name[len("control_adapter.") :]] = f.get_tensor(name).to(dtype)
                    continue
                new = fun_camera.to_diffusers(name)
                if new is None:
                    raise InputError(f"{file}: '{name}' has no place in a diffusers Wan transformer")
                state[new] = f.get_tensor(name).to(_dtype_for(model, new, dtype))
                first_file[new] = file
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    a_missing, a_unexpected = adapter.load_state_dict(adapter_state, strict=False, assign=True)
    unfilled = [n for n, p in model.named_parameters() if p.is_meta] + [
        f"camera_adapter.{n}" for n in a_missing
    ]
    left = [n for n in unexpected] + [f"control_adapter.{n}" for n in a_unexpected]
    if missing or unfilled or left:
        file = first_file.get(left[0], expert.config_path) if left else expert.config_path
        raise InputError(
            f"{file}: the Fun Control-Camera weights do not fill a diffusers WanTransformer3DModel: unfilled "
            f"{sorted(set(missing) | set(unfilled))[:3]}, left over {left[:3]}"
        )
    if model.rope.freqs_cos.is_meta:  # buffers are not in the files: build them for real
        model.rope = type(model.rope)(
            kwargs["attention_head_dim"], kwargs["patch_size"], kwargs["rope_max_seq_len"]
        )
    model.add_module("camera_adapter", adapter)
    return model.eval().requires_grad_(False)


def load_transformers(cam: fun_camera.CameraSpec, dtype: torch.dtype = torch.float32) -> dict:
    """{"transformer": low-noise (or the only) expert, "transformer_2": the high-noise expert or None}."""
    models = [load_expert(cam, e, dtype) for e in cam.experts]
    return {"transformer": models[0], "transformer_2": models[1] if len(models) > 1 else None}


def attach(transformer, camera: torch.Tensor):
    """Add transformer.camera_adapter(camera) to every output (B, dim, L, h, w) of
    transformer.patch_embedding, computed once; returns the hook handle (call .remove() after generation)."""
    cache: dict = {}

    def hook(module, inputs, output):
        if "emb" not in cache:
            adapter = transformer.camera_adapter
            weight = adapter.conv.weight
            cache["emb"] = adapter(camera.to(weight.device, weight.dtype))
        emb = cache["emb"]
        if tuple(output.shape[1:]) != tuple(emb.shape[1:]):
            raise RuntimeError(
                f"camera adapter tokens {tuple(emb.shape)} do not match the patch embeddings "
                f"{tuple(output.shape)}"
            )
        return output + emb.to(output.dtype)

    return transformer.patch_embedding.register_forward_hook(hook)


def _encode(vae, video: torch.Tensor, device) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1] -> normalised latents (1, z, L, h, w) float32 (the mode, as VideoX-Fun)."""
    lat = vae.encode(video.to(device, vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean, device=lat.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=lat.device).view(1, -1, 1, 1, 1)
    return (lat - mean) / std


def _decode(vae, latents: torch.Tensor, device) -> torch.Tensor:
    mean = torch.tensor(vae.config.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
    return vae.decode((latents * std + mean).to(device, vae.dtype), return_dict=False)[0]


def _pad_text(embeds: torch.Tensor) -> torch.Tensor:
    """(1, S, C) -> (1, 512, C): zero tokens, as the original transformer pads (and diffusers' I2V attention
    splits image from text tokens by assuming 512 text tokens)."""
    pad = fun_camera.TEXT_LEN - embeds.shape[1]
    return embeds if pad <= 0 else torch.cat([embeds, embeds.new_zeros(1, pad, embeds.shape[2])], dim=1)


@torch.no_grad()
def generate(
    pipe,
    pairing: fun_camera.Pairing,
    camera: torch.Tensor,
    *,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    text: str,
    negative_text: str = "",
    image=None,
    num_inference_steps: int = 30,
    guidance_scale: float = 5.0,
    max_sequence_length: int = 512,
) -> torch.Tensor:
    """One video (F, 3, H, W) float in [0, 1] from a diffusers Wan pipeline whose transformer(s) came from
    `load_transformers`, following VideoX-Fun's Fun camera pipelines.

    camera: (1, 24, L, H, W) from `camera_input`. image: (H, W, 3) float in [0, 1] already at (H, W), or None
    (the "start" layout then conditions on zeros, as VideoX-Fun without a start image; "inpaint" needs one).
    """
    from diffusers.utils.torch_utils import randn_tensor
    from PIL import Image

    device = pipe._execution_device
    transformer, transformer_2 = pipe.transformer, getattr(pipe, "transformer_2", None)
    dtype = transformer.dtype
    vae = pipe.vae
    z, s = pairing.latent_channels, pairing.vae_spatial
    latent_frames = (num_frames - 1) // fun_camera.TEMPORAL_FOLD + 1
    shape = (1, z, latent_frames, height // s, width // s)
    cfg = guidance_scale > 1.0

    pos, neg = pipe.encode_prompt(
        prompt=text,
        negative_prompt=negative_text or "",
        do_classifier_free_guidance=cfg,
        max_sequence_length=max_sequence_length,
        device=device,
    )
    pos = _pad_text(pos).to(dtype)
    neg = _pad_text(neg).to(dtype) if cfg else None

    pixels = None
    if image is not None:
        pixels = (
            torch.from_numpy(image).float().permute(2, 0, 1)[None, :, None] * 2.0 - 1.0
        )  # (1, 3, 1, H, W)
    image_embeds = None
    if getattr(transformer.config, "image_dim", None):
        if image is None:  # VideoX-Fun: the features of a black image, zeroed
            blank = Image.new("RGB", (width, height))
            image_embeds = torch.zeros_like(pipe.encode_image(blank, device))
        else:
            pil = Image.fromarray((image.clip(0.0, 1.0) * 255.0 + 0.5).astype("uint8"))
            image_embeds = pipe.encode_image(pil, device)
        image_embeds = image_embeds.to(dtype)

    if pairing.layout == "start":
        y = torch.zeros(shape, device=device)
        if pixels is not None:
            y[:, :, :1] = _encode(vae, pixels, device)
    else:
        if pixels is None:
            raise InputError(
                "a Wan2.2 Fun Control-Camera model needs a start image: pass --config.prompt.image"
            )
        video = torch.cat([pixels, pixels.new_zeros(1, 3, num_frames - 1, height, width)], dim=2)
        image_latents = _encode(vae, video, device)  # (1, z, L, h, w)
        mask = torch.zeros((1, 4, *shape[2:]), device=device)
        mask[:, :, 0] = 1.0
        y = torch.cat([mask, image_latents], dim=1)

    latents = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(int(seed)), device=device)
    keep = None
    if pairing.first_frame_latent:  # 16x VAE (5B): latent frame 0 is the image, at timestep 0
        keep = torch.ones((1, 1, *shape[2:]), device=device)
        keep[:, :, 0] = 0.0
        latents = (1.0 - keep) * image_latents + keep * latents

    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps, device=device)
    boundary = None if pairing.boundary is None else pairing.boundary * scheduler.config.num_train_timesteps
    handles = [attach(t, camera) for t in (transformer, transformer_2) if t is not None]
    try:
        for t in scheduler.timesteps:
            model = transformer_2 if boundary is not None and t >= boundary else transformer
            x = torch.cat([latents, y], dim=1).to(dtype)
            if keep is not None:
                ph, pw = transformer.config.patch_size[1:]
                timestep = (keep[0, 0][:, ::ph, ::pw] * t).flatten()[None]
            else:
                timestep = t.expand(1)
            kw = dict(
                hidden_states=x,
                timestep=timestep,
                encoder_hidden_states_image=image_embeds,
                return_dict=False,
            )
            noise = model(encoder_hidden_states=pos, **kw)[0]
            if cfg:
                uncond = model(encoder_hidden_states=neg, **kw)[0]
                noise = uncond + guidance_scale * (noise - uncond)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]
            if keep is not None:
                latents = (1.0 - keep) * image_latents + keep * latents
    finally:
        for h in handles:
            h.remove()
    video = _decode(vae, latents, device)
    return pipe.video_processor.postprocess_video(video, output_type="pt")[0]
