"""The package's two user-facing failure types (standard library only; every layer may import them).

    InputError    malformed or missing input from the user: a file, a folder, a config key
    MissingInput  an InputError that is also a FileNotFoundError: a file or folder the run needs is absent
    Interrupted   a run stopped by SIGINT/SIGTERM after writing a checkpoint it can resume from

`experiments` commands print either as one line (jobs/cli.py): exit status 2 for InputError, 128 + the signal
number for Interrupted.
"""

from __future__ import annotations


class InputError(ValueError):
    """Malformed or missing input from the user (a file, a folder, a config key). str(e) is one line that
    names the file or key and says what is wrong; `experiments` commands print it and exit with status 2."""


class MissingInput(InputError, FileNotFoundError):
    """A file or folder the run needs does not exist (one line naming it and how to make it)."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after saving its state; str(e) says where and how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
