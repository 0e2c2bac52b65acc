"""What every `experiments` command does with a failure: bad input is one line on stderr and exit status 2.

    from any4d_jax.jobs import cli            # defines --debug
    if __name__ == "__main__":
        cli.run(main)                         # absl's app.run, with the error handling below

An `InputError` (errors.py: a malformed or missing file, folder or config value; `A4DFormatError`,
`SceneError` and the other format errors derive from it) prints `error: <its one line>` and exits with 2;
an `Interrupted` run (SIGINT/SIGTERM, after its checkpoint is written) prints its line and exits with
128 + the signal number, as a shell reports a signal. `--debug` shows the traceback instead. Anything else is
a bug and keeps its traceback.

Light on purpose (absl and errors.py only): the commands import it before JAX initialises.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags

from any4d_jax.errors import InputError, Interrupted

flags.DEFINE_bool("debug", False, "On bad input, show the Python traceback instead of one line.")

EXIT_BAD_INPUT = 2


def one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def guarded(main: Callable) -> Callable:
    """main(argv) with bad input and interruptions turned into one line and an exit status."""

    def wrapped(argv):
        try:
            return main(argv)
        except InputError as e:
            if flags.FLAGS.debug:
                raise
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            sys.exit(EXIT_BAD_INPUT)
        except Interrupted as e:
            print(one_line(e), file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)

    return wrapped


def run(main: Callable) -> None:
    app.run(guarded(main))
