"""VideoX-Fun's Wan Fun Control-Camera transformers, read from their released folders: JSON and headers only.

Nothing here imports torch: `inspect` reads config.json and the safetensors headers (names, dtypes, shapes;
the first 8 + N bytes of each file), so a wrong folder, a missing tensor or a shape that config.json does not
declare is refused before any weight is loaded, each with an `InputError` whose one line names the file. The
torch side (the adapter, the key map into diffusers' `WanTransformer3DModel`, the sampler) is
third_party/camera_adapter.py.

Released layouts (`generator.camera_model`):
  Wan2.1-Fun-V1.1-1.3B/14B-Control-Camera, Wan2.2-Fun-5B-Control-Camera: the transformer at the folder's root,
      config.json + diffusion_pytorch_model.safetensors (or shards listed by
      diffusion_pytorch_model.safetensors.index.json); the folder's other files (Wan2.1_VAE.pth, the T5 / CLIP
      .pth, tokenizer folders) are the original-format VAE and encoders, which are not read: those come from
      the diffusers folder `generator.model`.
  Wan2.2-Fun-A14B-Control-Camera: low_noise_model/ and high_noise_model/, each laid out as above (two experts,
      the high-noise one for timesteps t >= 0.9 x 1000, VideoX-Fun's boundary for this model).
config.json uses the original Wan names (dim, ffn_dim, in_dim, out_dim, num_heads, num_layers, text_dim,
freq_dim, patch_size, eps, qk_norm, cross_attn_norm, model_type, text_len) plus add_control_adapter,
in_dim_control_adapter and downscale_factor_control_adapter; absent optional keys take VideoX-Fun's defaults.
The weights keep the original names: patch_embedding, text_embedding.{0,2}, time_embedding.{0,2},
time_projection.1, blocks.N.{self_attn,cross_attn}.{q,k,v,o,norm_q,norm_k}, blocks.N.cross_attn.{k_img,v_img,
norm_k_img} (image input), blocks.N.{norm3,ffn.0,ffn.2,modulation}, head.{head,modulation},
img_emb.proj.{0,1,3,4} (Wan2.1 only: CLIP features), control_adapter.{conv,residual_blocks.0.conv1,
residual_blocks.0.conv2}.

How the transformer's input channels (in_dim) split, z = the VAE's latent channels (VideoX-Fun's pipelines):
  "start"   (in_dim = 2z, Wan2.1 V1.1): noise + the start image's latent in latent frame 0, zeros elsewhere;
            plus CLIP features of the start image (img_emb);
  "inpaint" (in_dim = 2z + 4, Wan2.2): noise + a 4-channel mask (1 in latent frame 0) + the latents of the
            video [start image, grey frames] (diffusers' I2V condition); with a 16x VAE (the 5B), latent frame
            0 is also replaced by the image's latent and gets timestep 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from typing import Any

from any4d_jax import files
from any4d_jax.errors import InputError, MissingInput

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = "diffusion_pytorch_model.safetensors.index.json"
EXPERTS = ("low_noise_model", "high_noise_model")  # transformer, transformer_2 (VideoX-Fun's order)
MOE_BOUNDARY = 0.9  # VideoX-Fun config/wan2.2/wan_civitai_i2v.yaml, used by the A14B Control-Camera example
TEXT_LEN = 512  # the original transformer pads the text to 512 tokens (diffusers' I2V attention assumes it)
TEMPORAL_FOLD = 4  # frames per latent frame in the camera fold (VideoX-Fun hardcodes 4)
MAX_CONFIG_BYTES = 2**20
MAX_HEADER_BYTES = 2**27  # a safetensors header is JSON: ~100 bytes per tensor
FLOAT_DTYPES = ("F32", "F16", "BF16")
# Integer config keys: required (no default) or VideoX-Fun's default.
_REQUIRED = ("dim", "ffn_dim", "in_dim", "out_dim", "num_heads", "num_layers")
_DEFAULTS = {"text_dim": 4096, "freq_dim": 256, "text_len": 512, "in_dim_control_adapter": 24}
FIX = (
    "pass a released Fun Control-Camera folder (Wan2.1-Fun-V1.1-*-Control-Camera or "
    "Wan2.2-Fun-*-Control-Camera) as --config.generator.camera_model"
)


@dataclasses.dataclass(frozen=True)
class Expert:
    """One transformer of the folder: its config.json and {original tensor name: (file, shape)}."""

    folder: str
    config_path: str
    tensors: dict


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    """A Fun Control-Camera checkpoint, read from JSON and safetensors headers.

    experts: (transformer,) or (low-noise transformer, high-noise transformer_2).
    dim, num_heads, ffn_dim, num_layers, in_dim, out_dim, text_dim, freq_dim: the original Wan sizes.
    patch: (pt, ph, pw); eps; qk_norm; cross_attn_norm.
    image_dim: CLIP feature width of img_emb (Wan2.1), None without image input (Wan2.2).
    adapter_in: camera channels into the adapter (24 = 6 Pluecker x 4 frames); downscale: its PixelUnshuffle.
    """

    path: str
    experts: tuple
    dim: int
    num_heads: int
    ffn_dim: int
    num_layers: int
    in_dim: int
    out_dim: int
    text_dim: int
    freq_dim: int
    patch: tuple
    eps: float
    qk_norm: bool
    cross_attn_norm: bool
    image_dim: int | None
    adapter_in: int
    downscale: int

    @property
    def pixels_per_token(self) -> int:
        """Pixels per token side: the adapter's PixelUnshuffle x its strided conv (the patch)."""
        return self.downscale * self.patch[1]


@dataclasses.dataclass(frozen=True)
class Pairing:
    """How a CameraSpec sits on a diffusers Wan folder (`pair`).

    layout: "start" | "inpaint" (module docstring); latent_channels: the VAE's z; vae_spatial: its factor;
    first_frame_latent: latent frame 0 is the image's latent, at timestep 0 (16x VAE, the Wan2.2 5B).
    """

    layout: str
    latent_channels: int
    vae_spatial: int
    first_frame_latent: bool
    boundary: float | None


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise MissingInput(f"{path}: missing ({what})")
    data = files.read_json(path, max_bytes=MAX_CONFIG_BYTES, what=what)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object ({what})")
    return data


def _int(cfg: dict, key: str, path: str, default: Any = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise InputError(f"{path}: missing key '{key}' (a positive integer); {FIX}")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**20:
        raise InputError(f"{path}: '{key}' must be a positive integer, got {_show(value)}")
    return value


def _bool(cfg: dict, key: str, path: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{path}: '{key}' must be true or false, got {_show(value)}")
    return value


def read_header(path: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header (no tensor data is read).

    InputError naming the file when it is not a well-formed safetensors file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than 8 bytes")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {n} does not fit the file")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        out, end = {}, 0
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape, offsets = info.get("shape"), info.get("data_offsets")
            ok = isinstance(info.get("dtype"), str) and isinstance(shape, list) and isinstance(offsets, list)
            if not (ok and len(offsets) == 2 and all(isinstance(v, int) and v >= 0 for v in shape + offsets)):
                raise ValueError(f"bad entry for {_show(name)}")
            out[name] = (info["dtype"], tuple(shape))
            end = max(end, offsets[1])
        if 8 + n + end > size:
            raise ValueError("truncated")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as e:
        reason = " ".join(str(e).split())[:100] or type(e).__name__
        raise InputError(f"{path}: not a readable safetensors file ({reason}); {FIX}") from None
    return out


def _tensors(folder: str) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """{name: (file, dtype, shape)} of the transformer weights in folder (one file, or shards by index)."""
    index_path, single = os.path.join(folder, INDEX), os.path.join(folder, WEIGHTS)
    if os.path.isfile(index_path):
        index = _json(index_path, "safetensors index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
        out: dict = {}
        for shard in sorted(set(weight_map.values())):
            path = os.path.join(folder, shard)
            if os.path.basename(shard) != shard or not os.path.isfile(path):
                raise InputError(f"{index_path} lists the shard {_show(shard)}, which is not in {folder}")
            for name, (dtype, shape) in read_header(path).items():
                if weight_map.get(name) != shard:
                    raise InputError(f"{path}: holds '{name}', which {index_path} does not map to it")
                out[name] = (path, dtype, shape)
        absent = sorted(set(weight_map) - set(out))
        if absent:
            raise InputError(
                f"{index_path}: {len(absent)} listed tensor(s) are in no shard, e.g. {absent[:3]}"
            )
        return out
    if os.path.isfile(single):
        return {name: (single, dtype, shape) for name, (dtype, shape) in read_header(single).items()}
    raise MissingInput(f"{folder}: no {WEIGHTS} (nor {INDEX} with its shards) next to {CONFIG}; {FIX}")


def expected_shapes(
    *,
    dim: int,
    ffn_dim: int,
    in_dim: int,
    out_dim: int,
    num_layers: int,
    text_dim: int,
    freq_dim: int,
    patch: tuple,
    qk_norm: bool,
    cross_attn_norm: bool,
    image_dim: int | None,
    adapter_in: int,
    downscale: int,
) -> dict[str, tuple[int, ...]]:
    """{original tensor name: shape} of a Fun Control-Camera transformer (VideoX-Fun's WanTransformer3DModel
    with add_control_adapter, one residual block in the adapter)."""
    d = dim
    lin = lambda name, o, i: {f"{name}.weight": (o, i), f"{name}.bias": (o,)}  # noqa: E731
    out: dict = {"patch_embedding.weight": (d, in_dim, *patch), "patch_embedding.bias": (d,)}
    out |= lin("text_embedding.0", d, text_dim) | lin("text_embedding.2", d, d)
    out |= (
        lin("time_embedding.0", d, freq_dim)
        | lin("time_embedding.2", d, d)
        | lin("time_projection.1", 6 * d, d)
    )
    for i in range(num_layers):
        b = f"blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                out |= lin(f"{b}.{attn}.{p}", d, d)
            if qk_norm:
                out |= {f"{b}.{attn}.norm_q.weight": (d,), f"{b}.{attn}.norm_k.weight": (d,)}
        if image_dim is not None:
            out |= lin(f"{b}.cross_attn.k_img", d, d) | lin(f"{b}.cross_attn.v_img", d, d)
            if qk_norm:
                out[f"{b}.cross_attn.norm_k_img.weight"] = (d,)
        if cross_attn_norm:
            out |= {f"{b}.norm3.weight": (d,), f"{b}.norm3.bias": (d,)}
        out |= lin(f"{b}.ffn.0", ffn_dim, d) | lin(f"{b}.ffn.2", d, ffn_dim)
        out[f"{b}.modulation"] = (1, 6, d)
    out |= lin("head.head", out_dim * math.prod(patch), d)
    out["head.modulation"] = (1, 2, d)
    if image_dim is not None:
        c = image_dim
        out |= {"img_emb.proj.0.weight": (c,), "img_emb.proj.0.bias": (c,)}
        out |= lin("img_emb.proj.1", c, c) | lin("img_emb.proj.3", d, c)
        out |= {"img_emb.proj.4.weight": (d,), "img_emb.proj.4.bias": (d,)}
    conv = {
        "control_adapter.conv.weight": (d, adapter_in * downscale**2, patch[1], patch[2]),
        "control_adapter.conv.bias": (d,),
    }
    for k in ("conv1", "conv2"):
        conv[f"control_adapter.residual_blocks.0.{k}.weight"] = (d, d, 3, 3)
        conv[f"control_adapter.residual_blocks.0.{k}.bias"] = (d,)
    return out | conv


def _config(folder: str) -> tuple[str, dict, dict]:
    """(config path, the architecture from config.json, raw config)."""
    path = os.path.join(folder, CONFIG)
    cfg = _json(path, "Fun Control-Camera transformer config")
    if "dim" not in cfg and (
        "num_attention_heads" in cfg or cfg.get("_class_name") == "WanTransformer3DModel"
    ):
        raise InputError(
            f"{path}: a diffusers WanTransformer3DModel config, not the released Fun Control-Camera layout "
            f"(original Wan keys dim, num_heads, ...); {FIX}"
        )
    arch = {k: _int(cfg, k, path) for k in _REQUIRED}
    arch |= {k: _int(cfg, k, path, v) for k, v in _DEFAULTS.items()}
    patch = cfg.get("patch_size", [1, 2, 2])
    if not (
        isinstance(patch, list)
        and len(patch) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in patch)
    ):
        raise InputError(f"{path}: 'patch_size' must be a list of 3 positive integers, got {_show(patch)}")
    eps = cfg.get("eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise InputError(f"{path}: 'eps' must be a number in (0, 1), got {_show(eps)}")
    window = cfg.get("window_size", [-1, -1])
    if list(window) != [-1, -1] if isinstance(window, list) else True:
        raise InputError(
            f"{path}: 'window_size' {_show(window)}: only global attention [-1, -1] is supported"
        )
    if _bool(cfg, "add_ref_conv", path, False):
        raise InputError(
            f"{path}: add_ref_conv is true: a Fun Control (reference) model, not Control-Camera; {FIX}"
        )
    if not _bool(cfg, "add_control_adapter", path, True):
        raise InputError(f"{path}: add_control_adapter is false: not a Fun Control-Camera transformer; {FIX}")
    d, h = arch["dim"], arch["num_heads"]
    if d % h or (d // h) % 2:
        raise InputError(f"{path}: dim {d} must split into {h} heads of an even width")
    arch |= {
        "patch": tuple(patch),
        "eps": float(eps),
        "qk_norm": _bool(cfg, "qk_norm", path, True),
        "cross_attn_norm": _bool(cfg, "cross_attn_norm", path, True),
    }
    return path, arch, cfg


def _expert(folder: str) -> tuple[Expert, dict]:
    """One expert folder: (Expert, architecture dict for CameraSpec), strictly checked against the weights."""
    cfg_path, arch, cfg = _config(folder)
    tensors = _tensors(folder)
    conv = tensors.get("control_adapter.conv.weight")
    if conv is None:
        raise InputError(
            f"{tensors[next(iter(tensors))][0] if tensors else folder}: no control_adapter weights: a Wan "
            f"transformer without the camera adapter, not Fun Control-Camera; {FIX}"
        )
    adapter_in = arch.pop("in_dim_control_adapter")
    downscale = cfg.get("downscale_factor_control_adapter")
    if downscale is None:  # absent in some configs: the conv's input channels tell (adapter_in x downscale^2)
        ratio = conv[2][1] / adapter_in if len(conv[2]) == 4 else 0
        downscale = round(math.sqrt(ratio)) if ratio > 0 else 0
    downscale = _int(
        {"downscale_factor_control_adapter": downscale}, "downscale_factor_control_adapter", cfg_path
    )
    image = tensors.get("img_emb.proj.0.weight")
    image_dim = image[2][0] if image is not None and len(image[2]) == 1 else None
    arch.pop("text_len")
    arch |= {"image_dim": image_dim, "adapter_in": adapter_in, "downscale": downscale}
    expect = expected_shapes(**{k: v for k, v in arch.items() if k not in ("num_heads", "eps")})
    missing = sorted(set(expect) - set(tensors))
    unexpected = sorted(set(tensors) - set(expect))
    if missing or unexpected:
        where = os.path.join(folder, INDEX if os.path.isfile(os.path.join(folder, INDEX)) else WEIGHTS)
        if unexpected:
            where = tensors[unexpected[0]][0]
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"] if unexpected else []
        raise InputError(
            f"{where}: the tensors do not match {cfg_path}: {'; '.join(parts)}; is this the config of these "
            "weights?"
        )
    for name, shape in expect.items():
        file, dtype, got = tensors[name]
        if got != shape:
            raise InputError(f"{file}: '{name}' has shape {list(got)} but {cfg_path} needs {list(shape)}")
        if dtype not in FLOAT_DTYPES:
            raise InputError(f"{file}: '{name}' is {dtype}, expected one of {', '.join(FLOAT_DTYPES)}")
    shapes = {name: (file, shape) for name, (file, _, shape) in tensors.items()}
    return Expert(folder=folder, config_path=cfg_path, tensors=shapes), arch


def inspect(path: str) -> CameraSpec:
    """The CameraSpec of a released Fun Control-Camera folder (module docstring); reads JSON and safetensors
    headers only. InputError / MissingInput (one line naming the file, with the fix) for anything else."""
    where = f"generator.camera_model {path}"
    if not os.path.isdir(path):
        raise MissingInput(f"{where}: no such folder")
    if os.path.isfile(os.path.join(path, CONFIG)):
        folders = [path]
    elif all(os.path.isdir(os.path.join(path, e)) for e in EXPERTS):
        folders = [os.path.join(path, e) for e in EXPERTS]
    else:
        raise InputError(
            f"{where}: not a Fun Control-Camera folder: needs {CONFIG} + {WEIGHTS} (Wan2.1, Wan2.2 5B) or "
            f"{' and '.join(e + '/' for e in EXPERTS)} (Wan2.2 A14B); {FIX}"
        )
    experts, archs = zip(*(_expert(f) for f in folders), strict=True)
    for e, a in zip(experts[1:], archs[1:], strict=True):
        if a != archs[0]:
            diff = sorted(k for k in a if a[k] != archs[0][k])
            raise InputError(
                f"{e.config_path}: the two experts differ in {diff}; both must be of one Fun Control-Camera "
                "model"
            )
    return CameraSpec(path=path, experts=tuple(experts), **archs[0])


def pair(cam: CameraSpec, model: str) -> Pairing:
    """Check that the diffusers Wan folder `model` (generator.model) can host `cam`: its VAE's latent channels
    and factors, its text encoder's width, its image encoder (for Wan2.1's CLIP input), its patch size; JSON
    only. One-line InputError naming both folders' files otherwise."""
    cam_cfg = cam.experts[0].config_path
    index = _json(os.path.join(model, "model_index.json"), "pipeline index")
    vae_path = os.path.join(model, "vae", CONFIG)
    vae = _json(vae_path, "VAE config")
    z = _int(vae, "z_dim", vae_path, 16)
    down = vae.get("temperal_downsample", [False, True, True])
    down = down if isinstance(down, list) else [False, True, True]
    spatial = _int(vae, "scale_factor_spatial", vae_path, 2 ** len(down))
    temporal = _int(vae, "scale_factor_temporal", vae_path, 2 ** sum(bool(v) for v in down))
    if cam.out_dim != z:
        raise InputError(
            f"{cam_cfg}: out_dim {cam.out_dim} but the VAE of {vae_path} has z_dim {z}: pair a Wan2.1 / 2.2 "
            "A14B camera model with a 16-channel Wan VAE folder, the 2.2 5B one with Wan2.2-TI2V-5B-Diffusers"
        )
    if cam.in_dim == 2 * z:
        layout = "start"
    elif cam.in_dim == 2 * z + 4:
        layout = "inpaint"
    else:
        raise InputError(
            f"{cam_cfg}: in_dim {cam.in_dim} fits neither Fun camera input for the z_dim {z} VAE of "
            f"{vae_path} ({2 * z}: noise + start-image latents, Wan2.1; {2 * z + 4}: noise + mask + image "
            "latents, Wan2.2)"
        )
    if cam.downscale != spatial or temporal != TEMPORAL_FOLD:
        raise InputError(
            f"{cam_cfg}: the camera adapter unshuffles {cam.downscale} px and folds {TEMPORAL_FOLD} frames, "
            f"but the VAE of {vae_path} compresses {spatial} px and {temporal} frames: use the matching Wan "
            "folder"
        )
    te_path = os.path.join(model, "text_encoder", CONFIG)
    te = _json(te_path, "text encoder config")
    width = te.get("d_model")
    if width != cam.text_dim:
        raise InputError(
            f"{cam_cfg}: text_dim {cam.text_dim} but the text encoder of {te_path} has d_model {_show(width)}"
        )
    tr_path = os.path.join(model, "transformer", CONFIG)
    if os.path.isfile(tr_path):
        patch = _json(tr_path, "transformer config").get("patch_size", [1, 2, 2])
        if list(patch) != list(cam.patch) if isinstance(patch, list) else True:
            raise InputError(f"{cam_cfg}: patch_size {list(cam.patch)} but {tr_path} has {_show(patch)}")
    if cam.image_dim is not None:
        has = [
            isinstance(index.get(k), list) and index[k][0] is not None
            for k in ("image_encoder", "image_processor")
        ]
        if not all(has):
            raise InputError(
                f"{cam_cfg}: this camera model takes CLIP image features (img_emb), but "
                f"{os.path.join(model, 'model_index.json')} has no image_encoder / image_processor: use a "
                "Wan2.1 image-to-video diffusers folder (e.g. Wan2.1-I2V-14B-480P-Diffusers)"
            )
        ie_path = os.path.join(model, "image_encoder", CONFIG)
        ie = _json(ie_path, "image encoder config")
        hidden = ie.get("hidden_size", (ie.get("vision_config") or {}).get("hidden_size"))
        if hidden != cam.image_dim:
            raise InputError(
                f"{cam_cfg}: img_emb takes {cam.image_dim}-wide CLIP features but {ie_path} has hidden_size "
                f"{_show(hidden)}"
            )
    return Pairing(
        layout=layout,
        latent_channels=z,
        vae_spatial=spatial,
        first_frame_latent=layout == "inpaint" and spatial >= 16,
        boundary=MOE_BOUNDARY if len(cam.experts) == 2 else None,
    )


# Original Wan names -> diffusers WanTransformer3DModel names (control_adapter.* stays with the adapter).
_ROOTS = (
    ("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
    ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
    ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
    ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
    ("time_projection.1.", "condition_embedder.time_proj."),
    ("img_emb.proj.0.", "condition_embedder.image_embedder.norm1."),
    ("img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."),
    ("img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."),
    ("img_emb.proj.4.", "condition_embedder.image_embedder.norm2."),
    ("head.head.", "proj_out."),
    ("head.modulation", "scale_shift_table"),
    ("patch_embedding.", "patch_embedding."),
)
_BLOCK = (
    ("self_attn.q.", "attn1.to_q."),
    ("self_attn.k.", "attn1.to_k."),
    ("self_attn.v.", "attn1.to_v."),
    ("self_attn.o.", "attn1.to_out.0."),
    ("self_attn.norm_q.", "attn1.norm_q."),
    ("self_attn.norm_k.", "attn1.norm_k."),
    ("cross_attn.q.", "attn2.to_q."),
    ("cross_attn.k.", "attn2.to_k."),
    ("cross_attn.v.", "attn2.to_v."),
    ("cross_attn.o.", "attn2.to_out.0."),
    ("cross_attn.norm_q.", "attn2.norm_q."),
    ("cross_attn.norm_k.", "attn2.norm_k."),
    ("cross_attn.k_img.", "attn2.add_k_proj."),
    ("cross_attn.v_img.", "attn2.add_v_proj."),
    ("cross_attn.norm_k_img.", "attn2.norm_added_k."),
    ("norm3.", "norm2."),
    ("ffn.0.", "ffn.net.0.proj."),
    ("ffn.2.", "ffn.net.2."),
    ("modulation", "scale_shift_table"),
)


def _swap(name: str, pairs, reverse: bool) -> str | None:
    for a, b in pairs:
        a, b = (b, a) if reverse else (a, b)
        if name.startswith(a):
            return b + name[len(a) :]
    return None


def to_diffusers(name: str, reverse: bool = False) -> str | None:
    """The diffusers WanTransformer3DModel name of an original Wan tensor name (reverse=True: the other way);
    None for a name outside the map (control_adapter.* included: the adapter keeps its own names)."""
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        new = _swap(rest, _BLOCK, reverse)
        return None if new is None else f"blocks.{i}.{new}"
    return _swap(name, _ROOTS, reverse)
