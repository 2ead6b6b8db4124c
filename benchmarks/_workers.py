"""Run one timed job in a fresh process and report its time, memory and CPU share.

A fresh process per job makes peak memory honest (nothing left over from the
previous job) and isolates libraries' thread pools. The parent alternates the
contenders so that load from other processes on a shared machine hits both.

Memory is the job's extra peak resident set size: the kernel's high-water mark
(VmHWM, reset through /proc/self/clear_refs on Linux) minus the resident size
just before the job, with the data already in memory. ``cpu_share`` is the
job's CPU time over (wall time x CPUs): near 1.0 means it had the machine to
itself; well below 1.0 on a job that uses every core means it was competing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(job: Callable[[], Any]) -> dict:
    """Time ``job()`` in this process; return seconds, extra peak RSS and CPU share."""
    reset = _reset_peak_rss()
    before = _status_bytes("VmRSS")
    cpu_before = os.times()
    start = time.perf_counter()
    value = job()
    seconds = time.perf_counter() - start
    cpu_after = os.times()
    peak = _status_bytes("VmHWM")
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "seconds": seconds,
        "extra_peak_rss_bytes": peak - before if reset else None,
        "peak_rss_bytes": peak,
        "cpu_share": cpu / (seconds * (os.cpu_count() or 1)),
        "value": value,
    }


def run_worker(script: str, job: str, **params) -> dict:
    """Run ``python <script> --worker <job> --params <json>`` and parse its JSON line."""
    command = [sys.executable, str(HERE / script), "--worker", job, "--params", json.dumps(params)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_idle_fraction(seconds: float = 3.0) -> float:
    """Share of the machine's CPU time that was idle over ``seconds`` (Linux /proc/stat)."""
    def sample():
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return values[3] + values[4], sum(values)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)
