"""Gaussians: activation, initialisation from points / depth, motion at time t, 3DGS PLY I/O."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fast_jit

from any4d_jax.geometry import cameras
from any4d_jax.geometry.knn import knn_mean_distance
from any4d_jax.io import ply
from any4d_jax.model import gaussians, motion
from any4d_jax.render import Splats, check_inputs
from any4d_jax.render.sh import eval_sh

CAP = 64  # one capacity throughout keeps the number of compiled shapes small


def _random_gaussians(seed, n, degree, num_active):
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    active = np.zeros((n,), bool)
    active[rng.permutation(n)[:num_active]] = True
    return gaussians.Gaussians(
        means=jnp.asarray(rng.normal(size=(n, 3)).astype(np.float32)),
        quats=jnp.asarray(rng.normal(size=(n, 4)).astype(np.float32)),
        log_scales=jnp.asarray(rng.normal(-3.0, 0.5, size=(n, 3)).astype(np.float32)),
        opacity_logits=jnp.asarray(rng.normal(size=(n,)).astype(np.float32)),
        sh=jnp.asarray(rng.normal(size=(n, k, 3)).astype(np.float32)),
        active=jnp.asarray(active),
    )


def _standard_names(degree):
    """The 3DGS vertex property list, spelled out independently of the module."""
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    return (
        "x y z nx ny nz f_dc_0 f_dc_1 f_dc_2".split()
        + [f"f_rest_{i}" for i in range(n_rest)]
        + "opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3".split()
    )


def _split_ply(path):
    """(header lines, body bytes, header length) of a PLY file, parsed without the module."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    return raw[:end].decode("ascii").splitlines(), raw[end:], end


def _raw_table(path):
    """(names, (M, P) float32 table) read straight from the file bytes."""
    lines, body, _ = _split_ply(path)
    names = [ln.split()[2] for ln in lines if ln.startswith("property")]
    assert all(ln.split()[1] == "float" for ln in lines if ln.startswith("property"))
    return names, np.frombuffer(body, "<f4").reshape(-1, len(names))


# ----------------------------------------------------------------------------------------------------------
# PLY.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 3])
def test_ply_round_trip(tmp_path, degree):
    g = _random_gaussians(degree, CAP, degree, num_active=41)
    path = tmp_path / "g.ply"
    assert ply.write_ply(path, g) == 41

    lines, body, header_len = _split_ply(path)
    names = _standard_names(degree)
    assert lines[0] == "ply"
    assert lines[1] == "format binary_little_endian 1.0"
    assert lines[2] == "element vertex 41"
    assert lines[3:-1] == ["property float " + n for n in names]
    assert lines[-1] == "end_header"
    assert path.stat().st_size == header_len + 41 * 4 * len(names)

    act = np.asarray(g.active)
    _, table = _raw_table(path)
    np.testing.assert_array_equal(table[:, 3:6], 0.0)  # normals
    np.testing.assert_array_equal(table[:, 0:3], np.asarray(g.means)[act])

    r = ply.read_ply(path)
    assert r.capacity == 41 and r.sh_degree == degree and bool(jnp.all(r.active))
    np.testing.assert_array_equal(r.means, np.asarray(g.means)[act])
    np.testing.assert_array_equal(r.log_scales, np.asarray(g.log_scales)[act])
    np.testing.assert_array_equal(r.opacity_logits, np.asarray(g.opacity_logits)[act])
    np.testing.assert_array_equal(r.sh, np.asarray(g.sh)[act])
    q = np.asarray(g.quats, np.float64)[act]
    q /= np.sqrt(np.sum(q * q, axis=1, keepdims=True))
    np.testing.assert_allclose(r.quats, q, rtol=0, atol=2e-7)


def test_ply_f_rest_is_channel_major(tmp_path):
    n, k = 5, 16
    i, j, c = np.meshgrid(np.arange(n), np.arange(k), np.arange(3), indexing="ij")
    sh = (1000.0 * i + 10.0 * j + c).astype(np.float32)  # sh[i, j, c] encodes its own index
    g = gaussians.empty(n, 3).replace(sh=jnp.asarray(sh), active=jnp.ones((n,), bool))
    path = tmp_path / "rest.ply"
    ply.write_ply(path, g)
    names, table = _raw_table(path)
    for ch in range(3):
        assert table[:, names.index(f"f_dc_{ch}")].tolist() == [1000.0 * a + ch for a in range(n)]
        for coef in range(1, k):
            col = table[:, names.index(f"f_rest_{ch * (k - 1) + coef - 1}")]
            assert col.tolist() == [1000.0 * a + 10.0 * coef + ch for a in range(n)]
    np.testing.assert_array_equal(ply.read_ply(path).sh, sh)


def _write_custom_ply(path, fmt, props, rows, count=None, extra=b""):
    head = ["ply", f"format {fmt} 1.0", "comment made by hand", f"element vertex {count or len(rows)}"]
    head += [f"property {t} {n}" for n, t in props]
    head.append("end_header")
    dtype = np.dtype([(n, "<f4" if t == "float" else "<f8") for n, t in props])
    data = np.array([tuple(r) for r in rows], dtype=dtype)
    path.write_bytes(("\n".join(head) + "\n").encode() + data.tobytes() + extra)


def test_read_ply_any_order_and_doubles(tmp_path):
    names = _standard_names(1)
    perm = np.random.default_rng(0).permutation(len(names))
    props = [(names[p], "double" if p % 2 else "float") for p in perm]
    props = [pr for pr in props if pr[0] not in ("nx", "ny", "nz")]  # normals are optional
    vals = {n: np.arange(3, dtype=np.float64) + 10 * idx + 0.25 for idx, n in enumerate(names)}
    rows = [[vals[n][r] for n, _ in props] for r in range(3)]
    path = tmp_path / "custom.ply"
    _write_custom_ply(path, "binary_little_endian", props, rows)
    g = ply.read_ply(path)
    assert g.capacity == 3 and g.sh_degree == 1
    np.testing.assert_array_equal(g.means[:, 1], vals["y"])
    np.testing.assert_array_equal(g.quats[:, 3], vals["rot_3"])
    np.testing.assert_array_equal(g.opacity_logits, vals["opacity"])
    np.testing.assert_array_equal(g.sh[:, 0, 2], vals["f_dc_2"])
    # Channel-major: f_rest_{c * 3 + j - 1} is coefficient j of channel c.
    np.testing.assert_array_equal(g.sh[:, 2, 1], vals["f_rest_4"])
    np.testing.assert_array_equal(g.sh[:, 3, 0], vals["f_rest_2"])


def test_read_ply_errors(tmp_path):
    props = [(n, "float") for n in _standard_names(0)]
    rows = [list(range(len(props)))] * 2
    path = tmp_path / "bad.ply"
    _write_custom_ply(path, "binary_big_endian", props, rows)
    with pytest.raises(ValueError, match="not supported"):
        ply.read_ply(path)
    no_scale_1 = [p for p in props if p[0] != "scale_1"]
    _write_custom_ply(path, "binary_little_endian", no_scale_1, [r[:-1] for r in rows])
    with pytest.raises(ValueError, match="scale_1"):
        ply.read_ply(path)
    _write_custom_ply(path, "binary_little_endian", props, rows, count=5)
    with pytest.raises(ValueError, match="bytes"):
        ply.read_ply(path)
    path.write_bytes(b"not a ply\n")
    with pytest.raises(ValueError, match="not a PLY"):
        ply.read_ply(path)


def test_write_ply_from_splats(tmp_path):
    rng = np.random.default_rng(3)
    n = 6
    opac = np.array([0.2, 0.0, 1.0, 0.5, 0.0, 0.9], np.float32)  # zero opacity: inactive, not written
    splats = Splats(
        means=jnp.asarray(rng.normal(size=(n, 3)).astype(np.float32)),
        quats=jnp.asarray(rng.normal(size=(n, 4)).astype(np.float32)),
        scales=jnp.asarray(rng.uniform(0.01, 0.2, size=(n, 3)).astype(np.float32)),
        opacities=jnp.asarray(opac),
        colors=jnp.asarray(rng.uniform(size=(n, 3)).astype(np.float32)),
    )
    path = tmp_path / "s.ply"
    assert ply.write_ply(path, splats) == 4
    g = ply.read_ply(path)
    keep = opac > 0
    assert g.sh_degree == 0
    np.testing.assert_allclose(np.exp(g.log_scales), np.asarray(splats.scales)[keep], rtol=1e-6)
    expected_opac = np.clip(opac[keep], 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(
        1 / (1 + np.exp(-np.asarray(g.opacity_logits, np.float64))), expected_opac, 1e-6
    )
    # DC decodes back to the RGB colours (0.5 + C0 * dc).
    np.testing.assert_allclose(0.5 + 0.28209479177387814 * g.sh[:, 0], np.asarray(splats.colors)[keep], 1e-5)


# ----------------------------------------------------------------------------------------------------------
# Construction and activation.
# ----------------------------------------------------------------------------------------------------------


def test_empty():
    g = gaussians.empty(CAP, 2)
    assert g.capacity == CAP and g.sh_degree == 2 and g.sh.shape == (CAP, 9, 3)
    assert not bool(jnp.any(g.active))
    with pytest.raises(ValueError, match="sh_degree"):
        gaussians.empty(4, 5)


def test_from_points():
    rng = np.random.default_rng(1)
    m = 20
    pts = rng.uniform(-1, 1, size=(m, 3)).astype(np.float32)
    cols = rng.uniform(size=(m, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="capacity"):
        gaussians.from_points(pts, cols, capacity=m - 1)
    g = gaussians.from_points(pts, cols, capacity=CAP, sh_degree=3)
    assert g.capacity == CAP and g.sh_degree == 3
    np.testing.assert_array_equal(g.active, np.arange(CAP) < m)
    np.testing.assert_array_equal(g.means[:m], pts)

    # Independent float64 brute force: mean distance to the 3 nearest other points.
    p = pts.astype(np.float64)
    d = np.sqrt(np.sum((p[:, None] - p[None]) ** 2, -1)) + np.diag(np.full(m, np.inf))
    ref = np.log(np.mean(np.sort(d, axis=1)[:, :3], axis=1))
    np.testing.assert_allclose(g.log_scales[:m], np.repeat(ref[:, None], 3, 1), atol=1e-5)

    np.testing.assert_array_equal(g.quats[:m], np.tile([1.0, 0, 0, 0], (m, 1)))
    np.testing.assert_allclose(jax.nn.sigmoid(g.opacity_logits[:m]), 0.1, rtol=1e-6)
    np.testing.assert_array_equal(g.sh[:m, 1:], 0.0)
    dirs = jnp.asarray(rng.normal(size=(m, 3)).astype(np.float32))
    np.testing.assert_allclose(eval_sh(g.sh[:m], dirs, 0), cols, atol=1e-6)

    # Row blocks that do not divide M (padded last block) give the same distances.
    np.testing.assert_allclose(knn_mean_distance(pts, 3, block=7), np.exp(ref), rtol=1e-5)
    # With a key the rotations are random unit quaternions (w >= 0); everything else is unchanged.
    gk = gaussians.from_points(pts, cols, capacity=CAP, sh_degree=3, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.linalg.norm(gk.quats[:m], axis=1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(gk.quats[:m, 0]) >= 0) and not np.allclose(gk.quats[:m, 1:], 0.0)
    np.testing.assert_array_equal(gk.log_scales, g.log_scales)

    # Duplicates are clamped to the minimum scale instead of log(0).
    two = gaussians.from_points(np.zeros((2, 3)), np.zeros((2, 3)), capacity=CAP, sh_degree=0, min_scale=1e-3)
    np.testing.assert_allclose(two.log_scales[:2], np.log(1e-3), rtol=1e-6)


def test_points_from_depth():
    w, h, stride = 32, 24, 2
    eyes = jnp.array([[0.5, -1.0, -3.0], [2.5, 0.3, -1.5]])
    view = cameras.look_at(eyes, jnp.array([[0.0, 0.2, 0.5], [-0.1, 0.0, 0.3]]))
    K = jnp.stack([cameras.intrinsics(30.0, 28.0, 15.0, 13.0), cameras.intrinsics(25.0, 25.0, 16.5, 11.0)])
    cams = cameras.make_camera(view, K, w, h)

    rng = np.random.default_rng(2)
    depth = np.zeros((2, h, w), np.float32)
    rgb = rng.uniform(size=(2, h, w, 3)).astype(np.float32)
    mask = np.ones((2, h, w), bool)
    expected_pts, expected_cols = [], []
    for f in range(2):
        Vf, Kf = np.asarray(view[f], np.float64), np.asarray(K[f], np.float64)
        # Known world points that project exactly onto pixel centres of the stride grid: solve
        # K (R X + t) = z (u, v, 1) for X, then verify with a forward projection.
        rows = rng.choice(np.arange(0, h, stride), 6, replace=False)
        cols = rng.choice(np.arange(0, w, stride), 6, replace=False)
        z = rng.uniform(1.0, 6.0, 6)
        uv1 = np.stack([cols + 0.5, rows + 0.5, np.ones(6)], 1)
        X = np.stack([np.linalg.solve(Kf @ Vf[:3, :3], z[i] * uv1[i] - Kf @ Vf[:3, 3]) for i in range(6)])
        cam = X @ Vf[:3, :3].T + Vf[:3, 3]
        proj = cam @ Kf.T
        np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], uv1[:, :2], atol=1e-9)
        np.testing.assert_allclose(cam[:, 2], z, atol=1e-9)
        depth[f, rows, cols] = cam[:, 2]
        order = np.lexsort((cols, rows))
        expected_pts.append(X[order])
        expected_cols.append(rgb[f, rows, cols][order])
    # Pixels that must be skipped: off the stride grid, negative depth, masked out.
    depth[0, 1, 3] = 2.0
    free = np.argwhere((depth[1] == 0) & (np.arange(h)[:, None] % stride == 0) & (np.arange(w) % stride == 0))
    depth[1, free[0][0], free[0][1]] = -1.0
    depth[1, free[1][0], free[1][1]] = 3.0
    mask[1, free[1][0], free[1][1]] = False

    pts, colors = gaussians.points_from_depth(depth, rgb, cams, stride=stride, mask=mask)
    assert pts.shape == (12, 3) and colors.shape == (12, 3)
    np.testing.assert_allclose(pts, np.concatenate(expected_pts), atol=1e-4)
    np.testing.assert_array_equal(colors, np.concatenate(expected_cols))

    with pytest.raises(ValueError, match="one camera per frame"):
        gaussians.points_from_depth(depth[:1], rgb[:1], cams, stride=stride)


def test_activate_and_at_time():
    g = _random_gaussians(7, CAP, 1, num_active=30)
    act = np.asarray(g.active)
    s = fast_jit(gaussians.activate)(g)
    np.testing.assert_array_equal(np.asarray(s.opacities)[~act], 0.0)
    sig = 1.0 / (1.0 + np.exp(-np.asarray(g.opacity_logits, np.float64)))
    np.testing.assert_allclose(np.asarray(s.opacities)[act], sig[act], rtol=1e-6)
    np.testing.assert_allclose(s.scales, np.exp(np.asarray(g.log_scales, np.float64)), rtol=1e-6)
    np.testing.assert_array_equal(s.colors, g.sh)
    np.testing.assert_array_equal(s.means, g.means)
    check_inputs(s, cameras.make_camera(jnp.eye(4), cameras.intrinsics(10, 10, 5, 5), 10, 10), None)

    cfg = motion.MotionConfig(
        num_frames=4, num_generator_channels=1, num_learnable_bases=2, num_time_coeffs=3
    )
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(CAP, cfg.num_bases)).astype(np.float32))
    params = motion.init_params(cfg, CAP, weights)
    at = fast_jit(gaussians.at_time, static_argnums=2)
    st = at(g, params, cfg, 2.5)
    for name in ("means", "scales", "opacities", "colors"):
        np.testing.assert_array_equal(getattr(st, name), getattr(s, name))
    np.testing.assert_allclose(st.quats, s.quats, atol=1e-6)

    # A translation-only learnable basis moves every Gaussian by its weight times the translation.
    xi = np.zeros((3, 2, 6), np.float32)
    xi[0, 0, 3:] = [1.0, -2.0, 0.5]
    moved = at(g, params.replace(learnable=jnp.asarray(xi)), cfg, 2.0)
    phi = np.cos(np.pi * 1 * 2.5 / 4) - np.cos(np.pi * 1 * 0.5 / 4)  # DCT term j=1 at t=2 minus at t0=0
    shift = np.asarray(weights)[:, 6, None] * phi * np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(moved.means, np.asarray(g.means) + shift, atol=1e-5)
    np.testing.assert_allclose(moved.quats, s.quats, atol=1e-6)

    # ModelParams.splats_at is at_time with the params' own basis mask: masking the learnable bases off
    # leaves every Gaussian in place.
    mp = gaussians.ModelParams.from_gaussians(g, params.replace(learnable=jnp.asarray(xi)))
    np.testing.assert_allclose(gaussians.splats_at(mp, g.active, cfg, 2.0).means, moved.means, atol=1e-6)
    off = mp.replace(motion=mp.motion.replace(mask=motion.basis_mask(cfg, 1, 0)))
    np.testing.assert_allclose(gaussians.splats_at(off, g.active, cfg, 2.0).means, g.means, atol=1e-6)
