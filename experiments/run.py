"""Main entry point: `python -m experiments.run --config=configs/synthetic.py [--config.key=value]`.

Thin by design: parse the config and `--workdir` (default runs/<config name>), configure JAX's GPU allocator
when a CUDA generator shares the GPU (jobs/accelerator.py, before JAX's first use), then hand over to the
library.
"""

import json
import os

from absl import app, flags

from any4d_jax.jobs import cli  # light (absl only): --debug, one-line errors with exit status 2

cli.define_config("configs/synthetic.py")
flags.DEFINE_string("workdir", None, "Output folder (default: runs/<config name>).")
flags.DEFINE_bool("verbose", False, "Show library INFO logs (orbax, absl); by default only warnings.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from any4d_jax.jobs import accelerator  # light (standard library): before anything makes a JAX array

    # A CUDA generator shares the GPU with JAX: no 75% preallocation (or generator.jax_memory_fraction).
    for k, v in accelerator.configure_jax_memory(FLAGS.config).items():
        print(f"{k}={v} (generator.device={FLAGS.config.generator.device} shares the GPU with JAX)")
    from any4d_jax.jobs import logs  # light: set the log levels before JAX initialises (it logs at INFO)

    logs.configure(FLAGS.verbose)
    parallel = FLAGS.config.get("parallel")
    if parallel is not None and parallel.get("distributed", False):
        from any4d_jax.train import parallel as parallel_lib  # light: starts no JAX backend

        # Multi-host, before any JAX computation (docs/distributed.md): explicit JAX_* / torchrun / Kubernetes
        # index variables, else detected on SLURM, Open MPI, Kubernetes and Cloud TPU; gloo on CPU.
        parallel_lib.initialize()
    from any4d_jax.jobs import run

    name = os.path.splitext(os.path.basename(FLAGS["config"].config_filename))[0]
    workdir = FLAGS.workdir or os.path.join("runs", name)
    result = run.train_and_evaluate(FLAGS.config, workdir)
    summary = result.get("summary", {})
    if summary:
        print("\n| metric | value |\n|---|---|")
        for k, v in summary.items():
            print(f"| {k} | {v:.4f} |")
    print(json.dumps({k: v for k, v in result.items() if k != "summary"}, indent=2))


if __name__ == "__main__":
    cli.run(main)
