"""Pytrees that cross the renderer's API: the splats it draws, its configuration and its outputs."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
from flax import struct

# Compositing constants (shared by the tile renderer and the dense reference).
ALPHA_MAX = 0.99  # alpha clamp, as the original 3DGS (gsplat uses 0.999)
ALPHA_MIN = 1.0 / 255.0  # a Gaussian whose alpha at a pixel is below this is skipped there
T_MIN = 1e-4  # a pixel stops once its transmittance would fall to this or below
LOWPASS = 0.3  # EWA low-pass added to the 2D covariance (pixels^2)
MAX_EXTENT = 3.33  # cap of the opacity-aware extent, in standard deviations


class Channels(NamedTuple):
    """Columns of the per-Gaussian values the compositor sums: `values = [rgb | depth | one | features]`.

    api.render packs them in this order, (N, 5 + F), and reads the composited sums back by these positions.
    With weights w_k = alpha_k T_k a pixel gets: sum w rgb (colour without background), sum w z (depth times
    alpha), sum w 1 = 1 - T_final (the accumulated alpha; this constant-1 column is what lets the background
    be added outside the compositor) and sum w f (features). `depth` and `alpha` are ints, so indexing with
    them drops the channel axis: acc[..., CHANNELS.alpha] is (H, W).
    """

    rgb: slice = slice(0, 3)
    depth: int = 3
    alpha: int = 4  # composites a constant 1 per Gaussian
    features: slice = slice(5, None)  # F >= 0 extra channels, to the end

    @property
    def num_fixed(self) -> int:
        """Columns before the features (the width of values when F = 0)."""
        return self.features.start


CHANNELS = Channels()


def auto_chunk_batch(backend: str) -> int:
    """RenderConfig.chunk_batch when None: 32 on CPU, 1024 on accelerators (see RenderConfig)."""
    return 32 if backend == "cpu" else 1024


BACKENDS = ("auto", "xla", "pallas")
# Platforms on which backend="auto" picks the Pallas kernels. Empty until the kernels are measured on a GPU
# against the XLA compositor and gsplat (benchmarks/gpu.py): "auto" is the XLA compositor everywhere for now,
# and backend="pallas" opts in.
AUTO_PALLAS_PLATFORMS: tuple[str, ...] = ()
_PALLAS_PLATFORMS = ("cpu", "gpu", "cuda", "rocm")  # Triton on GPUs, the Pallas interpreter on CPU


def resolve_backend(backend: str, platform: str) -> str:
    """The compositor to use, "xla" or "pallas", for RenderConfig.backend on a jax platform ("cpu", "gpu"...).

    "pallas" on CPU runs the kernels in the Pallas interpreter: exact and slow, for tests and debugging.
    Raises ValueError for an unknown backend, or "pallas" on a platform without its lowering (TPU).
    """
    if backend not in BACKENDS:
        raise ValueError(f"render: backend={backend!r}, expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "pallas" if platform in AUTO_PALLAS_PLATFORMS else "xla"
    if backend == "pallas" and platform not in _PALLAS_PLATFORMS:
        raise ValueError(
            f"render: backend='pallas' has Triton kernels for GPUs and an interpreter on CPU, none for "
            f"{platform}; use backend='xla' (or 'auto')"
        )
    return backend


@struct.dataclass
class Splats:
    """Gaussians in activated form, at one instant, in world coordinates.

    means:      (N, 3) float32 centres.
    quats:      (N, 4) float32 rotations (w, x, y, z); normalised by the renderer, must be non-zero.
    scales:     (N, 3) float32 standard deviations along the local axes, > 0.
    opacities:  (N,)   float32 in [0, 1].
    colors:     (N, 3) float32 RGB, or (N, K, 3) spherical-harmonic coefficients, K in {1, 4, 9, 16}.
    features:   (N, F) float32 extra channels composited like colour, or None.
    """

    means: jnp.ndarray
    quats: jnp.ndarray
    scales: jnp.ndarray
    opacities: jnp.ndarray
    colors: jnp.ndarray
    features: Any = None

    @property
    def num(self) -> int:
        return self.means.shape[0]


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Static settings of the renderer (hashable: changing one recompiles).

    near, far:      depth range; Gaussians whose centre lies outside are culled.
    tile_size:      tile edge in pixels.
    tile_capacity:  None (default): no per-tile cap; the compositor's work is proportional to the real
                    number of pairs, whatever their split over tiles. An int keeps only that many nearest
                    Gaussians per tile and counts the rest in stats["dropped_pairs"] (a quality loss).
    max_pairs:      global budget of tile-Gaussian pairs (static shape; the binning sort is O(max_pairs)).
                    None: `bin.auto_max_pairs` (8 per Gaussian). Pairs beyond it are dropped farthest-first
                    and counted in stats["over_budget"] and stats["dropped_pairs"].
    grow_pairs:     when a render overflows max_pairs, callers that can re-run it do so with the budget grown
                    to `bin.bucket_pairs` (a power of two >= 1.25 x the pairs wanted, so it recompiles
                    rarely): `render` itself on concrete inputs (outside jit), evaluation renders, and the
                    training loop (which undoes the overflowing step and redoes it). Under a user's own jit
                    the overflow can only be reported (stats["over_budget"]).
    chunk_size:     Gaussians per work item of a tile (the compositor processes tiles in chunks of this size).
    chunk_batch:    chunks processed together per step of the compositor's sequential loop (memory ~
                    chunk_batch * tile_size^2 * chunk_size floats per temporary). None: `auto_chunk_batch`,
                    32 on CPU (small temporaries stay in cache) and 1024 on GPU/TPU, where every loop step
                    costs kernel launches: 300k Gaussians at 360 x 480 make ~10^5 chunks, ~3,000 steps of 32
                    but ~100 of 1024.
    sh_degree:      use SH bands up to this degree (None: all stored bands).
    validate:       check input values eagerly (outside jit) and raise ValueError on bad input.
    backend:        the compositing stage: "xla" (composite.py: chunk batches of dense XLA ops), "pallas"
                    (composite_pallas.py: one Triton program per tile, gsplat's structure; on CPU it runs
                    interpreted, slowly) or "auto" (`resolve_backend`: xla everywhere until the Pallas kernels
                    are measured on a GPU). Same outputs and gradients; pallas needs tile_size and chunk_size
                    powers of two.
    """

    near: float = 0.01
    far: float = 1e10
    tile_size: int = 16
    tile_capacity: int | None = None
    max_pairs: int | None = None
    grow_pairs: bool = True
    chunk_size: int = 16
    chunk_batch: int | None = None
    sh_degree: int | None = None
    validate: bool = True
    backend: str = "auto"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"RenderConfig: backend={self.backend!r}, expected one of {', '.join(BACKENDS)}")


@struct.dataclass
class RenderOut:
    """What `render` returns.

    rgb:      (H, W, 3) composited colour including the background.
    alpha:    (H, W)    accumulated opacity, 1 - final transmittance.
    depth:    (H, W)    expected depth: sum(w z) / alpha (0 where alpha ~ 0).
    features: (H, W, F) composited extra channels (no background), or None.
    stats:    dict of int32 scalars: num_visible, num_pairs (wanted), max_pairs (the budget), over_budget
              (pairs beyond it), dropped_pairs (over_budget + tile-cap drops), max_per_tile, num_chunks.
    aux:      per-Gaussian projection outputs: means2d (N, 2), radii (N, 2) int32, depths (N,); means2d is
              differentiable, so its gradient gives the screen-space signal used by densification.
    """

    rgb: jnp.ndarray
    alpha: jnp.ndarray
    depth: jnp.ndarray
    features: Any
    stats: dict
    aux: dict
