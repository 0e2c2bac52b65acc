"""The evidence table of benchmarks/reconstruction.py: mean +- std over seeds per cell, the mean over scenes
taken per seed first, parameter-matched preset labels, and refusal of mixed step budgets."""

import pytest

from benchmarks import reconstruction as rec


def _row(scene, preset, tracks, seed, psnr, steps=100):
    r = {k: 0.0 for k in rec.COLUMNS}
    r.update(scene=scene, preset=preset, tracks=tracks, seed=seed, steps=steps, params=10)
    r["eval PSNR"] = psnr
    return r


def test_cells_and_the_mean_over_scenes():
    rows = [
        _row("default", "hybrid", True, 0, 20.0),
        _row("default", "hybrid", True, 1, 22.0),
        _row("handheld", "hybrid", True, 0, 10.0),
        _row("handheld", "hybrid", True, 1, 14.0),
        _row("default", "learnable_only:2/20", True, 0, 19.0),
    ]
    lines = rec.table(rows).splitlines()
    cell = {(ln.split(" | ")[0][2:], ln.split(" | ")[1]): ln.split(" | ")[4] for ln in lines[2:]}
    assert cell[("default (100)", "hybrid")] == "21.000 ± 1.000"
    assert cell[("handheld (100)", "hybrid")] == "12.000 ± 2.000"
    # Per seed the mean over scenes (15, 18), then mean +- std over seeds.
    assert cell[("mean", "hybrid")] == "16.500 ± 1.500"
    assert cell[("default (100)", "learnable_only:2/20")] == "19.000"
    assert ("mean", "learnable_only:2/20") not in cell  # one scene only: no mean row
    assert rec.parse_preset("learnable_only:2/20") == ("learnable_only", (2, 20))
    with pytest.raises(SystemExit, match="unknown preset"):
        rec.parse_preset("bogus")


def test_mixed_step_budgets_are_refused():
    with pytest.raises(SystemExit, match="different step budgets"):
        rec.table([_row("default", "hybrid", True, 0, 20.0), _row("default", "hybrid", True, 1, 20.0, 200)])


def test_variants_set_their_config_keys_and_keep_their_own_rows():
    assert rec.parse_variants("hybrid:2/8+bspline+tied") == (
        "hybrid:2/8",
        {"motion.time_basis": "bspline", "motion.init_generator_weight": 1.0},
    )
    assert rec.parse_preset("learnable_only:2/20+bspline") == ("learnable_only", (2, 20))
    with pytest.raises(SystemExit, match="unknown variant"):
        rec.parse_variants("hybrid+nope")
    rows = [_row("default", "hybrid", False, 0, 20.0), _row("default", "hybrid+bspline", False, 0, 21.0)]
    cell = {ln.split(" | ")[1]: ln.split(" | ")[4] for ln in rec.table(rows).splitlines()[2:]}
    assert cell == {"hybrid": "20.000", "hybrid+bspline": "21.000"}
    # Every variant's keys exist in the scene configs (a typo would otherwise add a key nobody reads).
    for overrides in rec.VARIANTS.values():
        c = rec.scene_config("default", None)
        for key in overrides:
            section, field = key.split(".")
            assert field in c[section], key
