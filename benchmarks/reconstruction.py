"""Evidence for the motion model: baselines in the same code, with and without tracks, over seeds and scenes.

    python -m benchmarks.reconstruction                                   # the whole grid (hours on a CPU)
    python -m benchmarks.reconstruction --scenes default --seeds 0        # one seed of the default scene
    python -m benchmarks.reconstruction --rows runs/evidence.jsonl        # resume / print a saved grid

Grid: preset (static, generators_only, learnable_only, hybrid; `name:C/B_l` sets a preset's allocation,
`name+variant` changes its motion model (VARIANTS: bspline, k32, tied);
learnable_only:2/20, its 2 generator channels masked off, has as many active per-Gaussian weights as the
hybrid's 6 x 2 + 8) x tracks (off / on: the scene's exact ground-truth tracks, data.tracks=ground_truth) x
seed x scene (default: configs/synthetic.py;
handheld: configs/handheld.py, the iPhone-like scene). Every cell trains at its scene config's step budget
(or --steps); the scene itself is the same for every seed (its content seed stays 0): the seed moves the
initialisation, k-means and the frame order. Each finished run is appended to --rows (JSONL) at once, and
runs already there are skipped, so an interrupted grid resumes.

Per run: held-out PSNR / SSIM / LPIPS (all pixels), masked PSNR on the moving objects, training-view PSNR,
3D EPE and delta_3D at 5 cm of the scene's ground-truth evaluation tracks (never trained on), parameter
count and wall time. The table gives mean +- standard deviation over seeds for each (scene, preset, tracks),
then the mean over scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from any4d_jax import data
from any4d_jax.evaluation import lpips as lpips_lib
from any4d_jax.evaluation import track_eval
from any4d_jax.evaluation.render import render_frames
from any4d_jax.evaluation.scores import score_frames
from any4d_jax.model import motion
from any4d_jax.train import loop
from configs import handheld as handheld_config
from configs import synthetic as synthetic_config

PRESETS = ("static", "generators_only", "learnable_only", "hybrid")
SCENES = {"default": synthetic_config, "handheld": handheld_config}
COLUMNS = ("eval PSNR", "masked PSNR", "eval SSIM", "eval LPIPS", "EPE 3D (m)", "d3D 5cm", "train PSNR")


def count_params(state, setup) -> int:
    """Trainable scalars in use: per active Gaussian (geometry, colour, active weights) plus basis
    trajectories."""
    n = int(jnp.sum(state.active))
    p = state.params
    per_gaussian = (
        sum(int(np.prod(getattr(p, k).shape[1:])) for k in ("means", "quats", "log_scales", "sh")) + 1
    )
    mask = np.asarray(p.motion.mask)
    k = p.motion.generator.shape[0]
    mg, ml = motion.split_weights(mask, setup.model.motion)
    return n * (per_gaussian + int(mask.sum())) + k * (int(mg.sum()) + 6 * int(ml.sum()))


def scene_config(scene: str, steps: int | None):
    c = SCENES[scene].get_config()
    if steps:
        c.train.densify_until = min(c.train.densify_until, int(0.8 * steps))
        c.train.time_ramp_steps = min(c.train.time_ramp_steps, steps // 2)
        c.train.num_steps = steps
    c.eval.write_ply = False
    return c


# Motion-model variants a label may add after the preset (`hybrid+bspline`): config overrides, each a change
# of the motion model tried against the plain presets (issue 17: report every variant tried).
VARIANTS = {
    # Uniform cubic B-spline time basis (C2, local support) instead of the DCT, same number of coefficients.
    "bspline": {"motion.time_basis": "bspline"},
    # Twice the time coefficients (finer trajectories).
    "k32": {"motion.num_time_coeffs": 32},
    # Generator channels start tied to the k-means clusters like the learnable bases (weight 1 on their
    # cluster's channel) instead of at 0.
    "tied": {"motion.init_generator_weight": 1.0},
}


def parse_variants(label: str) -> tuple[str, dict]:
    """'hybrid:2/8+bspline' -> ('hybrid:2/8', {'motion.time_basis': 'bspline'}): the preset part and the
    overrides of its variants (`VARIANTS`)."""
    head, *names = label.split("+")
    overrides = {}
    for v in names:
        if v not in VARIANTS:
            raise SystemExit(f"--presets: unknown variant {v!r} in {label!r} (one of {', '.join(VARIANTS)})")
        overrides.update(VARIANTS[v])
    return head, overrides


def parse_preset(label: str) -> tuple[str, tuple | None]:
    """'hybrid' -> ('hybrid', None); 'learnable_only:2/20' -> ('learnable_only', (2, 20)): a preset with its
    allocation (C generator channels, B_l learnable bases) set, e.g. learnable bases as many as the hybrid's
    6 C + B_l (the generator channels are masked off), so both have the same per-Gaussian weights. Variants
    (`+name`) are ignored here (`parse_variants`)."""
    name, _, alloc = parse_variants(label)[0].partition(":")
    if name not in PRESETS:
        known = ", ".join(PRESETS)
        raise SystemExit(f"--presets: unknown preset {name!r} (one of {known}, optionally :C/B_l)")
    if not alloc:
        return name, None
    gc, lb = (int(x) for x in alloc.split("/"))
    return name, (gc, lb)


def run_one(scene: str, preset: str, tracks: bool, seed: int, steps: int | None, ds, lpips_weights) -> dict:
    """Train one cell on `ds` (loaded with tracks) and score it. preset: a name, or name:C/B_l."""
    c = scene_config(scene, steps)
    name, alloc = parse_preset(preset)
    c.motion.preset = name
    if alloc is not None:
        c.motion.num_generator_channels, c.motion.num_learnable_bases = alloc
    for key, value in parse_variants(preset)[1].items():
        section, field = key.split(".")
        c[section][field] = value
    c.seed = seed
    c.train.checkpoint_every = c.train.num_steps
    frames = ds.train if tracks else ds.train.replace(tracks=None)
    c.data.tracks = "ground_truth" if tracks else ""
    with tempfile.TemporaryDirectory() as wd:
        t0 = time.perf_counter()
        state, setup = loop.train(c, frames, wd, progress=False)
        jax.block_until_ready(state.params)
        seconds = time.perf_counter() - t0
    ev_frames = ds.held_out
    pred = render_frames(state, setup.model, ev_frames.cameras, ev_frames.times, progress=False)
    ev = score_frames(pred, ev_frames.rgb, ev_frames.mask, lpips_weights)
    pred_t = render_frames(state, setup.model, frames.cameras, frames.times, progress=False)
    tr = score_frames(pred_t, frames.rgb)
    tracking = track_eval.evaluate(state, setup.model, frames, ds.eval_tracks, None, ds.metres_per_unit)
    return {
        "scene": scene,
        "preset": preset,
        "tracks": tracks,
        "seed": seed,
        "steps": c.train.num_steps,
        "eval PSNR": float(np.mean(ev["psnr"])),
        "masked PSNR": float(np.nanmean(ev["masked_psnr"])),
        "eval SSIM": float(np.mean(ev["ssim"])),
        "eval LPIPS": float(np.mean(ev["lpips"])) if "lpips" in ev else float("nan"),
        "EPE 3D (m)": tracking["3d"]["epe_3d"],
        "d3D 5cm": tracking["3d"]["delta_3d_5cm"],
        "train PSNR": float(np.mean(tr["psnr"])),
        "params": count_params(state, setup),
        "seconds": seconds,
        "backend": f"jax {jax.__version__} ({jax.default_backend()})",
    }


def _key(r: dict) -> tuple:
    return (r["scene"], r["preset"], bool(r["tracks"]), int(r["seed"]), int(r["steps"]))


def table(rows: list[dict]) -> str:
    """Markdown: mean +- std over seeds per (scene, preset, tracks), then the mean over scenes."""
    groups: dict = {}
    steps: dict = {}
    for r in rows:
        groups.setdefault((r["scene"], r["preset"], bool(r["tracks"])), []).append(r)
        steps.setdefault(r["scene"], set()).add(int(r["steps"]))
    mixed = [s for s, v in steps.items() if len(v) > 1]
    if mixed:
        raise SystemExit(f"--rows holds runs of different step budgets for {mixed}: give each its own file")
    scenes = sorted({g[0] for g in groups}, key=lambda s: list(SCENES).index(s))
    head = "| scene (steps) | preset | tracks | seeds | " + " | ".join(COLUMNS) + " | params |"
    out = [head, "|" + "---|" * 12]

    def cell(vals):
        v = np.asarray(vals, np.float64)
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    labels = sorted({g[1] for g in groups}, key=lambda p: (PRESETS.index(parse_preset(p)[0]), p))
    for scene in [*scenes, "mean"]:
        for preset in labels:
            for tracks in (False, True):
                if scene == "mean":
                    parts = [groups.get((s, preset, tracks)) for s in scenes]
                    if len(scenes) < 2 or any(p is None for p in parts):
                        continue
                    # Per seed, the mean over scenes; then mean +- std over seeds.
                    seeds = sorted(set.intersection(*[{r["seed"] for r in p} for p in parts]))
                    vals = {
                        k: [np.mean([next(r[k] for r in p if r["seed"] == s) for p in parts]) for s in seeds]
                        for k in (*COLUMNS, "params")
                    }
                    n = len(seeds)
                else:
                    g = groups.get((scene, preset, tracks))
                    if not g:
                        continue
                    vals = {k: [r[k] for r in g] for k in (*COLUMNS, "params")}
                    n = len(g)
                if n == 0:
                    continue
                label = scene if scene == "mean" else f"{scene} ({min(steps[scene])})"
                row = [label, preset, "on" if tracks else "off", str(n)]
                row += [cell(vals[k]) for k in COLUMNS] + [str(int(np.mean(vals["params"])))]
                out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="default,handheld")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--tracks", default="off,on", help="off, on or both (off,on)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (0: each scene config's own)")
    ap.add_argument(
        "--rows", default="runs/evidence.jsonl", help="JSONL of finished runs (appended, resumed)"
    )
    ap.add_argument("--table-only", action="store_true", help="print the table of --rows and exit")
    args = ap.parse_args(argv)
    rows = []
    if os.path.exists(args.rows):
        rows = [json.loads(line) for line in open(args.rows) if line.strip()]
    if not args.table_only:
        os.makedirs(os.path.dirname(os.path.abspath(args.rows)), exist_ok=True)
        done = {_key(r) for r in rows}
        weights, status = lpips_lib.try_load_weights(None, "alex")
        print(status, flush=True)
        for scene in args.scenes.split(","):
            c = scene_config(scene, args.steps or None)
            c.data.tracks = "ground_truth"
            ds = data.load(c)  # scene content seed 0, tracks included (dropped for the off runs)
            for seed in [int(s) for s in args.seeds.split(",")]:
                for preset in args.presets.split(","):
                    for tr in args.tracks.split(","):
                        key = (scene, preset, tr == "on", seed, c.train.num_steps)
                        if key in done:
                            continue
                        r = run_one(scene, preset, tr == "on", seed, args.steps or None, ds, weights)
                        rows.append(r)
                        with open(args.rows, "a") as f:
                            f.write(json.dumps(r) + "\n")
                        print(
                            f"{scene} {preset} tracks={tr} seed={seed}: {r['eval PSNR']:.2f} dB, "
                            f"EPE {r['EPE 3D (m)']:.3f} m, {r['seconds']:.0f} s",
                            flush=True,
                        )
    backend = rows[0]["backend"] if rows else ""
    print(f"\n{len(rows)} runs, {backend}")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
