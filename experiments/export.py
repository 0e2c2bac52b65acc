"""Export a trained run as one compact .a4d file: `python -m experiments.export --workdir=runs/X [--out F]`.

The file holds the canonical Gaussians, the motion-basis trajectories and weights, fps, frame count and the
training cameras (byte layout: docs/format.md). Prints the size next to the per-frame PLY sequence's.
"""

import os

from absl import app, flags

from any4d_jax.jobs import cli  # light (absl only): --debug, one-line errors with exit status 2

flags.DEFINE_string("workdir", None, "Training run folder (config.json, train_cameras.npz, checkpoints/).")
flags.DEFINE_string("out", None, "Output file (default: <workdir>/scene.a4d).")
flags.DEFINE_enum("precision", "mixed", ["mixed", "float32"], "float16 where harmless (docs/format.md).")
flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from any4d_jax.io import a4d, workdir

    scene = workdir.scene_from_workdir(FLAGS.workdir, FLAGS.step)
    out = FLAGS.out or os.path.join(FLAGS.workdir, "scene.a4d")
    nbytes = a4d.write_a4d(out, scene, FLAGS.precision)
    ply_dir = os.path.join(FLAGS.workdir, "ply")
    plys = [os.path.join(ply_dir, f) for f in os.listdir(ply_dir)] if os.path.isdir(ply_dir) else []
    n, t = scene.num_gaussians, scene.meta["num_frames"]
    print(f"wrote {out}: {n} Gaussians, {t} frames, {nbytes / 1e6:.2f} MB")
    if plys:
        total = sum(os.path.getsize(p) for p in plys)
        print(
            f"per-frame PLY sequence ({len(plys)} files in {ply_dir}): {total / 1e6:.2f} MB, "
            f"{total / nbytes:.1f}x the .a4d"
        )


if __name__ == "__main__":
    cli.run(main)
