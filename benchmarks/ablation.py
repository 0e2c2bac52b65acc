"""Wall time of N ablation variants trained in one vmapped step vs N sequential runs (N = 4, 8).

    python -m benchmarks.ablation                       # 64x48 scene, 4000 slots, 100 steps per variant
    python -m benchmarks.ablation --steps 300 --width 128 --height 96 --capacity 10000

A sequential run is what N separate training runs cost: its own jit (compile) and its own loop, the same
schedule (one density-control round) as `ablation.train_variants`, which is the vmapped run. Data are made
once, outside every timing; evaluation is not timed. The variants are the first N of the default grid
(generator channels 0,1,2 x learnable bases 0,4,8,16) over their maximal allocation. "compile" is the first
step (trace + XLA compile + one step); "steps" is the rest, density control included.
"""

from __future__ import annotations

import argparse
import time

import jax

from any4d_jax import data as data_lib
from any4d_jax.train import ablation, loop
from any4d_jax.train import state as state_lib
from configs import synthetic as synthetic_config


def bench_config(args) -> tuple:
    c = synthetic_config.get_config()
    c.data.width, c.data.height, c.model.capacity = args.width, args.height, args.capacity
    t = c.train
    t.num_steps, t.time_ramp_steps, t.log_every = args.steps, args.steps // 2, args.steps
    t.densify_from = t.densify_until = t.densify_every = args.steps // 2  # one density-control round
    c.ablation.step_scale = 1.0
    vs = ablation.variants(c)
    return c, vs


def timed_loop(cfg, frames, vs, vmapped: bool) -> dict:
    """One run over variants `vs` (vmapped) or over vs[0] alone; seconds of its compile and its steps."""
    t0 = time.perf_counter()
    setup = state_lib.make_setup(cfg, frames)
    extent = state_lib.scene_extent(frames.cameras)
    optimizer = state_lib.make_optimizer(cfg, extent)
    state = ablation.init_states(cfg, setup, frames, optimizer, vs)
    if not vmapped:
        state = ablation.select(state, 0)
    fns = ablation.make_functions(setup, optimizer, vmapped=vmapped)
    data = state_lib.frames_to_data(frames)
    t1 = time.perf_counter()
    state, _ = fns.step(state, data)
    jax.block_until_ready(state)
    t2 = time.perf_counter()
    schedule = loop.Schedule.from_config(cfg.train)
    state, _ = loop.run_loop(state, data, fns, schedule, extent, strict=False, progress=False)
    jax.block_until_ready(state)
    t3 = time.perf_counter()
    return {"init": t1 - t0, "compile": t2 - t1, "steps": t3 - t2, "total": t3 - t0}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="steps per variant")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--capacity", type=int, default=4000)
    ap.add_argument("--sizes", default="4,8", help="numbers of variants N")
    args = ap.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    c, grid = bench_config(args)
    if max(sizes) > len(grid):
        raise ValueError(f"at most {len(grid)} variants in the default grid, asked for {max(sizes)}")
    vs_all = grid[: max(sizes)]
    cfg = ablation.allocation_config(c, vs_all)  # one allocation for every run: same shapes, same work
    frames = data_lib.load(cfg).train

    sequential = []
    for i, v in enumerate(vs_all):
        sequential.append(timed_loop(cfg, frames, [v], vmapped=False))
        print(f"sequential run {i + 1}/{len(vs_all)}: {sequential[-1]['total']:.1f} s", flush=True)
    vmapped = {}
    for n in sizes:
        vmapped[n] = timed_loop(cfg, frames, vs_all[:n], vmapped=True)
        print(f"vmapped N={n}: {vmapped[n]['total']:.1f} s", flush=True)

    m = cfg.motion
    print(
        f"\n{args.steps} steps per variant, {args.width}x{args.height}, {args.capacity} slots, allocation "
        f"C={m.num_generator_channels} B_l={m.num_learnable_bases}, jax {jax.__version__} "
        f"({jax.default_backend()}, {jax.device_count()} device)"
    )
    cols = "| N | vmapped s (compile + steps) | sequential s (compile + steps) | vmapped / sequential |"
    print(cols + "\n|---|---|---|---|")
    for n in sizes:
        seq = sequential[:n]
        s_comp, s_steps = sum(r["compile"] for r in seq), sum(r["steps"] for r in seq)
        s_tot = sum(r["total"] for r in seq)
        v = vmapped[n]
        print(
            f"| {n} | {v['total']:.1f} ({v['compile']:.1f} + {v['steps']:.1f}) | "
            f"{s_tot:.1f} ({s_comp:.1f} + {s_steps:.1f}) | {v['total'] / s_tot:.2f} |"
        )
    if 4 in sizes and 8 in sizes:
        v8, s4 = vmapped[8]["total"], sum(r["total"] for r in sequential[:4])
        verdict = "met" if v8 < s4 else "not met"
        print(
            f"\n8 vmapped: {v8:.1f} s; 4 sequential: {s4:.1f} s (target 8 vmapped < 4 sequential: {verdict})"
        )
        per_v = vmapped[8]["steps"] / 8
        per_s = sum(r["steps"] for r in sequential[:8]) / 8
        print(f"steps only, per variant: vmapped {per_v:.2f} s, sequential {per_s:.2f} s")
    return sequential, vmapped


if __name__ == "__main__":
    main()
