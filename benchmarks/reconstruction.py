"""Baselines in the same code: static, learnable_only (Shape-of-Motion-like), generators_only, hybrid.

    python -m benchmarks.reconstruction                 # the default config's step budget for every preset
    python -m benchmarks.reconstruction --steps 600     # a quicker comparison

Every preset trains on the same synthetic scene with the same step budget and seed; the table gives held-out
PSNR/SSIM (all pixels, and masked to the dynamic objects), training-view PSNR, wall time and parameter count.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax import evaluate, pipeline
from any4d_jax import train as train_lib
from any4d_jax.data import synthetic
from configs import synthetic as synthetic_config


def count_params(state, setup) -> int:
    """Trainable scalars in use: per active Gaussian (geometry, colour, weights) plus basis trajectories."""
    n = int(jnp.sum(state.active))
    p = state.params
    per_gaussian = sum(int(np.prod(p[k].shape[1:])) for k in ("means", "quats", "log_scales", "sh")) + 1
    mask = np.asarray(setup.basis_mask())
    k = p["motion"].generator.shape[0]
    active_bases = int(mask.sum())
    return n * (per_gaussian + active_bases) + k * (
        int(mask[: setup.motion.num_generator_bases].sum()) + 6 * setup.active_learnable_bases
    )


def run_preset(preset: str, steps: int, train_frames, eval_frames) -> dict:
    c = synthetic_config.get_config()
    c.motion.preset = preset
    c.train.num_steps = steps
    c.train.densify_until = min(c.train.densify_until, int(0.7 * steps))
    c.train.checkpoint_every = steps
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.perf_counter()
        state, setup = train_lib.train(c, train_frames, wd)
        jax.block_until_ready(state.params)
        seconds = time.perf_counter() - t0
    pred = evaluate.render_frames(state, setup, eval_frames.cameras, np.asarray(eval_frames.times))
    ev = evaluate._scores(pred, eval_frames.rgb, eval_frames.mask)
    pred_t = evaluate.render_frames(state, setup, train_frames.cameras, np.asarray(train_frames.times))
    tr = evaluate._scores(pred_t, train_frames.rgb, None)
    return {
        "preset": preset,
        "bases (C, B_l)": f"{setup.active_generator_channels}, {setup.active_learnable_bases}",
        "eval PSNR": float(np.mean(ev["psnr"])),
        "eval SSIM": float(np.mean(ev["ssim"])),
        "eval PSNR (dynamic)": float(np.mean(ev["masked_psnr"])),
        "train PSNR": float(np.mean(tr["psnr"])),
        "train s": seconds,
        "params": count_params(state, setup),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=synthetic_config.get_config().train.num_steps)
    ap.add_argument("--presets", default="static,learnable_only,generators_only,hybrid")
    args = ap.parse_args(argv)
    c = synthetic_config.get_config()
    _, train_frames, eval_frames = synthetic.make_dataset(pipeline.synthetic_config(c))
    rows = []
    for preset in args.presets.split(","):
        rows.append(run_preset(preset, args.steps, train_frames, eval_frames))
        print(f"{preset} done", flush=True)
    cols = list(rows[0])
    backend = f"jax {jax.__version__} ({jax.default_backend()})"
    print(f"\nsynthetic scene, {args.steps} steps each, seed {c.seed}, {backend}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in cols) + " |")
    return rows


if __name__ == "__main__":
    main()
