"""Text prompt + camera trajectory -> video (a local diffusers pipeline) -> 4D Gaussians.

python -m experiments.run --config=configs/text_to_4d.py --config.generator.model=/models/Wan2.1-T2V-1.3B \
    --config.prompt.text="a corgi running on a beach" --config.camera.trajectory=orbit

Needs the gen extra (pip install -e '.[gen]') and a pipeline folder on disk (weights are never downloaded);
without --config.generator.model it stops at once and says so. The folder's model_index.json picks
text-to-video (WanPipeline, CogVideoXPipeline), image-to-video (add --config.prompt.image) or
video-conditioned (WanVACEPipeline: the image is warped along the trajectory and the model inpaints). Frame
counts must suit the model (Wan: 4k+1) and sizes its patch grid (Wan: multiples of 16); both are checked
before loading. Real models want more than these CPU-sized defaults, e.g. Wan 2.1: 81 frames at 832 x 480.
Where torch sees a GPU the generator runs there in bfloat16 (generator.device / dtype = auto; the VAE and
image encoder stay float32); generator.offload=model|group|sequential and generator.vae_tiling=True trade
speed for memory. JAX does not preallocate the GPU (generator.jax_memory_fraction), the pipeline is freed
before training, and training runs on the same GPU; a rerun in the same --workdir reuses generated.npz
instead of generating again.
"""

import ml_collections

from configs import image_to_4d


def get_config() -> ml_collections.ConfigDict:
    c = image_to_4d.get_config()  # same structure; only the generator and the prompt differ
    c.prompt.text = "a small red robot walking across a wooden table"  # the text prompt
    c.prompt.image = ""  # no image: text-to-video (set one for image-to-video or video-conditioned folders)
    c.generator.name = "diffusers"  # a local diffusers pipeline (any4d_jax/generate/diffusers_gen.py)
    c.generator.model = ""  # REQUIRED: the pipeline folder, --config.generator.model=/path/to/pipeline
    c.camera.num_frames = 25  # 4k+1 for Wan-style VAEs (checked against the model before loading)
    c.camera.width = 128  # multiple of the model's patch grid (Wan: 16)
    c.camera.height = 96  # multiple of the model's patch grid (Wan: 16)
    return c
