"""Browser viewer for `.a4d` scenes: static HTML/JS/WebGL2 (static/), a local server and headless capture.

serve.start_server(scene_path, port=0) -> (server, url)    serve static/ and the scene at /scene.a4d
capture.capture(scene_path, viewmat, K, width, height, t)   the viewer's pixels, via headless Chromium
python -m experiments.view --workdir=runs/X                 view a trained run
"""

import os

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
