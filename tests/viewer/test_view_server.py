"""`python -m experiments.view` serves the viewer and the scene on 127.0.0.1 and prints the URL; it re-exports
a workdir's scene.a4d that is missing, unreadable or stale, refuses a --scene that is not an .a4d in one line,
and the server answers only requests addressed to 127.0.0.1 / localhost, only from the static folder."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import orbax.checkpoint as ocp
import pytest

from any4d_jax import files
from any4d_jax.io import a4d
from any4d_jax.model import motion
from any4d_jax.model.gaussians import ModelParams
from any4d_jax.viewer import serve
from tests.io.test_a4d import _random_scene

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start_view(*args):
    """experiments.view running; returns (process, lines it printed before the URL, base URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.view", *args, "--port=0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, url, deadline = [], None, time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line.rstrip("\n"))
        m = re.search(r"open (http://127\.0\.0\.1:\d+/\S*)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"no URL printed; stdout {lines}, stderr {err[-2000:]}")
    assert url.endswith("?scene=scene.a4d")
    return proc, lines, url.split("?")[0]


def _stop(proc):
    proc.terminate()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def test_view_serves_page_and_scene_on_loopback(tmp_path):
    scene = tmp_path / "s.a4d"
    a4d.write_a4d(scene, _random_scene(n=8))
    proc, _, base = _start_view(f"--scene={scene}")
    try:
        with urllib.request.urlopen(base, timeout=10) as r:
            page = r.read().decode()
        assert '<canvas id="canvas"' in page and 'src="viewer.js"' in page
        with urllib.request.urlopen(base + "scene.a4d", timeout=10) as r:
            assert r.read() == scene.read_bytes()
        with urllib.request.urlopen(base + "a4d.js", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
    finally:
        _stop(proc)


# ---------------------------------------------------------------------------------------------------------
# The server: loopback only, Host allow-list (DNS rebinding), no path out of the static folder.
# ---------------------------------------------------------------------------------------------------------


def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    """(status, body) of one raw HTTP request (no client library normalising the path or the headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_server_binds_loopback_answers_only_local_hosts_and_stays_in_static(tmp_path):
    scene = tmp_path / "s.a4d"
    a4d.write_a4d(scene, _random_scene(n=8))
    server, _ = serve.start_server(str(scene))
    try:
        assert server.server_address[0] == "127.0.0.1"
        port = server.server_address[1]

        def get(path="/scene.a4d", host=f"127.0.0.1:{port}", version="HTTP/1.1", extra=""):
            head = f"GET {path} {version}\r\n" + (f"Host: {host}\r\n" if host is not None else "")
            return _raw(port, (head + extra + "Connection: close\r\n\r\n").encode())

        status, body = get()
        assert status == 200 and body == scene.read_bytes()
        for host in ("127.0.0.1", "localhost", f"LocalHost:{port}", "localhost:1"):
            assert get(host=host)[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.", "",
                     "localhost:x", f"127.0.0.1@evil.example:{port}", "[::1]"):  # fmt: skip
            status, body = get(host=host)
            assert status == 403 and scene.read_bytes() not in body, host
        assert get(host=None)[0] == 400  # HTTP/1.1 requires Host
        assert get(host=None, version="HTTP/1.0")[0] == 200  # no browser sends it; DNS rebinding cannot
        assert get(extra="Host: evil.example\r\n")[0] == 400  # two Host headers
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                     "/scene.a4d/../../../etc/passwd", "/../__init__.py", "/%2e%2e/serve.py"):  # fmt: skip
            status, body = get(path)
            assert status == 404 and b"root:" not in body, path
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------------------
# --workdir: scene.a4d is exported again when missing, unreadable or stale.
# ---------------------------------------------------------------------------------------------------------

N, FRAMES = 8, 5


def _save_checkpoint(wd, step: int, seed: int = 0):
    """A checkpoint as training writes one (the keys scene_from_workdir reads: params, active, step)."""
    s = _random_scene(seed=seed, n=N, frames=FRAMES)
    params = ModelParams(
        means=s.means,
        quats=s.quats,
        log_scales=np.log(s.scales),
        opacity_logits=np.log(s.opacities / (1 - s.opacities)),
        sh=s.sh,
        motion=motion.MotionParams(
            generator=s.generator,
            learnable=s.learnable,
            weights=s.weights,
            generator_pivots=s.generator_pivots,
            learnable_pivots=s.learnable_pivots,
            mask=np.ones(s.weights.shape[1], np.float32),
        ),
    )
    mgr = ocp.CheckpointManager(os.path.abspath(os.path.join(wd, "checkpoints")))
    state = {"params": params, "active": np.ones(N, bool), "step": np.int32(step)}
    mgr.save(step, args=ocp.args.StandardSave(state))
    mgr.wait_until_finished()
    mgr.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run's folder (config.json, train_cameras.npz, checkpoint 1), without scene.a4d."""
    wd = tmp_path_factory.mktemp("run")
    s = _random_scene(n=N, frames=FRAMES)
    config = {
        "motion": {
            "preset": "hybrid",
            "num_generator_channels": 1,
            "num_learnable_bases": 2,
            "time_basis": "dct",
            "num_time_coeffs": 3,
            "canonical_frame": 2,
        },
        "render": {"background": [1.0, 1.0, 1.0]},
        "eval": {"fps": 12.0},
    }
    files.write_json(str(wd / "config.json"), config, sort_keys=True)
    np.savez(
        wd / "train_cameras.npz",
        viewmat=s.camera_viewmats,
        K=s.camera_Ks,
        width=48,
        height=32,
        times=s.camera_times,
        num_frames=FRAMES,
    )
    _save_checkpoint(wd, 1)
    return wd


@pytest.fixture
def run_dir(trained, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(trained, wd)
    return wd


def _check_served_scene(base, path, step):
    with urllib.request.urlopen(base + "scene.a4d", timeout=10) as r:
        served = r.read()
    assert served == path.read_bytes()
    scene = a4d.from_bytes(served)
    assert scene.num_gaussians == N
    assert scene.meta["source"] == {
        "step": step,
        "config_sha256": files.sha256_file(path.parent / "config.json"),
    }


def test_view_reexports_a_truncated_scene_instead_of_serving_it(run_dir):
    path = run_dir / "scene.a4d"
    good = a4d.to_bytes(_random_scene(n=N, frames=FRAMES))
    path.write_bytes(good[:-100])  # a crash or a full disk mid-write (before writes were atomic)
    proc, lines, base = _start_view(f"--workdir={run_dir}")
    try:
        why = (
            f"the one there cannot be read: truncated ({len(good) - 100} bytes, the header says {len(good)})"
        )
        mb = path.stat().st_size / 1e6
        assert lines[0] == f"re-exported {path} ({why}): {N} Gaussians, {mb:.2f} MB", lines
        _check_served_scene(base, path, 1)
    finally:
        _stop(proc)


def test_view_reexports_a_stale_scene_and_serves_a_current_one_as_it_is(run_dir):
    path = run_dir / "scene.a4d"
    proc, lines, base = _start_view(f"--workdir={run_dir}")  # no scene.a4d: exported (from step 1)
    _stop(proc)
    assert lines[0].startswith(f"exported {path} (there was none): {N} Gaussians"), lines
    _save_checkpoint(run_dir, 2, seed=1)  # training went on
    proc, lines, base = _start_view(f"--workdir={run_dir}")
    try:
        assert lines[0].startswith(
            f"re-exported {path} (the one there is from checkpoint step 1, the latest is step 2): "
        ), lines
        _check_served_scene(base, path, 2)
    finally:
        _stop(proc)
    before = path.read_bytes()
    proc, lines, base = _start_view(f"--workdir={run_dir}")  # up to date: served as it is
    try:
        assert lines[0] == f"serving {path}", lines
        _check_served_scene(base, path, 2)
        assert path.read_bytes() == before
    finally:
        _stop(proc)


def _view_fails(*args):
    r = subprocess.run(
        [sys.executable, "-m", "experiments.view", *args, "--port=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-2000:])
    assert r.stderr.endswith("\n") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr.rstrip("\n")


def test_view_refuses_a_scene_that_is_not_an_a4d_file_in_one_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, not a scene\n")
    assert _view_fails(f"--scene={notes}") == (
        f"error: {notes}: not an .a4d file (magic b'hell', expected b'A4D\\x00')"
    )
    assert _view_fails(f"--scene={tmp_path / 'none.a4d'}") == (
        f"error: {tmp_path / 'none.a4d'}: no such file (--scene takes an .a4d file)"
    )


def test_view_screenshot_of_an_unreadable_scene_that_cannot_be_reexported_is_one_line(tmp_path):
    """A folder holding only a damaged scene.a4d (no run to export from): one line, not a traceback."""
    path = tmp_path / "scene.a4d"
    good = a4d.to_bytes(_random_scene(n=N, frames=FRAMES))
    path.write_bytes(good[:-100])
    line = _view_fails(f"--workdir={tmp_path}", f"--screenshot={tmp_path / 'x.png'}")
    why = f"truncated ({len(good) - 100} bytes, the header says {len(good)})"
    assert line.startswith(
        f"error: {path}: the one there cannot be read: {why}, and it cannot be exported "
    ), line
    assert f"{tmp_path / 'config.json'} is missing" in line
    assert not (tmp_path / "x.png").exists()
