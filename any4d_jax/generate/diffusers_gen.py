"""The `diffusers` generator: a local diffusers video pipeline that follows the trajectory.

The pipeline folder (`generator.model`, loaded with local_files_only=True) decides text-to-video,
image-to-video or video-conditioned from its model_index.json (third_party/diffusers_video.py). The
trajectory enters in one of two ways (`generator.camera_conditioning`):
  pluecker: VideoX-Fun's Wan Fun Control-Camera (Wan2.1-Fun-V1.1 1.3B / 14B, Wan2.2-Fun 5B / A14B): the
            released folder `generator.camera_model` supplies the transformer(s) and their camera adapter
            (third_party/fun_camera.py reads and checks it, camera_adapter.py runs it); Pluecker rays of the
            trajectory relative to its first camera, folded 4 frames per latent frame, are added to the patch
            embeddings; `generator.model` (a diffusers Wan folder) supplies the VAE, text and image encoders
            and scheduler;
  warp:     the image prompt is lifted and rendered along the trajectory (generate/warp.py); the renders and
            their hole masks go to a video-conditioned pipeline (WanVACE, CogVideoX Fun control), which
            inpaints what the geometry cannot show;
  camera:   the pipeline itself takes 6-DoF poses and intrinsics (SanaWMPipeline; `sana_wm_cameras` says
            exactly what goes in and in which convention);
  none:     no camera control (explicit opt-in: the video may not follow the cameras reconstruction uses);
  auto:     camera for camera-controlled pipelines, pluecker when generator.camera_model is set, warp for
            video-conditioned ones, else an error.
A camera_model folder that is malformed (a missing config key or tensor, a shape config.json does not
declare, not a Control-Camera model) or that does not fit generator.model (text width, VAE channels and
factors, the image encoder) is refused before anything loads, from JSON and safetensors headers only.
Frame count and size are checked against the model before anything heavy. The video crosses into JAX by DLPack
without a copy. Depth for reconstruction comes from the warp lifting of the first frame (the prompt image, or
the first generated frame for text) rendered along the trajectory; `mask` marks where that depth is known.
torch and diffusers are imported only here and in third_party/.

First frame, depth and the VACE inputs. Every model but text-to-video (`needs_image`: image, control,
camera) starts from a first frame: `prompt.image` fitted to the trajectory's size or, for a text-only
prompt, a picture of `prompt.text` made by a local text-to-image pipeline (`generator.image_model`,
third_party/text_to_image.py; its size `generator.image_size`, `image_steps`, `image_guidance_scale`) and
fitted the same way; without either the request is refused in one line naming both keys. The first frame is
lifted with `generator.depth_model` (a local Depth Anything V2 / DepthPro folder, third_party/depth_model.py,
scale-fitted to camera.radius) or, without one, the warp depth prior. The warp control (`warp.vace_control`)
is what WanVACE is trained on: holes gray 0.5, hole masks dilated by `generator.warp.mask_dilate` pixels,
frame 0 the fitted photo itself with an all-keep mask; video and mask reach the pipeline as float tensors,
not 8-bit images.

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
_CONDITIONINGS = ("auto", "pluecker", "warp", "camera", "none")
# spec.kind -> what it does with the first frame (error messages); every kind but "text" needs one.
_NEEDS_IMAGE = {
    "image": "is image-to-video",
    "control": "is video-conditioned (it inpaints warp renders of the first frame)",
    "camera": "is camera-controlled from a first frame",
}


def needs_image(spec: Any) -> bool:
    """Whether a pipeline (a PipelineSpec) needs a first frame: every kind but text-to-video. Without
    prompt.image, generator.image_model makes one from prompt.text."""
    return spec.kind != "text"


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


def sana_wm_cameras(trajectory: Trajectory, translation_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(c2w (F, 4, 4), intrinsics (F, 4)) float32: the trajectory as SanaWMPipeline takes it. Pure numpy.

    Poses: c2w[i] = inv(viewmat[i]), translations x `translation_scale` (generator.sana_wm.translation_scale:
    trajectory units -> the model's). Both sides use OpenCV axes (x right, y down, z forward; SANA-WM's
    cam_utils says so and its action DSL builds them so), so no axis flip. The poses stay absolute: the
    pipeline re-expresses them relative to frame 0 itself (cam_utils.prepare_camera: inv(c2w[0]) @ c2w[i],
    frame 0 the identity), and scaling absolute translations scales those relative ones by the same factor.
    SANA-WM applies no other normalisation to translations (no rescaling by scene size or path length), so
    the default 1.0 passes the trajectory's units through; its action DSL moves 0.05 units per frame.
    Intrinsics: [fx, fy, cx - 0.5, cy - 0.5] of trajectory.K, per frame. K is in the pixels of the width x
    height image we pass (images.fit_image already fitted the picture), so the pipeline's resize + centre
    crop to (height, width) is the identity and leaves them unchanged. K puts the centre of pixel (col, row)
    at (col + 0.5, row + 0.5); SANA-WM's ray maps (cam_utils.compute_raymap) cast rays through integer pixel
    coordinates (OpenCV: pixel centres at integers), hence the half-pixel shift. Skewed K is refused.
    """
    scale = float(translation_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"--config.generator.sana_wm.translation_scale={translation_scale!r}: must be > 0")
    K = np.asarray(trajectory.K, np.float64)
    if np.any(np.abs(K[:, 0, 1]) > 1e-6 * np.abs(K[:, 0, 0])):
        raise InputError(
            "SanaWMPipeline takes pinhole intrinsics [fx, fy, cx, cy]: the trajectory's K has skew"
        )
    c2w = np.linalg.inv(np.asarray(trajectory.viewmat, np.float64))
    c2w[:, :3, 3] *= scale
    c2w[:, 3] = (0.0, 0.0, 0.0, 1.0)
    intrinsics = np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2] - 0.5, K[:, 1, 2] - 0.5], axis=-1)
    return c2w.astype(np.float32), intrinsics.astype(np.float32)


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
        from third_party import diffusers_video  # imports torch lazily

        diffusers_video.parse_device(g.device)  # refuses "gpu", "cuda:x", "mps"... before torch is imported
        require_gen_extra()

        available, count = diffusers_video.cuda_status()
        device, self.dtype = diffusers_video.resolve_auto(g.device, g.dtype, available)
        diffusers_video.check_cuda(device, available, count)  # before anything loads
        diffusers_video.check_placement(device, g.offload, g.vae_dtype)
        self.device = resolve_devices(device, jax_gpus(), _jax_default_device())[0]
        self.spec = diffusers_video.inspect(g.model)
        self.cfg = g
        self.warp_settings = warp.settings_from_config(config)
        warp.check_depth_model(self.warp_settings)  # generator.depth_model: JSON only, before anything loads
        self.image_spec = None  # generator.image_model: text -> first frame for models that need an image
        if g.get("image_model", ""):
            from third_party import text_to_image  # lazy: reads model_index.json, imports diffusers

            self.image_spec = text_to_image.inspect(g.image_model)
        self._first_frame: tuple | None = None  # (key, fitted (H, W, 3) image) of the last text -> image
        self.camera = self.pairing = None  # generator.camera_model: a Fun Control-Camera folder (pluecker)
        if g.get("camera_model", ""):
            from third_party import fun_camera  # JSON and safetensors headers only: nothing loads yet

            self.camera = fun_camera.inspect(g.camera_model)
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
            if spec.kind == "camera":
                asked = "camera"
            elif self.camera is not None:
                asked = "pluecker"
            elif spec.kind == "control":
                asked = "warp"
            else:
                raise InputError(
                    f"{where} has no camera control: pass a Wan Fun Control-Camera folder as "
                    "--config.generator.camera_model=/path (camera_conditioning=pluecker), use a "
                    "video-conditioned pipeline (WanVACEPipeline), or pass "
                    "--config.generator.camera_conditioning=none to generate without following the trajectory"
                )
        if asked == "camera" and spec.kind != "camera":
            raise InputError(
                f"{where} takes no camera poses: camera_conditioning=camera is for camera-controlled "
                "pipelines (SanaWMPipeline); use --config.generator.camera_conditioning=auto"
            )
        if spec.kind == "camera" and asked != "camera":
            raise InputError(
                f"{where} is camera-controlled and always follows the trajectory: use "
                "--config.generator.camera_conditioning=camera (or auto)"
            )
        if self.camera is not None and asked != "pluecker":
            raise InputError(
                f"generator.camera_model {self.camera.path} is set but camera_conditioning={asked}: use "
                "--config.generator.camera_conditioning=pluecker (or auto), or "
                "--config.generator.camera_model=''"
            )
        if asked == "warp" and spec.kind != "control":
            raise InputError(
                f"{where} is not video-conditioned, so it cannot take warp renders: use camera_conditioning="
                "pluecker (with --config.generator.camera_model) or a WanVACEPipeline folder"
            )
        if asked == "pluecker":
            if self.camera is None:
                raise InputError(
                    f"{where}: camera_conditioning=pluecker needs a Wan Fun Control-Camera folder: pass "
                    "--config.generator.camera_model=/path (e.g. Wan2.1-Fun-V1.1-1.3B-Control-Camera)"
                )
            if spec.family != "wan":
                raise InputError(
                    f"{where}: a Fun Control-Camera transformer takes its VAE and encoders from a diffusers "
                    "Wan folder; pass one as --config.generator.model"
                )
            from third_party import fun_camera

            self.pairing = fun_camera.pair(self.camera, spec.path)  # JSON only: text, VAE, image encoder
        return asked

    def check(self, prompt: Prompt, trajectory: Trajectory) -> None:
        spec, where = self.spec, f"generator.model {self.spec.path} ({self.spec.class_name})"
        spec.check(trajectory.num_frames, trajectory.height, trajectory.width)
        if self.conditioning == "pluecker":
            cam = self.camera
            m = cam.pixels_per_token
            if trajectory.height % m or trajectory.width % m:
                raise InputError(
                    f"generator.camera_model {cam.path}: the camera adapter needs width and height that are "
                    f"multiples of {m}; got {trajectory.width} x {trajectory.height}"
                )
            no_text_image = self.image_spec is None or not needs_image(spec)  # image_model makes no frame
            if self.pairing.layout == "inpaint" and not prompt.image and no_text_image:
                raise InputError(
                    f"generator.camera_model {cam.path} (Wan2.2 Fun Control-Camera) starts from an image: "
                    "pass --config.prompt.image=photo.png"
                )
        self._camera_inputs(trajectory)  # camera: a bad translation_scale or a skewed K, before loading
        if needs_image(spec) and not prompt.image:
            what = _NEEDS_IMAGE.get(spec.kind, "needs a first frame")
            if self.image_spec is None:
                raise InputError(
                    f"{where} {what}: pass --config.prompt.image=photo.png, or "
                    "--config.generator.image_model=/path (a local text-to-image pipeline that makes it "
                    "from prompt.text)"
                )
            if not prompt.text.strip():
                raise InputError(
                    f"generator.image_model {self.image_spec.path} makes the first frame from text: pass "
                    "--config.prompt.text='a description' (or --config.prompt.image=photo.png)"
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
            components = None
            if self.conditioning == "pluecker":  # the Fun Control-Camera transformer(s) replace the folder's
                import torch  # lazy: the gen extra, only for this backend

                from third_party import camera_adapter

                components = camera_adapter.load_transformers(self.camera, getattr(torch, self.dtype))
            self._pipe = diffusers_video.load(
                self.spec,
                self.dtype,
                self.device,
                vae_dtype=g.vae_dtype,
                offload=g.offload,
                vae_tiling=bool(g.vae_tiling),
                variant=g.variant,
                components=components,
            )
        return self._pipe

    def release(self) -> None:
        """Drop the pipeline and give its memory back (gc, and torch's CUDA cache on a GPU): `generate` calls
        this once the frames are out, so training does not run beside the torch weights."""
        from third_party import diffusers_video

        self._pipe = None
        diffusers_video.free_memory(self.device)

    def _image(self, prompt: Prompt, traj: Trajectory, seed: int = 0) -> np.ndarray | None:
        """The first frame (H, W, 3) in [0, 1] at the trajectory's size: prompt.image fitted; else, for a
        model that needs one, generator.image_model's picture of prompt.text fitted the same way (made once
        per prompt, size and seed); else None."""
        if not prompt.image:
            if self.image_spec is None or not needs_image(self.spec):
                return None
            return self._text_image(prompt, traj, seed)
        img = images.load_image(prompt.image, background=self.warp_settings.background)
        return images.fit_image(img, traj.width, traj.height, self.warp_settings.fit)

    def _text_image(self, prompt: Prompt, traj: Trajectory, seed: int) -> np.ndarray:
        """generator.image_model run on prompt.text at `text_to_image.size_for` the trajectory (long side
        generator.image_size), fitted to (H, W, 3) like a prompt image; the pipeline is dropped before the
        video pipeline loads."""
        from third_party import text_to_image  # lazy: torch and diffusers

        g = self.cfg
        key = (prompt.text, prompt.negative_text, traj.width, traj.height, int(seed))
        if self._first_frame is not None and self._first_frame[0] == key:
            return self._first_frame[1]
        w, h = text_to_image.size_for(traj.width, traj.height, g.get("image_size", None))
        img = text_to_image.generate(
            self.image_spec,
            dtype=self.dtype,
            device=self.device,
            vae_dtype=g.vae_dtype,
            variant=g.variant,
            text=prompt.text,
            negative_text=prompt.negative_text,
            width=w,
            height=h,
            seed=int(seed),
            num_inference_steps=int(g.get("image_steps", 30)),
            guidance_scale=float(g.get("image_guidance_scale", 4.5)),
            max_sequence_length=int(g.max_sequence_length),
        )
        fitted = images.fit_image(img, traj.width, traj.height, self.warp_settings.fit)
        self._first_frame = (key, fitted)
        return fitted

    def _camera_inputs(self, trajectory: Trajectory) -> dict:
        """{} or, for camera_conditioning=camera, the c2w (F, 4, 4) and intrinsics (F, 4) `sana_wm_cameras`
        makes, with generator.sana_wm.translation_scale (1.0 where the config has no generator.sana_wm)."""
        if self.conditioning != "camera":
            return {}
        scale = self.cfg.get("sana_wm", {}).get("translation_scale", 1.0)
        c2w, intrinsics = sana_wm_cameras(trajectory, scale)
        return {"c2w": c2w, "intrinsics": intrinsics}

    def _video(self, prompt: Prompt, trajectory: Trajectory, image, control, seed: int):
        """The pipeline's (F, 3, H, W) torch video in [0, 1] on self.device. The pipeline and the adapter are
        referenced only from this frame (and self._pipe), so `release` frees them once it returns."""
        from third_party import diffusers_video

        pipe = self.pipeline()
        if self.conditioning == "pluecker":  # VideoX-Fun's Fun camera sampling (camera_adapter.py)
            from third_party import camera_adapter

            return camera_adapter.generate(
                pipe,
                self.pairing,
                camera_adapter.camera_input(trajectory),  # (1, 24, L, H, W) Pluecker rays, folded
                num_frames=trajectory.num_frames,
                height=trajectory.height,
                width=trajectory.width,
                seed=seed,
                text=prompt.text,
                negative_text=prompt.negative_text,
                image=image,
                num_inference_steps=int(self.cfg.num_inference_steps),
                guidance_scale=float(self.cfg.guidance_scale),
                max_sequence_length=int(self.cfg.max_sequence_length),
            )
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
            control_video=None if control is None else control.video,  # warp.VaceControl
            control_mask=None if control is None else control.mask,
            num_inference_steps=int(self.cfg.num_inference_steps),
            guidance_scale=float(self.cfg.guidance_scale),
            max_sequence_length=int(self.cfg.max_sequence_length),
            **self._camera_inputs(trajectory),
        )

    def generate(self, prompt: Prompt, trajectory: Trajectory, key: jax.Array) -> Frames:
        self.check(prompt, trajectory)
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        image = self._image(prompt, trajectory, seed)  # prompt.image, or text -> image (image_model)
        control = vace = None
        if self.conditioning == "warp":
            splats = warp.lift_first_frame(image, prompt, trajectory, self.warp_settings)
            rgb_r, depth_r, mask_r, alpha_r = warp.render_with_alpha(splats, trajectory, self.warp_settings)
            control = (rgb_r, depth_r, mask_r)  # reconstruction's depth and valid mask
            vace = warp.vace_control(image, rgb_r, alpha_r, mask_r, self.warp_settings)  # gray holes, dilated
        try:
            video = self._video(prompt, trajectory, image, vace, seed)
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
