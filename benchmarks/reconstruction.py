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

from any4d_jax import data
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import score_frames
from any4d_jax.model import motion
from any4d_jax.train import loop
from configs import synthetic as synthetic_config


def count_params(state, setup) -> int:
    """Trainable scalars in use: per active Gaussian (geometry, colour, weights) plus basis trajectories."""
    n = int(jnp.sum(state.active))
    p = state.params
    per_gaussian = (
        sum(int(np.prod(getattr(p, k).shape[1:])) for k in ("means", "quats", "log_scales", "sh")) + 1
    )
    mask = np.asarray(p.motion.mask)
    k = p.motion.generator.shape[0]
    mg, ml = motion.split_weights(mask, setup.model.motion)
    return n * (per_gaussian + int(mask.sum())) + k * (int(mg.sum()) + 6 * int(ml.sum()))


def run_preset(preset: str, steps: int, train_frames, eval_frames) -> dict:
    c = synthetic_config.get_config()
    c.motion.preset = preset
    c.train.num_steps = steps
    c.train.densify_until = min(c.train.densify_until, int(0.7 * steps))
    c.train.checkpoint_every = steps
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.perf_counter()
        state, setup = loop.train(c, train_frames, wd)
        jax.block_until_ready(state.params)
        seconds = time.perf_counter() - t0
    pred = render_frames(state, setup.model, eval_frames.cameras, eval_frames.times)
    ev = score_frames(pred, eval_frames.rgb, eval_frames.mask)
    pred_t = render_frames(state, setup.model, train_frames.cameras, train_frames.times)
    tr = score_frames(pred_t, train_frames.rgb)
    mg, ml = motion.split_weights(np.asarray(state.params.motion.mask), setup.model.motion)
    return {
        "preset": preset,
        "bases (C, B_l)": f"{int(mg.sum()) // 6}, {int(ml.sum())}",
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
    ds = data.load(c)
    train_frames, eval_frames = ds.train, ds.held_out
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
