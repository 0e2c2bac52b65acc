"""The ablation job (`python -m experiments.ablate`): every (C, B_l) variant trained at once by the
vmapped step
(train/ablation.py), scored on the held-out views, written as a table, CSV, plot and JSON.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np

from any4d_jax import data, files
from any4d_jax.data.frames import Frames
from any4d_jax.errors import InputError
from any4d_jax.evaluation.render import render_variants
from any4d_jax.evaluation.scores import empty_mask_frames, score_frames
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.jobs import checks
from any4d_jax.model.gaussians import ModelSpec
from any4d_jax.train import ablation
from any4d_jax.train.ablation import Variant


def score_variants(state, spec: ModelSpec, train: Frames, held_out: Frames) -> list[dict]:
    """Per variant of a stacked state: held-out PSNR/SSIM (all pixels and masked to the foreground),
    training-view PSNR, Gaussians in use."""
    pred_eval = render_variants(state, spec, held_out.cameras, held_out.times, "eval views")
    pred_train = render_variants(state, spec, train.cameras, train.times, "train views")
    rows = []
    for v in range(pred_eval.shape[0]):
        ev = score_frames(pred_eval[v], held_out.rgb, held_out.mask)
        tr = score_frames(pred_train[v], train.rgb)
        row = {"eval_psnr": float(np.mean(ev["psnr"])), "eval_ssim": float(np.mean(ev["ssim"]))}
        if "masked_psnr" in ev:  # over the frames whose foreground mask covers a pixel
            covered = ~empty_mask_frames(held_out.mask)
            dyn = ev["masked_psnr"][covered]
            row["eval_psnr_dynamic"] = float(np.mean(dyn)) if dyn.size else float("nan")
        row["train_psnr"] = float(np.mean(tr["psnr"]))
        row["gaussians"] = int(np.sum(np.asarray(state.active[v])))
        rows.append(row)
    return rows


def summarise(vs: list[Variant], scores: list[dict], bad: np.ndarray) -> list[dict]:
    """One row per (C, B_l) combination: means over its seeds (and the held-out PSNR's spread)."""
    groups: dict[tuple, list[int]] = {}
    for i, v in enumerate(vs):
        groups.setdefault((v.generator_channels, v.learnable_bases), []).append(i)
    rows = []
    for (gc, lb), idx in groups.items():
        row = {
            "generator_channels": gc,
            "learnable_bases": lb,
            "active_bases": 6 * gc + lb,
            "seeds": len(idx),
        }
        for key in scores[idx[0]]:
            values = [scores[i][key] for i in idx]
            mean = float(np.mean(values))
            row[key] = round(mean) if all(isinstance(x, int) for x in values) else mean
        row["eval_psnr_std"] = float(np.std([scores[i]["eval_psnr"] for i in idx]))
        row["diverged"] = int(np.sum(np.asarray(bad)[idx] >= 0))
        rows.append(row)
    return rows


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_outputs(rows: list[dict], workdir: str, header: str = "") -> dict:
    """ablation.md, ablation.csv and ablation.png (held-out PSNR against active bases, one line per
    generator setting) in workdir; returns their paths."""
    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f"ablation.{k}") for k in ("md", "csv", "png")}
    files.write_text(paths["md"], (header + "\n\n" if header else "") + markdown_table(rows) + "\n")
    with files.atomic_write(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with files.atomic_path(paths["png"]) as tmp:
        plot(rows, tmp)
    return paths


def plot(rows: list[dict], path: str) -> None:
    import matplotlib  # heavy: imported only when the plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for gc in sorted({r["generator_channels"] for r in rows}):
        rs = sorted((r for r in rows if r["generator_channels"] == gc), key=lambda r: r["active_bases"])
        x = [r["active_bases"] for r in rs]
        y = np.array([r["eval_psnr"] for r in rs])
        ax.plot(x, y, marker="o", label=f"C = {gc} generator channels")
        if any(r["seeds"] > 1 for r in rs):
            sd = np.array([r["eval_psnr_std"] for r in rs])
            ax.fill_between(x, y - sd, y + sd, alpha=0.2)
    ax.set_xlabel("active bases B = 6 C + B_l")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict:
    """The ablation: data, vmapped training of every variant, held-out scores, table + CSV + plot."""
    checks.check_config(config)
    if config.data.source != "synthetic":
        raise InputError(
            f"experiments.ablate needs data.source='synthetic' (held-out views), got {config.data.source!r}"
        )
    vs = ablation.variants(config)
    cfg = ablation.allocation_config(config, vs)
    workdir_lib.prepare(cfg, workdir)  # every workdir check before anything is built
    ds = data.load(cfg)
    workdir_lib.check_workdir(cfg, workdir, write=True)
    t0 = time.perf_counter()
    state, setup, result = ablation.train_variants(cfg, ds.train, vs, workdir, progress)
    jax.block_until_ready(state.params)
    seconds = time.perf_counter() - t0
    scores = score_variants(state, setup.model, ds.train, ds.held_out)
    rows = summarise(vs, scores, result.first_bad)
    m = cfg.motion
    header = (
        f"Ablation over motion-basis sizes: {len(vs)} variants in one vmapped train step, allocation "
        f"C = {m.num_generator_channels}, B_l = {m.num_learnable_bases}; {cfg.train.num_steps} steps, "
        f"{seconds:.0f} s training ({jax.default_backend()}), seeds {sorted({v.seed for v in vs})}."
    )
    paths = write_outputs(rows, workdir, header)
    files.write_json(
        os.path.join(workdir, "ablation.json"),
        {
            "variants": [dict(dataclasses.asdict(v), **s) for v, s in zip(vs, scores, strict=True)],
            "rows": rows,
            "train_seconds": seconds,
        },
    )
    return {"rows": rows, "paths": paths, "train_seconds": seconds, "header": header}
