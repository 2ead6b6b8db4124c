"""``-`` as a path: a table read from standard input, a result written to standard output.

The segment pipeline reads its table in several passes (the statistics, the
transform, the profiles) and looks at its first bytes to tell CSV from Parquet, but
standard input can be read only once, from the start. So standard input is first
copied to a file in a temporary folder, the command reads that file, and the folder
is deleted when the command ends, whether it succeeds or fails.

A result meant for standard output is written to a temporary file the same way and
copied to the stream only once it is complete: a run that fails writes nothing to
standard output, as it writes nothing to an output file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from ._console import fail

#: What messages call the table read from standard input.
STDIN_NAME = "standard input"

_COPY_CHUNK = 1 << 20


def is_stream(path: Path | None) -> bool:
    """Whether ``path`` is ``-``, standard input or output."""
    return path is not None and str(path) == "-"


@contextlib.contextmanager
def spooled_stdin(path: Path) -> Iterator[tuple[Path, str | None]]:
    """The table to read and what to call it in messages.

    A path other than ``-`` is yielded as it is, with None (messages name its path).
    For ``-``, standard input is copied to a temporary file, which is yielded with
    "standard input" and deleted when the block ends.
    """
    if not is_stream(path):
        yield path, None
        return
    if sys.stdin is None or sys.stdin.isatty():
        fail("'-' reads the table from standard input, but nothing is piped in "
             "(e.g. cat customers.csv | gpukmeans segment -)")
    with tempfile.TemporaryDirectory(prefix="gpukmeans-stdin-") as folder:
        spooled = Path(folder) / "stdin"
        with open(spooled, "wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy, _COPY_CHUNK)
        if spooled.stat().st_size == 0:
            fail(f"{STDIN_NAME} is empty: pipe a table into '-'")
        yield spooled, STDIN_NAME


@contextlib.contextmanager
def stdout_spool(out: Path) -> Iterator[Path]:
    """Where to write the result: ``out`` itself, or for ``-`` a temporary CSV file
    that is copied to standard output when the block ends without an error."""
    if not is_stream(out):
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="gpukmeans-stdout-") as folder:
        spooled = Path(folder) / "stdout.csv"
        yield spooled
        _copy_to_stdout(spooled)


def _copy_to_stdout(path: Path) -> None:
    sys.stdout.flush()
    try:
        with open(path, "rb") as result:
            shutil.copyfileobj(result, sys.stdout.buffer, _COPY_CHUNK)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The reader stopped early (``| head``), which is its choice, not a failure of
        # the run. Point standard output at /dev/null so that the interpreter's own
        # flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
