"""Rasterizer benchmark: the tile renderer against the dense all-pairs reference, side by side in one run.

    python -m benchmarks.rasterizer            # scenes A, B (10k Gaussians, 256^2) and C (100k, 512^2)
    python -m benchmarks.rasterizer --tiny     # a seconds-long smoke run (used by the tests)
    python -m benchmarks.rasterizer --stages   # also time the stages of the tile renderer on scene A

Scenes follow shared/research/rasterizer.md: means x, y ~ U[-1, 1], z ~ U[2, 4], scale s exp(0.3 N(0, 1)),
random unit quaternions, opacity sigmoid(N(0, 1)), identity view, f = image width. Times are medians of
repeated runs after compilation (ms); "peak MB" is XLA's buffer assignment for the compiled program
(temporaries + arguments + outputs), the figure that bounds memory on any backend. The dense reference is
skipped where it would take minutes. The loss for fwd+bwd is sum(rgb^2) w.r.t. every Gaussian parameter.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax.geometry import cameras
from any4d_jax.render import RenderConfig, Splats, render
from any4d_jax.render import bin as binning
from any4d_jax.render import composite as comp
from any4d_jax.render.project import project
from any4d_jax.render.reference import render_reference
from any4d_jax.render.types import auto_chunk_batch

SCENES = {
    # name: (num Gaussians, image size, scale, pair budget, tile capacity, run dense reference)
    "A": (10_000, 256, 0.02, 65_536, 1024, True),
    "B": (10_000, 256, 0.04, 131_072, 1024, True),
    "C": (100_000, 512, 0.02, 1_048_576, 2048, False),
    "tiny": (500, 64, 0.05, 8_192, 1024, True),
}


def make_scene(n: int, size: int, scale: float, seed: int = 0):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    xy = jax.random.uniform(k[0], (n, 2), minval=-1.0, maxval=1.0)
    z = jax.random.uniform(k[1], (n, 1), minval=2.0, maxval=4.0)
    q = jax.random.normal(k[2], (n, 4))
    splats = Splats(
        means=jnp.concatenate([xy, z], -1),
        quats=q / jnp.linalg.norm(q, axis=-1, keepdims=True),
        scales=scale * jnp.exp(0.3 * jax.random.normal(k[3], (n, 3))),
        opacities=jax.nn.sigmoid(jax.random.normal(k[4], (n,))),
        colors=jax.random.uniform(k[5], (n, 3)),
    )
    cam = cameras.make_camera(jnp.eye(4), cameras.intrinsics(size, size, size / 2, size / 2), size, size)
    return splats, cam


def _timed(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _peak_mb(fn, args) -> float:
    m = fn.lower(*args).compile().memory_analysis()
    if m is None:
        return float("nan")
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20


def bench_scene(name: str, reps: int, dense_reps: int, skip_dense: bool = False) -> list[dict]:
    n, size, scale, budget, capacity, run_dense = SCENES[name]
    splats, cam = make_scene(n, size, scale)
    cfg = RenderConfig(max_pairs=budget, tile_capacity=capacity, validate=False)
    rows = []
    renderers = [("tile", render, reps)]
    if run_dense and not skip_dense:
        renderers.append(("dense", render_reference, dense_reps))
    stats = jax.jit(lambda s: render(s, cam, None, cfg).stats)(splats)
    for label, fn, r in renderers:
        fwd = jax.jit(lambda s, fn=fn: fn(s, cam, None, cfg).rgb)
        grad = jax.jit(jax.grad(lambda s, fn=fn: jnp.sum(fn(s, cam, None, cfg).rgb ** 2)))
        rows.append(
            {
                "scene": name,
                "renderer": label,
                "gaussians": n,
                "image": f"{size}^2",
                "fwd_ms": _timed(fwd, (splats,), r),
                "fwd_bwd_ms": _timed(grad, (splats,), r),
                "peak_mb_fwd": _peak_mb(fwd, (splats,)),
                "peak_mb_fwd_bwd": _peak_mb(grad, (splats,)),
                "pairs": int(stats["num_pairs"]),
                "max_per_tile": int(stats["max_per_tile"]),
                "dropped": int(stats["dropped_pairs"]) if label == "tile" else 0,
            }
        )
    return rows


def bench_stages(reps: int) -> list[tuple[str, float]]:
    """Time the tile renderer's stages separately on scene A (each jitted on its own)."""
    n, size, scale, budget, _, _ = SCENES["A"]
    splats, cam = make_scene(n, size, scale)
    cfg = RenderConfig(max_pairs=budget, chunk_batch=auto_chunk_batch(jax.default_backend()), validate=False)
    proj_fn = jax.jit(lambda s: project(s.means, s.quats, s.scales, s.opacities, cam, cfg.near, cfg.far))
    p = proj_fn(splats)
    bin_fn = jax.jit(
        lambda p: binning.bin_gaussians(
            p.means2d,
            p.radii,
            p.depths,
            p.valid,
            size,
            size,
            cfg.tile_size,
            cfg.tile_capacity,
            budget,
            cfg.chunk_size,
            cfg.chunk_batch,
        )
    )
    bins = bin_fn(p)
    tx, ty = binning.tile_grid(size, size, cfg.tile_size)
    layout = comp.Layout(tx, ty, cfg.tile_size, cfg.chunk_size, cfg.chunk_batch)
    values = jnp.concatenate([splats.colors, p.depths[:, None], jnp.ones((n, 1))], -1)
    packed = comp.pack(p.means2d, p.conics, splats.opacities, values)
    fwd_fn = jax.jit(lambda pk, b: comp._forward(layout, pk, b))
    out, log_t0 = fwd_fn(packed, bins)
    bwd_fn = jax.jit(lambda pk, b, lt, g: comp._backward(layout, pk, b, lt, g))
    return [
        ("project (EWA, radii, culling)", _timed(proj_fn, (splats,), reps)),
        ("bin (depth sort, pair expansion, tile sort, chunks)", _timed(bin_fn, (p,), reps)),
        ("composite forward", _timed(fwd_fn, (packed, bins), reps)),
        ("composite backward (custom VJP)", _timed(bwd_fn, (packed, bins, log_t0, out), reps)),
    ]


def _fmt(x) -> str:
    return f"{x:.1f}" if isinstance(x, float) else str(x)


def print_table(rows: list[dict]) -> None:
    cols = [
        "scene",
        "renderer",
        "gaussians",
        "image",
        "fwd_ms",
        "fwd_bwd_ms",
        "peak_mb_fwd",
        "peak_mb_fwd_bwd",
        "pairs",
        "max_per_tile",
        "dropped",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    by_scene: dict[str, dict] = {}
    for r in rows:
        by_scene.setdefault(r["scene"], {})[r["renderer"]] = r
    print()
    print("| scene | dense / tile fwd | dense / tile fwd+bwd |")
    print("|---|---|---|")
    for s, d in by_scene.items():
        if "dense" in d:
            f = d["dense"]["fwd_ms"] / d["tile"]["fwd_ms"]
            b = d["dense"]["fwd_bwd_ms"] / d["tile"]["fwd_bwd_ms"]
            print(f"| {s} | {f:.1f}x | {b:.1f}x |")
        else:
            print(f"| {s} | skipped (minutes) | skipped (minutes) |")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="smoke run on a tiny scene")
    ap.add_argument("--scenes", default="A,B,C", help="comma-separated scene names")
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions of the tile renderer")
    ap.add_argument("--dense-reps", type=int, default=1, help="timed repetitions of the dense reference")
    ap.add_argument("--stages", action="store_true", help="also time the tile renderer's stages on scene A")
    ap.add_argument("--skip-dense", action="store_true", help="do not run the dense reference")
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()})")
    scenes = ["tiny"] if args.tiny else args.scenes.split(",")
    rows = []
    for s in scenes:
        rows += bench_scene(s, 2 if args.tiny else args.reps, args.dense_reps, args.skip_dense)
        print(f"scene {s} done", flush=True)
    print_table(rows)
    if args.stages and not args.tiny:
        print()
        print("| stage (scene A) | ms |")
        print("|---|---|")
        for label, ms in bench_stages(args.reps):
            print(f"| {label} | {ms:.1f} |")
    return rows


if __name__ == "__main__":
    main()
