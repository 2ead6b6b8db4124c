"""End-to-end time of ``gpukmeans segment`` on a 1,000,000-row customer CSV, per stage.

The table has a customer ID and 12 numeric columns (skewed money-like ones with
outliers, counts, shares, plain measurements, a few missing values) around 8
planted segments. Two runs of the installed command, each a fresh process so
that start-up and imports count:

- ``segment data.csv --k 8``            (target: under 60 s on the 2-core CPU)
- ``segment data.csv --k-range 2:10``   (the sweep; target: under 3 minutes)

The wall time of each process and the stage timings from its ``summary.json``
go to ``benchmarks/results/segment_cli.{json,md}`` with the machine and its load.

    python benchmarks/bench_segment.py [--rows 1000000] [--device cpu] [--only k8|sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_SEGMENTS = 8
N_FEATURES = 12


def make_table(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """A customer table with 12 numeric columns around 8 planted segments."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(N_SEGMENTS, size=n_rows)
    level = rng.normal(size=(N_SEGMENTS, N_FEATURES))  # each segment's offset per column
    noise = rng.normal(size=(n_rows, N_FEATURES))
    base = level[segment] * 1.5 + noise
    columns = {"customer_id": np.char.add("C", np.arange(n_rows).astype(str))}
    for j in range(N_FEATURES):
        kind = j % 4
        if kind == 0:  # money: log-normal, with a few wild values
            values = np.round(np.exp(5 + 0.8 * base[:, j]), 2)
            wild = rng.random(n_rows) < 0.001
            values[wild] *= 50
        elif kind == 1:  # counts
            values = rng.poisson(np.exp(1.5 + 0.5 * base[:, j])).astype(float)
        elif kind == 2:  # shares in [0, 1]
            values = np.round(1 / (1 + np.exp(-base[:, j])), 4)
        else:  # plain measurements
            values = np.round(40 + 8 * base[:, j], 1)
        values[rng.random(n_rows) < 0.005] = np.nan
        columns[f"feature_{j + 1:02d}"] = values
    return pd.DataFrame(columns)


def gpukmeans_command() -> list[str]:
    script = Path(sys.executable).with_name("gpukmeans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]


def run(args: list[str], out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(gpukmeans_command() + args + ["--out", str(out), "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"gpukmeans {' '.join(args)} failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "command": "gpukmeans " + " ".join(args),
        "wall_seconds": round(wall, 2),
        "stages": summary["timings"],
        "k": summary["k"],
        "k_reason": summary["k_reason"],
        "device": summary["device"],
        "n_iter": summary["metrics"].get("n_iter"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=["k8", "sweep"])
    parser.add_argument("--keep", type=Path, help="Keep the CSV and the outputs in this folder.")
    args = parser.parse_args()

    info = machine_info()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_segment_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "customers.csv"
    start = time.perf_counter()
    make_table(args.rows).to_csv(data, index=False)
    print(f"wrote {data} ({data.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)

    runs = []
    cases = {"k8": ["--k", "8"], "sweep": ["--k-range", "2:10"]}
    for name, extra in cases.items():
        if args.only and name != args.only:
            continue
        out = work / f"out_{name}"
        shutil.rmtree(out, ignore_errors=True)
        result = run(["segment", str(data), *extra, "--device", args.device], out)
        result["case"] = name
        result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        runs.append(result)
        print(json.dumps(result), file=sys.stderr)

    record = {"machine": info, "rows": args.rows, "features": N_FEATURES, "csv_mib": round(data.stat().st_size / 2**20, 1),
              "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}"
    (RESULTS / f"segment_cli{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"segment_cli{suffix}.md").write_text(markdown(record))
    print((RESULTS / f"segment_cli{suffix}.md").read_text())
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


def markdown(record: dict) -> str:
    targets = {"k8": 60, "sweep": 180}
    stage_names = ["read", "preprocess", "sweep", "fit", "assign", "score", "profile", "report"]
    lines = [
        "# `gpukmeans segment` end to end",
        "",
        markdown_header(record["machine"]),
        "",
        f"Input: {record['rows']:,} rows x {record['features']} numeric columns plus an ID, "
        f"CSV of {record['csv_mib']} MiB. Each run is a fresh process (start-up and imports included).",
        "",
        "| command | wall s | target s | " + " | ".join(stage_names) + " | k | load after |",
        "|---|---|---|" + "---|" * len(stage_names) + "---|---|",
    ]
    for run_ in record["runs"]:
        stages = " | ".join(f"{run_['stages'].get(s, 0):.1f}" if s in run_["stages"] else "-" for s in stage_names)
        lines.append(
            f"| `{run_['command'].split(' ', 2)[0]} segment ... {' '.join(run_['command'].split()[3:])}` "
            f"| {run_['wall_seconds']:.1f} | {targets[run_['case']]} | {stages} | {run_['k']} "
            f"| {run_['load_average_1m_after']:.2f} |"
        )
    lines += [
        "",
        "Stage seconds come from each run's `summary.json`. Writing the files is not among them (the",
        "summary is written during that stage): wall time minus the stages is start-up, imports and writing.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
