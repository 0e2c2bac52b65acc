"""Image prompt + camera trajectory -> video -> 4D Gaussians (the `warp` generator by default: weight-free).

python -m experiments.run --config=configs/image_to_4d.py --config.prompt.image=photo.png \
    --config.camera.trajectory=orbit [--config.camera.arc_deg=40] [--workdir=runs/photo]
python -m experiments.run --config=configs/image_to_4d.py --config.camera.trajectory=path/to/keyframes.json

Starts from configs/synthetic.py (same top-level structure: seed, resume, data, model, motion, train, render,
eval) and adds prompt.*, camera.*, generator.*. World convention of the built-in trajectories: the first
camera sits at the origin looking down +z (OpenCV: x right, y down; world up is -y) and the subject is
`camera.radius` ahead of it, at (0, 0, radius); the warp generator puts the picture's centre there too.
"""

import ml_collections
from ml_collections import config_dict

from configs import synthetic


def get_config() -> ml_collections.ConfigDict:
    c = synthetic.get_config()  # model, motion, train, render, eval: every knob training reads exists
    c.data = ml_collections.ConfigDict()
    c.data.source = "prompt"  # generate the training video from the prompt (any4d_jax/jobs/prompt.py)
    c.train.num_steps = 1500  # optimisation steps (the synthetic default is shorter, for its 5-minute budget)
    # train.camera_refine stays None (auto): on with generator.name=diffusers (a generated video follows its
    # trajectory only roughly), off with warp / synthetic, whose cameras are exact (model/camera_refine.py).

    c.prompt = ml_collections.ConfigDict()
    c.prompt.text = ""  # text prompt (diffusers backends; the caption of image-to-video models)
    c.prompt.negative_text = ""  # negative prompt (diffusers backends, classifier-free guidance)
    c.prompt.image = "docs/prompt_example.png"  # the image prompt: the first frame, seen by the first camera
    c.prompt.depth = ""  # optional .npy (H, W) z-depth of the image; empty = the warp depth prior

    c.camera = ml_collections.ConfigDict()
    c.camera.trajectory = "orbit"  # orbit | dolly | pan | spiral | static | a keyframe file *.json (README)
    c.camera.num_frames = 24  # frames F (a JSON trajectory is interpolated to this many)
    c.camera.width = 128  # generated width in pixels
    c.camera.height = 96  # generated height in pixels
    c.camera.fov_deg = 55.0  # horizontal field of view of the built-in trajectories (and the picture)
    c.camera.fit = "crop"  # how the image / a JSON's intrinsics follow another size: crop (centre) | stretch
    c.camera.radius = 2.0  # distance from the first camera to the subject: orbit/spiral centre, warp depth
    c.camera.target = config_dict.placeholder(tuple)  # look-at of orbit etc.; None = (0, 0, radius)
    c.camera.arc_deg = 30.0  # orbit: azimuth swept (positive moves right); pan: yaw
    c.camera.elevation_deg = 0.0  # orbit: height above the subject, in degrees
    c.camera.pitch_deg = 0.0  # pan: tilt up over the clip
    c.camera.distance = 0.5  # dolly: travel towards the subject (negative: away); spiral: forward travel
    c.camera.spiral_radius = 0.15  # spiral: radius of the circle in the image plane
    c.camera.turns = 1.0  # spiral: full circles over the clip

    c.generator = ml_collections.ConfigDict()
    c.generator.name = "warp"  # synthetic | warp | diffusers (any4d_jax/generate/)
    c.generator.model = ""  # diffusers: local pipeline folder (model_index.json); never downloaded
    c.generator.camera_conditioning = "auto"  # diffusers: auto | pluecker | warp | camera | none
    # diffusers + pluecker: a released Wan Fun Control-Camera folder (VideoX-Fun: Wan2.1-Fun-V1.1-1.3B/14B or
    # Wan2.2-Fun-5B/A14B -Control-Camera; config.json + diffusion_pytorch_model*.safetensors, or
    # low_noise_model/ + high_noise_model/): its transformer(s) + camera adapter replace generator.model's;
    # generator.model then only supplies VAE, encoders, scheduler. '' = none (auto never picks pluecker)
    c.generator.camera_model = ""
    c.generator.num_inference_steps = 30  # diffusers: denoising steps
    c.generator.guidance_scale = 5.0  # diffusers: classifier-free guidance scale
    c.generator.max_sequence_length = 512  # diffusers (Wan): text tokens
    # diffusers: torch device, auto (cuda when torch sees a GPU, else cpu) | cpu | cuda (= JAX's GPU) | cuda:K
    c.generator.device = "auto"
    c.generator.dtype = (
        "auto"  # diffusers: transformer + text encoder; auto = bfloat16 on cuda, float32 on cpu
    )
    c.generator.vae_dtype = "float32"  # diffusers: VAE and image encoder (CLIP), float32 as Wan keeps them
    c.generator.offload = "none"  # diffusers on cuda: none | model | group | sequential (less memory, slower)
    c.generator.vae_tiling = False  # diffusers: decode in tiles (less memory for large frames)
    c.generator.variant = ""  # diffusers: weight-file variant, e.g. fp16 (*.fp16.safetensors); '' = plain
    # diffusers on cuda: share of the GPU JAX preallocates; None = no preallocation (an env var set wins)
    c.generator.jax_memory_fraction = config_dict.placeholder(float)
    # warp and diffusers: local monocular depth model folder (transformers AutoModelForDepthEstimation, e.g.
    # Depth Anything V2, DepthPro; never downloaded) lifting the first frame, scale-fitted so the subject is
    # at warp.depth; empty = the depth prior (tilt_deg, bulge) unless prompt.depth is given
    c.generator.depth_model = ""
    # diffusers, models that need a first frame (image / control / camera) given no prompt.image: local
    # text-to-image pipeline folder (e.g. PixArt-Sigma, Sana, SDXL, Flux) making it from prompt.text
    c.generator.image_model = ""
    c.generator.image_size = config_dict.placeholder(int)  # text-to-image long side px; None = trajectory's
    c.generator.image_steps = 30  # text-to-image denoising steps
    c.generator.image_guidance_scale = 4.5  # text-to-image classifier-free guidance scale
    c.generator.sana_wm = ml_collections.ConfigDict()  # diffusers + SanaWMPipeline (conditioning camera)
    # trajectory units -> SANA-WM's: x on the c2w translations it receives (it applies no normalisation)
    c.generator.sana_wm.translation_scale = 1.0
    c.generator.warp = ml_collections.ConfigDict()
    c.generator.warp.depth = config_dict.placeholder(float)  # z of the picture centre; None = camera.radius
    c.generator.warp.tilt_deg = 20.0  # depth prior: plane tilt, top of the picture farther (0: fronto)
    c.generator.warp.bulge = 0.25  # depth prior: the centre pulled this fraction closer (a soft dome)
    c.generator.warp.max_depth_ratio = 4.0  # depth prior: far clamp, x depth (depth model: [1/x, x] x depth)
    c.generator.warp.splat_scale = 0.4  # Gaussian std in pixel footprints (lower: sharper, more holes)
    c.generator.warp.mask_threshold = 0.5  # accumulated opacity below this = disoccluded (mask 0)
    # diffusers + warp (VACE): hole masks grown by this many pixels (disk) so splat rims are regenerated;
    # 4 = half of the VAE's 8-pixel latent cell
    c.generator.warp.mask_dilate = 4
    c.generator.synthetic = ml_collections.ConfigDict()
    c.generator.synthetic.center = config_dict.placeholder(tuple)  # scene centre; None = (0, 0, radius)
    c.generator.synthetic.num_background = 6000  # Gaussians of the procedural background
    c.generator.synthetic.num_per_object = 1200  # Gaussians per procedural object

    c.eval = ml_collections.ConfigDict()
    c.eval.fps = 12  # frame rate of the videos
    c.eval.novel_views = 48  # frames of the novel-view video (a path next to the trajectory)
    c.eval.novel_offset = 0.12  # novel path: cameras circle this fraction of camera.radius off the trajectory
    c.eval.write_ply = True  # write the Gaussians of every frame as 3DGS PLY
    return c
