"""Serve the browser viewer for a run: `python -m experiments.view --workdir=runs/X [--scene F] [--port P]`.

With --workdir it views <workdir>/scene.a4d, exporting it again (as experiments.export does) when it is
missing, cannot be read (truncated, corrupted) or is stale: its recorded source (checkpoint step, sha256 of
config.json) differs from the run's latest checkpoint and config. It prints one line saying why it exported.
With --scene it views that file, which must be a readable .a4d. The viewer (any4d_jax/viewer/static) and the
scene are served on 127.0.0.1 and the URL to open is printed. Ctrl-C stops it.
With --screenshot=out.png it instead writes a PNG of the viewer UI (headless Chromium) and exits.

Bad input (a file that is not an .a4d, a workdir that cannot be exported, a busy port) is one line on stderr
and exit status 2 (jobs/cli.py).
"""

import os

from absl import app, flags

from any4d_jax.errors import InputError
from any4d_jax.jobs import cli

flags.DEFINE_string("workdir", None, "Training run folder (config.json, train_cameras.npz, checkpoints/).")
flags.DEFINE_string(
    "scene", None, "The .a4d file to view (default: <workdir>/scene.a4d, exported if missing or stale)."
)
flags.DEFINE_integer("port", 0, "Port on 127.0.0.1 (0: a free port).")
flags.DEFINE_string("screenshot", None, "Write a PNG of the viewer UI here instead of serving.")
flags.DEFINE_float("time", None, "Time shown in the screenshot (default: the canonical frame).")
FLAGS = flags.FLAGS


def _reason_to_export(wd: str, path: str) -> str | None:
    """Why <workdir>/scene.a4d (at `path`) must be exported again, or None when it can be viewed as it is.

    A readable file is compared with the run only when the run has a checkpoint and a config.json (a folder
    holding just a scene.a4d is viewed as it is)."""
    from any4d_jax import files
    from any4d_jax.io import a4d, workdir

    if not os.path.exists(path):
        return "there was none"
    try:
        scene = a4d.read_a4d(path)
    except a4d.A4DFormatError as e:
        return f"the one there cannot be read: {cli.one_line(e).removeprefix(path + ': ')}"
    config = os.path.join(wd, workdir.CONFIG)
    latest = workdir.checkpoint_manager(wd, create=False).latest_step()
    if latest is None or not os.path.isfile(config):
        return None
    source = scene.meta.get("source")
    if source is None:
        return "the one there records no source checkpoint"
    if source["step"] != latest:
        return f"the one there is from checkpoint step {source['step']}, the latest is step {latest}"
    if source["config_sha256"] != files.sha256_file(config):
        return f"the one there was exported from another {workdir.CONFIG}"
    return None


def workdir_scene(wd: str):
    """(path, Scene) of <wd>/scene.a4d, exported again first when `_reason_to_export` says so."""
    from any4d_jax.io import a4d, workdir

    path = os.path.join(wd, "scene.a4d")
    why = _reason_to_export(wd, path)
    if why is None:
        return path, a4d.read_a4d(path)
    try:
        scene = workdir.scene_from_workdir(wd)
    except InputError as e:
        if not os.path.exists(path):
            raise
        raise InputError(f"{path}: {why}, and it cannot be exported again ({cli.one_line(e)})") from None
    nbytes = a4d.write_a4d(path, scene)
    verb = "exported" if why == "there was none" else "re-exported"
    print(f"{verb} {path} ({why}): {scene.num_gaussians} Gaussians, {nbytes / 1e6:.2f} MB", flush=True)
    return path, scene


def scene_file():
    """(path, Scene) to view: --scene (checked: a readable .a4d), or <workdir>/scene.a4d (workdir_scene)."""
    if FLAGS.scene:
        from any4d_jax.io import a4d

        if not os.path.isfile(FLAGS.scene):
            raise InputError(f"{FLAGS.scene}: no such file (--scene takes an .a4d file)")
        return FLAGS.scene, a4d.read_a4d(FLAGS.scene)
    if not FLAGS.workdir:
        raise app.UsageError("give --workdir (or --scene)")
    if not os.path.isdir(FLAGS.workdir):
        raise InputError(f"{FLAGS.workdir}: no such folder (--workdir takes a training run's folder)")
    return workdir_scene(FLAGS.workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    path, scene = scene_file()
    if FLAGS.screenshot:
        from any4d_jax.viewer import capture

        width, height = 1280, 800
        viewmat, K = capture.overview_camera(scene, width, height)
        out = capture.screenshot(path, FLAGS.screenshot, width, height, FLAGS.time, viewmat, K)
        print(f"wrote {out}")
        return
    from any4d_jax.viewer import serve

    try:
        server = serve.make_server(path, FLAGS.port)
    except OSError as e:
        raise InputError(
            f"--port={FLAGS.port}: cannot listen on {serve.HOST}:{FLAGS.port} ({e.strerror or e}); "
            f"choose another port (0: a free one)"
        ) from None
    url = serve.server_url(server) + "?scene=" + serve.SCENE_PATH.lstrip("/")
    print(f"serving {path}\nopen {url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    cli.run(main)
