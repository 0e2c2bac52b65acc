"""Tiny randomly initialised diffusers video pipelines, built offline (no hub, no weights): tests and demos.

Configs follow the shapes diffusers' own fast tests use (1-2 layers, a handful of channels); the tokenizer is
built from a small whitespace vocabulary with `tokenizers`, so nothing is fetched. Each builder saves the
pipeline with `save_pretrained(folder)`, which is exactly what `any4d_jax`'s loader reads back with
local_files_only=True. The videos are noise-like (random weights); what they test is the plumbing: configs,
loading, frame/size rules, camera conditioning, DLPack, reconstruction.

    python -m third_party.tiny_pipelines t2v /tmp/tiny_wan_t2v   # then:
    python -m experiments.run --config=configs/text_to_4d.py --config.generator.model=/tmp/tiny_wan_t2v ...
"""

from __future__ import annotations

import argparse

import torch

WORDS = (
    "a an the of and in on with to at from small big red green blue white black robot cat dog fox bird car "
    "tree house table beach snow walking running flying sitting over under across wooden street night day"
).split()
TEXT_DIM = 32  # T5 d_model == the transformer's text_dim


def tiny_tokenizer():
    """A T5-like fast tokenizer over WORDS (word level, whitespace split), with <pad>, </s>, <unk>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=1, num_heads=4)
    return UMT5EncoderModel(cfg).eval()


def tiny_wan_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _wan_transformer_kwargs(**over) -> dict:
    kw = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    kw.update(over)
    return kw


def _common():
    from diffusers import FlowMatchEulerDiscreteScheduler

    tok = tiny_tokenizer()
    return dict(
        tokenizer=tok,
        text_encoder=tiny_text_encoder(len(tok)),
        vae=tiny_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )


def wan_t2v():
    """A tiny WanPipeline (text-to-video): 4k+1 frames, sizes multiple of 16, at most 32 tokens per axis."""
    from diffusers import WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    return WanPipeline(transformer=WanTransformer3DModel(**_wan_transformer_kwargs()), **_common())


def wan_i2v():
    """A tiny WanImageToVideoPipeline (image-to-video) with a tiny CLIP image encoder."""
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**_wan_transformer_kwargs(in_channels=36, image_dim=4))
    torch.manual_seed(0)
    enc = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    ).eval()
    proc = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(
        transformer=transformer, image_encoder=enc, image_processor=proc, **_common()
    )


def wan_vace():
    """A tiny WanVACEPipeline (video-conditioned: control frames + masks, white = generate)."""
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    transformer = WanVACETransformer3DModel(
        **_wan_transformer_kwargs(num_layers=2), vace_layers=[0], vace_in_channels=96
    )
    return WanVACEPipeline(transformer=transformer, **_common())


BUILDERS = {"t2v": wan_t2v, "i2v": wan_i2v, "vace": wan_vace}


def build(kind: str, folder: str) -> str:
    """Build the tiny pipeline `kind` (t2v | i2v | vace) into folder; returns folder. (A camera model to pair
    with the i2v folder: third_party/tiny_fun_camera.py.)"""
    if kind not in BUILDERS:
        raise ValueError(f"kind must be one of {sorted(BUILDERS)}, got {kind!r}")
    BUILDERS[kind]().save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(BUILDERS))
    ap.add_argument("folder")
    args = ap.parse_args()
    print(build(args.kind, args.folder))


if __name__ == "__main__":
    main()
