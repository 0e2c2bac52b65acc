"""Steps/s of the data-parallel train step on 1, 2, 4 forced host devices (one subprocess each).

    python -m benchmarks.scaling                  # 64x48 scene, 4000 slots
    python -m benchmarks.scaling --devices 1,2,4,8 --steps 20

Each device count runs in its own process with XLA_FLAGS=--xla_force_host_platform_device_count=N (the flag
must be set before JAX starts). Two batch sizes per count: the same 4 frames split over N devices (strong
scaling) and one frame per device (weak scaling). On CPU the forced devices share the host's cores, so this
measures the sharding machinery's overhead and what the cores allow, not a GPU cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(
    devices: int, batches: list[int], steps: int, repeats: int, width: int, height: int, capacity: int
):
    """Rows {devices, batch, steps_per_s (best of `repeats` runs of `steps` steps), compile_s}."""
    import jax

    from any4d_jax import data as data_lib
    from any4d_jax.train import parallel
    from any4d_jax.train import state as state_lib
    from configs import synthetic as synthetic_config

    c = synthetic_config.get_config()
    c.data.width, c.data.height, c.model.capacity = width, height, capacity
    c.train.time_ramp_steps = 0  # every frame from the start
    frames = data_lib.load(c).train
    setup = state_lib.make_setup(c, frames)
    optimizer = state_lib.make_optimizer(c, state_lib.scene_extent(frames.cameras))
    mesh = parallel.make_mesh(devices)
    replicated, _ = parallel.shardings(mesh)
    data = jax.device_put(state_lib.frames_to_data(frames), replicated)
    rows = []
    for batch in batches:
        state = jax.device_put(state_lib.init_state(c, setup, frames, optimizer), replicated)
        step = parallel.jit_sharded_step(setup, optimizer, mesh, batch)
        t0 = time.perf_counter()
        state, _ = step(state, data)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(repeats):  # the best of several: the host is shared, other load only slows a repeat
            t0 = time.perf_counter()
            for _ in range(steps):
                state, m = step(state, data)
            jax.block_until_ready(state)
            best = min(best, time.perf_counter() - t0)
        rows.append({"devices": devices, "batch": batch, "steps_per_s": steps / best, "compile_s": compile_s})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per repeat (after one compile step)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per setting; the best is reported")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--capacity", type=int, default=4000)
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batches", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        batches = [int(b) for b in args.batches.split(",")]
        rows = worker(args.worker, batches, args.steps, args.repeats, args.width, args.height, args.capacity)
        print("ROWS " + json.dumps(rows))
        return rows

    strong = 4
    counts = [int(d) for d in args.devices.split(",")]
    rows = []
    for n in counts:
        # Strong scaling: 4 frames over n devices; weak: 1 frame per device. One device runs every batch size
        # as the baseline of its row.
        batches = sorted({strong, *counts} if n == 1 else {strong, n} if strong % n == 0 else {n})
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.scaling",
            f"--worker={n}",
            f"--batches={','.join(map(str, batches))}",
        ]
        cmd += [f"--steps={args.steps}", f"--repeats={args.repeats}", f"--width={args.width}"]
        cmd += [f"--height={args.height}"]
        cmd += [f"--capacity={args.capacity}"]
        r = subprocess.run(
            cmd, cwd=ROOT, env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True
        )
        if r.returncode != 0:
            raise RuntimeError(f"worker for {n} devices failed:\n{r.stderr[-3000:]}")
        rows += json.loads(next(line for line in r.stdout.splitlines() if line.startswith("ROWS "))[5:])
        print(f"{n} device(s) done", flush=True)

    import jax

    base = {r["batch"]: r["steps_per_s"] for r in rows if r["devices"] == 1}
    print(
        f"\ndata-parallel train step, {args.width}x{args.height}, {args.capacity} slots, "
        f"best of {args.repeats} x {args.steps} timed steps, jax {jax.__version__} "
        f"(cpu, {os.cpu_count()} cores; forced host devices)"
    )
    print(
        "| devices | frames / step | frames / device | steps/s | frames/s | vs 1 device, same batch "
        "| compile s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["batch"] != strong, r["batch"], r["devices"])):
        ref = base.get(r["batch"])
        rel = f"{r['steps_per_s'] / ref:.2f}x" if ref else "-"
        print(
            f"| {r['devices']} | {r['batch']} | {r['batch'] // r['devices']} | {r['steps_per_s']:.2f} | "
            f"{r['steps_per_s'] * r['batch']:.2f} | {rel} | {r['compile_s']:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
