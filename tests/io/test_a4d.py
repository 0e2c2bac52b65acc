"""The .a4d format: exact round trip, float16 error bounds, the same motion as training, clear errors."""

import json
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest

from any4d_jax.io import a4d
from any4d_jax.io import workdir as workdir_lib
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams, ModelSpec, splats_at
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
    return a4d.Scene(
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
    return {k: getattr(scene, k) for k in a4d.ARRAY_ORDER}


def test_float32_round_trip_is_exact(tmp_path):
    s = _random_scene()
    path = tmp_path / "s.a4d"
    nbytes = a4d.write_a4d(path, s, precision="float32")
    assert nbytes == path.stat().st_size and nbytes % a4d.ALIGN == 0
    r = a4d.read_a4d(path)
    for k, v in _arrays(s).items():
        np.testing.assert_array_equal(getattr(r, k), v, err_msg=k)
    assert r.meta == s.meta


def test_mixed_precision_rounds_only_the_float16_arrays(tmp_path):
    s = _random_scene()
    mixed, full = a4d.to_bytes(s, "mixed"), a4d.to_bytes(s, "float32")
    r = a4d.from_bytes(mixed)
    for k, v in _arrays(s).items():
        got = getattr(r, k)
        if a4d.PRECISIONS["mixed"].get(k) == "f2":
            np.testing.assert_allclose(got, v, rtol=2**-10, atol=1e-7, err_msg=k)
            assert not np.array_equal(got, v), k  # really stored as float16
        else:
            np.testing.assert_array_equal(got, v, err_msg=k)
    # float16 halves those arrays: N (4 + 3 + 1 + 3 K + B) values of 2 bytes instead of 4 (+ alignment).
    n, k, b = s.num_gaussians, s.sh.shape[1], s.weights.shape[1]
    assert len(full) - len(mixed) == pytest.approx(2 * n * (4 + 3 + 1 + 3 * k + b), abs=5 * 16)


def test_scene_moves_like_the_training_model():
    """scene_from_state + Scene.splats_at give the active Gaussians of the model's splats_at (mask baked
    in)."""
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

    params = ModelParams(
        means=jnp.asarray(place(s.means)),
        quats=jnp.asarray(place(2.0 * s.quats)),  # unnormalised, as training keeps them
        log_scales=jnp.asarray(place(np.log(s.scales))),
        opacity_logits=jnp.asarray(place(np.log(s.opacities / (1 - s.opacities)))),
        sh=jnp.asarray(place(s.sh)),
        # the second learnable basis switched off, as a preset or an ablation variant would
        motion=motion.init_params(
            mc,
            len(act),
            jnp.asarray(place(s.weights)),
            (jnp.asarray(s.generator_pivots), jnp.asarray(s.learnable_pivots)),
            motion.basis_mask(mc, 1, 1),
        ).replace(generator=jnp.asarray(s.generator), learnable=jnp.asarray(s.learnable)),
    )
    np.testing.assert_array_equal(np.asarray(params.means)[act], s.means)
    spec = ModelSpec(motion=mc)

    class State:
        pass

    state = State()
    state.params, state.active = params, jnp.asarray(act)
    cams = s.cameras()
    exported = a4d.scene_from_state(state, spec, cams, s.camera_times, fps=12.0)
    assert exported.num_gaussians == n
    assert np.all(exported.weights[:, -1] == 0)  # masked basis baked into the weights
    for t in (0.0, 2.0, 3.5):
        want = splats_at(params, jnp.asarray(act), mc, jnp.float32(t))
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
    r16 = a4d.from_bytes(a4d.to_bytes(s, "mixed"))
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
    return a4d.to_bytes(_random_scene(n=16), "mixed")


def _with_header(data, edit):
    """Rewrite the header JSON through `edit` (with a valid CRC), keeping the payload."""
    _, major, minor, hlen, _ = a4d.PREAMBLE.unpack_from(data)
    header = json.loads(data[16 : 16 + hlen])
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-(16 + len(hb)) % 16)
    return a4d.PREAMBLE.pack(a4d.MAGIC, major, minor, len(hb), zlib.crc32(hb)) + hb + data[16 + hlen :]


def test_not_an_a4d_file(good_bytes):
    with pytest.raises(a4d.A4DFormatError, match="not an .a4d file"):
        a4d.from_bytes(b"ply\n" + good_bytes[4:])


def test_newer_major_version_is_refused_newer_minor_is_read(good_bytes):
    newer = bytearray(good_bytes)
    struct.pack_into("<H", newer, 4, a4d.VERSION[0] + 1)
    with pytest.raises(a4d.A4DFormatError, match=r"format version 2\.0, newer than this reader"):
        a4d.from_bytes(bytes(newer))
    minor = bytearray(_with_header(good_bytes, lambda h: h.update(future_key={"x": 1})))
    struct.pack_into("<H", minor, 6, 7)
    scene = a4d.from_bytes(bytes(minor))  # a later 1.x only adds header keys
    assert scene.meta["future_key"] == {"x": 1} and scene.num_gaussians == 16


@pytest.mark.parametrize("cut", [0, 10, 40, -1, -200])
def test_truncated_file(good_bytes, cut):
    with pytest.raises(a4d.A4DFormatError, match="truncated"):
        a4d.from_bytes(good_bytes[:cut])


def test_corrupted_header(good_bytes):
    bad = bytearray(good_bytes)
    bad[30] ^= 0x20
    with pytest.raises(a4d.A4DFormatError, match="corrupted header"):
        a4d.from_bytes(bytes(bad))


def test_corrupted_payload(good_bytes):
    bad = bytearray(good_bytes)
    bad[-100] ^= 0x01
    with pytest.raises(a4d.A4DFormatError, match="corrupted data"):
        a4d.from_bytes(bytes(bad))


def test_inconsistent_header_shapes_are_refused(good_bytes):
    bad = _with_header(good_bytes, lambda h: h["arrays"]["weights"].update(shape=[16, 3]))
    with pytest.raises(ValueError, match="weights has shape"):
        a4d.from_bytes(bad)


def test_header_without_required_keys_is_refused(good_bytes):
    with pytest.raises(a4d.A4DFormatError, match="lacks payload_crc32"):
        a4d.from_bytes(_with_header(good_bytes, lambda h: h.pop("payload_crc32")))
    with pytest.raises(a4d.A4DFormatError, match="not an a4d header"):
        a4d.from_bytes(_with_header(good_bytes, lambda h: h.update(format="other")))


def test_workdir_without_training_outputs_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="train_cameras.npz is missing"):
        workdir_lib.scene_from_workdir(str(tmp_path))
