"""GPU benchmark: our JAX renderer beside gsplat's CUDA rasterizer, the iPhone-scale train step, the ablation.

    python -m benchmarks.gpu                              # everything, full sizes (meant for one GPU)
    python -m benchmarks.gpu --small                      # tiny sizes: a CPU smoke run (~2.5 min CPU time)
    python -m benchmarks.gpu --rows A,B,C,M               # rasterizer rows only (a)
    python -m benchmarks.gpu --rows train --steps 50 --profile /tmp/trace     # (b) and its trace (d)
    python -m benchmarks.gpu --rows ablation --variants 8                      # (c)
    python -m benchmarks.gpu --rows raster,train --backends xla,pallas          # both compositors (default)
    python -m benchmarks.gpu --rows raster --pallas-chunks 4,8,16,32 --chunk-batch 256,1024,4096  # (a')

(a) Rasterizer, forward and forward+backward (loss sum(rgb^2), gradients w.r.t. every Gaussian field):
    A: 10k Gaussians, 256^2, scale 0.02; B: the same with scale 0.04 (shared/research/rasterizer.md);
    C: 100k Gaussians at 512^2 (scale 0.02); M: 1M Gaussians at 1920x1080, a Mip-NeRF-360-sized load: means
    uniform in the camera's frustum (60 deg horizontal field of view, 10% beyond each image border) with
    depth log-uniform in [1.5, 30] (as many Gaussians per depth octave: big near ones, pixel-sized far
    ones), world scale 0.008 exp(0.4 N(0, 1)), random unit quaternions, opacity sigmoid(N(0, 1)), random
    RGB: ~72% visible, ~4.6M tile pairs, ~565 per 16x16 tile (projection measured on CPU).
    Ours: `any4d_jax.render.render` under jax.jit with RenderConfig(max_pairs=<power of two >= 1.25 x
    the pairs one eager render wanted>, validate=False, backend=<each of --backends>): "xla" (the chunk-batch
    compositor) and "pallas" (the Triton kernels; on a CPU they run interpreted and are timed only with
    --small). Stage split (a''): the same jitted render cut after the projection and after the binning (its
    sorts), so compositing forward = fwd - project+bin and backward = fwd+bwd - fwd.
    gsplat: `gsplat.rasterization(..., packed=False)` on the same Gaussians (quaternions wxyz, activated
    scales and opacities, RGB colours), camera, near/far and background. PSNR(ours, gsplat) says the two
    images agree, so the times compare the same work.
(b) One full training step at iPhone scale, once per backend: configs/iphone.py (300k slots, hybrid motion
    with 12 generator bases and 10 learnable ones, 48 DCT terms, SH degree 1, its loss weights and tile
    settings) with the data replaced by the synthetic scene rendered at 360 x 480, one frame per step; every
    slot is filled (the initialisation's Gaussians plus jittered copies of them) so the step renders 300k
    Gaussians. The projected run time is 30,000 steps plus the density-control rounds of its schedule (each
    timed here), without compilation, logging, checkpoints and evaluation.
(c) The vmapped ablation (train/ablation.py make_functions, vmapped=True) on a stack of V states against
    a stack of one, at a moderate size (synthetic scene 256 x 192, 40k slots).
(d) --profile DIR: a few steps of (b) under jax.profiler.trace(DIR) (open with TensorBoard or Perfetto).

Every row runs in a fresh subprocess: JAX cannot reset its peak-memory counter, so a row's peak is the peak
of its own process (jax.local_devices()[0].memory_stats()["peak_bytes_in_use"], inputs included; the forward
runs before the backward, so the forward+backward peak is the process peak after both). torch's peaks use
torch.cuda.reset_peak_memory_stats / max_memory_allocated, inputs included. Where the backend keeps no
statistics (CPU) the peak shown is XLA's buffer assignment for the compiled program, marked "~". Times are
medians of --reps runs after a warm-up (compilation; gsplat's first call builds its CUDA kernels with nvcc,
which can take minutes), with block_until_ready / torch.cuda.synchronize.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = "@@RESULT "
BACKGROUND = (0.1, 0.2, 0.3)  # behind the Gaussians in both renderers: alpha errors show up in the PSNR
NEAR, FAR = 0.01, 1e10  # both renderers' defaults, passed explicitly to both

# name: (Gaussians, width, height, scale) at full size and with --small.
RASTER = {
    "A": (10_000, 256, 256, 0.02),
    "B": (10_000, 256, 256, 0.04),
    "C": (100_000, 512, 512, 0.02),
    "M": (1_000_000, 1920, 1080, 0.008),
}
RASTER_SMALL = {
    "A": (2_000, 128, 128, 0.02),
    "B": (2_000, 128, 128, 0.04),
    "C": (5_000, 160, 160, 0.02),
    "M": (20_000, 192, 108, 0.008),
}
# (b): width, height, training frames in the data, slots; (c): width, height, frames, slots, variants.
TRAIN = {"full": (360, 480, 60, 300_000), "small": (48, 64, 6, 3_000)}
ABLATION = {"full": (256, 192, 24, 40_000, 8), "small": (48, 36, 6, 1_500, 4)}
# --small: XLA options that cut compile time ~4x on CPU (and make the compiled code slower): a smoke run.
SMALL_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_cpu_parallel_codegen_split_count=1"
)
ITERATIONS = 30_000  # configs/iphone.py train.num_steps, the run the projection is for


# ----------------------------------------------------------------------------------------------------------
# Scenes (built once by the parent on the CPU, saved as .npz, read by every worker: identical inputs).
# ----------------------------------------------------------------------------------------------------------


def make_frustum_scene(n: int, width: int, height: int, scale: float, seed: int = 0):
    """Scene M: `n` Gaussians filling the view frustum of a 60-degree camera at the origin (see the module
    docstring). Returns (Splats, Camera)."""
    import jax
    import jax.numpy as jnp

    from any4d_jax.geometry import cameras
    from any4d_jax.render import Splats

    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    K = cameras.from_fov(width, height, 60.0)
    fx, fy = float(K[0, 0]), float(K[1, 1])
    z = jnp.exp(jax.random.uniform(k[0], (n,), minval=math.log(1.5), maxval=math.log(30.0)))
    uv = jax.random.uniform(k[1], (n, 2), minval=-0.6, maxval=0.6)  # 1.2 x the half image: 10% margin
    x = uv[:, 0] * z * width / fx
    y = uv[:, 1] * z * height / fy
    q = jax.random.normal(k[2], (n, 4))
    splats = Splats(
        means=jnp.stack([x, y, z], -1),
        quats=q / jnp.linalg.norm(q, axis=-1, keepdims=True),
        scales=scale * jnp.exp(0.4 * jax.random.normal(k[3], (n, 3))),
        opacities=jax.nn.sigmoid(jax.random.normal(k[4], (n,))),
        colors=jax.random.uniform(k[5], (n, 3)),
    )
    return splats, cameras.make_camera(jnp.eye(4), K, width, height)


def build_scene(name: str, small: bool, path: str) -> dict:
    """Build raster scene `name` and save it to `path` (.npz); returns its description. The parent runs it
    with JAX on the CPU (the same Gaussians whatever the device, and no accelerator memory held)."""
    n, w, h, scale = (RASTER_SMALL if small else RASTER)[name]
    if name == "M":
        splats, cam = make_frustum_scene(n, w, h, scale)
    else:
        from benchmarks.rasterizer import make_scene

        assert w == h, "scenes A-C are square (benchmarks/rasterizer.py)"
        splats, cam = make_scene(n, w, scale)
    np.savez(
        path,
        means=np.asarray(splats.means, np.float32),
        quats=np.asarray(splats.quats, np.float32),
        scales=np.asarray(splats.scales, np.float32),
        opacities=np.asarray(splats.opacities, np.float32),
        colors=np.asarray(splats.colors, np.float32),
        viewmat=np.asarray(cam.viewmat, np.float32),
        K=np.asarray(cam.K, np.float32),
        size=np.array([w, h]),
    )
    return {"scene": name, "gaussians": n, "image": f"{w}x{h}"}


def load_scene(path: str):
    """(Splats, Camera, background) of a saved scene, as JAX arrays on the default device."""
    import jax.numpy as jnp

    from any4d_jax.geometry import cameras
    from any4d_jax.render import Splats

    z = np.load(path)
    splats = Splats(*(jnp.asarray(z[k]) for k in ("means", "quats", "scales", "opacities", "colors")))
    w, h = (int(v) for v in z["size"])
    cam = cameras.make_camera(jnp.asarray(z["viewmat"]), jnp.asarray(z["K"]), w, h)
    return splats, cam, jnp.asarray(BACKGROUND, jnp.float32)


def pair_budget(num_pairs: int) -> int:
    """The budget the renderer and the training loop grow to: the power of two >= 1.25 x the pairs wanted."""
    from any4d_jax.render.bin import bucket_pairs

    return bucket_pairs(max(int(num_pairs), 1024))


# ----------------------------------------------------------------------------------------------------------
# Measurements shared by the workers.
# ----------------------------------------------------------------------------------------------------------


def device_info() -> dict:
    import jax

    d = jax.local_devices()[0]
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device": d.device_kind}


def jax_peak(compiled=None) -> tuple[float | None, bool]:
    """(peak MB of this process' device, measured?). Without device statistics (CPU): XLA's buffer
    assignment of the `compiled` program (temporaries + arguments + outputs), measured = False."""
    import jax

    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise or return None
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, True
    m = None if compiled is None else compiled.memory_analysis()
    if m is None:
        return None, False
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20, False


def timed(fn, args, reps: int) -> float:
    """Median ms of `fn(*args)` over `reps` runs, after one warm-up (compile) run."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


# ----------------------------------------------------------------------------------------------------------
# Workers: each runs in its own process and returns a JSON-able dict.
# ----------------------------------------------------------------------------------------------------------


def worker_size(spec: dict) -> dict:
    """One eager render (the renderer grows its own pair budget outside jit): the pairs the scene wants."""
    from any4d_jax.render import RenderConfig, render

    splats, cam, bg = load_scene(spec["scene_path"])
    out = render(splats, cam, bg, RenderConfig(near=NEAR, far=FAR, validate=False))
    stats = {k: int(v) for k, v in out.stats.items()}
    return {**device_info(), **stats}


def worker_ours(spec: dict) -> dict:
    """Our renderer, jitted, with the pair budget of spec["max_pairs"]: fwd and fwd+bwd ms and peaks."""
    import jax
    import jax.numpy as jnp

    from any4d_jax.render import RenderConfig, render

    backend = spec.get("backend", "xla")
    if backend == "pallas" and jax.default_backend() == "cpu" and not spec.get("small"):
        return {"na": "n/a (pallas is interpreted on CPU; timed with --small only)"}
    splats, cam, bg = load_scene(spec["scene_path"])
    cfg = RenderConfig(
        near=NEAR,
        far=FAR,
        max_pairs=int(spec["max_pairs"]),
        chunk_batch=spec.get("chunk_batch"),  # None: the renderer's default for this backend
        chunk_size=spec.get("chunk_size", RenderConfig.chunk_size),
        validate=False,
        backend=backend,
    )

    def fwd_fn(s, c, b):
        out = render(s, c, b, cfg)
        return out.rgb, out.stats

    args = (splats, cam, bg)
    # Compiled ahead of time: the warm-up run of `timed` then only warms up, and CPU's peak estimate reads
    # the same executable.
    fwd = jax.jit(fwd_fn).lower(*args).compile()
    reps = spec["reps"]
    row = device_info()
    row["fwd_ms"] = timed(fwd, args, reps)
    row["peak_fwd_mb"], row["peak_measured"] = jax_peak(fwd)
    loss = lambda s, c, b: jnp.sum(render(s, c, b, cfg).rgb ** 2)  # noqa: E731
    grad = jax.jit(jax.grad(loss)).lower(*args).compile()
    row["fwd_bwd_ms"] = timed(grad, args, reps)
    row["peak_fwd_bwd_mb"], _ = jax_peak(grad)
    row["project_ms"], row["project_bin_ms"] = (timed(jax.jit(f), args, reps) for f in front_stages(cfg))
    rgb, stats = fwd(*args)
    row.update({k: int(v) for k, v in stats.items()})
    np.save(spec["image_path"], np.asarray(rgb, np.float32))
    return row


def front_stages(cfg):
    """Two functions (splats, camera, bg) -> arrays: the render cut after the projection, and after the
    projection + colours + binning (depth sort, pair expansion, tile sort, chunking), as api._render runs
    them."""
    import jax

    from any4d_jax.render import bin as binning
    from any4d_jax.render.api import pack_values, resolve_max_pairs, splat_colors
    from any4d_jax.render.project import project
    from any4d_jax.render.types import auto_chunk_batch

    def proj(s, c, b):
        p = project(s.means, s.quats, s.scales, s.opacities, c, cfg.near, cfg.far)
        return p.means2d, p.conics, p.radii, p.depths, p.valid

    def proj_bin(s, c, b):
        p = project(s.means, s.quats, s.scales, s.opacities, c, cfg.near, cfg.far)
        values = pack_values(splat_colors(s, c, cfg.sh_degree), p.depths, s.features)
        w, h = c.width, c.height
        cb = cfg.chunk_batch or auto_chunk_batch(jax.default_backend())
        bins = binning.bin_gaussians(
            p.means2d, p.radii, p.depths, p.valid, w, h, cfg.tile_size, cfg.tile_capacity,
            resolve_max_pairs(cfg, s.means.shape[0], w, h), cfg.chunk_size, cb,
        )  # fmt: skip
        return bins.chunk_gids, bins.chunk_tiles, values

    return proj, proj_bin


def gsplat_status() -> tuple[bool, str]:
    """(usable, reason or versions): torch with CUDA and gsplat importable."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        return False, f"n/a (no torch: {type(e).__name__})"
    if not torch.cuda.is_available():
        return False, f"n/a (no CUDA: torch {torch.__version__})"
    try:
        import gsplat
    except Exception as e:  # noqa: BLE001
        return False, f"n/a (gsplat not importable: {type(e).__name__}: {str(e)[:60]})"
    name = torch.cuda.get_device_name(0)
    return True, f"gsplat {getattr(gsplat, '__version__', '?')}, torch {torch.__version__}, {name}"


def worker_gsplat(spec: dict) -> dict:
    """gsplat.rasterization (CUDA, packed=False) on the saved scene: fwd and fwd+bwd ms and peaks."""
    ok, why = gsplat_status()
    if not ok:
        return {"na": why}
    import gsplat
    import torch

    z = np.load(spec["scene_path"])
    dev = torch.device("cuda")
    t = {k: torch.from_numpy(np.ascontiguousarray(z[k])).to(dev) for k in z.files if k != "size"}
    w, h = (int(v) for v in z["size"])
    viewmats, Ks = t["viewmat"][None], t["K"][None]
    bg = torch.tensor([BACKGROUND], dtype=torch.float32, device=dev)
    fields = ("means", "quats", "scales", "opacities", "colors")  # quats are wxyz in both

    def render(m, q, s, o, c):
        rgb, _, meta = gsplat.rasterization(
            m, q, s, o, c, viewmats, Ks, w, h,
            near_plane=NEAR, far_plane=FAR, radius_clip=0.0, eps2d=0.3, sh_degree=None, packed=False,
            tile_size=16, backgrounds=bg, render_mode="RGB", rasterize_mode="classic",
        )  # fmt: skip
        return rgb[0], meta

    plain = [t[k] for k in fields]
    leaves = [t[k].clone().requires_grad_(True) for k in fields]

    def fwd():
        with torch.no_grad():
            return render(*plain)

    def fwd_bwd():
        for p in leaves:
            p.grad = None
        rgb, _ = render(*leaves)
        (rgb**2).sum().backward()

    def median_ms(fn, reps):
        fn()  # warm-up (the first call JIT-compiles gsplat's CUDA kernels)
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e3

    row = {"info": why}
    torch.cuda.reset_peak_memory_stats()
    row["fwd_ms"] = median_ms(fwd, spec["reps"])
    row["peak_fwd_mb"] = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    row["fwd_bwd_ms"] = median_ms(fwd_bwd, spec["reps"])
    row["peak_fwd_bwd_mb"] = torch.cuda.max_memory_allocated() / 2**20
    rgb, meta = fwd()
    if "flatten_ids" in meta:
        row["num_pairs"] = int(meta["flatten_ids"].shape[0])
    np.save(spec["image_path"], rgb.float().cpu().numpy())
    return row


def _synthetic_setup(config, width: int, height: int, frames: int):
    """`config` with its data replaced by the synthetic scene at width x height, and the training frames."""
    import ml_collections

    from any4d_jax import data as data_lib
    from configs import synthetic as synthetic_config

    c = ml_collections.ConfigDict(config.to_dict())
    c.data = synthetic_config.get_config().data
    c.data.width, c.data.height, c.data.num_frames = width, height, frames
    return c, data_lib.load(c).train


def fill_capacity(state, optimizer, seed: int = 0):
    """Every slot active: the empty ones get copies of random active Gaussians (means jittered by one
    standard deviation of their own scale), the copies' rigidity neighbours are their sources'."""
    import jax
    import jax.numpy as jnp

    active = np.asarray(state.active)
    n, live = active.shape[0], np.flatnonzero(active)
    if len(live) == 0:
        raise ValueError("fill_capacity: the initialisation gave no active Gaussian")
    rng = np.random.default_rng(seed)
    src = np.arange(n)
    src[~active] = rng.choice(live, int((~active).sum()))
    src = jnp.asarray(src)
    params = state.params.map_rows(lambda x: x[src])
    noise = jax.random.normal(jax.random.PRNGKey(seed), params.means.shape)
    jitter = jnp.where(jnp.asarray(active)[:, None], 0.0, noise * jnp.exp(params.log_scales))
    params = params.replace(means=params.means + jitter)
    return state.replace(
        params=params,
        opt_state=optimizer.init(params),
        active=jnp.ones((n,), bool),
        neighbours=state.neighbours[src],
    )


def worker_train(spec: dict) -> dict:
    """(b): configs/iphone.py on the synthetic scene, every slot filled; ms/step, peak, pairs, projection."""
    import jax

    from any4d_jax.train import loop
    from any4d_jax.train import state as state_lib
    from configs import iphone

    width, height, frames, capacity = spec["size"]
    base = iphone.get_config()
    base.model.capacity = capacity
    base.render.backend = spec.get("backend", "xla")
    if base.render.backend == "pallas" and jax.default_backend() == "cpu" and not spec.get("small"):
        return {
            "na": "n/a (pallas is interpreted on CPU; timed with --small only)",
            "render_backend": "pallas",
        }
    c, train = _synthetic_setup(base, width, height, frames)
    extent = state_lib.scene_extent(train.cameras)
    optimizer = state_lib.make_optimizer(c, extent)
    setup = state_lib.make_setup(c, train)
    t0 = time.perf_counter()
    state = state_lib.init_state(c, setup, train, optimizer)
    init_active = int(np.sum(np.asarray(state.active)))
    state = fill_capacity(state, optimizer, c.seed)
    data = state_lib.frames_to_data(train)
    jax.block_until_ready((state, data))
    init_s = time.perf_counter() - t0

    def compile_step(setup, state):
        fns = loop.single_device_fns(setup, optimizer)
        t0 = time.perf_counter()
        state, m = fns.step(state, data)
        jax.block_until_ready(state)
        return fns, state, jax.device_get(m), time.perf_counter() - t0

    fns, state, m, compile_s = compile_step(setup, state)
    grown = False
    if int(m.get("over_budget", 0)) > 0:  # as the loop does: grow the budget to what the step wanted
        c.render.max_pairs = pair_budget(int(m["num_pairs"]))
        setup = state_lib.make_setup(c, train)
        fns, state, m, more = compile_step(setup, state)
        compile_s, grown = compile_s + more, True
    steps = spec["steps"]
    metrics = []
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = fns.step(state, data)
        metrics.append(m)
    jax.block_until_ready(state)
    step_ms = (time.perf_counter() - t0) / steps * 1e3
    metrics = jax.device_get(metrics)
    peak, measured = jax_peak()
    active = int(np.sum(np.asarray(state.active)))
    state, _ = fns.densify(state, extent)  # compile
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state, _ = fns.densify(state, extent)
    jax.block_until_ready(state)
    densify_ms = (time.perf_counter() - t0) * 1e3
    schedule = loop.Schedule.from_config(c.train)
    rounds = sum(schedule.densify_due(n) for n in range(1, ITERATIONS + 1))
    row = {
        **device_info(),
        "render_backend": base.render.backend,
        "image": f"{width}x{height}",
        "frames": frames,
        "capacity": capacity,
        "init_active": init_active,
        "active": active,
        "init_s": init_s,
        "compile_s": compile_s,
        "step_ms": step_ms,
        "steps": steps,
        "densify_ms": densify_ms,
        "densify_rounds": rounds,
        "peak_mb": peak,
        "peak_measured": measured,
        "max_pairs": c.render.max_pairs,
        "grown": grown,
        "dropped_pairs": int(max(int(x["dropped_pairs"]) for x in metrics)),
        "num_pairs": max(int(x["num_pairs"]) for x in metrics) if "num_pairs" in metrics[0] else None,
        "over_budget": max(int(x["over_budget"]) for x in metrics) if "over_budget" in metrics[0] else None,
        "projected_s": (ITERATIONS * step_ms + rounds * densify_ms) / 1e3,
    }
    if spec.get("profile"):
        with jax.profiler.trace(spec["profile"]):
            for _ in range(3):
                state, m = fns.step(state, data)
            jax.block_until_ready(state)
        row["profile"] = os.path.abspath(spec["profile"])
    return row


def worker_ablation(spec: dict) -> dict:
    """(c): the vmapped step on a stack of V variant states: ms/step and variant-steps/s."""
    import jax

    from any4d_jax.train import ablation
    from any4d_jax.train import state as state_lib
    from configs import synthetic as synthetic_config

    width, height, frames, capacity, _ = spec["size"]
    v = spec["variants"]
    base = synthetic_config.get_config()
    base.model.capacity = capacity
    base.train.time_ramp_steps = 0
    grid = ablation.variants(base)
    if v > len(grid):
        raise ValueError(f"at most {len(grid)} variants in the default grid, asked for {v}")
    vs_all = grid[: spec["max_variants"]]
    cfg = ablation.allocation_config(base, vs_all)  # every run on the same allocation: same work per variant
    cfg, train = _synthetic_setup(cfg, width, height, frames)
    setup = state_lib.make_setup(cfg, train)
    optimizer = state_lib.make_optimizer(cfg, state_lib.scene_extent(train.cameras))
    state = ablation.init_states(cfg, setup, train, optimizer, vs_all[:v])
    fns = ablation.make_functions(setup, optimizer, vmapped=True)
    data = state_lib.frames_to_data(train)
    t0 = time.perf_counter()
    state, m = fns.step(state, data)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    metrics = []
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
        state, m = fns.step(state, data)
        metrics.append(m)
    jax.block_until_ready(state)
    step_ms = (time.perf_counter() - t0) / spec["steps"] * 1e3
    peak, measured = jax_peak()
    dropped = max(int(np.max(x["dropped_pairs"])) for x in jax.device_get(metrics))
    return {
        **device_info(),
        "variants": v,
        "image": f"{width}x{height}",
        "capacity": capacity,
        "compile_s": compile_s,
        "step_ms": step_ms,
        "variant_steps_per_s": v / step_ms * 1e3,
        "peak_mb": peak,
        "peak_measured": measured,
        "dropped_pairs": dropped,
    }


WORKERS = {
    "size": worker_size,
    "ours": worker_ours,
    "gsplat": worker_gsplat,
    "train": worker_train,
    "ablation": worker_ablation,
}


def run_worker(kind: str, spec: dict, env: dict, timeout: float) -> dict:
    """Run WORKERS[kind](spec) in a fresh `python -m benchmarks.gpu --worker` process. A failure gives
    {"error": <its last line>} (the run goes on)."""
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--worker", kind, "--spec", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    tail = [ln for ln in (p.stderr + p.stdout).strip().splitlines() if ln.strip()]
    sys.stderr.write(f"--- worker {kind} failed (rc {p.returncode}); its last lines:\n")
    sys.stderr.write("\n".join(tail[-15:]) + "\n")
    return {"error": f"rc {p.returncode}: {tail[-1][:100] if tail else 'no output'}"}


def worker_main(kind: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        row = WORKERS[kind](spec)
    except Exception as e:  # noqa: BLE001 - reported as the row's error, the parent goes on
        traceback.print_exc()
        row = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"}
    print(RESULT + json.dumps(row), flush=True)


# ----------------------------------------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _ms(x) -> str:
    return "-" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}")


def _mb(x, measured=True) -> str:
    return "-" if x is None else ("" if measured else "~") + f"{x:.0f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(r: dict) -> str | None:
    """The text for a worker that did not measure (n/a or failed), else None."""
    if "na" in r:
        return r["na"]
    if "error" in r:
        return f"failed: {r['error']}"
    return None


def _per_backend(ours: dict, gs: dict, fmt) -> str:
    """'a / b / c': fmt(row) for each of our backends, then gsplat."""
    return " / ".join(_cell(r) or fmt(r) for r in [*ours.values(), gs])


def _ratio(a: dict, b: dict, key: str) -> str:
    return "-" if _cell(a) or _cell(b) else f"{a[key] / b[key]:.2f}x"


def raster_table(rows: list[dict]) -> str:
    """One line per scene; the times of each of our backends (in the order run) and gsplat's, slash-joined."""
    names = list(rows[0]["ours"]) if rows else []
    who = " / ".join([*names, "gsplat"])
    header = [
        "scene",
        "Gaussians",
        "image",
        "pairs ours / gsplat",
        "budget",
        f"fwd ms {who}",
        f"fwd+bwd ms {who}",
        *[f"{b} / gsplat fwd+bwd" for b in names],
        f"peak MB fwd+bwd {who}",
        "PSNR vs gsplat, and vs xla",
        "dropped",
    ]
    out = []
    for r in rows:
        ours, g = r["ours"], r["gsplat"]

        def peak(x):
            return _mb(x["peak_fwd_bwd_mb"], x.get("peak_measured", True))

        ratios = [_ratio(o, g, "fwd_bwd_ms") for o in ours.values()]
        pairs = f"{r['size'].get('num_pairs', '-')} / {g.get('num_pairs', '-')}"
        dropped = "/".join(str(o.get("dropped_pairs", "-")) for o in ours.values())
        q = ", ".join(f"{k} {v:.1f} dB" for k, v in (r.get("psnr") or {}).items()) or "-"
        out.append(
            [
                r["scene"],
                r["gaussians"],
                r["image"],
                pairs,
                r["budget"],
                _per_backend(ours, g, lambda x: _ms(x["fwd_ms"])),
                _per_backend(ours, g, lambda x: _ms(x["fwd_bwd_ms"])),
                *ratios,
                _per_backend(ours, g, peak),
                q,
                dropped,
            ]
        )
    return _table(header, out)


def stage_table(rows: list[dict]) -> str:
    """Where our render's time goes, per scene and backend (ms): the jitted render cut after each stage."""
    header = ["scene", "backend", "project", "+ bin (sorts)", "composite fwd", "backward", "fwd+bwd"]
    out = []
    for r in rows:
        for name, o in r["ours"].items():
            if _cell(o) or "project_ms" not in o:
                out.append([r["scene"], name, _cell(o) or "-", "-", "-", "-", "-"])
                continue
            out.append(
                [
                    r["scene"],
                    name,
                    _ms(o["project_ms"]),
                    _ms(o["project_bin_ms"] - o["project_ms"]),
                    _ms(o["fwd_ms"] - o["project_bin_ms"]),
                    _ms(o["fwd_bwd_ms"] - o["fwd_ms"]),
                    _ms(o["fwd_bwd_ms"]),
                ]
            )
    return _table(header, out)


def sweep_table(rows: list[dict]) -> str:
    """Our renderer's time against a setting: the XLA compositor's chunk_batch (chunks per step of its loop)
    or the Pallas kernels' chunk_size (Gaussians per step of a tile's loop)."""
    header = ["scene", "setting", "fwd ms", "fwd+bwd ms", "peak MB fwd / fwd+bwd"]
    out = []
    for r in rows:
        if _cell(r):
            out.append([r["scene"], r["setting"], _cell(r), "-", "-"])
            continue
        m = r.get("peak_measured", True)
        peak = f"{_mb(r['peak_fwd_mb'], m)} / {_mb(r['peak_fwd_bwd_mb'], m)}"
        out.append([r["scene"], r["setting"], _ms(r["fwd_ms"]), _ms(r["fwd_bwd_ms"]), peak])
    return _table(header, out)


def train_table(rows: list[dict]) -> str:
    header = [
        "config",
        "backend",
        "Gaussians (init + filled)",
        "image",
        "ms/step",
        "peak MB",
        "pairs/step (max)",
        "pair budget",
        "dropped pairs",
        "over budget",
        "density round ms",
        f"projected {ITERATIONS:,} steps",
        "compile s",
    ]
    return _table(header, [_train_row(r) for r in rows])


def _train_row(r: dict) -> list:
    if _cell(r):
        return ["configs/iphone.py", r.get("render_backend", "?"), _cell(r)] + ["-"] * 10
    proj = r["projected_s"]
    split = f"{proj / 60:.1f} min ({r['densify_rounds']} density rounds incl.)"
    budget = r["max_pairs"] if r["max_pairs"] is not None else "auto"
    if r["grown"]:
        budget = f"{budget} (grown)"
    return [
        "configs/iphone.py, synthetic data",
        r["render_backend"],
        f"{r['active']} ({r['init_active']} + {r['active'] - r['init_active']})",
        r["image"],
        _ms(r["step_ms"]),
        _mb(r["peak_mb"], r["peak_measured"]),
        r["num_pairs"] if r["num_pairs"] is not None else "n/a (step metrics lack num_pairs)",
        budget,
        r["dropped_pairs"],
        r["over_budget"] if r["over_budget"] is not None else "n/a",
        _ms(r["densify_ms"]),
        split,
        f"{r['compile_s']:.1f}",
    ]


def ablation_table(rows: list[dict]) -> str:
    header = [
        "variants V",
        "image, slots",
        "ms/step",
        "variant-steps/s",
        "speedup vs V=1",
        "peak MB",
        "dropped",
    ]
    base = rows[0]
    out = []
    for r in rows:
        if "error" in r:
            out.append([r.get("variants", "?"), f"failed: {r['error']}", "-", "-", "-", "-", "-"])
            continue
        speed = "-" if "error" in base else f"{r['variant_steps_per_s'] / base['variant_steps_per_s']:.2f}x"
        out.append(
            [
                r["variants"],
                f"{r['image']}, {r['capacity']}",
                _ms(r["step_ms"]),
                f"{r['variant_steps_per_s']:.1f}",
                speed,
                _mb(r["peak_mb"], r["peak_measured"]),
                r["dropped_pairs"],
            ]
        )
    return _table(header, out)


# ----------------------------------------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------------------------------------


def parse_rows(text: str) -> list[str]:
    known = list(RASTER) + ["train", "ablation"]
    rows = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        names = list(RASTER) if item == "raster" else [item]
        for name in names:
            if name not in known:
                raise SystemExit(f"--rows: unknown row {name!r}; choose from {', '.join(known)} or 'raster'")
            if name not in rows:
                rows.append(name)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="A,B,C,M,train,ablation", help="A,B,C,M (or 'raster'), train, ablation")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a smoke run on a CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed train steps (default 20; --small 3)")
    ap.add_argument("--reps", type=int, default=None, help="timed renders per row (default 10; --small 2)")
    ap.add_argument("--variants", type=int, default=None, help="ablation variants V (default 8; --small 4)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="trace 3 train steps into DIR")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per worker process")
    ap.add_argument(
        "--chunk-batch",
        default="",
        help="also time our renderer with these RenderConfig.chunk_batch values, e.g. 32,256,1024,4096 "
        "(a sweep table per scene; the main rows use the backend's default)",
    )
    ap.add_argument(
        "--pallas-chunks",
        default="",
        help="also time the pallas backend with these RenderConfig.chunk_size values, e.g. 4,8,16,32 "
        "(benchmarks/triton_regs.py: chunk 16 spills in the backward on sm_90, 8 does not)",
    )
    ap.add_argument(
        "--backends",
        default="xla,pallas",
        help="our compositors to time, in RenderConfig.backend names (default xla,pallas; pallas rows are "
        "n/a on a CPU without --small, where it runs interpreted)",
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.spec)
        return {}

    rows = parse_rows(args.rows)
    if args.profile and "train" not in rows:
        rows.append("train")
    mode = "small" if args.small else "full"
    steps = args.steps or (3 if args.small else 20)
    reps = args.reps or (2 if args.small else 10)
    env = dict(os.environ)  # the workers' environment: every device visible
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if args.small:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + SMALL_XLA_FLAGS).strip()
    # This process only builds the scenes (on the CPU): it must hold no accelerator memory. (No effect if
    # JAX is already running in this process, e.g. under pytest on a CPU.)
    platforms = os.environ.get("JAX_PLATFORMS")
    os.environ["JAX_PLATFORMS"] = "cpu"
    try:
        return _run(args, rows, mode, steps, reps, env)
    finally:
        if platforms is None:
            os.environ.pop("JAX_PLATFORMS", None)
        else:
            os.environ["JAX_PLATFORMS"] = platforms


def _run(args, rows: list[str], mode: str, steps: int, reps: int, env: dict) -> dict:
    """main's body: the rows, each in its own worker process, then the tables."""
    results: dict = {"raster": [], "train": [], "ablation": [], "sweep": []}
    sweep = [int(x) for x in args.chunk_batch.split(",") if x.strip()]
    pallas_chunks = [int(x) for x in args.pallas_chunks.split(",") if x.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("xla", "pallas"):
            raise SystemExit(f"--backends: unknown backend {b!r}; choose from xla, pallas")
    small = mode == "small"
    warnings = []
    tmp = tempfile.mkdtemp(prefix="any4d_gpu_bench_")

    raster = [r for r in rows if r in RASTER]
    if raster:
        gs_ok, gs_info = gsplat_probe(env, args.timeout)
        print(f"gsplat: {gs_info}", flush=True)
        for name in raster:
            print(f"[a] scene {name}: building", flush=True)
            scene_path = os.path.join(tmp, f"{name}.npz")
            desc = build_scene(name, args.small, scene_path)
            size = run_worker("size", {"scene_path": scene_path}, env, args.timeout)
            budget = pair_budget(size["num_pairs"]) if "num_pairs" in size else None
            spec = {"scene_path": scene_path, "reps": reps, "max_pairs": budget, "small": small}
            ours = {}
            for b in backends:
                print(
                    f"[a] scene {name}: {b} ({size.get('num_pairs', '?')} pairs, budget {budget})", flush=True
                )
                if budget is None:
                    ours[b] = {"error": f"sizing render: {size.get('error')}"}
                else:
                    img = os.path.join(tmp, f"{name}_{b}.npy")
                    ours[b] = run_worker("ours", {**spec, "backend": b, "image_path": img}, env, args.timeout)
            if gs_ok:
                print(f"[a] scene {name}: gsplat", flush=True)
                gspec = {**spec, "image_path": os.path.join(tmp, f"{name}_gsplat.npy")}
                gs = run_worker("gsplat", gspec, env, args.timeout)
            else:
                gs = {"na": gs_info}
            q = {}  # images compared between all three
            for b, o in ours.items():
                if not _cell(o) and not _cell(gs):
                    q[f"{b} vs gsplat"] = psnr(
                        np.load(os.path.join(tmp, f"{name}_{b}.npy")),
                        np.load(os.path.join(tmp, f"{name}_gsplat.npy")),
                    )
            if "xla" in ours and "pallas" in ours and not _cell(ours["xla"]) and not _cell(ours["pallas"]):
                q["pallas vs xla"] = psnr(
                    np.load(os.path.join(tmp, f"{name}_pallas.npy")),
                    np.load(os.path.join(tmp, f"{name}_xla.npy")),
                )
            row = {**desc, "size": size, "budget": budget, "ours": ours, "gsplat": gs, "psnr": q}
            settings = [("xla", "chunk_batch", cb) for cb in sweep]
            settings += [("pallas", "chunk_size", q) for q in pallas_chunks]
            for b, key, value in settings if budget is not None else []:
                label = f"{b} {key}={value}"
                print(f"[a] scene {name}: {label}", flush=True)
                img = os.path.join(tmp, f"{name}_{b}_{key}{value}.npy")
                r = run_worker(
                    "ours", {**spec, "backend": b, key: value, "image_path": img}, env, args.timeout
                )
                results["sweep"].append({"scene": name, "setting": label, **r})
            results["raster"].append(row)
            for label, r in (("eager sizing render", size), *ours.items()):
                if int(r.get("dropped_pairs", 0)) > 0:
                    warnings.append(f"scene {name} {label}: dropped_pairs = {r['dropped_pairs']}")
            for o in ours.values():
                if "device" in o:
                    results["device"] = f"jax {o['jax']} on {o['device']} ({o['backend']})"

    for b in backends if "train" in rows else []:
        print(f"[b] train step at iPhone scale, {b} ({steps} steps)", flush=True)
        profile = (
            os.path.join(os.path.abspath(args.profile), b) if args.profile else None
        )  # workers run in ROOT
        spec = {"size": TRAIN[mode], "steps": steps, "profile": profile, "backend": b, "small": small}
        r = {"render_backend": b, **run_worker("train", spec, env, args.timeout)}
        results["train"].append(r)
        if int(r.get("dropped_pairs", 0)) > 0 or int(r.get("over_budget") or 0) > 0:
            warnings.append(
                f"train step ({b}): dropped_pairs = {r['dropped_pairs']}, over_budget = {r['over_budget']}"
            )
        if "device" in r:
            results["device"] = f"jax {r['jax']} on {r['device']} ({r['backend']})"

    if "ablation" in rows:
        v = args.variants or ABLATION[mode][4]
        for n in (1, v):
            print(f"[c] ablation: {n} variant(s) vmapped", flush=True)
            spec = {"size": ABLATION[mode], "steps": steps, "variants": n, "max_variants": v}
            r = run_worker("ablation", spec, env, args.timeout)
            results["ablation"].append(r)
            if int(r.get("dropped_pairs", 0)) > 0:
                warnings.append(f"ablation V={n}: dropped_pairs = {r['dropped_pairs']}")

    print()
    print(f"## any4d_jax GPU benchmark ({mode} sizes) — {results.get('device', 'device unknown')}")
    if args.small:
        print()
        print("--small: tiny sizes and unoptimised XLA code (fast compiles): a smoke run, not a measurement.")
    if results["raster"]:
        print()
        print("### (a) rasterizer: ours (jax.jit, each backend) vs gsplat.rasterization (CUDA, packed=False)")
        print()
        print(raster_table(results["raster"]))
        print()
        print(
            "Times: median ms after warm-up. Peaks: each row's own process, inputs included ('~': "
            "XLA's buffer assignment, no device statistics on this backend). Budget: our static pair "
            "budget (power of two >= 1.25 x pairs). Scene M: Gaussians filling the frustum of a "
            "60-degree camera, depth log-uniform in [1.5, 30]."
        )
    if results["raster"]:
        print()
        print("### (a'') where our render's time goes (ms; jitted render cut after each stage)")
        print()
        print(stage_table(results["raster"]))
    if results["sweep"]:
        print()
        print("### (a') our renderer against its loop settings (xla chunk_batch, pallas chunk_size)")
        print()
        print(sweep_table(results["sweep"]))
    if results["train"]:
        print()
        cap = TRAIN[mode][3]
        print(f"### (b) full train step, configs/iphone.py at {cap:,} Gaussians (one frame per step)")
        print()
        print(train_table(results["train"]))
        for r in results["train"]:
            if r.get("profile"):
                print()
                print(f"profile trace (3 steps, {r['render_backend']}) written to {r['profile']}")
    if results["ablation"]:
        print()
        print("### (c) vmapped ablation: V variants in one step vs one")
        print()
        print(ablation_table(results["ablation"]))
    print()
    if warnings:
        print("| WARNING | dropped pairs |")
        print("|---|---|")
        for w in warnings:
            print(f"| WARNING | {w} |")
    else:
        print("dropped pairs: 0 in every row")
    results["warnings"] = warnings
    return results


def gsplat_probe(env: dict, timeout: float) -> tuple[bool, str]:
    """gsplat_status() in a fresh process (the parent never touches the GPU)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False, "n/a (torch not installed)"
    if importlib.util.find_spec("gsplat") is None:
        return False, "n/a (gsplat not installed)"
    code = "from benchmarks.gpu import gsplat_status; import json; print(json.dumps(gsplat_status()))"
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        ok, info = json.loads(p.stdout.strip().splitlines()[-1])
        return bool(ok), info
    except Exception as e:  # noqa: BLE001
        return False, f"n/a (probe failed: {type(e).__name__})"


if __name__ == "__main__":
    main()
