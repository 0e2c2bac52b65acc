"""A small local HTTP server for the viewer: the static folder plus one scene file at a fixed path.

Standard library only. It binds to 127.0.0.1 (never to other interfaces) and serves read-only:
    /                 static/index.html
    /<file>           static/<file>
    /scene.a4d        the scene file given to the server (SCENE_PATH)
"""

from __future__ import annotations

import functools
import http.server
import os
import threading

from any4d_jax.viewer import STATIC_DIR

SCENE_PATH = "/scene.a4d"  # where the served scene lives
HOST = "127.0.0.1"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from `directory`, the scene at SCENE_PATH, no caching, no request log."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".a4d": "application/octet-stream",
    }

    def __init__(self, *args, scene_path: str | None = None, **kwargs):
        self.scene_path = scene_path
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0].split("#", 1)[0] == SCENE_PATH and self.scene_path is not None:
            return self.scene_path
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def make_server(scene_path: str | None = None, port: int = 0, static_dir: str = STATIC_DIR):
    """A ThreadingHTTPServer on 127.0.0.1:port (0: a free port) serving `static_dir` and the scene.

    scene_path: the .a4d file served at SCENE_PATH (None: no scene). Call serve_forever() to run it.
    """
    if scene_path is not None and not os.path.isfile(scene_path):
        raise FileNotFoundError(f"viewer: scene file {scene_path} does not exist")
    scene = None if scene_path is None else os.path.abspath(scene_path)
    handler = functools.partial(_Handler, directory=static_dir, scene_path=scene)
    server = http.server.ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    return server


def server_url(server) -> str:
    """Base URL of a server from make_server (http://127.0.0.1:PORT/)."""
    return f"http://{HOST}:{server.server_address[1]}/"


def start_server(scene_path: str | None = None, port: int = 0):
    """make_server run in a daemon thread. Returns (server, base url); stop it with server.shutdown()."""
    server = make_server(scene_path, port)
    threading.Thread(target=server.serve_forever, name="a4d-viewer-http", daemon=True).start()
    return server, server_url(server)
