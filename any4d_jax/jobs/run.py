"""The main job, as `python -m experiments.run` runs it: dispatch on config.data.source.

synthetic -> jobs/synthetic.py   (the embedded procedural scene, held-out views with ground truth)
iphone    -> jobs/iphone.py      (a DyCheck iPhone scene, scored under its protocol)
prompt    -> jobs/prompt.py      (generate a video under a trajectory, reconstruct it with those cameras)
"""

from __future__ import annotations

import ml_collections

from any4d_jax.jobs import iphone, prompt, synthetic

JOBS = {"synthetic": synthetic.run, "iphone": iphone.run, "prompt": prompt.run}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run the whole job of config.data.source; returns the summary metrics and the output paths (or
    {"stopped_at": step} when train.stop_after ended it early)."""
    source = config.data.source
    if source not in JOBS:
        raise ValueError(f"data.source must be one of {sorted(JOBS)}, got {source!r}")
    return JOBS[source](config, workdir)
