"""The vmap ablation: one vmapped run of several basis masks equals separate runs, and writes its outputs."""

import csv
import functools
import os

import jax
import numpy as np
import pytest
from conftest import _FAST_COMPILE

from any4d_jax import data as data_lib
from any4d_jax.jobs import ablate
from any4d_jax.train import ablation, loop
from any4d_jax.train import state as state_lib
from configs import synthetic as synthetic_config


def tiny_config():
    """A 32x24, 4-frame scene, 10 steps with one density-control round (after step 5)."""
    c = synthetic_config.get_config()
    c.data.num_frames, c.data.width, c.data.height = 4, 32, 24
    c.data.num_background, c.data.num_per_object = 300, 60
    c.data.eval_azimuths_deg = (10.0,)  # 4 held-out frames: the same shapes as training, one render compile
    c.model.capacity, c.model.sh_degree, c.model.init_stride, c.model.init_stride_static = 800, 0, 2, 4
    c.motion.num_time_coeffs = 3
    t = c.train
    t.num_steps, t.time_ramp_steps, t.densify_from, t.densify_until, t.densify_every = 10, 6, 5, 5, 5
    t.checkpoint_every, t.log_every, t.rigidity_k = 10, 5, 4
    c.ablation.generator_channels, c.ablation.learnable_bases, c.ablation.step_scale = "0,1", "2", 1.0
    # Rotations frozen: the initial Gaussians are isotropic, so d loss / d quats is zero up to rounding
    # (~1e-9), and Adam, being scale-invariant, turns that rounding into +-lr steps that differ between any
    # two compiled programs (vmapped or not). Every other parameter is compared to float tolerance.
    c.train.lr.quats = 0.0
    return c


@pytest.fixture(scope="module", autouse=True)
def fast_compile():
    """Compile time is most of this module: every jax.jit made during it compiles with conftest's fast
    options (`loop.train`, the reference, builds its own jitted step and density round), and XLA's
    expensive passes are off for the programs jitted at import (the synthetic scene's renderer)."""
    plain = jax.jit
    before = jax.config.read("jax_disable_most_optimizations")

    def jit(f=None, **kwargs):
        if f is None:  # used as @functools.partial(jax.jit, ...) or @jax.jit(...)
            return functools.partial(jit, **kwargs)
        kwargs.setdefault("compiler_options", _FAST_COMPILE or None)
        return plain(f, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax, "jit", jit)
        jax.config.update("jax_disable_most_optimizations", True)
        try:
            yield
        finally:
            jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def data():
    ds = data_lib.load(tiny_config())
    return ds.train, ds.held_out


@pytest.fixture(scope="module")
def vmapped_run(data):
    """Two variants, (C, B_l) = (0, 2) and (1, 2), trained together in one vmapped step."""
    c = tiny_config()
    vs = ablation.variants(c)
    cfg = ablation.allocation_config(c, vs)
    setup = state_lib.make_setup(cfg, data[0])
    extent = state_lib.scene_extent(data[0].cameras)
    optimizer = state_lib.make_optimizer(cfg, extent)
    state = ablation.init_states(cfg, setup, data[0], optimizer, vs)
    fns = ablation.make_functions(setup, optimizer, vmapped=True)
    data_dict = state_lib.frames_to_data(data[0])
    schedule = loop.Schedule.from_config(cfg.train)
    state, result = loop.run_loop(state, data_dict, fns, schedule, extent, strict=False, progress=False)
    return cfg, vs, setup, state, result.last, result.first_bad


def test_variants_are_every_combination_over_the_maximal_allocation():
    c = tiny_config()
    c.ablation.generator_channels, c.ablation.learnable_bases, c.ablation.num_seeds = "2,0", "0, 4,8", 2
    vs = ablation.variants(c)
    assert len(vs) == 12 and vs[0] == ablation.Variant(0, 0, c.seed) and vs[1].seed == c.seed + 1
    assert {v.num_bases for v in vs} == {0, 4, 8, 12, 16, 20}
    cfg = ablation.allocation_config(c, vs)
    assert (cfg.motion.num_generator_channels, cfg.motion.num_learnable_bases, cfg.motion.preset) == (
        2,
        8,
        "hybrid",
    )
    c.ablation.step_scale = 0.5
    half = ablation.allocation_config(c, vs).train
    assert (half.num_steps, half.time_ramp_steps, half.densify_every) == (5, 3, 2)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("generator_channels", "1,x", "comma-separated integers"),
        ("learnable_bases", "-1", ">= 0"),
        ("learnable_bases", "", "at least one"),
        ("num_seeds", 0, "num_seeds"),
    ],
)
def test_bad_ablation_settings_fail(field, value, match):
    c = tiny_config()
    c.ablation[field] = value
    with pytest.raises(ValueError, match=match):
        ablation.allocation_config(c, ablation.variants(c))


def test_vmapped_variants_equal_separate_train_runs(data, vmapped_run, tmp_path):
    """Variant (0, 2) is the learnable_only preset and (1, 2) the hybrid one of the same allocation:
    `loop.train` (the same loop with the unvmapped step) with the same seed must end at the same
    parameters."""
    cfg, vs, setup, state, _, bad = vmapped_run
    assert [(v.generator_channels, v.learnable_bases) for v in vs] == [(0, 2), (1, 2)]
    assert list(bad) == [-1, -1] and np.asarray(state.step).tolist() == [10, 10]
    assert not np.array_equal(np.asarray(state.params.means[0]), np.asarray(state.params.means[1]))
    for i, preset in enumerate(["learnable_only", "hybrid"]):
        c = ablation.allocation_config(tiny_config(), vs)
        c.motion.preset = preset
        single, _ = loop.train(c, data[0], str(tmp_path / preset), progress=False)
        mine = ablation.select(state, i)
        # The preset's mask (in the single run's params) is the variant's (in the stacked params).
        np.testing.assert_array_equal(
            np.asarray(single.params.motion.mask), np.asarray(mine.params.motion.mask)
        )
        np.testing.assert_array_equal(np.asarray(mine.active), np.asarray(single.active))
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(mine.params),
            jax.tree_util.tree_leaves(single.params),
            strict=True,
        ):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5, err_msg=f"variant {i} {path}"
            )
    # The masked-off generator channel of variant 0 never moves (its gradient is exactly zero).
    np.testing.assert_array_equal(np.asarray(state.params.motion.generator[0]), 0.0)
    assert float(state.params.motion.mask[0].sum()) == 2 and float(state.params.motion.mask[1].sum()) == 8


def test_scores_table_csv_and_plot(data, vmapped_run, tmp_path):
    _, vs, setup, state, _, bad = vmapped_run
    scores = ablate.score_variants(state, setup.model, data[0], data[1])
    rows = ablate.summarise(vs, scores, bad)
    assert [(r["generator_channels"], r["active_bases"]) for r in rows] == [(0, 2), (1, 8)]
    for r in rows:
        assert 5.0 < r["eval_psnr"] < 60.0 and 0.0 < r["eval_ssim"] <= 1.0 and r["diverged"] == 0
    paths = ablate.write_outputs(rows, str(tmp_path), "header line")
    text = open(paths["md"]).read()
    assert text.startswith("header line") and "| generator_channels | learnable_bases |" in text
    with open(paths["csv"]) as f:
        assert [int(r["active_bases"]) for r in csv.DictReader(f)] == [2, 8]
    assert open(paths["png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(paths["png"]) > 5000
