"""How the command line talks: one-line errors, a progress display, plain results.

Results go to standard output; progress, warnings and errors go to standard
error, so that ``--json`` output can be piped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from typing import Iterator

import typer

#: Exit code for a problem with the user's input (the same as Click's usage errors).
INPUT_ERROR = 2


def fail(message: str) -> None:
    """Print ``error: message`` on one line to standard error and exit with code 2."""
    message = " ".join(str(message).split())  # keep it on one line
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(INPUT_ERROR)


@contextlib.contextmanager
def user_errors(*, quiet: bool = False) -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit code 2, never a traceback.

    The errors are those of the input (:class:`InputError` and the ``ValueError``
    and missing-file errors it stands beside) and those of writing the results
    (:class:`OutputError`: a read-only place, a full disk, which the library raises
    for every ``OSError`` while writing, naming the path). Any other ``OSError``
    keeps its traceback: it is not one a user can be told how to fix.

    Warnings (a missing optional fast path, fewer distinct points than k...) are
    shown as one ``warning: ...`` line each, not with a file name and line number,
    and not at all with ``quiet``. Set ``GPUKMEANS_DEBUG=1`` to see tracebacks.
    """
    from gpukmeans.segmentation import InputError, OutputError

    def show_warning(message, category, filename, lineno, file=None, line=None):
        note(f"warning: {' '.join(str(message).split())}", quiet=quiet)

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once
        warnings.showwarning = show_warning
        try:
            yield
        except (InputError, OutputError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            if os.environ.get("GPUKMEANS_DEBUG"):
                raise
            fail(str(exc) or type(exc).__name__)
        except MemoryError:
            if os.environ.get("GPUKMEANS_DEBUG"):
                raise
            fail("out of memory; try --device cuda, fewer columns, or a sample of the table")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every clean-up on the way out runs.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception``
    on the way swallows it.
    """


@contextlib.contextmanager
def stop_cleanly_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated`, then into one line and exit code 143.

    Without this, SIGTERM ends the process on the spot and leaves its staging
    folders and temporary files behind (the next run removes them, but a user sees
    them until then); with it the run stops at once all the same, and the writing
    code's clean-up removes them before the process exits. Only the first SIGTERM
    is turned into an exception: a second one while cleaning up is ignored.
    """

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except Terminated:
        typer.echo("error: stopped by SIGTERM; unfinished outputs were removed", err=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=_plain))


def _plain(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def note(message: str, *, quiet: bool) -> None:
    """A message for people (warnings, where files went), on standard error."""
    if not quiet:
        typer.echo(message, err=True)


class ProgressDisplay:
    """Shows each stage of a run as a line with a spinner, then its time; a pass
    over the table also shows its rows read and rows per second.

    Only on a terminal and without ``--quiet``; otherwise it does nothing (the
    stage timings still end up in ``summary.json``).
    """

    def __init__(self, *, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "ProgressDisplay":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓"),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TimeElapsedColumn(),
                TextColumn("{task.fields[rows]}"),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()

    def started(self, key: str, label: str) -> None:
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(label, total=None, rows="")

    def rows_read(self, key: str, rows: int, total: int | None) -> None:
        """A pass over the table has read ``rows`` of ``total`` (None: not known yet)."""
        if self._progress is None or key not in self._tasks:
            return
        task = self._tasks[key]
        elapsed = self._progress.tasks[task].elapsed or 0.0
        rate = f", {rows / elapsed / 1e6:.2f}M rows/s" if elapsed > 0 else ""
        self._progress.update(task, total=total, completed=rows, rows=f"{rows:,} rows{rate}")

    def finished(self, key: str, label: str, seconds: float) -> None:
        if self._progress is not None and key in self._tasks:
            task = self._tasks[key]
            total = self._progress.tasks[task].total or 1
            self._progress.update(task, total=total, completed=total)
