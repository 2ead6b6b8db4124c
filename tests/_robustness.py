"""The robustness corpus's harness: the real ``gpukmeans`` command as a process, and a
fingerprint of a folder to show that a failed run touched nothing.

Each ``test_robustness_*.py`` module holds the cases of one class of problem (outputs,
model files, tables); a case runs the installed command in a scratch folder and asserts
the exit code, a single ``error: ...`` line naming the problem, and, when the run fails,
that the folder holds exactly the same files with the same contents as before.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    """What one run of the command printed and returned."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def command() -> list[str]:
    """The installed ``gpukmeans`` script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("gpukmeans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]


def run_cli(args, *, cwd: Path, timeout: float = 180, stdin: bytes | None = None, env: dict | None = None) -> Run:
    """Run ``gpukmeans ARGS`` in ``cwd`` as a separate process, without a terminal."""
    environment = {**os.environ, "GPUKMEANS_DEBUG": "", **(env or {})}
    done = subprocess.run(
        command() + [str(a) for a in args], cwd=cwd, input=stdin, capture_output=True, timeout=timeout,
        env=environment,
    )
    return Run(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


def fingerprint(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's SHA-256, a folder's or special file's kind."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISDIR(mode):
            found[relative] = "folder"
        elif stat.S_ISLNK(mode):
            found[relative] = f"link to {os.readlink(path)}"
        else:
            found[relative] = f"special {stat.S_IFMT(mode):o}"
    return found


def assert_one_line_error(run: Run, *expected: str, code: int = 2) -> str:
    """The run failed with ``code``, printed one ``error:`` line holding every ``expected``
    text and no traceback; returns that line."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    lines = run.error_lines
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def assert_fails_and_touches_nothing(args, *expected: str, cwd: Path, code: int = 2, **kwargs) -> str:
    """Run the command in ``cwd``; it must fail as :func:`assert_one_line_error` says and
    leave ``cwd`` exactly as it was (same entries, same contents)."""
    before = fingerprint(cwd)
    run = run_cli(args, cwd=cwd, **kwargs)
    line = assert_one_line_error(run, *expected, code=code)
    assert fingerprint(cwd) == before, "the failed run changed the folder"
    return line
