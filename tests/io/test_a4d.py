"""The .a4d format: exact round trip, float16 error bounds, the same motion as training, one-line errors for
any defective file (fuzzed with hypothesis), atomic writes and the provenance (source) key."""

import json
import os
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from any4d_jax.errors import InputError
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
    with pytest.raises(a4d.A4DFormatError, match=r"'weights' has shape \[16, 3\], the header counts give"):
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


# ---------------------------------------------------------------------------------------------------------
# Any header or payload the CRCs accept reaches the field checks: one A4DFormatError line, nothing else.
# ---------------------------------------------------------------------------------------------------------


def _header_of(data):
    hlen = a4d.PREAMBLE.unpack_from(data)[3]
    return json.loads(data[16 : 16 + hlen])


def _with_payload(data, edit):
    """Rewrite the payload through `edit` (a bytearray, edited in place), with valid CRCs."""
    hlen = a4d.PREAMBLE.unpack_from(data)[3]
    payload = bytearray(data[16 + hlen :])
    edit(payload)
    crc = zlib.crc32(bytes(payload))
    return _with_header(data[: 16 + hlen] + bytes(payload), lambda h: h.update(payload_crc32=crc))


def _raw_header(data, text: bytes):
    """Replace the header by `text` (any bytes, with a valid CRC), keeping the payload."""
    _, major, minor, hlen, _ = a4d.PREAMBLE.unpack_from(data)
    hb = text + b" " * (-(16 + len(text)) % 16)
    return a4d.PREAMBLE.pack(a4d.MAGIC, major, minor, len(hb), zlib.crc32(hb)) + hb + data[16 + hlen :]


def _nan_first_mean(payload):
    struct.pack_into("<f", payload, 0, float("nan"))  # means is the first array (offset 0, float32)


def _set(*path_and_value):
    *path, key, value = path_and_value

    def edit(h):
        for k in path:
            h = h[k]
        h[key] = value

    return edit


def _pop(*path):
    def edit(h):
        for k in path[:-1]:
            h = h[k]
        h.pop(path[-1])

    return edit


SHA = "0" * 64
# (id, bad file from the good one (n=16, K_t=3, T=5, t0=2, C=1, B_l=2, F=5), the exact error line)
MALFORMED = [
    ("offset_negative", lambda d: _with_header(d, _set("arrays", "means", "offset", -64)),
     "scene.a4d: array 'means' has offset -64, expected a non-negative integer"),
    ("offset_float", lambda d: _with_header(d, _set("arrays", "means", "offset", 1.5)),
     "scene.a4d: array 'means' has offset 1.5, expected a non-negative integer"),
    ("offset_past_payload", lambda d: _with_header(d, _set("arrays", "camera_times", "offset", 1904)),
     "scene.a4d: array 'camera_times' runs past the payload (1924 > 1904 bytes)"),
    ("shape_negative", lambda d: _with_header(d, _set("arrays", "means", "shape", [-1, 3])),
     "scene.a4d: array 'means' has shape [-1, 3], expected a list of non-negative integers"),
    ("shape_string", lambda d: _with_header(d, _set("arrays", "means", "shape", ["a"])),
     "scene.a4d: array 'means' has shape ['a'], expected a list of non-negative integers"),
    ("array_without_dtype", lambda d: _with_header(d, _pop("arrays", "means", "dtype")),
     """scene.a4d: array 'means' must be {"dtype": ..., "shape": [...], "offset": ...}, """
     "got {'shape': [16, 3], 'offset': 0}"),
    ("dtype_f8", lambda d: _with_header(d, _set("arrays", "sh", "dtype", "f8")),
     "scene.a4d: array 'sh' has dtype 'f8', expected one of f4, f2"),
    ("arrays_a_list", lambda d: _with_header(d, _set("arrays", [1, 2])),
     "scene.a4d: header key arrays must be an object, got [1, 2]"),
    ("payload_bytes_string", lambda d: _with_header(d, _set("payload_bytes", "x")),
     "scene.a4d: header key payload_bytes must be a non-negative integer, got 'x'"),
    ("payload_crc32_negative", lambda d: _with_header(d, _set("payload_crc32", -1)),
     "scene.a4d: header key payload_crc32 must be an integer in 0..4294967295, got -1"),
    ("no_num_frames", lambda d: _with_header(d, _pop("num_frames")),
     "scene.a4d: the header lacks num_frames"),
    ("canonical_frame_out_of_range", lambda d: _with_header(d, _set("canonical_frame", 9)),
     "scene.a4d: header key canonical_frame must be an integer in 0..4, got 9"),
    ("time_basis_unknown", lambda d: _with_header(d, _set("time_basis", "linear")),
     "scene.a4d: header key time_basis must be one of per_frame, dct, bspline, got 'linear'"),
    ("per_frame_wrong_coeffs", lambda d: _with_header(d, _set("time_basis", "per_frame")),
     "scene.a4d: time_basis per_frame needs num_time_coeffs = num_frames (5), got 3"),
    ("fps_string", lambda d: _with_header(d, _set("fps", "12")),
     "scene.a4d: header key fps must be a positive number up to 1000000, got '12'"),
    ("width_zero", lambda d: _with_header(d, _set("width", 0)),
     "scene.a4d: header key width must be an integer in 1..65536, got 0"),
    ("background_two_values", lambda d: _with_header(d, _set("background", [1, 1])),
     "scene.a4d: header key background must be [r, g, b] (3 numbers), got [1, 1]"),
    ("sh_degree_7", lambda d: _with_header(d, _set("sh_degree", 7)),
     "scene.a4d: header key sh_degree must be an integer in 0..3, got 7"),
    ("num_gaussians_bool", lambda d: _with_header(d, _set("num_gaussians", True)),
     "scene.a4d: header key num_gaussians must be an integer in 0..2147483647, got True"),
    ("num_gaussians_huge", lambda d: _with_header(d, _set("num_gaussians", 10**30)),
     "scene.a4d: header key num_gaussians must be an integer in 0..2147483647, "
     "got 1000000000000000000000000000000"),
    ("version_string", lambda d: _with_header(d, _set("version", "1.0")),
     "scene.a4d: header key version must be [major, minor], got '1.0'"),
    ("source_step_string", lambda d: _with_header(d, _set("source", {"step": "3", "config_sha256": SHA})),
     "scene.a4d: source.step must be a non-negative integer, got '3'"),
    ("source_sha_short", lambda d: _with_header(d, _set("source", {"step": 3, "config_sha256": "abc"})),
     "scene.a4d: source.config_sha256 must be 64 lowercase hex digits, got 'abc'"),
    ("nan_in_means", lambda d: _with_payload(d, _nan_first_mean),
     "scene.a4d: array 'means' holds NaN or inf values; re-export the scene"),
    ("header_nested_100k", lambda d: _raw_header(d, b"[" * 100000),
     "scene.a4d: corrupted header (JSON nested deeper than 64 levels)"),
    ("header_nan_token", lambda d: _raw_header(d, b'{"format": "a4d", "fps": NaN}'),
     "scene.a4d: corrupted header (NaN is not valid JSON (write a number or null))"),
]  # fmt: skip


@pytest.mark.parametrize("make, message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_file_gives_one_line_naming_it(good_bytes, make, message):
    with pytest.raises(a4d.A4DFormatError) as e:
        a4d.from_bytes(make(good_bytes), "scene.a4d")
    assert str(e.value) == message


def test_format_error_is_an_input_error_and_check_scene_raises_it():
    assert issubclass(a4d.A4DFormatError, InputError) and issubclass(a4d.A4DFormatError, ValueError)
    s = _random_scene(n=4)
    s.weights = s.weights[:, :3]
    with pytest.raises(a4d.A4DFormatError, match=r"^x\.a4d: weights has shape \(4, 3\), expected \(4, 8\)$"):
        a4d._check_scene(s, "x.a4d")


def test_missing_file_is_a_format_error_naming_it(tmp_path):
    path = tmp_path / "none.a4d"
    with pytest.raises(a4d.A4DFormatError, match=rf"^{path}: cannot be read \(No such file or directory\)$"):
        a4d.read_a4d(path)


def _tiny_bytes():
    s = _random_scene(n=4, kt=2, frames=3, t0=1)
    s.meta["source"] = {"step": 7, "config_sha256": "ab" * 32}
    return a4d.to_bytes(s, "mixed")


TINY = _tiny_bytes()
_FIELDS = ("dtype", "shape", "offset")
HEADER_PATHS = (
    [(k,) for k in _header_of(TINY) if k != "arrays"]
    + [("arrays",), ("source", "step"), ("source", "config_sha256"), ("background", 0), ("version", 1)]
    + [("arrays", name, f) for name in ("means", "quats", "sh", "generator", "camera_times") for f in _FIELDS]
)
_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 40)
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["f4", "f2", "dct", "per_frame", "a4d", "ab" * 32]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["dtype", "shape", "offset", "step", "x"]), inner, max_size=4)
    ),
    max_leaves=8,
)
_edit = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(HEADER_PATHS), _junk),
    st.tuples(st.just("delete"), st.sampled_from(HEADER_PATHS)),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("resize"), st.integers(-64, 64), st.booleans()),
)


def _index(k):
    """A path step as a list index; a dict key (str) reaches no list element."""
    return k if isinstance(k, int) else float("inf")


def _mutate(data, edits):
    """Apply header and payload edits; the CRCs are recomputed so the field checks are reached."""
    header = _header_of(data)
    hlen = a4d.PREAMBLE.unpack_from(data)[3]
    payload = bytearray(data[16 + hlen :])
    for op, *args in edits:
        if op == "flip" and payload:
            payload[args[0] % len(payload)] ^= args[1]
        elif op == "resize":
            n, tell = args
            payload = payload[:n] if n < 0 else payload + bytes(n)
            if tell:
                header["payload_bytes"] = len(payload)
    header["payload_crc32"] = zlib.crc32(bytes(payload[: header["payload_bytes"]]))
    for op, *args in edits:
        if op in ("set", "delete"):
            *where, last = args[0]
            node = header
            for k in where:
                ok = isinstance(node, dict) and k in node or isinstance(node, list) and _index(k) < len(node)
                node = node[k] if ok else None
            if isinstance(node, dict) or isinstance(node, list) and _index(last) < len(node):
                if op == "set":
                    node[last] = args[1]
                elif isinstance(node, dict):
                    node.pop(last, None)
    return _raw_header(data[: 16 + hlen], json.dumps(header).encode()) + bytes(payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(_edit, min_size=1, max_size=3))
def test_any_mutated_header_or_payload_is_refused_in_one_line_or_read_valid(edits):
    data = _mutate(TINY, edits)
    try:
        scene = a4d.from_bytes(data, "m.a4d")
    except a4d.A4DFormatError as e:  # anything else (KeyError, TypeError, ...) fails the test
        msg = str(e)
        assert msg.startswith("m.a4d: ") and "\n" not in msg, msg
        return
    # Read: a scene every consumer can use, and the writer writes back.
    for k in a4d.ARRAY_ORDER:
        arr = getattr(scene, k)
        assert arr.dtype == np.float32 and np.all(np.isfinite(arr)), k
    a4d._check_scene(scene, "m.a4d")
    mc = scene.motion_config()  # MotionConfig's own checks (time basis, canonical frame)
    assert scene.generator.shape[0] == mc.num_time_params
    assert int(scene.meta["width"]) > 0 and int(scene.meta["height"]) > 0 and float(scene.meta["fps"]) > 0
    assert len(scene.meta["background"]) == 3
    a4d.from_bytes(a4d.to_bytes(scene, "float32"))


# ---------------------------------------------------------------------------------------------------------
# The writer: refuses what the reader would refuse, keeps the provenance, writes atomically.
# ---------------------------------------------------------------------------------------------------------


def test_writer_refuses_a_scene_the_reader_would_refuse(tmp_path):
    path = tmp_path / "s.a4d"
    s = _random_scene(n=4)
    s.means[1, 2] = np.nan
    with pytest.raises(a4d.A4DFormatError, match=rf"^{path}: array 'means' holds NaN or inf$"):
        a4d.write_a4d(path, s)
    s = _random_scene(n=4)
    s.scales[0, 0] = 1e5  # finite in float32, inf in float16
    with pytest.raises(
        a4d.A4DFormatError, match="'scales' exceeds the float16 range; write it with precision"
    ):
        a4d.write_a4d(path, s)
    a4d.write_a4d(path, s, precision="float32")
    assert a4d.read_a4d(path).scales[0, 0] == 1e5
    s = _random_scene(n=4)
    del s.meta["fps"]
    with pytest.raises(a4d.A4DFormatError, match=rf"^{path}: the header lacks fps$"):
        a4d.write_a4d(path, s)
    s = _random_scene(n=4)
    s.meta["arrays"] = {}
    with pytest.raises(a4d.A4DFormatError, match=r"must not set the header's own keys \(arrays\)"):
        a4d.write_a4d(path, s)


def test_source_is_kept_and_checked(tmp_path):
    path = tmp_path / "s.a4d"
    s = _random_scene(n=4)
    s.meta["source"] = {"step": np.int64(12), "config_sha256": "0123456789abcdef" * 4}
    a4d.write_a4d(path, s)
    assert a4d.read_a4d(path).meta["source"] == {"step": 12, "config_sha256": "0123456789abcdef" * 4}
    s.meta["source"] = {"step": -1, "config_sha256": "0" * 64}
    with pytest.raises(a4d.A4DFormatError, match="source.step must be a non-negative integer, got -1"):
        a4d.write_a4d(path, s)
    s.meta["source"] = {"step": 3}
    with pytest.raises(a4d.A4DFormatError, match="header key source must be"):
        a4d.write_a4d(path, s)


def test_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails before its rename (here: fsync, as a full disk would) leaves the old file whole."""
    path = tmp_path / "s.a4d"
    a4d.write_a4d(path, _random_scene(n=4))
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        a4d.write_a4d(path, _random_scene(seed=5, n=32))
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["s.a4d"]
