"""Files a run writes and reads: atomic writes, strict JSON, bounded reads of user JSON.

Every output of the package goes through `atomic_write` / `atomic_path`: the bytes go to a temporary name in
the destination folder, are flushed and fsynced, then renamed over the destination (`os.replace`, atomic on
POSIX), so a crash or a full disk mid-write leaves the previous file intact and no partial file under the real
name. Every JSON a user hands us goes through `read_json`: size and nesting are bounded and any defect is an
`InputError` whose message is one line naming the file.

    InputError                  (errors.py) malformed or missing user input; the message is one line
    atomic_write(path, mode)    context manager yielding an open file; renamed into place on success
    atomic_path(path)           context manager yielding a temporary path (for writers that take a path)
    write_json(path, obj)       strict JSON (inf/NaN become null), atomically
    write_text(path, text)      atomically
    read_json(path, ...)        bounded, one-line errors
    check_writable(folder)      create the folder and prove a file can be written there (one-line error)
    sha256_file(path)           hex digest of a file's bytes

Imported by every layer (it needs only the standard library and numpy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from any4d_jax.errors import InputError

MAX_JSON_BYTES = 64 * 2**20  # configs, cameras, splits: kilobytes; DyCheck dataset.json < 1 MB
MAX_JSON_DEPTH = 64  # nesting deeper than this is refused before parsing (Python's parser recurses)


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp" + os.path.splitext(name)[1], dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output gets the permissions open() would give it
    return tmp


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, path: str) -> None:
    """fsync the finished temporary file, rename it over `path`, fsync the folder (the rename's record)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path in `path`'s folder (same extension, so writers that pick a format by it still work);
    when the block ends without an exception the file there is fsynced and renamed to `path`. On an exception
    the temporary file is removed and `path` is untouched."""
    tmp = _tmp_name(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", **open_kwargs) -> Iterator:
    """`open(path, mode)` that replaces `path` only when the block finishes (see module docstring)."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes whole files: mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()


def finite_json(obj):
    """`obj` with every non-finite float (and numpy scalar/array) replaced by None: strict JSON has no
    Infinity/NaN tokens (browsers, jq and most parsers reject them)."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON (non-finite numbers become null), written atomically. Returns path."""
    text = json.dumps(finite_json(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    return write_text(path, text + "\n")


def write_text(path: str, text: str) -> str:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _depth(text: str) -> int:
    """Deepest bracket nesting outside strings (a linear scan: safe on any input)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, where: str, max_depth: int = MAX_JSON_DEPTH):
    """json.loads with one-line errors naming `where`; refuses nesting deeper than max_depth and the
    non-standard tokens NaN/Infinity."""
    if _depth(text) > max_depth:
        raise InputError(f"{where}: JSON nested deeper than {max_depth} levels")

    def bad_constant(name):
        raise InputError(f"{where}: {name} is not valid JSON (write a number or null)")

    try:
        return json.loads(text, parse_constant=bad_constant)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None


def read_json(
    path: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, what: str = "file"
):
    """The JSON value in `path`; InputError (one line naming the file) when it is missing, unreadable,
    larger than max_bytes, not UTF-8, not JSON or nested deeper than max_depth."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise InputError(f"{path}: {what} cannot be read ({e.strerror or e})") from None
    if size > max_bytes:
        raise InputError(f"{path}: {what} is {size} bytes, more than the {max_bytes} this reader accepts")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise InputError(f"{path}: {what} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: {what} is not UTF-8 text") from None
    return parse_json(text, path, max_depth)


def check_writable(folder: str) -> None:
    """Create `folder` (and parents) and prove a file can be created, written and removed there; InputError
    with one line otherwise. Leaves no file behind."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        reason = e.strerror or e
        raise InputError(f"{folder}: cannot write there ({reason}); choose another --workdir") from None


def sha256_file(path: str, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
