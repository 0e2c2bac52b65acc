"""Trajectories: constructors, SE(3) keyframe interpolation, JSON round trip and errors, Pluecker rays."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.errors import InputError
from any4d_jax.geometry import cameras, lie
from any4d_jax.geometry import trajectory as tj


def _project(vm, K, pts):
    """Reference pinhole projection of world points (N, 3) by one camera (float64 numpy)."""
    vm, K = np.asarray(vm, np.float64), np.asarray(K, np.float64)
    pc = pts @ vm[:3, :3].T + vm[:3, 3]
    uv = pc @ K.T
    return uv[:, :2] / uv[:, 2:3], pc[:, 2]


def _angle(Ra, Rb):
    """Geodesic angle between two rotations (radians)."""
    c = (np.trace(np.asarray(Ra, np.float64).T @ np.asarray(Rb, np.float64)) - 1.0) / 2.0
    return math.acos(np.clip(c, -1.0, 1.0))


KEYFRAMES = {
    "width": 64,
    "height": 48,
    "fov_deg": 60.0,
    "keyframes": [
        {"time": 0.0, "position": [0.0, 0.0, 0.0], "look_at": [0.0, 0.0, 2.0]},
        {"time": 1.0, "position": [0.6, -0.3, 0.2], "look_at": [0.0, 0.1, 2.0], "fov_deg": 45.0},
        {
            "time": 2.0,
            "position": [1.0, -0.2, 0.8],
            "quaternion": [0.9238795, 0.0, -0.3826834, 0.0],  # camera-to-world: 45 deg about y
            "intrinsics": [70.0, 72.0, 30.0, 25.0],
        },
    ],
}


def test_interpolation_hits_keyframes_exactly_and_is_se3_between():
    t = tj.from_json(KEYFRAMES, num_frames=5)  # frame times 0, .5, 1, 1.5, 2
    assert (t.num_frames, t.width, t.height) == (5, 64, 48)
    vm, K = np.asarray(t.viewmat, np.float64), np.asarray(t.K, np.float64)
    # Independent references: cameras.look_at for look-at keyframes, lie.quat_to_rotmat for quaternions.
    ref0 = np.asarray(cameras.look_at(jnp.zeros(3), jnp.array([0.0, 0.0, 2.0])))
    ref1 = np.asarray(cameras.look_at(jnp.array([0.6, -0.3, 0.2]), jnp.array([0.0, 0.1, 2.0])))
    R2_c2w = np.asarray(lie.quat_to_rotmat(jnp.array(KEYFRAMES["keyframes"][2]["quaternion"])))
    ref2 = np.eye(4)
    ref2[:3, :3] = R2_c2w.T
    ref2[:3, 3] = -R2_c2w.T @ np.array([1.0, -0.2, 0.8])
    for i, ref in [(0, ref0), (2, ref1), (4, ref2)]:
        np.testing.assert_allclose(vm[i], ref, atol=2e-6)
    f60 = 32.0 / math.tan(math.radians(30.0))
    f45 = 32.0 / math.tan(math.radians(22.5))
    np.testing.assert_allclose(K[0], [[f60, 0, 32], [0, f60, 24], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(K[2], [[f45, 0, 32], [0, f45, 24], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(K[4], [[70, 0, 30], [0, 72, 25], [0, 0, 1]], rtol=1e-6)
    # Halfway: centre on the chord's midpoint, rotation on the geodesic's midpoint, focal averaged.
    C = np.asarray(t.center, np.float64)
    np.testing.assert_allclose(C[1], 0.5 * (C[0] + C[2]), atol=1e-6)
    np.testing.assert_allclose(C[3], 0.5 * (C[2] + C[4]), atol=1e-6)
    R = vm[:, :3, :3]
    for a, m, b in [(0, 1, 2), (2, 3, 4)]:
        assert _angle(R[a], R[m]) == pytest.approx(_angle(R[m], R[b]), abs=1e-5)
        assert _angle(R[a], R[m]) == pytest.approx(0.5 * _angle(R[a], R[b]), abs=1e-5)
    assert K[1, 0, 0] == pytest.approx(0.5 * (f60 + f45), rel=1e-6)


def test_slerp_endpoints_and_constant_speed():
    q0 = np.array([1.0, 0.0, 0.0, 0.0])
    q1 = np.array([math.cos(0.6), 0.0, math.sin(0.6), 0.0])  # 1.2 rad about y
    u = np.linspace(0, 1, 7)
    q = tj.quat_slerp(np.broadcast_to(q0, (7, 4)), np.broadcast_to(-q1, (7, 4)), u)  # sign must not matter
    np.testing.assert_allclose(q[0], q0, atol=1e-12)
    np.testing.assert_allclose(np.abs(q[-1]), np.abs(q1), atol=1e-12)
    angles = 2 * np.arccos(np.clip(np.abs(q @ q0), 0, 1))
    np.testing.assert_allclose(angles, 1.2 * u, atol=1e-9)


def _offcentre():
    """Three cameras with an off-centre principal point and fx != fy."""
    eyes = jnp.array([[0.5, -1.0, -2.0], [-0.3, 0.2, -1.5], [0.0, -0.4, -2.5]])
    vm = np.asarray(cameras.look_at(eyes, jnp.array([[0.0, 0.0, 1.0]] * 3)))
    return tj.make_trajectory(vm, [[[50.0, 0.0, 15.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]]] * 3, 29, 23)


# One image size for all three (one compiled ray program).
TRAJ = {
    "orbit": lambda: tj.orbit(3, 29, 23, fov_deg=55, radius=3.0, arc_deg=60, elevation_deg=20),
    "pan": lambda: tj.pan(3, 29, 23, yaw_deg=40, pitch_deg=15),
    "offcentre": _offcentre,
}


@pytest.mark.parametrize("name", sorted(TRAJ))
def test_pluecker_rays_reproject_to_their_pixel_centres(name):
    traj = TRAJ[name]()
    pl = np.asarray(traj.pluecker(), np.float64)  # (F, H, W, 6)
    F, H, W = traj.num_frames, traj.height, traj.width
    assert pl.shape == (F, H, W, 6)
    m, d = pl[..., :3], pl[..., 3:]
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(m * d, -1), 0.0, atol=1e-5)  # a valid line: m . d = 0
    cols, rows = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5, indexing="xy")
    vm, K = np.asarray(traj.viewmat, np.float64), np.asarray(traj.K, np.float64)
    centres = -np.einsum("fji,fj->fi", vm[:, :3, :3], vm[:, :3, 3])
    for f in range(F):
        # The line's point closest to the origin is d x m; walk 1.5 units past the camera centre along d.
        p0 = np.cross(d[f], m[f])
        s = np.sum(d[f] * centres[f], -1, keepdims=True) + 1.5
        pts = (p0 + s * d[f]).reshape(-1, 3)
        uv, z = _project(vm[f], K[f], pts)
        assert np.all(z > 0)
        np.testing.assert_allclose(uv[:, 0], cols.reshape(-1), atol=2e-3)
        np.testing.assert_allclose(uv[:, 1], rows.reshape(-1), atol=2e-3)
        # The camera centre lies on every ray: its moment equals m.
        np.testing.assert_allclose(np.cross(centres[f], d[f]), m[f], atol=1e-5)
    if name == "orbit":  # another resolution: stretched intrinsics; pixel centres map back by the ratio
        big = np.asarray(traj.pluecker(H * 2, W * 2), np.float64)
        np.testing.assert_allclose(big[:, 1::2, 1::2, 3:] + big[:, ::2, ::2, 3:], 2 * d, atol=2e-3)


def test_json_round_trip_through_a_file(tmp_path):
    for t in [
        tj.orbit(6, 48, 32, radius=2.5, arc_deg=-70, elevation_deg=12, target=(0.1, 0.2, 0.5)),
        tj.spiral(5, 32, 32, spiral_radius=0.3, forward=0.4),
        tj.dolly(4, 40, 24, distance=-0.8),
    ]:
        path = tmp_path / "traj.json"
        t.to_json(path)
        back = tj.from_json(path)
        assert (back.num_frames, back.width, back.height) == (t.num_frames, t.width, t.height)
        np.testing.assert_allclose(back.viewmat, t.viewmat, atol=2e-6)
        np.testing.assert_allclose(back.K, t.K, rtol=1e-6)
    # The file says what it is and how to read it.
    data = json.loads(path.read_text())
    assert data["format"] == "any4d_jax.trajectory" and data["convention"] == "opencv"


def test_opengl_convention_flips_only_the_camera_axes():
    cv = tj.from_json(KEYFRAMES, num_frames=3)
    gl = json.loads(json.dumps(KEYFRAMES))
    gl["convention"] = "opengl"
    for kf in gl["keyframes"]:
        if "look_at" in kf:
            kf["up"] = [0.0, -1.0, 0.0]  # same world up as the OpenCV file
    q = np.array(KEYFRAMES["keyframes"][2]["quaternion"])
    # OpenGL camera-to-world = OpenCV camera-to-world with camera y, z flipped: R_gl = R_cv diag(1, -1, -1).
    R_gl = np.asarray(lie.quat_to_rotmat(jnp.asarray(q)), np.float64) @ np.diag([1.0, -1.0, -1.0])
    gl["keyframes"][2]["quaternion"] = [float(x) for x in tj._rotmat_to_quat(R_gl)]
    back = tj.from_json(gl, num_frames=3)
    np.testing.assert_allclose(back.viewmat, cv.viewmat, atol=2e-6)


def test_constructors_do_what_they_say():
    o = tj.orbit(5, 64, 48, radius=2.0, arc_deg=40, elevation_deg=0)
    np.testing.assert_allclose(o.viewmat[0], np.eye(4), atol=1e-6)  # starts at the origin looking down +z
    C = np.asarray(o.center, np.float64)
    np.testing.assert_allclose(np.linalg.norm(C - [0, 0, 2.0], axis=-1), 2.0, atol=1e-5)
    for f in range(5):  # the target projects to the principal point
        uv, _ = _project(o.viewmat[f], o.K[f], np.array([[0.0, 0.0, 2.0]]))
        np.testing.assert_allclose(uv[0], [32.0, 24.0], atol=1e-4)
    az = np.degrees(np.arctan2(C[:, 0], -(C[:, 2] - 2.0)))
    np.testing.assert_allclose(az, np.linspace(0, 40, 5), atol=1e-4)  # positive arc: camera moves right
    high = tj.orbit(2, 8, 8, elevation_deg=30)
    assert float(high.center[0, 1]) < 0  # above the target means negative y (world up is -y)

    d = tj.dolly(3, 16, 16, distance=0.6)
    np.testing.assert_allclose(np.asarray(d.center)[:, 2], [0.0, 0.3, 0.6], atol=1e-6)
    np.testing.assert_allclose(d.viewmat[:, :3, :3], np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-6)

    p = tj.pan(3, 16, 16, yaw_deg=30)
    np.testing.assert_allclose(p.center, 0.0, atol=1e-6)
    fwd = np.asarray(p.viewmat)[-1, 2, :3]  # optical axis in world coordinates
    assert math.degrees(math.atan2(fwd[0], fwd[2])) == pytest.approx(30.0, abs=1e-4)

    s = tj.spiral(9, 16, 16, radius=2.0, spiral_radius=0.2, turns=1.0)
    np.testing.assert_allclose(s.viewmat[0], np.eye(4), atol=1e-6)
    np.testing.assert_allclose(s.viewmat[-1], np.eye(4), atol=1e-5)  # one full turn comes back
    assert float(np.min(np.asarray(s.center)[:, 1])) == pytest.approx(-0.4, abs=1e-3)

    st = tj.static(4, 16, 16)
    np.testing.assert_allclose(st.viewmat, np.broadcast_to(st.viewmat[0], (4, 4, 4)))


def test_relative_to_first_keeps_relative_motion():
    t = tj.orbit(4, 32, 24, radius=2.0, arc_deg=50, elevation_deg=15, target=(1.0, 0.5, 3.0))
    r = t.relative_to_first()
    np.testing.assert_allclose(r.viewmat[0], np.eye(4), atol=1e-6)
    a, b = np.asarray(t.viewmat, np.float64), np.asarray(r.viewmat, np.float64)
    for i in range(1, 4):  # viewmat_i viewmat_0^-1 is what the new frame stores
        np.testing.assert_allclose(b[i], a[i] @ np.linalg.inv(a[0]), atol=1e-5)
    np.testing.assert_allclose(r.pluecker()[0, ..., :3], 0.0, atol=1e-6)  # first camera at the origin


def test_rescale_follows_a_resize_and_centre_crop():
    t = tj.orbit(2, 64, 48, radius=2.0, arc_deg=20)
    pts = np.array([[0.3, -0.2, 2.1], [-0.4, 0.1, 1.7]])
    uv, _ = _project(t.viewmat[1], t.K[1], pts)
    c = t.rescale(32, 32, "crop")  # scale by max(32/64, 32/48) = 2/3, then crop the centre
    s = 2.0 / 3.0
    expect = uv * s - [0.5 * (64 * s - 32), 0.5 * (48 * s - 32)]
    np.testing.assert_allclose(_project(c.viewmat[1], c.K[1], pts)[0], expect, atol=1e-4)
    st = t.rescale(32, 32, "stretch")
    np.testing.assert_allclose(_project(st.viewmat[1], st.K[1], pts)[0], uv * [0.5, 32 / 48], atol=1e-4)
    with pytest.raises(ValueError, match="mode must be"):
        t.rescale(32, 32, "squash")


def test_novel_view_path_starts_on_the_trajectory_and_keeps_the_focus():
    t = tj.orbit(5, 32, 24, radius=2.0, arc_deg=30)
    n = tj.novel_view_path(t, 9, offset=0.2, focus_depth=2.0)
    np.testing.assert_allclose(n.viewmat[0], t.viewmat[0], atol=1e-5)
    np.testing.assert_allclose(n.viewmat[-1], t.viewmat[-1], atol=1e-5)
    base = t.resample(9)
    for f in (2, 5):  # the point 2 units ahead on the base camera's optical axis stays centred
        focus = np.asarray(base.center[f]) + 2.0 * np.asarray(base.viewmat[f, 2, :3])
        uv, _ = _project(n.viewmat[f], n.K[f], focus[None])
        np.testing.assert_allclose(uv[0], [16.0, 12.0], atol=1e-3)
    assert float(np.max(np.linalg.norm(np.asarray(n.center) - np.asarray(base.center), axis=-1))) > 0.1


def _bad(tmp_path, data, text=None, num_frames=None):
    path = tmp_path / "bad.json"
    path.write_text(text if text is not None else json.dumps(data))
    with pytest.raises(InputError) as e:
        tj.from_json(path, num_frames=num_frames)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_bad_trajectory_json_is_one_clear_error(tmp_path):
    good = json.loads(json.dumps(KEYFRAMES))
    assert "unknown key(s) ['fov']" in _bad(tmp_path, {**good, "fov": 50})
    kf = json.loads(json.dumps(good))
    kf["keyframes"][1]["lookat"] = [0, 0, 1]
    assert "keyframe 1 has unknown key(s) ['lookat']" in _bad(tmp_path, kf)
    nan = json.dumps(good).replace("0.6", "NaN")  # Python's json reads NaN: it must still be refused
    assert "NaN is not valid JSON" in _bad(tmp_path, None, nan)
    assert "Infinity is not valid JSON" in _bad(tmp_path, None, json.dumps(good).replace("45.0", "Infinity"))
    parsed = json.loads(nan)  # a parsed dict (no file) still has its numbers checked
    with pytest.raises(InputError, match="keyframe 1: 'position' must be 3 finite numbers"):
        tj.from_json(parsed)
    parsed = json.loads(json.dumps(good).replace("45.0", "Infinity"))
    with pytest.raises(InputError, match="'fov_deg' must be a finite number"):
        tj.from_json(parsed)
    assert "at least 2 keyframes, got 1" in _bad(tmp_path, {**good, "keyframes": good["keyframes"][:1]})
    back = json.loads(json.dumps(good))
    back["keyframes"][2]["time"] = 0.5
    assert "strictly increasing" in _bad(tmp_path, back)
    both = json.loads(json.dumps(good))
    both["keyframes"][0]["quaternion"] = [1, 0, 0, 0]
    assert "exactly one of 'look_at'" in _bad(tmp_path, both)
    assert "missing required key 'width'" in _bad(tmp_path, {k: v for k, v in good.items() if k != "width"})
    assert "not valid JSON" in _bad(tmp_path, None, "{ keyframes: ")
    with pytest.raises(InputError, match="no_such.json: no such file"):
        tj.from_json(tmp_path / "no_such.json")


def test_trajectory_json_bounds_nesting_and_version_are_one_line_errors(tmp_path):
    good = json.loads(json.dumps(KEYFRAMES))
    msg = _bad(tmp_path, None, "[" * 100_000 + "]" * 100_000)
    assert "nested deeper than" in msg
    msg = _bad(tmp_path, {**good, "num_frames": 10_000_000_000})
    assert "'num_frames'" in msg and "10000" in msg
    assert "'width'" in _bad(tmp_path, {**good, "width": 10**12})
    assert "'height'" in _bad(tmp_path, {**good, "height": 0})
    assert "'width'" in _bad(tmp_path, {**good, "width": 64.0})
    msg = _bad(tmp_path, {**good, "version": 99})
    assert "'version'" in msg and "99" in msg
    assert "'version'" in _bad(tmp_path, {**good, "version": "1"})
    assert "'num_frames'" in _bad(tmp_path, good, num_frames=20_000)
    assert "'num_frames'" in _bad(tmp_path, good, num_frames=0)
    assert "'convention'" in _bad(tmp_path, {**good, "convention": ["opencv"]})
    huge = json.dumps(good).replace('"time": 1.0', '"time": 1' + "0" * 400)  # too big for a float
    assert "keyframe 1: 'time' must be a finite number" in _bad(tmp_path, None, huge)
    text = json.dumps(good).replace("[0.6, -0.3, 0.2]", '["0.6", "-0.3", "0.2"]')  # strings, not numbers
    assert "keyframe 1: 'position' must be 3 finite numbers" in _bad(tmp_path, None, text)
    text = json.dumps(good).replace("[0.6, -0.3, 0.2]", "[true, false, 0.2]")
    assert "keyframe 1: 'position' must be 3 finite numbers" in _bad(tmp_path, None, text)
    far = json.dumps(good).replace('"time": 0.0', '"time": -1e308').replace('"time": 2.0', '"time": 1e308')
    assert "interpolating the keyframes" in _bad(tmp_path, None, far)  # finite times, the span overflows
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(InputError, match="bin.json"):
        tj.from_json(tmp_path / "bin.json")
    # The bounds are inclusive.
    assert tj.from_json({**good, "version": 1}, num_frames=10_000).num_frames == 10_000


def test_to_json_replaces_the_file_atomically(tmp_path, monkeypatch):
    path = tmp_path / "traj.json"
    path.write_text("old")
    t = tj.orbit(3, 32, 24)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr("os.fsync", full_disk)
        with pytest.raises(OSError):
            t.to_json(path)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["traj.json"]
    t.to_json(path)
    assert tj.from_json(path).num_frames == 3 and sorted(os.listdir(tmp_path)) == ["traj.json"]


def test_make_trajectory_refuses_non_rigid_or_non_finite_cameras():
    K = np.eye(3)[None]
    with pytest.raises(ValueError, match="must be rotations"):
        tj.make_trajectory(np.diag([2.0, 1.0, 1.0, 1.0])[None], K, 8, 8)
    with pytest.raises(ValueError, match="finite"):
        tj.make_trajectory(np.full((1, 4, 4), np.nan), K, 8, 8)
    with pytest.raises(ValueError, match=r"K must be \(1, 3, 3\)"):
        tj.make_trajectory(np.eye(4)[None], np.eye(3)[None].repeat(2, 0), 8, 8)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        tj.orbit(0, 8, 8)


def test_the_readme_keyframe_example_is_valid():
    import os
    import re

    readme = open(
        os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md"
        )
    ).read()
    section = readme[readme.index("## Prompt to 4D") :]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    t = tj.from_json(example)
    assert (t.num_frames, t.width, t.height) == (49, 640, 480)
    np.testing.assert_allclose(t.viewmat[0], np.eye(4), atol=1e-6)  # frame 0 is keyframe 0: origin, +z
