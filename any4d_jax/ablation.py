"""Ablations over motion-basis sizes: every variant trained at once by one jitted, `jax.vmap`-ed train step.

All variants share one maximal motion-basis allocation (the largest generator-channel and learnable-basis
counts asked for) and differ only in their active-basis mask (DESIGN.md, "The hybrid motion basis"), so they
have the same shapes and one compiled program trains them all. They share the data (every training frame);
each has its own parameters, optimiser state and RNG, stacked on a leading variant axis V.

The loop mirrors `train.train` step for step (the same step function, density control and rigidity
neighbours on the same schedule, with the same keys), so variant i of a vmapped run ends where a separate
`train.train` run with the same mask and seed ends (tests/test_ablation.py checks this).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from any4d_jax import evaluate, motion
from any4d_jax import train as train_lib
from any4d_jax.cameras import Camera
from any4d_jax.data.frames import Frames
from any4d_jax.densify import densify
from any4d_jax.render import render


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ablation variant: the active generator channels C, learnable bases B_l, and the seed."""

    generator_channels: int
    learnable_bases: int
    seed: int

    @property
    def num_bases(self) -> int:
        """Active bases B = 6 C + B_l."""
        return 6 * self.generator_channels + self.learnable_bases


def parse_counts(text, name: str) -> tuple[int, ...]:
    """Counts from "0,1,2" (or an int, or a sequence): sorted, unique, each >= 0."""
    if isinstance(text, int):
        items = [text]
    elif isinstance(text, str):
        items = [s.strip() for s in text.split(",") if s.strip()]
    else:
        items = list(text)
    try:
        counts = sorted({int(x) for x in items})
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers like '0,4,8', got {text!r}") from None
    if not counts or counts[0] < 0:
        raise ValueError(f"{name} must list at least one count >= 0, got {text!r}")
    return tuple(counts)


def variants(config: ml_collections.ConfigDict) -> list[Variant]:
    """Every (generator channels, learnable bases, seed) combination, channel-major, seed-minor."""
    a = config.ablation
    gcs = parse_counts(a.generator_channels, "ablation.generator_channels")
    lbs = parse_counts(a.learnable_bases, "ablation.learnable_bases")
    if a.num_seeds < 1:
        raise ValueError(f"ablation.num_seeds must be >= 1, got {a.num_seeds}")
    seeds = [config.seed + i for i in range(a.num_seeds)]
    return [Variant(g, b, s) for g in gcs for b in lbs for s in seeds]


def allocation_config(config: ml_collections.ConfigDict, vs: list[Variant]) -> ml_collections.ConfigDict:
    """The config every variant trains under: the maximal allocation, the hybrid preset (all bases
    allocated; the masks switch them off) and the step schedule scaled by ablation.step_scale."""
    scale = config.ablation.step_scale
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"ablation.step_scale must be in (0, 1], got {scale}")
    c = ml_collections.ConfigDict(config.to_dict())
    c.motion.preset = "hybrid"
    c.motion.num_generator_channels = max(v.generator_channels for v in vs)
    c.motion.num_learnable_bases = max(v.learnable_bases for v in vs)
    t = c.train
    for key in ("num_steps", "time_ramp_steps", "densify_from", "densify_until", "densify_every"):
        t[key] = max(1, round(t[key] * scale)) if t[key] > 0 else t[key]
    t.checkpoint_every = min(t.checkpoint_every, t.num_steps)
    return c


def stack(trees: list):
    """List of V pytrees of the same structure -> one pytree with a leading axis V on every leaf."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def select(tree, i: int):
    """Variant i of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def init_states(config, setup: train_lib.Setup, frames: Frames, optimizer, vs: list[Variant]):
    """Stacked initial TrainState (leading axis V): `train.init_state` under each variant's seed."""
    by_seed = {}
    for v in vs:
        if v.seed not in by_seed:
            c = ml_collections.ConfigDict(config.to_dict())
            c.seed = v.seed
            by_seed[v.seed] = train_lib.init_state(c, setup, frames, optimizer)
    return stack([by_seed[v.seed] for v in vs])


def masks(setup: train_lib.Setup, vs: list[Variant]) -> jnp.ndarray:
    """(V, B) active-basis masks over the shared allocation."""
    return jnp.stack([motion.basis_mask(setup.motion, v.generator_channels, v.learnable_bases) for v in vs])


def densify_round(state: train_lib.TrainState, extent, setup: train_lib.Setup, k: int):
    """One density-control round on a (single-variant) state, exactly as `train.train` does it after step n
    (= state.step): clone/split/prune, reset the gradient statistics, refresh the rigidity neighbours."""
    params, active, opt_state, _ = densify(
        state.params,
        state.active,
        state.opt_state,
        state.grad_accum,
        state.vis_count,
        extent,
        jax.random.fold_in(state.rng, state.step),
        cfg=setup.densify,
    )
    return state.replace(
        params=params,
        active=active,
        opt_state=opt_state,
        grad_accum=jnp.zeros_like(state.grad_accum),
        vis_count=jnp.zeros_like(state.vis_count),
        neighbours=train_lib.rigidity_neighbours(params, active, k, 1.0),
    )


def make_functions(setup: train_lib.Setup, optimizer, k: int, vmapped: bool = True, jit=jax.jit):
    """(step, densify) of the training loop, jitted; vmapped over a leading variant axis when `vmapped`.

    step(state, data, mask) -> (state, metrics): data (every training frame) is shared, state and mask
    (V, B) are per variant. densify(state, extent) -> state.
    """
    step = train_lib.make_train_step(setup, optimizer)
    dens = functools.partial(densify_round, setup=setup, k=k)
    if vmapped:
        step = jax.vmap(step, in_axes=(0, None, 0))
        dens = jax.vmap(dens, in_axes=(0, None))
    return jit(step, donate_argnums=(0,)), jit(dens, donate_argnums=(0,))


def _wants_densify(tc, n: int) -> bool:
    return tc.densify_from <= n <= tc.densify_until and n % tc.densify_every == 0


def run_loop(state, data: dict, mask, fns, tc, extent: float, mgr=None, progress: bool = True, desc="ablate"):
    """Steps state.step .. tc.num_steps on `train.train`'s schedule (density control, checkpoints).

    state / mask: stacked (leading V) for vmapped `fns`, single otherwise. Returns (state, last metrics as
    numpy, first non-finite step per variant (V,) (-1 = none)). A non-finite variant does not stop the
    others (they are independent); it is reported instead.
    """
    step_fn, dens_fn = fns
    start = int(np.max(np.asarray(state.step)))
    bad = np.full(np.shape(np.asarray(state.step)), -1)
    last = {}
    bar = tqdm(range(start, tc.num_steps), desc=desc, initial=start, total=tc.num_steps, disable=not progress)
    for s in bar:
        state, m = step_fn(state, data, mask)
        n = s + 1
        if n % tc.log_every == 0 or n == tc.num_steps:
            last = {key: np.asarray(v) for key, v in m.items()}
            bad = np.where((bad < 0) & ~np.isfinite(last["loss"]), n, bad)
            bar.set_postfix(loss=f"{np.nanmean(last['loss']):.4f}", psnr=f"{np.nanmean(last['psnr']):.2f}")
        if _wants_densify(tc, n):
            state = dens_fn(state, extent)
        if mgr is not None and (n % tc.checkpoint_every == 0 or n == tc.num_steps):
            mgr.save(n, args=ocp.args.StandardSave(state))
    bar.close()
    if mgr is not None:
        mgr.wait_until_finished()
    return state, last, bad


# ----------------------------------------------------------------------------------------------------------
# Evaluation and outputs.
# ----------------------------------------------------------------------------------------------------------


def _render_variants(params, active, mask, setup, viewmat, K, t, width, height):
    """(V, H, W, 3) renders of every variant from one camera at time t."""

    def one(p, a, m):
        cam = Camera(viewmat=viewmat, K=K, width=width, height=height)
        splats = train_lib.splats_at(p, a, setup, t, m)
        return jnp.clip(render(splats, cam, jnp.asarray(setup.background), setup.render).rgb, 0.0, 1.0)

    return jax.vmap(one)(params, active, mask)


@functools.cache
def _jitted_render():
    return jax.jit(_render_variants, static_argnames=("setup", "width", "height"))


def render_variants(state, mask, setup, frames: Frames) -> np.ndarray:
    """(V, F, H, W, 3): every variant rendered at every frame's camera and time."""
    cams = frames.cameras
    fn = _jitted_render()
    out = [
        np.asarray(
            fn(
                state.params,
                state.active,
                mask,
                setup,
                cams.viewmat[i],
                cams.K[i],
                jnp.float32(frames.times[i]),
                cams.width,
                cams.height,
            )
        )
        for i in range(frames.num_frames)
    ]
    return np.stack(out, axis=1)


def score_variants(state, mask, setup, train: Frames, held_out: Frames) -> list[dict]:
    """Per variant: held-out PSNR/SSIM (all pixels and masked to the foreground), training-view PSNR."""
    pred_eval = render_variants(state, mask, setup, held_out)
    pred_train = render_variants(state, mask, setup, train)
    rows = []
    for v in range(pred_eval.shape[0]):
        ev = evaluate._scores(pred_eval[v], held_out.rgb, held_out.mask)
        tr = evaluate._scores(pred_train[v], train.rgb, None)
        row = {"eval_psnr": float(np.mean(ev["psnr"])), "eval_ssim": float(np.mean(ev["ssim"]))}
        if "masked_psnr" in ev:
            row["eval_psnr_dynamic"] = float(np.mean(ev["masked_psnr"]))
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
    with open(paths["md"], "w") as f:
        f.write((header + "\n\n" if header else "") + markdown_table(rows) + "\n")
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, paths["png"])
    return paths


def plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is in the dev extra
        raise ImportError("the ablation plot needs matplotlib: pip install -e '.[dev]'") from None
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


# ----------------------------------------------------------------------------------------------------------
# The whole ablation.
# ----------------------------------------------------------------------------------------------------------


def train_variants(
    config, train_frames: Frames, vs: list[Variant], workdir: str | None = None, progress=True
):
    """Train every variant in one vmapped loop. config: the allocation config (`allocation_config`).

    Returns (stacked state, setup, masks (V, B), first non-finite step per variant). With a workdir, the
    stacked state is checkpointed on train.checkpoint_every (orbax) and a run resumes from the latest.
    """
    setup = train_lib.make_setup(config, train_frames)
    extent = train_lib.scene_extent(train_frames.cameras)
    optimizer = train_lib.make_optimizer(config, extent)
    state = init_states(config, setup, train_frames, optimizer, vs)
    mask = masks(setup, vs)
    mgr = None
    if workdir is not None:
        mgr = train_lib._checkpoint_manager(workdir, config.train.keep_checkpoints)
        if config.resume and mgr.latest_step() is not None:
            state = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore(state))
            tqdm.write(f"resumed {len(vs)} variants from step {mgr.latest_step()} ({workdir}/checkpoints)")
    fns = make_functions(setup, optimizer, config.train.rigidity_k, vmapped=True)
    state, _, bad = run_loop(
        state, train_lib.frames_to_data(train_frames), mask, fns, config.train, extent, mgr, progress
    )
    return state, setup, mask, bad


def run(config: ml_collections.ConfigDict, workdir: str, progress: bool = True) -> dict:
    """The ablation: data, vmapped training of every variant, held-out scores, table + CSV + plot."""
    if config.data.source != "synthetic":
        raise ValueError(
            f"experiments.ablate needs data.source='synthetic' (held-out views), got {config.data.source!r}"
        )
    from any4d_jax import pipeline
    from any4d_jax.data import synthetic

    vs = variants(config)
    cfg = allocation_config(config, vs)
    train_lib.check_workdir(cfg, workdir)
    _, train_frames, eval_frames = synthetic.make_dataset(pipeline.synthetic_config(cfg))
    t0 = time.perf_counter()
    state, setup, mask, bad = train_variants(cfg, train_frames, vs, workdir, progress)
    jax.block_until_ready(state.params)
    seconds = time.perf_counter() - t0
    scores = score_variants(state, mask, setup, train_frames, eval_frames)
    rows = summarise(vs, scores, bad)
    m = cfg.motion
    header = (
        f"Ablation over motion-basis sizes: {len(vs)} variants in one vmapped train step, allocation "
        f"C = {m.num_generator_channels}, B_l = {m.num_learnable_bases}; {cfg.train.num_steps} steps, "
        f"{seconds:.0f} s training ({jax.default_backend()}), seeds {sorted({v.seed for v in vs})}."
    )
    paths = write_outputs(rows, workdir, header)
    with open(os.path.join(workdir, "ablation.json"), "w") as f:
        json.dump(
            {
                "variants": [dict(dataclasses.asdict(v), **s) for v, s in zip(vs, scores, strict=True)],
                "rows": rows,
                "train_seconds": seconds,
            },
            f,
            indent=2,
        )
    return {"rows": rows, "paths": paths, "train_seconds": seconds, "header": header}
