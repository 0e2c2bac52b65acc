"""JAX's GPU allocator, set before JAX's first use when a torch generator shares the GPU.

By default JAX preallocates 75% of a GPU's memory at its first operation. A prompt job with a CUDA diffusers
generator (generator.name = "diffusers", generator.device = cuda | cuda:K) builds its trajectory in JAX before
the pipeline loads, so torch would get the remaining quarter. `configure_jax_memory(config)` therefore sets,
for such a config only and only where the user set none of JAX's allocator variables:

    generator.jax_memory_fraction None  -> XLA_PYTHON_CLIENT_PREALLOCATE=false (JAX allocates as it goes)
    generator.jax_memory_fraction f     -> XLA_CLIENT_MEM_FRACTION=f (JAX preallocates f of the GPU)

jaxlib reads them when it creates its GPU backend (jaxlib/xla_client.py), so this must run before anything
makes a JAX array: experiments/run.py calls it first thing in main. Importing `any4d_jax.data` already does
(a module-level array), so this module imports only the standard library and errors.py. Called too late (the
backends exist) it changes nothing and prints one warning line.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from any4d_jax.errors import InputError

PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
MEM_FRACTION = "XLA_CLIENT_MEM_FRACTION"  # jaxlib 0.10's name; XLA_PYTHON_CLIENT_MEM_FRACTION is deprecated
# Any of these set by the user means the user manages JAX's allocator: none of them is touched. (Setting
# both fraction names is an error in jaxlib, so ours is never added next to the user's.)
USER_ALLOCATOR_VARS = (
    PREALLOCATE,
    MEM_FRACTION,
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)
_CUDA = re.compile(r"auto|cuda(?::\d+)?")  # auto: cuda whenever torch sees a GPU


def _get(config: Any, key: str, default: Any = None) -> Any:
    node = config
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return default
    return node


def gpu_generator(config: Any) -> bool:
    """Whether the config asks for a torch generator on a CUDA GPU (the case that shares it with JAX).
    "auto" counts: it is cuda wherever there is a GPU, and a CPU-only machine ignores the allocator vars."""
    device = _get(config, "generator.device")
    return (
        _get(config, "generator.name") == "diffusers"
        and isinstance(device, str)
        and _CUDA.fullmatch(device) is not None
    )


def check_memory_fraction(value: Any) -> float | None:
    """generator.jax_memory_fraction: None or a number in (0, 1]; one-line InputError otherwise."""
    ok = value is None or (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= 1
    )
    if not ok:
        raise InputError(
            f"--config.generator.jax_memory_fraction={value!r}: must be empty (no preallocation) or a number "
            "in (0, 1], the share of the GPU JAX preallocates"
        )
    return None if value is None else float(value)


def allocator_env(config: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set (pure): {} unless `gpu_generator(config)` and the user set no allocator variable
    (USER_ALLOCATOR_VARS) in `environ`; else PREALLOCATE=false or MEM_FRACTION=f (module docstring)."""
    fraction = check_memory_fraction(_get(config, "generator.jax_memory_fraction"))
    if not gpu_generator(config) or any(k in environ for k in USER_ALLOCATOR_VARS):
        return {}
    if fraction is None:
        return {PREALLOCATE: "false"}
    return {MEM_FRACTION: f"{fraction:g}"}


def jax_backends_initialized() -> bool:
    """Whether JAX has created its backends (then allocator variables no longer matter). Never imports jax:
    if it is not imported yet, nothing can have initialised it."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # already imported with jax: no cost, no backend

    return bool(xla_bridge.backends_are_initialized())


def configure_jax_memory(config: Any, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set `allocator_env(config, environ)` in `environ` (default os.environ); returns what was set. If JAX's
    backends already exist, sets nothing and prints one warning line on stderr (module docstring)."""
    environ = os.environ if environ is None else environ
    wanted = allocator_env(config, environ)
    if not wanted:
        return {}
    if jax_backends_initialized():
        shown = " ".join(f"{k}={v}" for k, v in wanted.items())
        print(
            f"warning: JAX is already initialised, so {shown} comes too late: JAX may hold most of the GPU "
            f"the generator needs; set it in the environment before starting Python",
            file=sys.stderr,
            flush=True,
        )
        return {}
    environ.update(wanted)
    return wanted
