"""Ablation over motion-basis sizes, every variant in one vmapped train step.

    python -m experiments.ablate --config=configs/synthetic.py \
        --config.ablation.generator_channels=0,1,2 --config.ablation.learnable_bases=0,4,8,16

Writes ablation.md, ablation.csv, ablation.png (held-out PSNR against the active basis count, one line per
generator setting) and ablation.json to --workdir (default runs/ablate_<config name>).
"""

import os

from absl import app, flags

from any4d_jax.jobs import cli  # light (absl only): --debug, one-line errors with exit status 2

cli.define_config("configs/synthetic.py")
flags.DEFINE_string("workdir", None, "Output folder (default: runs/ablate_<config name>).")
flags.DEFINE_bool("verbose", False, "Show library INFO logs (orbax, absl); by default only warnings.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from any4d_jax.jobs import logs  # light: set the log levels before JAX initialises (it logs at INFO)

    logs.configure(FLAGS.verbose)
    from any4d_jax.errors import InputError
    from any4d_jax.jobs import ablate

    if FLAGS.config.get("ablation") is None:
        raise InputError("this config has no `ablation` section (see configs/synthetic.py)")
    name = os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0]
    workdir = FLAGS.workdir or os.path.join("runs", f"ablate_{name}")
    result = ablate.run(FLAGS.config, workdir)
    print("\n" + result["header"] + "\n")
    print(ablate.markdown_table(result["rows"]))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in result["paths"].items()))


if __name__ == "__main__":
    cli.run(main)
