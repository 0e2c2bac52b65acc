"""files.py: atomic writes (a writer that fails halfway, a full filesystem), strict JSON, bounded JSON reads,
the writability probe; and that the package's writers (video, PLY, metrics) go through it."""

import contextlib
import json
import os
import subprocess
import uuid

import numpy as np
import pytest

from any4d_jax import files
from any4d_jax.errors import InputError


def _listing(folder) -> dict:
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))}


@contextlib.contextmanager
def _tmpfs(path, size: str, readonly: bool = False):
    """A small tmpfs at `path` (root and a mount namespace that allows it), else skip with the reason."""
    os.makedirs(path, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


@pytest.fixture
def tmpfs_1m(tmp_path):
    with _tmpfs(tmp_path / f"fs{uuid.uuid4().hex[:6]}", "1m") as d:
        yield d


def test_a_writer_failing_halfway_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(str(path), {"psnr": 30.0})
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="crash"):
        with files.atomic_write(str(path), "w") as f:
            f.write('{"psnr": 3')  # half a file
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_a_full_filesystem_keeps_the_previous_file_and_the_next_write_goes_on(tmpfs_1m):
    path = os.path.join(tmpfs_1m, "scene.a4d")
    with files.atomic_write(path) as f:
        f.write(b"a" * 200_000)
    with pytest.raises(OSError) as e:  # ENOSPC: 2 MB do not fit in 1 MB
        with files.atomic_write(path) as f:
            f.write(b"b" * 2_000_000)
    assert e.value.errno == 28
    assert open(path, "rb").read() == b"a" * 200_000  # the previous file, whole
    assert os.listdir(tmpfs_1m) == ["scene.a4d"]  # no partial temporary left
    files.write_json(path + ".json", {"ok": 1})  # the next run goes on
    assert files.read_json(path + ".json") == {"ok": 1}


def test_video_and_ply_writers_are_atomic(tmp_path, monkeypatch):
    """A crash inside imageio or in the middle of a PLY body leaves the earlier output as it was."""
    import imageio.v2 as iio2

    from any4d_jax.io import ply, video

    mp4 = str(tmp_path / "heldout.mp4")
    video.write_video(mp4, np.zeros((2, 16, 16, 3)), fps=4)
    before = _listing(tmp_path)

    def half_then_crash(path, frames, **kw):
        with open(path, "wb") as f:
            f.write(b"\x00\x00\x00\x18ftypisom")
        raise OSError("disk gone")

    monkeypatch.setattr(iio2, "mimwrite", half_then_crash)
    with pytest.raises(OSError, match="disk gone"):
        video.write_video(mp4, np.ones((2, 16, 16, 3)), fps=4)
    assert _listing(tmp_path) == before

    import jax.numpy as jnp

    from any4d_jax.render.types import Splats

    splats = Splats(
        means=jnp.zeros((3, 3)),
        quats=jnp.tile(jnp.array([1.0, 0, 0, 0]), (3, 1)),
        scales=jnp.ones((3, 3)),
        opacities=jnp.full((3,), 0.5),
        colors=jnp.full((3, 3), 0.5),
    )
    path = str(tmp_path / "frame_000.ply")
    ply.write_ply(path, splats)
    before = _listing(tmp_path)
    monkeypatch.setattr(files, "open", _open_failing_on_second_write, raising=False)
    with pytest.raises(OSError, match="No space left"):
        ply.write_ply(path, splats)  # the header is written, the body is not
    assert _listing(tmp_path) == before


class _FailingFile:
    """A file whose second write raises ENOSPC (the first one lands: a torn file if written in place)."""

    def __init__(self, f):
        self._f, self._writes = f, 0

    def write(self, data):
        self._writes += 1
        if self._writes > 1:
            raise OSError(28, "No space left on device")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def _open_failing_on_second_write(*args, **kwargs):
    return _FailingFile(open(*args, **kwargs))


def test_json_is_strict_both_ways(tmp_path):
    path = str(tmp_path / "m.json")
    files.write_json(path, {"psnr": float("inf"), "rows": [np.float32(np.nan), np.int64(3)]})
    text = open(path).read()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"psnr": None, "rows": [None, 3]}
    open(path, "w").write('{"a": NaN}')
    with pytest.raises(InputError, match=r"m.json: NaN is not valid JSON"):
        files.read_json(path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("[" * 400 + "]" * 400, r"nested deeper than 64 levels"),
        ('{"a": 1,', r"not valid JSON \(Expecting property name"),
        (b"\xff\xfe{}", r"is not UTF-8 text"),
        ("x" * 2000, r"is 2000 bytes, more than the 1000"),
    ],
)
def test_json_reads_are_bounded_and_one_line(tmp_path, content, match):
    path = tmp_path / "in.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(InputError, match=match) as e:
        files.read_json(str(path), max_bytes=1000)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_writability_is_proved_without_leaving_anything(tmp_path):
    files.check_writable(str(tmp_path / "new" / "run"))
    assert os.listdir(tmp_path / "new" / "run") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"file/run: cannot write there \(Not a directory\)"):
        files.check_writable(str(tmp_path / "file" / "run"))
    with _tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        with pytest.raises(InputError, match=r"cannot write there \(Read-only file system\)"):
            files.check_writable(os.path.join(ro, "run"))
