"""What machine a benchmark ran on: written next to every result."""

import os
import platform
from datetime import datetime, timezone


def machine_info() -> dict:
    import numpy
    import sklearn
    import torch

    from gpukmeans_cli.benchmarking import cpu_model  # one reading of /proc/cpuinfo for both
    from gpukmeans_cli.benchmarking.environment import git_commit

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),  # the checkout measured: a claim quoting the result names it
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def markdown_header(info: dict) -> str:
    cuda = f", GPU {info['cuda']}" if info["cuda"] else ", no GPU"
    commit = f" at commit {info['git_commit']}" if info.get("git_commit") else ""
    return (
        f"Measured {info['date']}{commit} on {info['processor']} ({info['cpu_count']} CPUs{cuda}), "
        f"torch {info['torch']}, scikit-learn {info['scikit-learn']}; "
        f"1-minute load average at start {info['load_average_1m']:.2f}."
    )


def reset_peak_rss():
    """Reset this process's peak resident set size (``VmHWM``): Linux, by writing 5 to clear_refs."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def rss_bytes(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")
