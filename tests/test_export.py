"""The .a4d format: exact round trip, float16 error bounds, the same motion as training, clear errors."""

import json
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax import export, motion, train
from any4d_jax.render import RenderConfig, render
from tests.conftest import pinhole


def _random_scene(seed=0, n=64, sh_degree=1, c=1, bl=2, kt=3, frames=5, t0=2):
    r = np.random.default_rng(seed)
    q = r.normal(size=(n, 4)).astype(np.float32)
    xy = r.uniform(-0.8, 0.8, (n, 2))
    means = np.concatenate([xy, r.uniform(2.5, 3.5, (n, 1))], 1).astype(np.float32)
    vm = np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1))
    vm[:, 0, 3] = np.linspace(-0.2, 0.2, frames)
    K = np.tile(np.array([[40.0, 0, 24], [0, 40.0, 16], [0, 0, 1]], np.float32), (frames, 1, 1))
    return export.Scene(
        means=means,
        quats=q / np.linalg.norm(q, axis=1, keepdims=True),
        scales=(0.04 * np.exp(0.3 * r.normal(size=(n, 3)))).astype(np.float32),
        opacities=r.uniform(0.3, 0.95, n).astype(np.float32),
        sh=(0.3 * r.normal(size=(n, (sh_degree + 1) ** 2, 3))).astype(np.float32),
        weights=r.uniform(0, 1, (n, 6 * c + bl)).astype(np.float32),
        generator=(0.2 * r.normal(size=(kt, c, 6))).astype(np.float32),
        learnable=(0.2 * r.normal(size=(kt, bl, 6))).astype(np.float32),
        generator_pivots=r.normal(size=(c, 3)).astype(np.float32),
        learnable_pivots=r.normal(size=(bl, 3)).astype(np.float32),
        camera_viewmats=vm,
        camera_Ks=K,
        camera_times=np.arange(frames, dtype=np.float32),
        meta={
            "num_frames": frames,
            "canonical_frame": t0,
            "time_basis": "dct",
            "num_time_coeffs": kt,
            "fps": 12.0,
            "width": 48,
            "height": 32,
            "background": [1.0, 1.0, 1.0],
        },
    )


def _arrays(scene):
    return {k: getattr(scene, k) for k in export.ARRAY_ORDER}


def test_float32_round_trip_is_exact(tmp_path):
    s = _random_scene()
    path = tmp_path / "s.a4d"
    nbytes = export.write_a4d(path, s, precision="float32")
    assert nbytes == path.stat().st_size and nbytes % export.ALIGN == 0
    r = export.read_a4d(path)
    for k, v in _arrays(s).items():
        np.testing.assert_array_equal(getattr(r, k), v, err_msg=k)
    assert r.meta == s.meta


def test_mixed_precision_rounds_only_the_float16_arrays(tmp_path):
    s = _random_scene()
    mixed, full = export.to_bytes(s, "mixed"), export.to_bytes(s, "float32")
    r = export.from_bytes(mixed)
    for k, v in _arrays(s).items():
        got = getattr(r, k)
        if export.PRECISIONS["mixed"].get(k) == "f2":
            np.testing.assert_allclose(got, v, rtol=2**-10, atol=1e-7, err_msg=k)
            assert not np.array_equal(got, v), k  # really stored as float16
        else:
            np.testing.assert_array_equal(got, v, err_msg=k)
    # float16 halves those arrays: N (4 + 3 + 1 + 3 K + B) values of 2 bytes instead of 4 (+ alignment).
    n, k, b = s.num_gaussians, s.sh.shape[1], s.weights.shape[1]
    assert len(full) - len(mixed) == pytest.approx(2 * n * (4 + 3 + 1 + 3 * k + b), abs=5 * 16)


def test_scene_moves_like_the_training_model():
    """scene_from_state + Scene.splats_at give the active Gaussians of train.splats_at (mask baked in)."""
    s = _random_scene(seed=1)
    mc = s.motion_config()
    n = s.num_gaussians
    act = np.ones(n + 6, bool)
    act[[3, 10, 20, 30, 40, 50]] = False  # inactive slots are dropped from the file
    idx = np.flatnonzero(act)

    def place(a, fill=0.5):  # scene values on the active slots, junk on the inactive ones
        out = np.full((len(act),) + a.shape[1:], fill, a.dtype)
        out[idx] = a
        return out

    params = {
        "means": jnp.asarray(place(s.means)),
        "quats": jnp.asarray(place(2.0 * s.quats)),  # unnormalised, as training keeps them
        "log_scales": jnp.asarray(place(np.log(s.scales))),
        "opacity_logits": jnp.asarray(place(np.log(s.opacities / (1 - s.opacities)))),
        "sh": jnp.asarray(place(s.sh)),
        "motion": motion.MotionParams(
            generator=jnp.asarray(s.generator),
            learnable=jnp.asarray(s.learnable),
            weights=jnp.asarray(place(s.weights)),
            generator_pivots=jnp.asarray(s.generator_pivots),
            learnable_pivots=jnp.asarray(s.learnable_pivots),
        ),
    }
    np.testing.assert_array_equal(np.asarray(params["means"])[act], s.means)

    class Setup:  # what scene_from_state and train.splats_at read of train.Setup
        def __init__(self):
            self.motion, self.background = mc, (1.0, 1.0, 1.0)

        def basis_mask(self):  # the second learnable basis switched off, as a preset or ablation would
            return motion.basis_mask(mc, 1, 1)

    class State:
        pass

    state = State()
    state.params, state.active = params, jnp.asarray(act)
    cams = s.cameras()
    exported = export.scene_from_state(state, Setup(), cams, s.camera_times, fps=12.0)
    assert exported.num_gaussians == n
    assert np.all(exported.weights[:, -1] == 0)  # masked basis baked into the weights
    for t in (0.0, 2.0, 3.5):
        want = train.splats_at(params, jnp.asarray(act), Setup(), jnp.float32(t))
        got = exported.splats_at(jnp.float32(t))
        np.testing.assert_allclose(got.means, np.asarray(want.means)[act], rtol=1e-5, atol=1e-5)
        qa = np.asarray(got.quats)
        qb = np.asarray(want.quats)[act]
        qb = qb / np.linalg.norm(qb, axis=1, keepdims=True)
        np.testing.assert_allclose(np.abs(np.sum(qa * qb, 1)), 1.0, atol=1e-5)
        np.testing.assert_allclose(got.scales, np.asarray(want.scales)[act], rtol=1e-5)
        np.testing.assert_allclose(got.opacities, np.asarray(want.opacities)[act], rtol=1e-5)
    # and motion is real: at t != t0 the Gaussians have moved
    moved = np.asarray(exported.splats_at(jnp.float32(4.0)).means) - exported.means
    assert np.abs(moved).max() > 0.05


def test_mixed_precision_render_matches_float32():
    s = _random_scene(seed=2, n=200)
    r16 = export.from_bytes(export.to_bytes(s, "mixed"))
    cam = pinhole(48, 32, focal=40.0)
    bg = jnp.ones(3)
    a = render(s.splats_at(jnp.float32(3.5)), cam, bg, RenderConfig()).rgb
    b = render(r16.splats_at(jnp.float32(3.5)), cam, bg, RenderConfig()).rgb
    psnr = -10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2))
    assert psnr > 50.0, psnr
    assert np.asarray(a).std() > 0.05  # something is drawn


# ---------------------------------------------------------------------------------------------------------
# Defective files give one clear error.
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_bytes():
    return export.to_bytes(_random_scene(n=16), "mixed")


def _with_header(data, edit):
    """Rewrite the header JSON through `edit` (with a valid CRC), keeping the payload."""
    _, major, minor, hlen, _ = export.PREAMBLE.unpack_from(data)
    header = json.loads(data[16 : 16 + hlen])
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-(16 + len(hb)) % 16)
    return export.PREAMBLE.pack(export.MAGIC, major, minor, len(hb), zlib.crc32(hb)) + hb + data[16 + hlen :]


def test_not_an_a4d_file(good_bytes):
    with pytest.raises(export.A4DFormatError, match="not an .a4d file"):
        export.from_bytes(b"ply\n" + good_bytes[4:])


def test_newer_major_version_is_refused_newer_minor_is_read(good_bytes):
    newer = bytearray(good_bytes)
    struct.pack_into("<H", newer, 4, export.VERSION[0] + 1)
    with pytest.raises(export.A4DFormatError, match=r"format version 2\.0, newer than this reader"):
        export.from_bytes(bytes(newer))
    minor = bytearray(_with_header(good_bytes, lambda h: h.update(future_key={"x": 1})))
    struct.pack_into("<H", minor, 6, 7)
    scene = export.from_bytes(bytes(minor))  # a later 1.x only adds header keys
    assert scene.meta["future_key"] == {"x": 1} and scene.num_gaussians == 16


@pytest.mark.parametrize("cut", [0, 10, 40, -1, -200])
def test_truncated_file(good_bytes, cut):
    with pytest.raises(export.A4DFormatError, match="truncated"):
        export.from_bytes(good_bytes[:cut])


def test_corrupted_header(good_bytes):
    bad = bytearray(good_bytes)
    bad[30] ^= 0x20
    with pytest.raises(export.A4DFormatError, match="corrupted header"):
        export.from_bytes(bytes(bad))


def test_corrupted_payload(good_bytes):
    bad = bytearray(good_bytes)
    bad[-100] ^= 0x01
    with pytest.raises(export.A4DFormatError, match="corrupted data"):
        export.from_bytes(bytes(bad))


def test_inconsistent_header_shapes_are_refused(good_bytes):
    bad = _with_header(good_bytes, lambda h: h["arrays"]["weights"].update(shape=[16, 3]))
    with pytest.raises(ValueError, match="weights has shape"):
        export.from_bytes(bad)


def test_header_without_required_keys_is_refused(good_bytes):
    with pytest.raises(export.A4DFormatError, match="lacks payload_crc32"):
        export.from_bytes(_with_header(good_bytes, lambda h: h.pop("payload_crc32")))
    with pytest.raises(export.A4DFormatError, match="not an a4d header"):
        export.from_bytes(_with_header(good_bytes, lambda h: h.update(format="other")))


def test_workdir_without_training_outputs_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="train_cameras.npz is missing"):
        export.scene_from_workdir(str(tmp_path))
