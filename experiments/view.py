"""Serve the browser viewer for a run: `python -m experiments.view --workdir=runs/X [--scene F] [--port P]`.

Exports <workdir>/scene.a4d first if it is missing (as experiments.export does), serves the viewer
(any4d_jax/viewer/static) and the scene on 127.0.0.1 and prints the URL to open. Ctrl-C stops it.
With --screenshot=out.png it instead writes a PNG of the viewer UI (headless Chromium) and exits.
"""

import os

from absl import app, flags

flags.DEFINE_string("workdir", None, "Training run folder (config.json, train_cameras.npz, checkpoints/).")
flags.DEFINE_string(
    "scene", None, "The .a4d file to view (default: <workdir>/scene.a4d, exported if missing)."
)
flags.DEFINE_integer("port", 0, "Port on 127.0.0.1 (0: a free port).")
flags.DEFINE_string("screenshot", None, "Write a PNG of the viewer UI here instead of serving.")
flags.DEFINE_float("time", None, "Time shown in the screenshot (default: the canonical frame).")
FLAGS = flags.FLAGS


def scene_path() -> str:
    """The scene to view: --scene, or <workdir>/scene.a4d (exported from the workdir if missing)."""
    if FLAGS.scene:
        if not os.path.isfile(FLAGS.scene):
            raise SystemExit(f"error: {FLAGS.scene} does not exist")
        return FLAGS.scene
    if not FLAGS.workdir:
        raise app.UsageError("give --workdir (or --scene)")
    path = os.path.join(FLAGS.workdir, "scene.a4d")
    if not os.path.isfile(path):
        from any4d_jax.io import a4d, workdir

        try:
            scene = workdir.scene_from_workdir(FLAGS.workdir)
        except FileNotFoundError as e:
            raise SystemExit(f"error: {e}") from None
        nbytes = a4d.write_a4d(path, scene)
        print(f"exported {path}: {scene.num_gaussians} Gaussians, {nbytes / 1e6:.2f} MB")
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    path = scene_path()
    if FLAGS.screenshot:
        from any4d_jax.io import a4d
        from any4d_jax.viewer import capture

        width, height = 1280, 800
        viewmat, K = capture.overview_camera(a4d.read_a4d(path), width, height)
        out = capture.screenshot(path, FLAGS.screenshot, width, height, FLAGS.time, viewmat, K)
        print(f"wrote {out}")
        return
    from any4d_jax.viewer import serve

    server = serve.make_server(path, FLAGS.port)
    url = serve.server_url(server) + "?scene=" + serve.SCENE_PATH.lstrip("/")
    print(f"serving {path}\nopen {url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    app.run(main)
