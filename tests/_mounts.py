"""A tiny tmpfs for tests of a full disk or a read-only place, where this machine allows mounting.

Mounting needs privileges that a CI runner may lack: there the test is skipped, and
says why, rather than passing without reaching the check it is about.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def tmpfs(folder: Path, *, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """Mount a ``size`` tmpfs (read-only if asked) on ``folder`` for the block; skip if not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command on this machine")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
