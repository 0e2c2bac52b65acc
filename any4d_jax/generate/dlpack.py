"""torch -> JAX without a copy where possible (DLPack). Imports torch only when called with a tensor.

Facts this relies on (jax 0.10, torch 2.13, CPU): `jnp.from_dlpack(tensor)` shares the buffer for float32,
bfloat16, float16, uint8, bool and int32 tensors whose strides are a permutation of a dense layout (so the
(F, 3, H, W) -> (F, H, W, 3) permute is shared: JAX keeps the permuted layout); tensors that need grad must be
detached, strided views (step slices, expand) must be made contiguous (a copy), and float64 is cast to float32
(a copy) unless x64 is enabled. The memory stays shared: torch must not write the tensor afterwards.

Across devices: a tensor reports where it lives with `__dlpack_device__()` -> (DLPack device type, index),
type 1 = CPU, 2 = CUDA, 3 = CUDA pinned host, 10 = ROCm. `jnp.from_dlpack` needs a JAX backend for that
platform holding that device index; without one (CPU jax with a CUDA generator) it raises "Unknown backend
cuda". Such tensors are copied to the host first (`tensor.cpu()`, one device -> host copy), then shared as
on CPU. With CUDA jax and the tensor on one of its GPUs, the buffer is shared on the GPU (JAX passes its
stream to `__dlpack__`, torch orders its own stream before it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# DLPack device type -> JAX platform name (as jax/_src/dlpack.py maps them).
DLPACK_PLATFORMS = {1: "cpu", 2: "cuda", 3: "cuda", 10: "rocm"}


def _is_dense(t: Any) -> bool:
    """True if the strides are a permutation of a dense (compact) layout and the offset is 64-byte aligned."""
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape, strict=True) if n != 1)
    expect = 1
    for stride, size in dims:
        if stride != expect:
            return False
        expect *= size
    return t.data_ptr() % 64 == 0


def jax_can_import(device_type: int, device_id: int) -> bool:
    """Whether JAX has a backend holding DLPack device (device_type, device_id) (see the module docstring).

    CPU is always importable; a CUDA/ROCm device needs that backend (CUDA jax) with a device whose
    local_hardware_id is `device_id` (the CUDA ordinal torch reports).
    """
    platform = DLPACK_PLATFORMS.get(int(device_type))
    if platform == "cpu":
        return True
    if platform is None:
        return False
    try:
        devices = jax.local_devices(backend=platform)
    except RuntimeError:  # "Unknown backend cuda": JAX was installed without that platform
        return False
    return any(d.local_hardware_id == int(device_id) for d in devices)


def needs_host_copy(tensor: Any) -> bool:
    """True when `tensor` lives on a device JAX cannot import (it must cross as `tensor.cpu()`)."""
    device_type, device_id = tensor.__dlpack_device__()
    return not jax_can_import(device_type, device_id)


def to_jax(tensor: Any) -> jax.Array:
    """A JAX array with the values of a torch tensor, sharing its memory when the layout allows.

    Detaches; copies to the host when JAX has no backend for the tensor's device (module docstring); casts
    float64 to float32 (JAX's default precision); makes non-dense views contiguous first.
    """
    import torch  # lazy: only callers holding a torch tensor pay for torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"to_jax: expected a torch.Tensor, got {type(tensor).__name__}")
    t = tensor.detach()
    if needs_host_copy(t):
        t = t.cpu()
    if t.dtype == torch.float64 and not jax.config.jax_enable_x64:
        t = t.to(torch.float32)
    if not _is_dense(t):
        t = t.contiguous()
    return jnp.from_dlpack(t)


def video_to_jax(video: Any) -> jax.Array:
    """(F, 3, H, W) or (1, F, 3, H, W) torch video in [0, 1] -> (F, H, W, 3) JAX array (no copy on CPU).

    The permute to channels-last is a view; DLPack hands JAX the same buffer with a permuted layout. A video
    on a device JAX has no backend for (a CUDA video with CPU jax) is copied to the host first.
    """
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise ValueError(f"video_to_jax: expected one video, got a batch of {video.shape[0]}")
        video = video[0]
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"video_to_jax: expected (F, 3, H, W), got {tuple(video.shape)}")
    return to_jax(video.permute(0, 2, 3, 1))
