"""Render a scene with the browser viewer in headless Chromium and return its pixels (for tests and docs).

    find_chromium() -> path or None
    capture(scene_path, viewmat, K, width, height, t) -> (H, W, 3) uint8      the viewer's capture mode
    load_page(scene_path, query) -> (status, text)                             any capture-mode page result
    screenshot(scene_path, out_png, width, height, ...)                        the whole UI, as a PNG

Chromium is run with --dump-dom: the page writes `canvas.toDataURL('image/png')` (or its error) into
<pre id="capture" data-status="ok|error">, which the dumped DOM carries back. WebGL2 runs on SwiftShader
(software GL), so no GPU is needed.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse

import numpy as np

from any4d_jax.viewer import serve

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Headless and quiet. On this Chromium (150), WebGL2 under --disable-gpu needs SwiftShader; without
# --enable-unsafe-swiftshader it still falls back to it but logs that the automatic fallback is deprecated,
# so both --use-angle=swiftshader and --enable-unsafe-swiftshader are given explicitly.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


class ViewerError(RuntimeError):
    """Chromium is missing or failed, or the page reported an error."""


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable ($CHROMIUM overrides), or None if there is none."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if os.path.isfile(env) else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium() -> str:
    path = find_chromium()
    if path is None:
        raise ViewerError(
            "viewer capture needs Chromium: none of " + ", ".join(CHROMIUM_NAMES) + " is on PATH "
            "(Debian: apt-get install -y chromium; or set $CHROMIUM to the executable)"
        )
    return path


def _fmt(values) -> str:
    """Comma-separated numbers, exact for float32 inputs."""
    return ",".join(repr(float(v)) for v in np.asarray(values, np.float64).reshape(-1))


def _run_chromium(url: str, extra: list[str], width: int, height: int, timeout: float, budget_ms: int) -> str:
    """Runs headless Chromium on url with a throwaway profile; returns its stdout."""
    with tempfile.TemporaryDirectory(prefix="a4d-chromium-") as profile:
        cmd = [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={int(width)},{int(height)}",
            f"--virtual-time-budget={int(budget_ms)}",
            *extra,
            url,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ViewerError(f"chromium did not finish within {timeout:.0f} s on {url}") from e
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ViewerError(f"chromium exited with code {proc.returncode} on {url}:\n{tail}")
    return proc.stdout


def load_page(
    scene_path: str, query: dict, timeout: float = 90.0, budget_ms: int = 60000, size=(800, 600)
) -> tuple[str, str]:
    """Opens the viewer's capture mode on scene_path with URL parameters `query` (capture=1 is added).

    Returns (status, text) of <pre id="capture">: ("ok", PNG data URL) or ("error", message).
    Raises ViewerError if Chromium fails or the page produced no result.
    """
    server, base = serve.start_server(scene_path)
    try:
        q = {"scene": serve.SCENE_PATH.lstrip("/"), **query, "capture": "1"}
        url = base + "index.html?" + urllib.parse.urlencode(q)
        dom = _run_chromium(url, ["--dump-dom"], size[0], size[1], timeout, budget_ms)
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r'<pre id="capture"([^>]*)>(.*?)</pre>', dom, re.S)
    status = re.search(r'data-status="(\w+)"', m.group(1)) if m else None
    if status is None:
        errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
        detail = html.unescape(errors.group(1)).strip() if errors else ""
        raise ViewerError(
            "the viewer page produced no capture within the virtual time budget"
            + (f"; page errors: {detail}" if detail else "")
        )
    return status.group(1), html.unescape(m.group(2))


def decode_data_url(data_url: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a data:image/png;base64 URL."""
    import imageio.v3 as iio

    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix):
        raise ViewerError(f"the page returned no PNG data URL: {data_url[:80]!r}")
    img = iio.imread(io.BytesIO(base64.b64decode(data_url[len(prefix) :])), extension=".png")
    return np.asarray(img)[..., :3].astype(np.uint8)


def capture_query(viewmat, K, width: int, height: int, t: float) -> dict:
    """URL parameters of an exact camera (viewmat (4, 4) world-to-camera OpenCV, K (3, 3) pixels) and time."""
    K = np.asarray(K, np.float64)
    return {
        "viewmat": _fmt(viewmat),
        "fx": _fmt([K[0, 0]]),
        "fy": _fmt([K[1, 1]]),
        "cx": _fmt([K[0, 2]]),
        "cy": _fmt([K[1, 2]]),
        "skew": _fmt([K[0, 1]]),
        "width": str(int(width)),
        "height": str(int(height)),
        "t": _fmt([t]),
    }


def capture(
    scene_path: str, viewmat, K, width: int, height: int, t: float, timeout: float = 90.0
) -> np.ndarray:
    """The viewer's image of scene_path at time t from one camera: (height, width, 3) uint8.

    viewmat: (4, 4) world-to-camera (OpenCV: x right, y down, z forward); K: (3, 3) intrinsics in pixels
    (pixel centres at integer + 0.5), as the JAX renderer takes them. Raises ViewerError with the page's
    message if it failed (bad file, WebGL unavailable, ...).
    """
    status, text = load_page(scene_path, capture_query(viewmat, K, width, height, t), timeout)
    if status != "ok":
        raise ViewerError(f"the viewer page reported an error: {text}")
    img = decode_data_url(text)
    if img.shape[:2] != (height, width):
        raise ViewerError(f"the viewer returned a {img.shape[1]}x{img.shape[0]} image, not {width}x{height}")
    return img


def screenshot(
    scene_path: str,
    out_png: str,
    width: int = 1280,
    height: int = 800,
    t: float | None = None,
    viewmat=None,
    K=None,
    camera_size: tuple[int, int] | None = None,
    timeout: float = 90.0,
) -> str:
    """A PNG of the whole viewer page (canvas, slider, frusta) for documentation; returns out_png.

    t: time shown (default the canonical frame); viewmat, K: initial camera (default the first training
    camera), for an image of camera_size (width, height; K is rescaled to the canvas height).
    """
    query = {"scene": serve.SCENE_PATH.lstrip("/"), "sync": "1", "page": f"{int(width)}x{int(height)}"}
    if t is not None:
        query["t"] = _fmt([t])
    if viewmat is not None:
        cw, ch = camera_size if camera_size is not None else (width, height)
        query.update(capture_query(viewmat, K, cw, ch, 0.0 if t is None else t))
        if t is None:
            del query["t"]
    server, base = serve.start_server(scene_path)
    try:
        url = base + "index.html?" + urllib.parse.urlencode(query)
        out = os.path.abspath(out_png)
        _run_chromium(url, [f"--screenshot={out}"], width, height, timeout, 60000)
    finally:
        server.shutdown()
        server.server_close()
    if not os.path.isfile(out):
        raise ViewerError(f"chromium wrote no screenshot to {out}")
    return out


def overview_camera(scene, width: int, height: int, pull_back: float = 2.2, lift: float = 0.6):
    """(viewmat (4, 4), K (3, 3)) of a camera behind and above the training cameras, looking at what they see.

    scene: an export.Scene. The target is the mean of the points at the median scene depth in front of each
    training camera; up is the cameras' mean up (-y) axis. Used for screenshots showing the frusta.
    """
    vms = np.asarray(scene.camera_viewmats, np.float64)
    R, tr = vms[:, :3, :3], vms[:, :3, 3]
    centres = -np.einsum("fji,fj->fi", R, tr)
    depth = np.median((np.asarray(scene.means, np.float64) @ R[0].T + tr[0])[:, 2])
    target = np.mean(centres + R[:, 2] * depth, axis=0)
    up = -np.mean(R[:, 1], axis=0)
    up /= np.linalg.norm(up)
    offset = np.mean(centres, axis=0) - target
    eye = target + pull_back * offset + lift * np.linalg.norm(offset) * up
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(-up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    viewmat = np.eye(4)
    viewmat[:3, :3] = np.stack([x, y, z])
    viewmat[:3, 3] = -viewmat[:3, :3] @ eye
    K0 = np.asarray(scene.camera_Ks[0], np.float64)
    f = K0[1, 1] * height / float(scene.meta["height"])
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return viewmat, K
