"""What every `experiments` command does with a failure: bad input is one line on stderr and exit status 2.

    from any4d_jax.jobs import cli            # defines --debug
    cli.define_config("configs/synthetic.py") # --config, with unknown keys refused in one line
    if __name__ == "__main__":
        cli.run(main)                         # absl's app.run, with the error handling below

Flag errors (a value of the wrong type, a missing config file, an unknown `--config.` key) are bad input too:
one line, status 2.

An `InputError` (errors.py: a malformed or missing file, folder or config value; `A4DFormatError`,
`SceneError` and the other format errors derive from it) prints `error: <its one line>` and exits with 2;
an `Interrupted` run (SIGINT/SIGTERM, after its checkpoint is written) prints its line and exits with
128 + the signal number, as a shell reports a signal. A diverged run (FloatingPointError) prints its line and
exits with 1. `--debug` shows the traceback instead. Anything else is a bug and keeps its traceback.

Light on purpose (absl and errors.py only): the commands import it before JAX initialises.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from any4d_jax.errors import InputError, Interrupted

flags.DEFINE_bool("debug", False, "On bad input, show the Python traceback instead of one line.")

EXIT_BAD_INPUT = 2
_CONFIG_FLAGS: list[str] = []  # the names define_config defined (their files load when flags are parsed)


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
        except FloatingPointError as e:  # a diverged run (train/loop.py): its line names the checkpoint kept
            if flags.FLAGS.debug:
                raise
            print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
            sys.exit(1)
        except Interrupted as e:
            print(one_line(e), file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)

    return wrapped


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def define_config(default: str, name: str = "config"):
    """--config (a locked ml_collections config file). config_flags applies `--config.key=value` overrides
    while the flag is defined (at import): an unknown key is answered here, in one line."""
    _CONFIG_FLAGS.append(name)
    try:
        return config_flags.DEFINE_config_file(name, default, "Experiment config file.", lock_config=True)
    except (AttributeError, KeyError) as e:
        text = str(e)
        found = re.search(r"'([^'\\]+)", text)
        field = found.group(1) if found else text.strip("\"' ")
        given = [a.split("=")[0] for a in sys.argv[1:] if a.startswith(f"--{name}.")]
        which = next(
            (a for a in given if a.split(".")[-1] == field or f".{field}." in a), f"--{name}.*{field}"
        )
        hint = re.search(r'Did you mean "([^"]+)"', text)
        hint = (
            f'did you mean "{hint.group(1)}"?' if hint else "the config file lists every key with a comment"
        )
        _fail(f"{which}: no such config key ({hint})")


def _parse_flags(argv):
    try:
        args = flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))
    for (
        name
    ) in _CONFIG_FLAGS:  # config_flags loads the file lazily: load it now, while errors are flag errors
        try:
            getattr(flags.FLAGS, name).keys()  # the value is a lazy proxy: touch it
        except OSError as e:
            missing = re.search(r"Attempted.*?:\s*(\S+)", str(e), re.S)
            _fail(f"--{name}={missing.group(1) if missing else '?'}: no such config file (see configs/)")
    return args


def run(main: Callable) -> None:
    """absl's app.run(main) with bad flags and bad input answered in one line (module docstring)."""
    app.run(guarded(main), flags_parser=_parse_flags)
