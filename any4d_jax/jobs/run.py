"""The main job, as `python -m experiments.run` runs it: dispatch on config.data.source.

synthetic -> jobs/synthetic.py   (the embedded procedural scene, held-out views with ground truth)
iphone    -> jobs/iphone.py      (a DyCheck iPhone scene, scored under its protocol)
prompt    -> jobs/prompt.py      (generate a video under a trajectory, reconstruct it with those cameras)
"""

from __future__ import annotations

import contextlib
import os

import ml_collections

from any4d_jax.errors import InputError
from any4d_jax.jobs import checks, iphone, prompt, synthetic

JOBS = {"synthetic": synthetic.run, "iphone": iphone.run, "prompt": prompt.run}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run the whole job of config.data.source; returns the summary metrics and the output paths (or
    {"stopped_at": step} when train.stop_after ended it early).

    Every check (config values, workdir, inputs) happens before the first write: a run refused with an
    InputError leaves an existing workdir byte for byte as it was, and removes a folder it created."""
    source = config.data.source
    if source not in JOBS:
        raise InputError(f"--config.data.source={source!r}: must be one of {', '.join(sorted(JOBS))}")
    checks.check_config(config)
    created = not os.path.exists(workdir)
    try:
        return JOBS[source](config, workdir)
    except InputError:
        if created:  # refused before writing anything: leave no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(workdir)
        raise
