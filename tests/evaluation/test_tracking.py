"""Tests for any4d_jax.evaluation.tracking against hand-computed values (pure numpy, no JAX compile).

Errors are built as exact offsets along one axis so every distance is known in closed form; none lies on a
threshold except where a test is about the strict ``<`` and uses an exactly representable distance.
"""

from __future__ import annotations

import numpy as np
import pytest

from any4d_jax.evaluation import tracking

RNG = np.random.default_rng(0)
NAN = float("nan")


def _offset_3d(true, errors, axis=0):
    """pred = true moved by errors[p, f] along one axis, so |pred - true| = errors exactly."""
    pred = true.copy()
    pred[..., axis] += errors
    return pred


# --------------------------------------------------------------------------------------------------------
# 3D tracking
# --------------------------------------------------------------------------------------------------------


def test_3d_perfect():
    true = RNG.normal(size=(4, 5, 3))
    valid = np.ones((4, 5), bool)
    assert tracking.epe_3d(true, true, valid) == 0.0
    assert tracking.delta_3d(true, true, valid) == {"delta_3d_5cm": 1.0, "delta_3d_10cm": 1.0}
    s = tracking.scores_3d(true, true, valid, query_frame=np.zeros(4, int))
    assert s == {"epe_3d": 0.0, "delta_3d_5cm": 1.0, "delta_3d_10cm": 1.0, "num_points": 16}


def test_3d_hand_case_and_invalid_ignored():
    true = RNG.normal(size=(2, 3, 3))
    errors = np.array([[0.03, 0.08, 0.2], [0.0, 0.06, 0.5]])
    valid = np.array([[True, True, True], [True, True, False]])
    pred = _offset_3d(true, errors, axis=1)
    # Valid errors: 0.03, 0.08, 0.2, 0.0, 0.06.
    assert tracking.epe_3d(pred, true, valid) == pytest.approx(0.37 / 5, abs=1e-12)
    assert tracking.delta_3d(pred, true, valid) == {"delta_3d_5cm": 2 / 5, "delta_3d_10cm": 4 / 5}
    s = tracking.scores_3d(pred, true, valid)
    assert s["epe_3d"] == pytest.approx(0.074, abs=1e-12)
    assert (s["delta_3d_5cm"], s["delta_3d_10cm"], s["num_points"]) == (0.4, 0.8, 5)

    # Garbage in the invalid entry (NaN prediction, huge truth) changes nothing.
    pred_bad, true_bad = pred.copy(), true.copy()
    pred_bad[1, 2] = NAN
    true_bad[1, 2] = 1e30
    assert tracking.scores_3d(pred_bad, true_bad, valid) == s
    assert tracking.epe_3d(pred_bad, true_bad, valid) == tracking.epe_3d(pred, true, valid)


def test_3d_delta_keys_from_thresholds():
    true = np.zeros((1, 4, 3))
    pred = _offset_3d(true, np.array([[0.01, 0.03, 0.15, 0.3]]))
    d = tracking.delta_3d(pred, true, np.ones((1, 4), bool), thresholds=(0.025, 0.2, 1.0))
    assert d == {"delta_3d_2.5cm": 1 / 4, "delta_3d_20cm": 3 / 4, "delta_3d_100cm": 1.0}


def test_3d_metres_per_unit_moves_a_point_across_5cm():
    true = np.zeros((1, 2, 3))
    pred = _offset_3d(true, np.array([[0.0, 0.04]]), axis=2)
    valid = np.ones((1, 2), bool)
    q = np.array([0])  # only frame 1 (error 0.04 units) is scored
    s1 = tracking.scores_3d(pred, true, valid, query_frame=q)
    assert s1["epe_3d"] == pytest.approx(0.04) and s1["delta_3d_5cm"] == 1.0 and s1["num_points"] == 1
    s2 = tracking.scores_3d(pred, true, valid, query_frame=q, metres_per_unit=2.0)  # 0.08 m
    assert s2["epe_3d"] == pytest.approx(0.08)
    assert (s2["delta_3d_5cm"], s2["delta_3d_10cm"]) == (0.0, 1.0)
    # Millimetre units: 40 units * 0.001 = 0.04 m, inside 5 cm again.
    s3 = tracking.scores_3d(pred * 1000, true, valid, query_frame=q, metres_per_unit=0.001)
    assert s3["epe_3d"] == pytest.approx(0.04) and s3["delta_3d_5cm"] == 1.0


def test_3d_query_frame_excluded():
    true = RNG.normal(size=(2, 3, 3))
    errors = np.array([[0.0, 0.08, 0.2], [0.02, 0.0, 0.06]])
    pred = _offset_3d(true, errors)
    valid = np.ones((2, 3), bool)
    s_all = tracking.scores_3d(pred, true, valid)
    assert s_all["epe_3d"] == pytest.approx(0.36 / 6) and s_all["num_points"] == 6
    assert (s_all["delta_3d_5cm"], s_all["delta_3d_10cm"]) == (3 / 6, 5 / 6)
    # Query frames 0 and 1 hold the zero errors; leaving them out scores 0.08, 0.2, 0.02, 0.06.
    s = tracking.scores_3d(pred, true, valid, query_frame=np.array([0, 1]))
    assert s["epe_3d"] == pytest.approx(0.36 / 4) and s["num_points"] == 4
    assert (s["delta_3d_5cm"], s["delta_3d_10cm"]) == (1 / 4, 3 / 4)
    # A query entry that is already invalid is not removed twice.
    valid[0, 0] = False
    assert tracking.scores_3d(pred, true, valid, query_frame=np.array([0, 1]))["num_points"] == 4


def test_3d_empty_is_nan():
    true = RNG.normal(size=(2, 3, 3))
    s = tracking.scores_3d(true + NAN, true, np.zeros((2, 3), bool))
    assert s["num_points"] == 0 and all(np.isnan(s[k]) for k in ("epe_3d", "delta_3d_5cm", "delta_3d_10cm"))
    s0 = tracking.scores_3d(
        np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3), bool), np.zeros(0, int)
    )
    assert s0["num_points"] == 0 and np.isnan(s0["epe_3d"])
    # Every valid entry is a query frame: nothing left.
    s1 = tracking.scores_3d(true, true, np.eye(2, 3, dtype=bool), query_frame=np.array([0, 1]))
    assert s1["num_points"] == 0 and np.isnan(s1["delta_3d_10cm"])
    assert np.isnan(tracking.epe_3d(true, true, np.zeros((2, 3), bool)))
    assert all(np.isnan(v) for v in tracking.delta_3d(true, true, np.zeros((2, 3), bool)).values())


def test_3d_bad_shapes():
    with pytest.raises(ValueError):
        tracking.epe_3d(np.zeros((2, 3, 3)), np.zeros((2, 3, 2)), np.ones((2, 3), bool))
    with pytest.raises(ValueError):
        tracking.scores_3d(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), np.ones((3, 2), bool))
    with pytest.raises(ValueError):
        tracking.scores_3d(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), np.ones((2, 3), bool), np.array([0, 3]))


# --------------------------------------------------------------------------------------------------------
# PCK-T
# --------------------------------------------------------------------------------------------------------


def test_pck_t():
    true = RNG.uniform(0, 400, size=(5, 2))
    valid = np.array([True, True, True, True, False])
    assert tracking.pck_t(true, true, valid, 640, 480) == 1.0
    pred = true.copy()
    pred[:, 0] += [10.0, 31.0, 33.0, 100.0, 0.0]
    pred[4] = NAN  # invalid: ignored
    # 640 x 480, ratio 0.05: 32 px -> errors 10, 31 inside.
    assert tracking.pck_t(pred, true, valid, 640, 480) == 2 / 4
    assert tracking.pck_t(pred, true, valid, 480, 640) == 2 / 4  # max(W, H), whichever side it is
    assert tracking.pck_t(pred, true, valid, 640, 480, ratio=0.1) == 3 / 4  # 64 px
    assert tracking.pck_t(pred, true, valid, 320, 480) == 1 / 4  # 24 px
    # Any leading shape: (P, F, 2).
    assert (
        tracking.pck_t(pred[:4].reshape(2, 2, 2), true[:4].reshape(2, 2, 2), np.ones((2, 2)), 640, 480) == 0.5
    )
    assert np.isnan(tracking.pck_t(pred, true, np.zeros(5, bool), 640, 480))


# --------------------------------------------------------------------------------------------------------
# TAP-Vid
# --------------------------------------------------------------------------------------------------------

TAPVID_KEYS = (
    ["occlusion_accuracy"]
    + [f"pts_within_{d}" for d in (1, 2, 4, 8, 16)]
    + ["delta_avg"]
    + [f"jaccard_{d}" for d in (1, 2, 4, 8, 16)]
    + ["average_jaccard"]
)


def _assert_scores(got, want):
    assert set(got) == set(TAPVID_KEYS)
    for k in TAPVID_KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-12, nan_ok=True), k


def test_tapvid_perfect():
    P, F = 6, 7
    true = RNG.uniform(0, 300, size=(P, F, 2))
    vis = RNG.uniform(size=(P, F)) < 0.7
    s = tracking.tapvid_scores(true, vis, true, vis, RNG.integers(0, F - 1, size=P), 320, 240)
    _assert_scores(s, dict.fromkeys(TAPVID_KEYS, 1.0))


def _hand_case():
    """Two tracks, 4 frames, a 512 x 128 image (x scales by 1/2, y by 2 onto 256 x 256), all visible.

    Track 0 (query frame 0) has errors 3, 12, 4 px at 256 scale on frames 1-3; track 1 (query frame 1) has 0
    and 20 px on frames 2-3; its frames 0 and 1 are not scored and hold garbage.
    """
    true = RNG.uniform(0, 100, size=(2, 4, 2))
    pred = true.copy()
    pred[0, 1, 0] += 6.0  # x: 6 * 256/512 = 3 px
    pred[0, 2, 1] -= 6.0  # y: 6 * 256/128 = 12 px
    pred[0, 3, 0] += 8.0  # 4 px exactly: not within 4 (strict <)
    pred[1, 3, 0] -= 40.0  # 20 px
    pred[1, :2] = 1e6
    vis = np.ones((2, 4), bool)
    return pred, vis, true, vis.copy(), np.array([0, 1]), 512, 128


def test_tapvid_hand_case():
    s = tracking.tapvid_scores(*_hand_case())
    # Scored errors: 3, 12, 4, 0, 20 px.
    within = {1: 1, 2: 1, 4: 2, 8: 3, 16: 4}
    want = {"occlusion_accuracy": 1.0}
    for d, w in within.items():
        want[f"pts_within_{d}"] = w / 5
        # All visible: TP = w, FP = 5 - w (predicted visible, too far), GT positives = 5.
        want[f"jaccard_{d}"] = w / (5 + 5 - w)
    want["delta_avg"] = 11 / 25
    want["average_jaccard"] = (1 / 9 + 1 / 9 + 2 / 8 + 3 / 7 + 4 / 6) / 5
    _assert_scores(s, want)


def test_tapvid_occlusion_mistakes():
    """One track on a 256 x 256 image, query frame 0, all positions exact; frames 1-4 scored.

    truth visible:     T T F T F
    predicted visible: T T T F F
    frame 1 TP, frame 2 FP (predicted visible but occluded), frame 3 FN (within, but predicted occluded),
    frame 4 true negative.
    """
    true = RNG.uniform(0, 256, size=(1, 5, 2))
    true_vis = np.array([[True, True, False, True, False]])
    pred_vis = np.array([[True, True, True, False, False]])
    q = np.array([0])
    _assert_scores(
        tracking.tapvid_scores(true, true_vis, true, true_vis, q, 256, 256), dict.fromkeys(TAPVID_KEYS, 1.0)
    )
    s = tracking.tapvid_scores(true, pred_vis, true, true_vis, q, 256, 256)
    want = dict.fromkeys(TAPVID_KEYS, 1.0)  # pts_within ignores predicted visibility: frames 1, 3 both exact
    want["occlusion_accuracy"] = 2 / 4
    want.update({k: 1 / (2 + 1) for k in TAPVID_KEYS if "jaccard" in k})  # TP 1 / (GT positives 2 + FP 1)
    _assert_scores(s, want)


def test_tapvid_ignores_non_scored_entries():
    """Frames at or before the query and true positions where the truth is occluded do not count."""
    pred, pvis, true, tvis, q, w, h = _hand_case()
    tvis[0, 2] = False  # track 0 frame 2 (12 px error) now occluded in truth, predicted visible: FP
    base = tracking.tapvid_scores(pred, pvis, true, tvis, q, w, h)
    # Scored: visible 3, 4, 0, 20 px; one FP (occluded, predicted visible).
    within = {1: 1, 2: 1, 4: 2, 8: 3, 16: 3}
    want = {"occlusion_accuracy": 4 / 5, "delta_avg": 10 / 20}
    for d, n in within.items():
        want[f"pts_within_{d}"] = n / 4
        want[f"jaccard_{d}"] = n / (4 + 1 + (4 - n))  # FP: the occluded one + the visible ones too far
    want["average_jaccard"] = np.mean([want[f"jaccard_{d}"] for d in within])
    _assert_scores(base, want)

    pred2, pvis2, true2, tvis2 = pred.copy(), pvis.copy(), true.copy(), tvis.copy()
    true2[0, 2] = NAN  # truth occluded: its position is never read
    for p, qp in enumerate(q):  # everything at or before the query frame
        pred2[p, : qp + 1] = NAN
        true2[p, : qp + 1] = -1e6
        pvis2[p, : qp + 1] = ~pvis2[p, : qp + 1]
        tvis2[p, : qp + 1] = RNG.uniform(size=qp + 1) < 0.5
    _assert_scores(tracking.tapvid_scores(pred2, pvis2, true2, tvis2, q, w, h), base)


def _reference(pred, pvis, true, tvis, q, w, h):
    """Entry-by-entry loop over TAP-Vid's definitions, for a randomised cross-check."""
    s = np.array([256 / w, 256 / h])
    n_eval = n_agree = n_gt = 0
    hits, tps, fps = ({d: 0 for d in (1, 2, 4, 8, 16)} for _ in range(3))
    for p in range(pred.shape[0]):
        for f in range(q[p] + 1, pred.shape[1]):
            n_eval += 1
            n_agree += pvis[p, f] == tvis[p, f]
            n_gt += tvis[p, f]
            dist = np.hypot(*((pred[p, f] - true[p, f]) * s))
            for d in hits:
                close = dist < d
                hits[d] += tvis[p, f] and close
                tps[d] += tvis[p, f] and close and pvis[p, f]
                fps[d] += pvis[p, f] and (not tvis[p, f] or not close)
    out = {"occlusion_accuracy": n_agree / n_eval}
    out.update({f"pts_within_{d}": hits[d] / n_gt for d in hits})
    out.update({f"jaccard_{d}": tps[d] / (n_gt + fps[d]) for d in hits})
    out["delta_avg"] = np.mean([out[f"pts_within_{d}"] for d in hits])
    out["average_jaccard"] = np.mean([out[f"jaccard_{d}"] for d in hits])
    return out


def test_tapvid_matches_loop_reference():
    P, F, w, h = 12, 9, 320, 200
    true = RNG.uniform(0, 200, size=(P, F, 2))
    pred = true + RNG.normal(scale=8.0, size=(P, F, 2))
    tvis = RNG.uniform(size=(P, F)) < 0.7
    pvis = np.where(RNG.uniform(size=(P, F)) < 0.2, ~tvis, tvis)
    q = RNG.integers(0, F - 1, size=P)
    _assert_scores(
        tracking.tapvid_scores(pred, pvis, true, tvis, q, w, h), _reference(pred, pvis, true, tvis, q, w, h)
    )


def test_tapvid_empty_and_degenerate():
    z = np.zeros((0, 4, 2))
    s = tracking.tapvid_scores(
        z, np.zeros((0, 4), bool), z, np.zeros((0, 4), bool), np.zeros(0, int), 256, 256
    )
    assert all(np.isnan(s[k]) for k in TAPVID_KEYS)
    # Every query on the last frame: nothing after it to score.
    true = RNG.uniform(0, 256, size=(2, 3, 2))
    vis = np.ones((2, 3), bool)
    s = tracking.tapvid_scores(true, vis, true, vis, np.array([2, 2]), 256, 256)
    assert all(np.isnan(s[k]) for k in TAPVID_KEYS)
    # Truth occluded after the query: no positives; predicted visible -> FP -> jaccard 0, pts_within NaN.
    tvis = np.array([[True, False, False]])
    s = tracking.tapvid_scores(true[:1], np.ones((1, 3), bool), true[:1], tvis, np.array([0]), 256, 256)
    assert s["occlusion_accuracy"] == 0.0 and s["average_jaccard"] == 0.0 and np.isnan(s["delta_avg"])
    with pytest.raises(ValueError):
        tracking.tapvid_scores(true, vis, true, vis, np.array([0, 3]), 256, 256)
    with pytest.raises(ValueError):
        tracking.tapvid_scores(true, vis[:, :2], true, vis, np.array([0, 0]), 256, 256)
