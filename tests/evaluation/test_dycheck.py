"""DyCheck scoring details: 8-bit quantisation by truncation, val frames with an empty covisible mask, and
strict JSON in the metrics.json files of evaluation/dycheck.py and evaluation/heldout.py.

Rendering is replaced by ground truth (plus a known offset): these tests are about what is scored and written,
and only the small per-frame scoring programs compile (one image size, 36 x 48, shared by every test).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types

import dycheck_fixture as fx
import imageio.v2 as iio2
import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.data import iphone
from any4d_jax.evaluation import dycheck, heldout, scores

EMPTY = fx.frame_name(*fx.VAL[0])  # the val frame whose covisible mask the fixture below empties


def _strict(text: str):
    """json.loads that refuses the non-standard Infinity / NaN tokens (as JS JSON.parse and jq do)."""

    def refuse(name):
        raise AssertionError(f"non-standard JSON token {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = fx.write_scene(str(tmp_path_factory.mktemp("iphone") / "apple"), factors=(2,), with_points=False)
    path = os.path.join(root, "covisible", "2x", "val", f"{EMPTY}.png")
    iio2.imwrite(path, np.zeros_like(iio2.imread(path)))
    return root


@pytest.fixture(scope="module")
def scene(scene_root):
    return iphone.load_scene(scene_root, factor=2)


def test_quantize_truncates_as_dycheck():
    # DyCheck's to_quantized_float32: (x * 255).clip(0, 255).astype(np.uint8) / 255, i.e. truncation.
    x = np.array([0.5, 0.999, 127.9 / 255, 1.0, -0.1, 1.2, np.nan], np.float32)
    q = scores.quantize(x)
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, np.array([127, 254, 127, 255, 0, 255, 0], np.float32) / 255)
    levels = np.arange(256, dtype=np.float32) / 255  # 8-bit images pass through unchanged
    np.testing.assert_array_equal(scores.quantize(levels), levels)


def test_empty_mask_frames_are_left_out_of_the_masked_scores():
    rng = np.random.default_rng(0)
    gt = rng.random((2, 36, 48, 3)).astype(np.float32)
    pred = np.clip(gt + 0.05, 0, 1).astype(np.float32)
    mask = np.zeros((2, 36, 48), np.float32)
    mask[1, 5:30, 10:40] = 1.0
    s = scores.score_frames(pred, gt, mask)
    # Frame 0 covers nothing: no masked score (DyCheck's formulas would give +inf and a perfect 1.0).
    assert np.isnan(s["masked_psnr"][0]) and np.isnan(s["masked_ssim"][0])
    assert np.all(np.isfinite(s["psnr"])) and np.all(np.isfinite(s["ssim"]))
    assert np.isfinite(s["masked_psnr"][1]) and s["masked_ssim"][1] < 1.0
    np.testing.assert_array_equal(scores.empty_mask_frames(mask), [True, False])
    m = scores.mean_scores(s, "eval", scored=~scores.empty_mask_frames(mask))
    assert m["eval/masked_psnr"] == s["masked_psnr"][1] and m["eval/psnr"] == np.mean(s["psnr"])
    m = scores.mean_scores(s, "eval", scored=np.zeros(2, bool))
    assert np.isnan(m["eval/masked_psnr"]) and np.isnan(m["eval/masked_ssim"]) and np.isfinite(m["eval/ssim"])


def test_loader_reports_empty_covisible_masks(scene_root, capsys):
    s = iphone.load_scene(scene_root, factor=2, use_depth=False)
    assert s.empty_covisible == (EMPTY,)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and f"1 of {len(fx.VAL)} val covisible masks are empty" in out[0] and EMPTY in out[0]


def _fake_render(scene, offset):
    """render_frames stand-in: val views = ground truth + offset, training views = ground truth exactly."""

    def render(state, spec, cams, times, desc="render", progress=True):
        if desc == "val":
            return np.clip(np.asarray(scene.val.rgb) + offset, 0, 1)
        return np.asarray(scene.train.rgb)[np.asarray(times).astype(int)]

    return render


def _evaluate(scene, workdir, monkeypatch):
    monkeypatch.setattr(dycheck, "render_frames", _fake_render(scene, 0.05))
    state = types.SimpleNamespace(active=np.ones(7, bool))
    summary = dycheck.evaluate_scene(
        state, None, scene, str(workdir), iphone.PROTOCOLS["dycheck"], write_video=False, train_stride=2
    )
    return summary, _strict((workdir / "metrics.json").read_text())


def test_evaluate_scene_skips_empty_covisible_frames(scene, tmp_path, monkeypatch):
    summary, m = _evaluate(scene, tmp_path, monkeypatch)
    assert m["empty_covisible_frames"] == 1
    rows = m["per_frame"]["val"]
    assert rows[0]["frame_name"] == EMPTY and rows[0]["covisible_fraction"] == 0.0
    assert rows[0]["mpsnr"] is None and rows[0]["mssim"] is None and rows[0]["psnr"] > 20
    assert all(r["mpsnr"] > 20 and 0 < r["mssim"] < 1 for r in rows[1:])
    for k in ("mpsnr", "mssim"):  # the scene mean is over the scored frames
        np.testing.assert_allclose(m["summary"][f"val/{k}"], np.mean([r[k] for r in rows[1:]]), rtol=1e-12)
    np.testing.assert_allclose(m["summary"]["val/psnr"], np.mean([r["psnr"] for r in rows]), rtol=1e-12)
    assert any("1 of 4 val frames" in n for n in m["notes"])
    # Identical images: PSNR +inf in the returned summary, null (strict JSON) in metrics.json.
    assert summary["train/psnr"] == np.inf and m["summary"]["train/psnr"] is None
    assert all(r["psnr"] is None for r in m["per_frame"]["train"])


def test_evaluate_scene_with_every_covisible_mask_empty(scene, tmp_path, monkeypatch):
    empty = scene.val.replace(mask=jnp.zeros_like(scene.val.mask))
    summary, m = _evaluate(dataclasses.replace(scene, val=empty), tmp_path, monkeypatch)
    assert m["empty_covisible_frames"] == len(fx.VAL)
    assert m["summary"]["val/mpsnr"] is None and m["summary"]["val/mssim"] is None
    assert np.isnan(summary["val/mpsnr"]) and m["summary"]["val/psnr"] > 20
    assert "empty covisible mask" in m["unavailable"]["val/mpsnr"]
    assert any("every val frame" in n for n in m["notes"])


def test_heldout_metrics_json_is_strict_and_skips_empty_masks(scene, tmp_path, monkeypatch):
    held = scene.val.replace(mask=scene.val.mask.at[1].set(0.0))  # frames 0 (fixture) and 1 cover nothing

    def render(state, spec, cams, times, desc="render", progress=True):
        if desc == "eval views":
            return np.clip(np.asarray(held.rgb) + 0.05, 0, 1)
        if desc == "train views":
            return np.asarray(scene.train.rgb)
        return np.zeros((len(times), cams.height, cams.width, 3), np.float32)

    monkeypatch.setattr(heldout, "render_frames", render)
    monkeypatch.setattr(heldout.video, "write_video", lambda *a, **k: None)
    state = types.SimpleNamespace(active=np.ones(7, bool))
    summary = heldout.evaluate(
        state, None, scene.train, held, scene.val.cameras, str(tmp_path), write_ply=False
    )
    m = _strict((tmp_path / "metrics.json").read_text())
    assert m["empty_mask_frames"] == 2 and summary["train/psnr"] == np.inf
    assert m["summary"]["train/psnr"] is None
    rows = m["per_frame"]["eval"]
    assert rows[0]["masked_psnr"] is None and rows[1]["masked_ssim"] is None
    np.testing.assert_allclose(
        m["summary"]["eval/masked_psnr"], np.mean([r["masked_psnr"] for r in rows[2:]]), rtol=1e-12
    )
