"""Tiny randomly initialised text-to-image pipelines and depth models, built offline (no hub, no weights).

For tests and demos of `generator.image_model` (third_party/text_to_image.py) and `generator.depth_model`
(third_party/depth_model.py): each builder saves with `save_pretrained(folder)`, which is what the loaders
read back with local_files_only=True. Outputs are noise-like; what they test is the plumbing.

    python -m third_party.tiny_t2i pixart /tmp/tiny_t2i
    python -m third_party.tiny_t2i depth_relative /tmp/tiny_depth   # depth_metric: a metric head

  pixart:          PixArtSigmaPipeline (1-layer PixArt transformer, 2-level AutoencoderKL, 1-layer T5 encoder
                   with the word-level T5-like tokenizer of tiny_pipelines: no sentencepiece file needed).
  depth_relative:  Depth Anything (relative: inverse depth) on a 2-layer Dinov2 backbone, patch 14, with a
                   DPT image processor at 28 px; weights re-drawn at unit gain so that the output varies
                   over the image, and the last bias set to 1 so that the ReLU head is not all zero.
  depth_metric:    the same with depth_estimation_type="metric" (sigmoid x max_depth = 20).
"""

from __future__ import annotations

import argparse

import torch

from third_party.tiny_pipelines import tiny_tokenizer


def pixart():
    """A tiny PixArtSigmaPipeline (text -> image): sizes multiple of 4 (VAE 2 x patch 2)."""
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4)
    ).eval()
    return PixArtSigmaPipeline(
        tokenizer=tok,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


def depth_anything(kind: str = "relative"):
    """(model, image processor): a tiny Depth Anything with depth_estimation_type `kind`."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    backbone = Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        out_indices=[1, 2],
        reshape_hidden_states=False,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=8,
        reassemble_factors=[1, 1],
        neck_hidden_sizes=[8, 8],
        fusion_hidden_size=8,
        head_hidden_size=4,
        patch_size=14,
        depth_estimation_type=kind,
        max_depth=20 if kind == "metric" else 1,
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:  # unit-gain weights: the output varies with the image instead of being the bias
                p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
        model.head.conv3.bias.fill_(1.0 if kind == "relative" else 0.0)
    processor = DPTImageProcessor(
        size={"height": 28, "width": 28},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_pad=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return model, processor


KINDS = ("pixart", "depth_relative", "depth_metric")


def build(kind: str, folder: str) -> str:
    """Build the tiny model `kind` (pixart | depth_relative | depth_metric) into folder; returns folder."""
    if kind == "pixart":
        pixart().save_pretrained(folder)
    elif kind in ("depth_relative", "depth_metric"):
        model, processor = depth_anything(kind.split("_")[1])
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    else:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("folder")
    args = ap.parse_args()
    print(build(args.kind, args.folder))


if __name__ == "__main__":
    main()
