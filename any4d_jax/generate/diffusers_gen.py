"""The `diffusers` generator: a local diffusers video pipeline that follows the trajectory.

The pipeline folder (`generator.model`, loaded with local_files_only=True) decides text-to-video,
image-to-video or video-conditioned from its model_index.json (third_party/diffusers_video.py). The
trajectory enters in one of two ways (`generator.camera_conditioning`):
  pluecker: Pluecker ray maps of the trajectory relative to its first camera go through a camera adapter
            (third_party/camera_adapter.py; weights from `generator.adapter`, default <model>/camera_adapter)
            into the transformer (Wan family);
  warp:     the image prompt is lifted and rendered along the trajectory (generate/warp.py); the renders and
            their hole masks go to a video-conditioned pipeline (WanVACE, CogVideoX Fun control), which
            inpaints what the geometry cannot show;
  none:     no camera control (explicit opt-in: the video may not follow the cameras reconstruction uses);
  auto:     warp for video-conditioned pipelines, pluecker where adapter weights exist, else an error.
An adapter folder that is malformed or untrained (all-zero projection weights: it would change nothing) is
refused before the pipeline loads, whether pluecker was asked for or chosen by auto.
Frame count and size are checked against the model before anything heavy. The video crosses into JAX by DLPack
without a copy. Depth for reconstruction comes from the warp lifting of the first frame (the prompt image, or
the first generated frame for text) rendered along the trajectory; `mask` marks where that depth is known.
torch and diffusers are imported only here and in third_party/.

Devices and memory (`generator.device`: auto | cpu | cuda | cuda:K; auto = cuda when torch sees a GPU, and
then `generator.dtype` auto = bfloat16, else cpu and float32). The VAE and the image encoder stay at
`generator.vae_dtype` (float32), `generator.offload` (none | model | group | sequential) and
`generator.vae_tiling` trade speed for GPU memory, and `generator.variant` picks the weight files (e.g.
fp16); see third_party/diffusers_video.py. A CUDA request is refused in the constructor,
before anything loads, when torch sees no CUDA GPU or fewer than K + 1. With CUDA jax, torch and JAX share a
GPU: "cuda" means the GPU JAX trains on (its default device), "cuda:K" means GPU K for both (the prompt job
trains under `jax.default_device` of JAX's GPU K; `jax_device` says which), so the frames never cross
devices. With CPU jax the video crosses to the host (generate/dlpack.py). The pipeline (and the camera
adapter) is dropped as soon as the frames are out, and torch's CUDA cache emptied, so training does not run
beside tens of GB of torch weights; a second `generate` loads the pipeline again.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.generate import dlpack, images, warp
from any4d_jax.generate.base import Prompt, frame_times
from any4d_jax.geometry.trajectory import Trajectory

INSTALL = "pip install -e '.[gen]'"
_CONDITIONINGS = ("auto", "pluecker", "warp", "none")


def require_gen_extra() -> None:
    """Raise ImportError naming exactly what to install when torch / diffusers / transformers are missing."""
    missing = [
        m for m in ("torch", "diffusers", "transformers", "ftfy") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ImportError(
            f"generator 'diffusers' needs {', '.join(missing)} (the optional gen extra): run {INSTALL} "
            "(torch==2.13.0 CPU wheel, diffusers, transformers, ftfy)"
        )


def resolve_devices(device: str, gpus: Sequence[Any], default: Any = None) -> tuple[str, Any | None]:
    """(torch device string, JAX device to train on or None) for generator.device. Pure: `gpus` are JAX's
    local GPU devices (anything with `local_hardware_id`, the CUDA ordinal torch also uses), `default` the
    device JAX would use by default (jax.config.jax_default_device; None = the first of `gpus`).

      cpu                    -> ("cpu", None): training stays where JAX puts it.
      auto                   -> as cuda when JAX has GPUs, else ("cpu", None) (the constructor settles
                                auto by what torch sees before it gets here).
      cuda,   no JAX GPUs    -> ("cuda", None): the video crosses to the host (CPU jax).
      cuda,   JAX GPUs       -> ("cuda:<id of JAX's training GPU>", that GPU).
      cuda:K, no JAX GPUs    -> ("cuda:K", None).
      cuda:K, JAX GPUs       -> ("cuda:K", JAX's GPU K); InputError when JAX has no GPU K.
    """
    from third_party import diffusers_video  # lazy: the device grammar sits with the torch adapter

    kind, index = diffusers_video.parse_device(device)
    gpus = list(gpus)
    if kind == "auto":
        kind, device = ("cuda", "cuda") if gpus else ("cpu", "cpu")
    if kind == "cpu":
        return "cpu", None
    if not gpus:
        return device, None
    if index is None:
        dev = default if default in gpus else gpus[0]
        return f"cuda:{dev.local_hardware_id}", dev
    for dev in gpus:
        if dev.local_hardware_id == index:
            return device, dev
    seen = ", ".join(f"cuda:{d.local_hardware_id}" for d in gpus)
    raise InputError(
        f"--config.generator.device={device}: JAX has no GPU {index} (it sees {seen}); pick one JAX also "
        "sees, so that generation and training share a GPU"
    )


def jax_gpus() -> list:
    """JAX's local GPU devices ([] with CPU jax). Initialises JAX's backends."""
    try:
        return list(jax.local_devices(backend="gpu"))
    except RuntimeError:  # "Unknown backend gpu": CPU jax
        return []


def _jax_default_device() -> Any:
    dev = jax.config.jax_default_device
    return dev if isinstance(dev, jax.Device) else None


class DiffusersGenerator:
    """A local diffusers pipeline under camera control (see module docstring)."""

    name = "diffusers"

    def __init__(self, config: ml_collections.ConfigDict):
        g = config.generator
        if not g.model:
            raise InputError(
                "generator 'diffusers' needs a local pipeline folder: "
                "--config.generator.model=/path/to/pipeline (weights are never downloaded)"
            )
        if g.camera_conditioning not in _CONDITIONINGS:
            raise InputError(
                f"generator.camera_conditioning must be one of {list(_CONDITIONINGS)}, "
                f"got {g.camera_conditioning!r}"
            )
        from third_party import diffusers_video  # imports torch lazily; camera_adapter imports it at once

        diffusers_video.parse_device(g.device)  # refuses "gpu", "cuda:x", "mps"... before torch is imported
        require_gen_extra()
        from third_party import camera_adapter

        available, count = diffusers_video.cuda_status()
        device, self.dtype = diffusers_video.resolve_auto(g.device, g.dtype, available)
        diffusers_video.check_cuda(device, available, count)  # before anything loads
        diffusers_video.check_placement(device, g.offload, g.vae_dtype)
        self.device = resolve_devices(device, jax_gpus(), _jax_default_device())[0]
        self.spec = diffusers_video.inspect(g.model)
        self.cfg = g
        self.warp_settings = warp.settings_from_config(config)
        self.adapter_dir = g.adapter or os.path.join(g.model, "camera_adapter")
        self._adapter_cfg = camera_adapter.read_config(self.adapter_dir)
        self.conditioning = self._resolve_conditioning(g.camera_conditioning)
        self._pipe = None

    @staticmethod
    def jax_device(config: ml_collections.ConfigDict) -> Any | None:
        """The JAX device to generate and train on so that torch and JAX share a GPU (`resolve_devices`);
        None when JAX has no GPU or the generator runs on the CPU. jobs/prompt.py asks before generating."""
        return resolve_devices(config.generator.device, jax_gpus(), _jax_default_device())[1]

    def _resolve_conditioning(self, asked: str) -> str:
        spec, where = self.spec, f"generator.model {self.spec.path} ({self.spec.class_name})"
        if asked == "auto":
            if spec.kind == "control":
                asked = "warp"
            elif self._adapter_cfg is not None:
                asked = "pluecker"
            else:
                raise InputError(
                    f"{where} has no camera control: put trained Pluecker adapter weights in "
                    f"{self.adapter_dir} (third_party/camera_adapter.py), use a video-conditioned pipeline "
                    "(WanVACEPipeline), or pass "
                    "--config.generator.camera_conditioning=none to generate without following the trajectory"
                )
        if asked == "warp" and spec.kind != "control":
            raise InputError(
                f"{where} is not video-conditioned, so it cannot take warp renders: use camera_conditioning="
                "pluecker (with adapter weights) or a WanVACEPipeline folder"
            )
        if asked == "pluecker":
            if spec.family != "wan":
                raise InputError(f"{where}: the Pluecker camera adapter supports the Wan family only")
            if self._adapter_cfg is None:
                raise InputError(
                    f"{where}: camera_conditioning=pluecker needs adapter weights in {self.adapter_dir} "
                    "(config.json + adapter.safetensors; set --config.generator.adapter=/path)"
                )
            if self._adapter_cfg["inner_dim"] != spec.inner_dim:
                raise InputError(
                    f"camera adapter {self.adapter_dir} has inner_dim "
                    f"{self._adapter_cfg['inner_dim']} but the transformer of {spec.path} has width "
                    f"{spec.inner_dim}"
                )
            from third_party import camera_adapter

            camera_adapter.check_weights(self.adapter_dir, self._adapter_cfg)  # refuses an untrained adapter
        return asked

    def check(self, prompt: Prompt, trajectory: Trajectory) -> None:
        spec, where = self.spec, f"generator.model {self.spec.path} ({self.spec.class_name})"
        spec.check(trajectory.num_frames, trajectory.height, trajectory.width)
        if self.conditioning == "pluecker":
            pool, fold = self._adapter_cfg["spatial_pool"], self._adapter_cfg["temporal_fold"]
            if (pool, fold) != (spec.spatial_multiple, spec.temporal_factor):
                raise InputError(
                    f"camera adapter {self.adapter_dir} pools {pool} px / folds {fold} frames but the "
                    f"model's tokens are {spec.spatial_multiple} px / {spec.temporal_factor} frames"
                )
        if spec.kind == "image" and not prompt.image:
            raise InputError(f"{where} is image-to-video: pass --config.prompt.image=photo.png")
        if self.conditioning == "warp" and not prompt.image:
            raise InputError(
                f"{where}: camera_conditioning=warp renders the image prompt: pass --config.prompt.image"
            )
        if spec.kind == "text" and spec.takes_text and not prompt.text.strip():
            raise InputError(f"{where} is text-to-video: pass --config.prompt.text='a description'")
        if prompt.image:
            images.load_image(prompt.image)
        if prompt.depth:
            warp.first_frame_depth(prompt, trajectory, self.warp_settings)

    def pipeline(self):
        """The loaded pipeline (loaded once, until `release`)."""
        if self._pipe is None:
            from third_party import diffusers_video

            g = self.cfg
            self._pipe = diffusers_video.load(
                self.spec,
                self.dtype,
                self.device,
                vae_dtype=g.vae_dtype,
                offload=g.offload,
                vae_tiling=bool(g.vae_tiling),
                variant=g.variant,
            )
        return self._pipe

    def release(self) -> None:
        """Drop the pipeline and give its memory back (gc, and torch's CUDA cache on a GPU): `generate` calls
        this once the frames are out, so training does not run beside the torch weights."""
        from third_party import diffusers_video

        self._pipe = None
        diffusers_video.free_memory(self.device)

    def _image(self, prompt: Prompt, traj: Trajectory) -> np.ndarray | None:
        if not prompt.image:
            return None
        img = images.load_image(prompt.image, background=self.warp_settings.background)
        return images.fit_image(img, traj.width, traj.height, self.warp_settings.fit)

    def _video(self, prompt: Prompt, trajectory: Trajectory, image, control, seed: int):
        """The pipeline's (F, 3, H, W) torch video in [0, 1] on self.device. The pipeline and the adapter are
        referenced only from this frame (and self._pipe), so `release` frees them once it returns."""
        from third_party import diffusers_video

        pipe = self.pipeline()
        handle = None
        if self.conditioning == "pluecker":
            import torch  # lazy: the gen extra, only for this backend

            from third_party.camera_adapter import PlueckerAdapter

            adapter = PlueckerAdapter.from_pretrained(self.adapter_dir).to(self.device)
            rays = torch.from_dlpack(trajectory.relative_to_first().pluecker())  # JAX -> torch, no copy
            handle = adapter.attach(pipe.transformer, rays)
        try:
            return diffusers_video.run(
                pipe,
                self.spec,
                num_frames=trajectory.num_frames,
                height=trajectory.height,
                width=trajectory.width,
                seed=seed,
                text=prompt.text,
                negative_text=prompt.negative_text,
                image=image,
                control_video=None if control is None else np.asarray(control[0]),
                control_mask=None if control is None else 1.0 - np.asarray(control[2]),
                num_inference_steps=int(self.cfg.num_inference_steps),
                guidance_scale=float(self.cfg.guidance_scale),
                max_sequence_length=int(self.cfg.max_sequence_length),
            )
        finally:
            if handle is not None:
                handle.remove()

    def generate(self, prompt: Prompt, trajectory: Trajectory, key: jax.Array) -> Frames:
        self.check(prompt, trajectory)
        image = self._image(prompt, trajectory)
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        control = None
        if self.conditioning == "warp":
            splats = warp.lift_first_frame(image, prompt, trajectory, self.warp_settings)
            control = warp.render_views(splats, trajectory, self.warp_settings)
        try:
            video = self._video(prompt, trajectory, image, control, seed)
            rgb = dlpack.video_to_jax(video)  # (F, H, W, 3): the same buffer, or a host copy for CPU jax
            del video
            if rgb.dtype != jnp.float32:
                rgb = rgb.astype(jnp.float32)
        finally:
            self.release()  # the frames are out (or generation failed): free the pipeline before training
        if control is None:  # geometry from the first generated frame
            splats = warp.lift_first_frame(np.asarray(rgb[0]), prompt, trajectory, self.warp_settings)
            control = warp.render_views(splats, trajectory, self.warp_settings)
        _, depth, mask = control
        return Frames(
            rgb=rgb,  # the pipeline's post-processing already clamps to [0, 1]
            cameras=trajectory,
            times=frame_times(trajectory.num_frames),
            depth=depth,
            mask=mask,
        )
