"""Console hygiene for the entry points: the progress bar is the only moving line.

Libraries log through absl and Python logging at INFO (orbax announces every checkpoint save, restore and
directory it creates); a run shows warnings and errors only, unless `--verbose`.
"""

from __future__ import annotations

import logging

from absl import logging as absl_logging

QUIET = ("absl", "orbax", "jax", "etils", "tensorstore")


def configure(verbose: bool = False) -> None:
    """INFO everywhere when verbose; otherwise WARNING for absl and the libraries in QUIET."""
    level = logging.INFO if verbose else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in QUIET:
        logging.getLogger(name).setLevel(level)
