"""Size and fidelity of the .a4d export against the per-frame PLY sequence of the same run.

    python -m benchmarks.export_size --workdir=runs/synthetic

Exports the run's latest checkpoint at both precisions, then renders every training camera at its time from
(a) the checkpoint (float32, the training code path) and (b) each reloaded file, and prints a table: file
size, ratio to the PLY sequence in <workdir>/ply, PSNR of the reloaded renders against the checkpoint's, and
(for the synthetic source) the held-out PSNR against ground truth of each, whose difference is the cost.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from any4d_jax import data as data_lib
from any4d_jax.geometry.cameras import Camera
from any4d_jax.io import a4d
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.render import RenderConfig, render


@functools.partial(jax.jit, static_argnames=("width", "height"))
def _render(splats, viewmat, K, background, width, height):
    cam = Camera(viewmat=viewmat, K=K, width=width, height=height)
    return jnp.clip(render(splats, cam, background, RenderConfig()).rgb, 0.0, 1.0)


def render_scene(scene: a4d.Scene, viewmats, Ks, times, width, height) -> np.ndarray:
    bg = jnp.asarray(scene.meta["background"], jnp.float32)
    return np.stack(
        [
            np.asarray(_render(scene.splats_at(jnp.float32(t)), vm, K, bg, width, height))
            for vm, K, t in zip(viewmats, Ks, times, strict=True)
        ]
    )


def psnr(a, b) -> float:
    """Mean over frames of the per-frame PSNR (capped at 120 dB for identical frames)."""
    mse = [max(float(np.mean((x - y) ** 2)), 1e-12) for x, y in zip(a, b, strict=True)]
    return float(np.mean(-10 * np.log10(mse)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/synthetic")
    args = ap.parse_args()
    original = workdir_lib.scene_from_workdir(args.workdir)  # float32 in memory: the checkpoint itself
    w, h = int(original.meta["width"]), int(original.meta["height"])
    views = (original.camera_viewmats, original.camera_Ks, original.camera_times)
    heldout = None
    with open(os.path.join(args.workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.data.source == "synthetic":
        ev = data_lib.load(config).held_out
        heldout = tuple(np.asarray(x) for x in (ev.cameras.viewmat, ev.cameras.K, ev.times, ev.rgb))
    ref = render_scene(original, *views, w, h)
    ref_gt = render_scene(original, *heldout[:3], w, h) if heldout else None
    ply_dir = os.path.join(args.workdir, "ply")
    plys = sorted(os.listdir(ply_dir)) if os.path.isdir(ply_dir) else []
    ply_bytes = sum(os.path.getsize(os.path.join(ply_dir, p)) for p in plys)
    rows = []
    if plys:
        held = psnr(ref_gt, heldout[3]) if heldout else float("nan")
        rows.append(["per-frame PLY", len(plys), ply_bytes / 1e6, 1.0, float("inf"), held])
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float32", "mixed"):
            path = os.path.join(tmp, f"{precision}.a4d")
            nbytes = a4d.write_a4d(path, original, precision)
            back = a4d.read_a4d(path)
            held = psnr(render_scene(back, *heldout[:3], w, h), heldout[3]) if heldout else float("nan")
            ratio = ply_bytes / nbytes if ply_bytes else float("nan")
            same = psnr(render_scene(back, *views, w, h), ref)
            rows.append([f".a4d {precision}", 1, nbytes / 1e6, ratio, same, held])
    n, t = original.num_gaussians, original.meta["num_frames"]
    print(f"\n{n} Gaussians, {t} frames, {w}x{h} ({args.workdir})\n")
    print("| format | files | MB | PLY / this | PSNR vs checkpoint renders (dB) | held-out PSNR vs GT (dB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.3f} |")


if __name__ == "__main__":
    main()
