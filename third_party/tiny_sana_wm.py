"""A tiny randomly initialised SanaWMPipeline, built offline (no hub, no weights): tests and demos.

SANA-WM (diffusers `SanaWMPipeline`) is a camera-controlled image-to-video model: a first-frame image, a
text prompt (Gemma-2), per-frame camera-to-world poses (OpenCV) and pinhole intrinsics go through a
linear-attention DiT (`SanaWMTransformer3DModel`) and the LTX-2 VAE (`AutoencoderKLLTX2Video`). This
builder keeps every component a few kilobytes:

  tokenizer     GemmaTokenizer over single characters (BPE without merges), built from a vocabulary dict;
  text_encoder  Gemma2Model, 1 layer, width 16;
  vae           AutoencoderKLLTX2Video, two spatio-temporal down/up blocks and spatial patch 2: it
                compresses 4x in time and 8x in space (the public VAE: 8x and 32x), so 5 frames of 32 x 32
                are legal (4k+1 frames, sizes multiple of 8) and the generation tests share their sizes;
  transformer   SanaWMTransformer3DModel, 2 blocks (one gated-delta-net, one softmax), width 32, 2 heads of
                16; its Pluecker embedder (zero-initialised by the class, as the released model is trained
                from zero) gets random weights, so both camera paths (UCPE rays, chunk Pluecker) act;
  scheduler     FlowMatchEulerDiscreteScheduler.

The videos are noise-like (random weights); what they test is the plumbing: configs, loading, frame/size
rules, the poses and intrinsics the pipeline receives, DLPack, reconstruction.

    python -m third_party.tiny_sana_wm /tmp/tiny_sana_wm
"""

from __future__ import annotations

import argparse
import string

import torch

TEXT_DIM = 16  # Gemma-2 hidden size == the transformer's caption_channels
LATENT_CHANNELS = 8
TEMPORAL = 4  # the tiny VAE's temporal compression (frames = 4k + 1)
SPATIAL = 8  # the tiny VAE's spatial compression (sizes multiple of 8; patch size 1)


def tiny_tokenizer():
    """A Gemma tokenizer over single characters (letters, digits, punctuation, the word separator)."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in "\u2581" + string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(c, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[])


def tiny_text_encoder(vocab_size: int):
    """A one-layer Gemma2Model of width TEXT_DIM (the pipeline reads its last hidden states)."""
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(0)
    cfg = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=2048,
        sliding_window=64,
    )
    return Gemma2Model(cfg).eval()


def tiny_vae():
    """An LTX-2 VAE compressing (F, H, W) to ((F - 1) / 4 + 1, H / 8, W / 8) with LATENT_CHANNELS channels.

    The compression ratios are also written into its config (`temporal_compression_ratio`,
    `spatial_compression_ratio`), as the released LTX-2 VAE config does."""
    from diffusers import AutoencoderKLLTX2Video

    torch.manual_seed(0)
    return AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8),
        down_block_types=("LTX2VideoDownBlock3D", "LTX2VideoDownBlock3D"),
        decoder_block_out_channels=(8, 16),
        layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1),
        spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True),
        decoder_inject_noise=(False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True),
        upsample_factor=(2, 2),
        patch_size=2,
        patch_size_t=1,
        spatial_compression_ratio=SPATIAL,
        temporal_compression_ratio=TEMPORAL,
    ).eval()


def tiny_transformer(plucker_scale: float = 0.5):
    """A 2-block SanaWMTransformer3DModel (GDN + softmax) over the tiny VAE's latents; the chunk Pluecker
    input has 6 x TEMPORAL channels (6 ray coordinates per frame of a latent frame's chunk)."""
    from diffusers import SanaWMTransformer3DModel

    torch.manual_seed(0)
    tr = SanaWMTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        num_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        patch_size=(1, 1, 1),
        softmax_every_n=2,
        linear_head_dim=16,
        conv_kernel_size=2,
        chunk_plucker_channels=6 * TEMPORAL,
        chunk_plucker_post_attn_blocks=2,
        caption_channels=TEXT_DIM,
        mlp_ratio=2.0,
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = tr.plucker_embedder.proj.weight
        w.copy_(plucker_scale * torch.randn(w.shape, generator=g))
    return tr.eval()


def sana_wm():
    """The tiny SanaWMPipeline (image + text + cameras -> video)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaWMPipeline

    tok = tiny_tokenizer()
    return SanaWMPipeline(
        tokenizer=tok,
        text_encoder=tiny_text_encoder(len(tok)),
        vae=tiny_vae(),
        transformer=tiny_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def build(folder: str) -> str:
    """Build the tiny SanaWMPipeline into `folder` (save_pretrained); returns folder."""
    sana_wm().save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    print(build(ap.parse_args().folder))


if __name__ == "__main__":
    main()
