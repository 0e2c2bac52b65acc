"""`python -m experiments.view` serves the viewer and the scene on 127.0.0.1 and prints the URL."""

import os
import re
import subprocess
import sys
import time
import urllib.request

from any4d_jax.io import a4d
from tests.io.test_a4d import _random_scene

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_view_serves_page_and_scene_on_loopback(tmp_path):
    scene = tmp_path / "s.a4d"
    a4d.write_a4d(scene, _random_scene(n=8))
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.view", f"--scene={scene}", "--port=0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, deadline = None, time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"open (http://127\.0\.0\.1:\d+/\S*)", line)
            url = m.group(1) if m else None
        assert url is not None, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        assert url.endswith("?scene=scene.a4d")
        base = url.split("?")[0]
        with urllib.request.urlopen(base, timeout=10) as r:
            page = r.read().decode()
        assert '<canvas id="canvas"' in page and 'src="viewer.js"' in page
        with urllib.request.urlopen(base + "scene.a4d", timeout=10) as r:
            assert r.read() == scene.read_bytes()
        with urllib.request.urlopen(base + "a4d.js", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
