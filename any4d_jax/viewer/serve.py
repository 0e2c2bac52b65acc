"""A small local HTTP server for the viewer: the static folder plus one scene file at a fixed path.

Standard library only. It binds to 127.0.0.1 (never to other interfaces) and serves read-only:
    /                 static/index.html
    /<file>           static/<file>
    /scene.a4d        the scene file given to the server (SCENE_PATH)

Requests must name this machine in their `Host` header (127.0.0.1 or localhost, any case, with or without a
port; ALLOWED_HOSTS): anything else is answered 403, so a web page that rebinds its own DNS name to 127.0.0.1
cannot read the scene through the visitor's browser. A request without `Host` is answered 400 when it is
HTTP/1.1 (which requires the header) and served when it is HTTP/1.0 (no browser sends those, so DNS rebinding
cannot use them; curl -0 and old tools can). Paths cannot leave the static folder (the standard library's
translate_path drops `..`), and only GET and HEAD are answered.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading

from any4d_jax.viewer import STATIC_DIR

SCENE_PATH = "/scene.a4d"  # where the served scene lives
HOST = "127.0.0.1"
ALLOWED_HOSTS = ("127.0.0.1", "localhost")  # the Host header's name part, compared lower-case


def host_allowed(value: str | None, request_version: str) -> bool | None:
    """True for a Host header naming this machine (ALLOWED_HOSTS, optionally `:port`), False for any other
    name, None for a malformed request (HTTP/1.1 without Host). A missing Host is allowed before HTTP/1.1."""
    if value is None:
        return True if request_version in ("HTTP/0.9", "HTTP/1.0") else None
    name, colon, port = value.strip().lower().partition(":")
    if colon and not (port == "" or port.isdigit()):
        return False
    return name in ALLOWED_HOSTS


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

    def parse_request(self) -> bool:
        """The standard parse, then the Host check (module docstring): 403 for another host name, 400 for an
        HTTP/1.1 request without Host or with several."""
        if not super().parse_request():
            return False
        hosts = self.headers.get_all("Host") or []
        ok = None if len(hosts) > 1 else host_allowed(hosts[0] if hosts else None, self.request_version)
        if ok is None:
            self.send_error(400, "Bad Request: send exactly one Host header")
            return False
        if not ok:
            self.send_error(403, "Forbidden: the Host header must be 127.0.0.1 or localhost")
            return False
        return True

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
