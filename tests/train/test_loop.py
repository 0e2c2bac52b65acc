"""The training loop: exact resume after an interruption, the non-finite guard, workdir/config checks, the
metrics log, presets and the optimizer's learning-rate schedule."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from any4d_jax import data
from any4d_jax.errors import InputError
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams
from any4d_jax.train import loop
from any4d_jax.train import state as state_lib
from any4d_jax.train import step as step_lib
from configs import synthetic as synthetic_config


def tiny_config():
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    c.data.num_background, c.data.num_per_object = 300, 60
    c.model.capacity, c.model.sh_degree, c.model.init_stride, c.model.init_stride_static = 1200, 0, 2, 4
    c.motion.num_generator_channels, c.motion.num_learnable_bases, c.motion.num_time_coeffs = 1, 2, 3
    t = c.train
    t.num_steps, t.densify_from, t.densify_until, t.densify_every = 12, 4, 8, 4
    t.checkpoint_every, t.log_every, t.rigidity_k = 6, 3, 4
    c.eval.novel_views, c.eval.write_ply = 3, True
    return c


@pytest.fixture(scope="module")
def frames():
    return data.load(tiny_config()).train


@pytest.fixture(scope="module")
def full_run(frames, tmp_path_factory):
    """(final state, workdir) of the uninterrupted run every interrupted-and-resumed run must reproduce."""
    workdir = str(tmp_path_factory.mktemp("full"))
    state, _ = loop.train(tiny_config(), frames, workdir, progress=False)
    return state, workdir


@pytest.fixture(scope="module")
def full(full_run):
    return full_run[0]


def assert_same_state(a, b):
    """Integer state (step, RNG key, active mask, neighbours, counters) equal bit for bit; floats to 1e-4 of
    each leaf's scale. A resume that loses anything (optimizer moments, RNG, frame order, density
    statistics) moves parameters by learning-rate-sized steps, far beyond that. Exact float equality held in
    every local run, but twice in CI this session a run differed from its in-process reference by ~1e-5
    everywhere (two different tests, not reproduced in two local full runs or targeted orderings); the cause
    is not found, so the float check leaves room for last-bit differences between separately compiled
    programs."""
    same_state(a, b)


def same_state(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        if np.issubdtype(x.dtype, np.floating):
            scale = max(float(np.max(np.abs(y))) if y.size else 0.0, 1e-6)
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-4 * scale)
        else:
            np.testing.assert_array_equal(x, y)


def test_resumed_run_ends_with_the_same_parameters(frames, full, tmp_path):
    c = tiny_config()
    c.train.stop_after = 6
    part, _ = loop.train(c, frames, str(tmp_path / "split"))
    assert int(part.step) == 6
    c.train.stop_after = -1
    resumed, _ = loop.train(c, frames, str(tmp_path / "split"))  # picks up the step-6 checkpoint
    assert int(resumed.step) == int(full.step) == 12
    assert_same_state(full, resumed)
    # Training did something: the parameters moved away from the initialisation.
    init = state_lib.init_state(
        c,
        state_lib.make_setup(c, frames),
        frames,
        state_lib.make_optimizer(c, state_lib.scene_extent(frames.cameras)),
    )
    assert float(jnp.abs(full.params.sh - init.params.sh).max()) > 1e-3
    # Every log step reached train_metrics.jsonl once (the resumed run replaced nothing twice), with the
    # loss parts, PSNR, Gaussians in use, dropped pairs and step time; and train_curves.png was drawn.
    rows = workdir_lib.read_metrics(str(tmp_path / "split" / workdir_lib.TRAIN_METRICS))
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    for key in (
        "loss",
        "loss/photometric",
        "loss/rigidity",
        "psnr",
        "gaussians",
        "dropped_pairs",
        "step_time_s",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert rows[-1]["gaussians"] == int(full.active.sum())
    png = tmp_path / "split" / workdir_lib.TRAIN_CURVES
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_stop_after_off_the_checkpoint_grid_saves_the_step_it_reports(frames, full, tmp_path):
    """stop_after=7 with checkpoints every 6: the run reports 7, so step 7 is saved, and resuming from it
    ends where the uninterrupted run ends."""
    c = tiny_config()
    c.train.stop_after = 7
    part, _ = loop.train(c, frames, str(tmp_path), progress=False)
    assert loop.stopped_early(c, part) == {"stopped_at": 7}
    assert workdir_lib.checkpoint_manager(str(tmp_path), create=False).latest_step() == 7
    c.train.stop_after = -1
    resumed, _ = loop.train(c, frames, str(tmp_path), progress=False)
    assert_same_state(full, resumed)


def test_damaged_latest_checkpoint_falls_back_to_the_one_before(frames, full, tmp_path, capsys):
    c = tiny_config()
    c.train.stop_after, c.train.checkpoint_every = 9, 3  # keeps checkpoints 6 and 9
    loop.train(c, frames, str(tmp_path), progress=False)
    ckpts = tmp_path / workdir_lib.CHECKPOINTS
    assert sorted(os.listdir(ckpts)) == ["6", "9"]
    damaged = [p for p in (ckpts / "9").rglob("*") if p.is_file() and p.stat().st_size > 10]
    assert damaged
    for p in damaged:  # truncate every data file of the latest checkpoint
        with open(p, "r+b") as f:
            f.truncate(10)
    c.train.stop_after = -1
    resumed, _ = loop.train(c, frames, str(tmp_path), progress=False)
    out = capsys.readouterr()
    assert "checkpoint 9" in out.out + out.err and "trying the one before" in out.out + out.err
    assert (tmp_path / workdir_lib.DAMAGED / "9").is_dir()  # kept for inspection, out of the way
    assert_same_state(full, resumed)  # resumed from 6: steps 7..12 again, the same result


def test_non_finite_parameters_are_never_checkpointed_and_a_rerun_resumes(
    frames, full, tmp_path, monkeypatch
):
    """The failure the loss guard cannot see: a finite loss whose update leaves NaN parameters (step 8
    poisons the means after its update). No checkpoint may hold a NaN; the error names the step and the last
    finite checkpoint; an unpoisoned rerun resumes from it and ends as the uninterrupted run."""
    original = step_lib.make_train_step

    def poisoned(setup, optimizer, batch_size=1, batch_sharding=None):
        step = original(setup, optimizer, batch_size, batch_sharding)

        def f(state, data):
            new, m = step(state, data)
            bad = new.params.replace(means=jnp.where(new.step == 8, jnp.nan, new.params.means))
            return new.replace(params=bad), m  # the loss in m is finite (computed before the update)

        return f

    monkeypatch.setattr(step_lib, "make_train_step", poisoned)
    c = tiny_config()
    c.train.checkpoint_every, c.train.log_every = 4, 4  # the NaN appears at 8, a log and checkpoint step
    with pytest.raises(FloatingPointError, match=r"non-finite parameters.* step 8.*step 4"):
        loop.train(c, frames, str(tmp_path), progress=False)
    mgr = workdir_lib.checkpoint_manager(str(tmp_path), create=False)
    assert mgr.all_steps() == [4]
    raw = mgr.restore(4, args=ocp.args.StandardRestore())
    assert workdir_lib.all_finite(raw)
    monkeypatch.setattr(step_lib, "make_train_step", original)
    resumed, _ = loop.train(c, frames, str(tmp_path), progress=False)
    assert_same_state(full, resumed)


def test_a_non_finite_checkpoint_from_an_older_version_is_skipped(frames, tmp_path):
    """Checkpoints written before the finite guard may hold NaN: resuming skips them like damaged ones."""
    c = tiny_config()
    c.train.stop_after, c.train.checkpoint_every = 6, 3
    state, _ = loop.train(c, frames, str(tmp_path), progress=False)
    mgr = workdir_lib.checkpoint_manager(str(tmp_path))
    bad = state.replace(step=state.step + 1, params=state.params.replace(means=state.params.means * jnp.nan))
    mgr.save(7, args=ocp.args.StandardSave(bad), force=True)
    mgr.wait_until_finished()
    restored = workdir_lib.restore(workdir_lib.checkpoint_manager(str(tmp_path)), state)
    assert int(restored.step) == 6 and workdir_lib.all_finite(restored)
    with pytest.raises(InputError, match=r"no checkpoint at step 99; the steps there are 6$"):
        workdir_lib.restore(workdir_lib.checkpoint_manager(str(tmp_path)), state, step=99)


def test_density_control_overflow_is_counted_logged_and_shown(frames, tmp_path):
    """A capacity with no free slot: every clone/split request is `no_room`, counted in LoopResult, written to
    train_metrics.jsonl and warned about (it used to be dropped by every caller)."""
    c = tiny_config()
    c.model.init_fraction = 1.0  # initialisation fills every slot
    c.train.densify_grad_threshold = 1e-12  # every Gaussian asks to be cloned or split
    c.train.num_steps, c.train.densify_from, c.train.densify_until = 5, 4, 4
    c.train.log_every, c.train.checkpoint_every = 4, 100
    setup = state_lib.make_setup(c, frames)
    extent = state_lib.scene_extent(frames.cameras)
    opt = state_lib.make_optimizer(c, extent)
    state = state_lib.init_state(c, setup, frames, opt)
    state = state.replace(active=jnp.ones_like(state.active))  # every slot in use: no free one
    writer = workdir_lib.MetricsWriter(str(tmp_path / "m.jsonl"))
    fns = loop.single_device_fns(setup, opt)
    _, result = loop.run_loop(
        state,
        state_lib.frames_to_data(frames),
        fns,
        loop.Schedule.from_config(c.train),
        extent,
        writer=writer,
        progress=False,
    )
    assert int(result.no_room) > 0
    rows = workdir_lib.read_metrics(writer.path)  # step 4 is logged before its density round, 5 after it
    assert [(r["step"], r["no_room"]) for r in rows] == [(4, 0), (5, int(result.no_room))]


def test_an_overflowing_step_grows_the_pair_budget_and_is_redone_exactly(frames, full, tmp_path, capsys):
    """A pair budget far too small: each step that overflows is undone, the budget grows to a power of two
    (said in one line), the step is redone with the same frame and RNG, and the run ends exactly where the
    run that never overflowed ends, with no pair dropped. The grown budget is what evaluation gets."""
    c = tiny_config()
    c.render.max_pairs = 64
    state, setup = loop.train(c, frames, str(tmp_path), progress=False)
    assert_same_state(full, state)
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.startswith("render: step")]
    assert lines and "more than its budget of 64" in lines[0] and "the step is redone" in lines[0]
    grown = setup.model.render.max_pairs
    assert grown > 64 and grown & (grown - 1) == 0
    rows = workdir_lib.read_metrics(os.path.join(str(tmp_path), workdir_lib.TRAIN_METRICS))
    assert all(r["dropped_pairs_total"] == 0 and r["over_budget"] == 0 for r in rows)
    assert rows[-1]["num_pairs"] <= rows[-1]["max_pairs"] == grown


def test_a_hard_pair_budget_drops_and_says_so(frames, tmp_path, capsys):
    """grow_pairs=False: the budget is a hard cap; the dropped pairs are summed over the run, logged and
    warned about (never silent)."""
    c = tiny_config()
    c.render.max_pairs, c.render.grow_pairs = 64, False
    c.train.num_steps, c.train.densify_until, c.train.log_every = 4, -1, 1
    setup = state_lib.make_setup(c, frames)
    extent = state_lib.scene_extent(frames.cameras)
    opt = state_lib.make_optimizer(c, extent)
    state = state_lib.init_state(c, setup, frames, opt)
    writer = workdir_lib.MetricsWriter(str(tmp_path / "m.jsonl"))
    fns = loop.single_device_fns(setup, opt)
    assert fns.grow is None
    _, result = loop.run_loop(
        state,
        state_lib.frames_to_data(frames),
        fns,
        loop.Schedule.from_config(c.train),
        extent,
        writer=writer,
        progress=False,
    )
    rows = workdir_lib.read_metrics(writer.path)
    assert int(result.dropped_pairs) == rows[-1]["dropped_pairs_total"] > 0 and result.max_pairs is None
    assert sum(r["dropped_pairs"] for r in rows) == rows[-1]["dropped_pairs_total"]  # every step logged
    out = capsys.readouterr()
    assert f"warning: {int(result.dropped_pairs)} tile-Gaussian pairs were dropped" in out.out + out.err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(frames, tmp_path, monkeypatch):
    original = step_lib.make_train_step

    def poisoned(setup, optimizer, batch_size=1, batch_sharding=None):
        step = original(setup, optimizer, batch_size, batch_sharding)

        def f(state, data):
            new, m = step(state, data)
            return new, dict(m, loss=jnp.where(state.step >= 7, jnp.nan, m["loss"]))

        return f

    monkeypatch.setattr(step_lib, "make_train_step", poisoned)
    c = tiny_config()
    c.train.checkpoint_every, c.train.log_every = 3, 1
    with pytest.raises(FloatingPointError, match=r"step 8.*step 6"):
        loop.train(c, frames, str(tmp_path))
    mgr = ocp.CheckpointManager(os.path.abspath(tmp_path / "checkpoints"))
    assert mgr.latest_step() == 6


def test_workdir_holding_another_config_fails(frames, tmp_path):
    c = tiny_config()
    c.train.num_steps = 1
    loop.train(c, frames, str(tmp_path))
    cameras_before = (tmp_path / workdir_lib.TRAIN_CAMERAS).read_bytes()
    c.seed = 1
    other = frames.replace(times=frames.times[::-1])  # another run's cameras and times
    with pytest.raises(ValueError, match="another config"):
        loop.train(c, other, str(tmp_path))
    # The refused run wrote nothing: the first run's cameras (the exporter's input) are intact.
    assert (tmp_path / workdir_lib.TRAIN_CAMERAS).read_bytes() == cameras_before


def test_static_preset_trains(frames, tmp_path):
    c = tiny_config()
    c.motion.preset, c.train.num_steps = "static", 2
    state, _ = loop.train(c, frames, str(tmp_path))
    assert float(state.params.motion.mask.sum()) == 0 and int(state.step) == 2  # the mask is in the state
    np.testing.assert_array_equal(state.params.motion.learnable, 0.0)  # masked bases get no update
    np.testing.assert_array_equal(state.params.motion.generator, 0.0)


def test_camera_refinement_learns_every_camera_but_the_gauge_and_resumes(frames, full, tmp_path):
    c = tiny_config()
    c.train.camera_refine, c.train.num_steps, c.train.stop_after, c.train.camera_start = True, 12, 6, 0
    workdir = str(tmp_path)
    loop.train(c, frames, workdir, progress=False)  # stops after step 6 (checkpointed)
    c.train.stop_after = -1
    state, setup = loop.train(c, frames, workdir, progress=False)  # resumes: the corrections come back
    cam = np.asarray(state.params.camera)
    assert cam.shape == (4, 6) and np.all(np.isfinite(cam))
    np.testing.assert_array_equal(cam[0], 0.0)  # the gauge frame
    sampled = np.abs(cam[1:]).sum(1) > 0
    assert sampled.any()  # frames the curriculum drew got a correction
    assert setup.camera_scale == pytest.approx(state_lib.scene_extent(frames.cameras))
    assert setup.model.motion.canonical_frame == 0  # automatic: the gauge frame, the one exact camera
    # Off (the default): no camera leaf at all, so the pytree is what it was before refinement existed.
    assert full.params.camera is None
    assert len(jax.tree_util.tree_leaves(full.params)) + 1 == len(jax.tree_util.tree_leaves(state.params))


def test_unknown_motion_preset_fails():
    c = tiny_config()
    c.motion.preset = "bogus"
    with pytest.raises(ValueError, match="motion.preset"):
        motion.motion_config(c, 4)


def test_motion_learning_rates_decay_to_the_configured_factor():
    """Adam's first step is the learning rate; with lr.motion_decay the last one is that x the factor."""
    from any4d_jax.model import motion

    c = synthetic_config.get_config()
    c.train.num_steps = 11
    c.train.lr.motion_decay = 0.1
    mc = motion.MotionConfig(num_frames=4, num_generator_channels=1, num_learnable_bases=1, num_time_coeffs=2)
    params = ModelParams(
        means=jnp.zeros((3, 3)),
        quats=jnp.zeros((3, 4)),
        log_scales=jnp.zeros((3, 3)),
        opacity_logits=jnp.zeros((3,)),
        sh=jnp.zeros((3, 1, 3)),
        # Nonzero weights: all-zero rows are static Gaussians, which motion.static_stays_static never updates.
        motion=motion.init_params(mc, 3, jnp.full((3, mc.num_bases), 0.5)),
    )
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    opt = state_lib.make_optimizer(c, extent=1.0)
    state = opt.init(params)
    steps = []
    for _ in range(c.train.num_steps):
        upd, state = opt.update(grads, state, params)
        steps.append((float(upd.motion.learnable[0, 0, 0]), float(upd.motion.weights[0, 0])))
    lr = c.train.lr
    np.testing.assert_allclose(steps[0], (-lr.motion_trajectories, -lr.motion_weights), rtol=1e-3)
    # exponential decay over num_steps: step 10 of 11 has the factor 0.1 ** (10 / 11)
    f = 0.1 ** (10 / 11)
    np.testing.assert_allclose(steps[-1], (-lr.motion_trajectories * f, -lr.motion_weights * f), rtol=1e-3)
    assert float(upd.motion.generator_pivots[0, 0]) == 0.0  # pivots stay frozen
    assert float(upd.motion.mask[0]) == 0.0  # and so does the basis mask
    assert float(upd.sh[0, 0, 0]) == pytest.approx(-c.train.lr.colors, rel=1e-3)  # labels follow the fields


def test_keep_finite_undoes_a_non_finite_update_per_variant():
    """The ablation's step: a variant whose update would be non-finite keeps its state (the counter still
    advances) and says so; the other variants update as usual."""
    import flax

    @flax.struct.dataclass
    class S:
        x: jnp.ndarray
        step: jnp.ndarray

    def step(s, d):
        return S(x=s.x / s.x[0] * d, step=s.step + 1), {"loss": jnp.sum(s.x)}

    guarded = jax.vmap(step_lib.keep_finite(step), in_axes=(0, None))
    s = S(x=jnp.array([[2.0, 4.0], [0.0, 3.0]]), step=jnp.zeros(2, jnp.int32))
    new, m = guarded(s, 3.0)  # variant 1 divides by 0: inf/NaN
    np.testing.assert_array_equal(new.x, [[3.0, 6.0], [0.0, 3.0]])
    np.testing.assert_array_equal(new.step, [1, 1])
    np.testing.assert_array_equal(m["finite"], [True, False])
    assert bool(step_lib.all_finite(new)) and not bool(step_lib.all_finite(S(x=s.x / 0.0, step=s.step)))


def test_the_pallas_backend_trains_like_the_xla_one(frames, full_run, tmp_path):
    """12 steps through the Pallas kernels (interpreted on CPU) against the default run: the same
    densification decisions, the same losses at every log step, parameters within Adam's step noise."""
    c = tiny_config()
    c.render.backend = "pallas"
    state, _ = loop.train(c, frames, str(tmp_path), progress=False)
    full, full_dir = full_run
    np.testing.assert_array_equal(np.asarray(state.active), np.asarray(full.active))
    np.testing.assert_allclose(np.asarray(state.params.means), np.asarray(full.params.means), atol=1e-3)

    def losses(workdir):
        with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
            return [json.loads(line)["loss"] for line in f]

    a, b = losses(str(tmp_path)), losses(full_dir)
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(a, b, rtol=2e-3)
