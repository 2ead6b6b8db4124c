"""``gpukmeans bench``: a quick version of the benchmark suite, on the user's own machine.

The same protocol as ``benchmarks/bench_lloyd.py`` (see :mod:`.benchmarking.protocol`)
on smaller synthetic data: seconds, not minutes. Peers that are not installed are
listed as missing. Wire it with ``app.command()(bench)``.
"""

import dataclasses
import json
from pathlib import Path
from enum import StrEnum
from typing import Annotated, Optional

import typer


def _shapes(rows: Optional[int], device: str):
    from .benchmarking import QUICK_SHAPES

    shapes = QUICK_SHAPES
    if rows is not None:
        shapes = [(rows, d, k) for _, d, k in shapes]
    return shapes


class Devices(StrEnum):
    cpu = "cpu"
    cuda = "cuda"
    all = "all"


def bench(
    device: Annotated[
        Devices, typer.Option(help="Devices to time; all is cuda only when present.")
    ] = Devices.all,
    peers: Annotated[
        str, typer.Option(help="Comma-separated libraries to compare, or 'all' (installed ones run, others are listed as missing).")
    ] = "all",
    rows: Annotated[Optional[int], typer.Option(min=1000, help="Rows of synthetic data per shape (default: 200,000 and 100,000).")] = None,
    iterations: Annotated[int, typer.Option(min=1, help="Lloyd iterations timed per fit.")] = 5,
    repeats: Annotated[int, typer.Option(min=1, help="Fits per measurement; the fastest counts.")] = 2,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write every figure and the machine's details here.")] = None,
):
    """Time Lloyd iterations of gpukmeans and the installed peers on this machine."""
    import torch

    from . import benchmarking

    if device == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("no CUDA device on this machine.", param_hint="--device")
    devices = ["cpu"] if device == "cpu" else ["cuda"] if device == "cuda" else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    libraries = {"cpu": list(benchmarking.CPU_PEERS), "cuda": list(benchmarking.GPU_PEERS)}
    if peers != "all":
        wanted = [name.strip() for name in peers.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in benchmarking.PEERS]
        if unknown:
            raise typer.BadParameter(
                f"unknown {', '.join(unknown)}; choose from {', '.join(benchmarking.PEERS)}.", param_hint="--peers")
        libraries = {d: [name for name in names if name in wanted] for d, names in libraries.items()}

    def progress(record):
        figure = f"{record.ms_per_iter:8.2f} ms/iter" if record.ms_per_iter else ""
        typer.echo(f"  {record.device} {record.n_samples:,}x{record.n_features} k={record.n_clusters} "
                   f"{record.library}: {figure or record.status}", err=True)

    environment = benchmarking.environment(devices)
    records = benchmarking.run_comparison(
        {d: _shapes(rows, d) for d in devices}, libraries_by_device=libraries,
        n_iter=iterations, repeats=repeats, progress=progress)
    typer.echo(benchmarking.markdown_table(records))
    typer.echo(f"\nMachine: {environment.get('gpu') or environment['cpu']}, {environment['cpu_count']} CPUs, "
               f"load average {environment['load_average_at_start'][0]:.2f} (timings on a busy machine are noisy).")
    if json_path is not None:
        payload = {"environment": environment, "results": [dataclasses.asdict(r) for r in records]}
        json_path.write_text(json.dumps(payload, indent=2))
        typer.echo(f"Wrote {json_path}")
