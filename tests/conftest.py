"""Shared fixtures. Tests keep scenes tiny and reuse jitted functions: XLA compile time dominates on CPU."""

import os
import tempfile

# JAX's persistent compilation cache, for every process of the run: the xdist workers and the subprocesses
# tests start (preemption, distributed, the jobs) compile the same tiny programs again and again; with the
# cache a program compiled once is read back (a 12-step training run in a fresh process: 14 s -> 4 s). Set
# before JAX is imported (it reads these at import) and inherited by every child; a cached executable is the
# one XLA compiled, so nothing computed changes. One folder per user, reused by later runs of the suite (JAX
# keys its entries on its version, the backend and the flags).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"any4d_jax_test_cache_{os.getuid()}")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.geometry import cameras
from any4d_jax.render import Splats


def random_splats(key, n, scale=0.05, depth=(2.0, 4.0), spread=1.0, sh_degree=None, num_features=0):
    """Scene-A-like random Gaussians in front of an identity camera."""
    k = jax.random.split(key, 7)
    xy = jax.random.uniform(k[0], (n, 2), minval=-spread, maxval=spread)
    z = jax.random.uniform(k[1], (n, 1), minval=depth[0], maxval=depth[1])
    means = jnp.concatenate([xy, z], -1)
    quats = jax.random.normal(k[2], (n, 4))
    scales = scale * jnp.exp(0.3 * jax.random.normal(k[3], (n, 3)))
    opac = jax.nn.sigmoid(jax.random.normal(k[4], (n,)) + 0.5)
    if sh_degree is None:
        colors = jax.random.uniform(k[5], (n, 3))
    else:
        colors = 0.4 * jax.random.normal(k[5], (n, (sh_degree + 1) ** 2, 3))
    feats = jax.random.normal(k[6], (n, num_features)) if num_features else None
    return Splats(means, quats, scales, opac, colors, feats)


def pinhole(width, height, focal=None, viewmat=None):
    focal = focal or 0.9 * max(width, height)
    vm = jnp.eye(4) if viewmat is None else viewmat
    return cameras.make_camera(vm, cameras.intrinsics(focal, focal, width / 2, height / 2), width, height)


# XLA compilation dominates most tests on CPU. These options cut compile time ~4x without changing what is
# computed (they make the compiled code slower, so long-running tests use plain jax.jit). They are probed once
# and dropped if this jaxlib does not know them.
_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}
try:
    jax.jit(lambda x: x + 1, compiler_options=_FAST_COMPILE)(np.float32(0.0))
except Exception:  # pragma: no cover - depends on the installed jaxlib
    _FAST_COMPILE = {}


def fast_jit(f, **kwargs):
    """jax.jit tuned for compile time (tests whose cost is compiling, not running)."""
    return jax.jit(f, compiler_options=_FAST_COMPILE or None, **kwargs)


@pytest.fixture(scope="session")
def key():
    return jax.random.PRNGKey(0)
