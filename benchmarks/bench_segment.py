"""End-to-end time and peak memory of ``gpukmeans segment`` and ``predict`` on customer tables.

Two generated tables, both deterministic and cached under ``--data-dir``:

- a CSV of 1,000,000 customers: an ID and 12 numeric columns (:func:`make_table`);
- a Parquet table of 10,000,000 customers x 10 columns in row groups of 1,000,000 rows
  (:func:`write_customers_parquet`): a string ID, three skewed money columns with a few
  wild values, three counts, a share in [0, 1], a plain measurement (missing values in
  four of them) and a 3-level string category ``channel``, around 8 planted segments.

Each case is a fresh process of the installed ``gpukmeans`` command (start-up and
imports count), started by a small wrapper process that reads the command's peak
resident set (``getrusage(RUSAGE_CHILDREN)``):

- ``csv-k8``           ``segment customers.csv --k 8``
- ``parquet-k8``       ``segment customers.parquet --k 8 --categorical channel``
- ``parquet-sweep``    ``segment customers.parquet --categorical channel`` (the default sweep)
- ``parquet-predict``  ``predict <parquet-k8's model> customers.parquet --out predicted.parquet``,
  whose segments are compared with parquet-k8's, row by row (needs parquet-k8, which runs too)

From each run's ``summary.json``: engine seconds (the stages ``fit`` and ``sweep``),
outside seconds (every other stage but ``total``) and their ratio. The targets (at
10,000,000 rows, 1 GB = 10^9 bytes): parquet-k8 outside/engine <= 0.5 and peak <= 2 GB;
parquet-sweep outside/engine <= 0.5; parquet-predict peak <= 1.5 GB with no row whose
segment differs. Results go to ``benchmarks/results/segment_cli.{json,md}`` with the machine.

    python benchmarks/bench_segment.py [--rows 10000000] [--csv-rows 1000000] [--device cpu]
        [--only parquet-k8,parquet-predict] [--data-dir /path/to/cache] [--keep DIR]
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_SEGMENTS = 8
N_FEATURES = 12
CASES = ("csv-k8", "parquet-k8", "parquet-sweep", "parquet-predict")
#: The stages that are k-means fits (the final fit, the sweep, the stability refits).
ENGINE_STAGES = ("fit", "sweep", "stability")
GB = 10**9


# ---------------------------------------------------------------- the CSV table


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


def cached_csv(folder: Path, n_rows: int) -> tuple[Path, str]:
    """The CSV of :func:`make_table` in ``folder``, written unless a file of ``n_rows`` rows is there."""
    path = folder / f"customers_{row_label(n_rows)}.csv"
    if path.exists() and _csv_rows(path) == n_rows:
        return path, "reused"
    start = time.perf_counter()
    partial = path.with_name(path.name + ".partial")
    make_table(n_rows).to_csv(partial, index=False)
    os.replace(partial, path)
    return path, f"written in {time.perf_counter() - start:.1f} s"


def _csv_rows(path: Path) -> int:
    with open(path, "rb") as lines:
        return sum(block.count(b"\n") for block in iter(lambda: lines.read(1 << 24), b"")) - 1


# ---------------------------------------------------------------- the Parquet table

#: One more whenever the generator's output changes, so that cached tables are made again.
GENERATOR_VERSION = 1
CACHE_KEY = b"gpukmeans.bench_segment"
CHANNELS = ("web", "store", "phone")
#: Column name, kind, and the centre and spread that turn its latent value into the column
#: (on the log scale for money and counts).
PARQUET_NUMERIC = (
    ("spend_12m", "money", 6.0, 0.9),
    ("avg_order_value", "money", 3.5, 0.6),
    ("lifetime_value", "money", 7.5, 1.0),
    ("orders_12m", "count", 1.8, 0.5),
    ("support_tickets", "count", -0.5, 0.6),
    ("tenure_months", "count", 3.0, 0.5),
    ("discount_share", "share", 0.0, 1.0),
    ("age", "measurement", 42.0, 9.0),
)
#: Two more columns for the 12-column table of the GPU target (``--columns 12``).
WIDER_NUMERIC = (
    ("web_visits_12m", "count", 2.2, 0.7),
    ("returns_share", "share", -2.0, 0.8),
)
#: Columns of the Parquet table (the ID and ``channel`` included) -> its numeric columns.
NUMERIC_BY_WIDTH = {10: PARQUET_NUMERIC, 12: PARQUET_NUMERIC + WIDER_NUMERIC}
#: Columns with about MISSING_SHARE of their values missing (Parquet nulls).
MISSING_COLUMNS = ("spend_12m", "avg_order_value", "discount_share", "age")
MISSING_SHARE = 0.005
WILD_SHARE = 0.001  # money values 50 times too large: refunds booked wrongly, business accounts


def customer_blocks(n_rows: int, block_rows: int = 1_000_000, seed: int = 0, width: int = 10):
    """The Parquet table as pyarrow tables of ``block_rows`` rows (the last one shorter).

    Block ``b`` draws from its own generator (``seed``, ``b``), so one block at a time is
    in memory and the table is the same however it is consumed (:func:`customer_block`).
    """
    for block in range(-(-n_rows // block_rows)):
        yield customer_block(block, n_rows, block_rows, seed, width)


def customer_block(block: int, n_rows: int, block_rows: int, seed: int, width: int = 10):
    """Block ``block`` of the table of :func:`customer_blocks` (``width`` columns: 10 or 12)."""
    import pyarrow as pa

    numeric = NUMERIC_BY_WIDTH[width]
    setup = np.random.default_rng(seed)
    level = setup.normal(size=(N_SEGMENTS, len(PARQUET_NUMERIC)))  # each segment's offset per column
    channel_odds = np.cumsum(setup.dirichlet([0.7] * len(CHANNELS), size=N_SEGMENTS), axis=1)
    if len(numeric) > len(PARQUET_NUMERIC):
        level = np.hstack([level, setup.normal(size=(N_SEGMENTS, len(numeric) - len(PARQUET_NUMERIC)))])
    id_width = max(7, len(str(n_rows)))
    start = block * block_rows
    rng = np.random.default_rng([seed, block])
    m = min(block_rows, n_rows - start)
    segment = rng.integers(N_SEGMENTS, size=m)
    base = level[segment] * 1.5 + rng.standard_normal((m, len(numeric)))
    columns = {"customer_id": _customer_ids(start, m, id_width)}
    for j, (name, kind, centre, spread) in enumerate(numeric):
        values = _numeric_column(kind, centre, spread, base[:, j], rng)
        missing = rng.random(m) < MISSING_SHARE if name in MISSING_COLUMNS else None
        columns[name] = pa.array(values, mask=missing)
    columns["channel"] = _channels(channel_odds[segment], rng)
    return pa.table(columns)


def _numeric_column(kind: str, centre: float, spread: float, latent: np.ndarray, rng) -> np.ndarray:
    if kind == "money":  # log-normal, to the cent, with a few wild values
        values = np.round(np.exp(centre + spread * latent), 2)
        values[rng.random(len(values)) < WILD_SHARE] *= 50
        return values
    if kind == "count":
        return rng.poisson(np.exp(centre + spread * latent)).astype(np.int64)
    if kind == "share":
        return np.round(1 / (1 + np.exp(-(centre + spread * latent))), 4)
    return np.round(np.clip(centre + spread * latent, 18, 95), 1)


def _customer_ids(start: int, m: int, width: int):
    """"C0000001", "C0000002", ...: numbered from 1, zero-padded to ``width`` digits."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pa.array(np.arange(start + 1, start + m + 1)).cast(pa.string())
    return pc.binary_join_element_wise("C", pc.utf8_lpad(digits, width=width, padding="0"), "")


def _channels(cumulative_odds: np.ndarray, rng):
    """One level of CHANNELS per row, drawn with its segment's odds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    drawn = (rng.random(len(cumulative_odds))[:, None] > cumulative_odds[:, :-1]).sum(axis=1)
    return pc.take(pa.array(CHANNELS), pa.array(drawn))


def write_customers_parquet(path: Path, n_rows: int, row_group_rows: int = 1_000_000, seed: int = 0,
                            width: int = 10, workers: int = 1) -> Path:
    """Write the table of :func:`customer_blocks` to ``path``, one row group per block,
    the blocks drawn by ``workers`` processes (the same table whatever their number).

    The file appears only when complete, and records how it was made (see :func:`cached_parquet`).
    """
    import pyarrow.parquet as pq

    if n_rows < 1:
        raise ValueError(f"a table needs at least one row, got {n_rows}")
    partial = path.with_name(path.name + ".partial")
    made_with = json.dumps(_parquet_recipe(n_rows, row_group_rows, seed, width)).encode()
    writer = None
    try:
        for block in _drawn_blocks(n_rows, row_group_rows, seed, width, workers):
            if writer is None:
                schema = block.schema.with_metadata({CACHE_KEY: made_with})
                writer = pq.ParquetWriter(partial, schema)
            writer.write_table(block.replace_schema_metadata(schema.metadata), row_group_size=row_group_rows)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


def _drawn_blocks(n_rows, block_rows, seed, width, workers):
    if workers <= 1:
        yield from customer_blocks(n_rows, block_rows, seed, width)
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    blocks = range(-(-n_rows // block_rows))
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(partial(customer_block, n_rows=n_rows, block_rows=block_rows, seed=seed, width=width),
                            blocks)


def cached_parquet(folder: Path, n_rows: int, row_group_rows: int = 1_000_000, width: int = 10,
                   workers: int = 1) -> tuple[Path, str]:
    """The Parquet table in ``folder``, written unless a file made the same way is there."""
    import pyarrow.parquet as pq

    wide = "" if width == 10 else f"x{width}"
    path = folder / f"customers_{row_label(n_rows)}{wide}.parquet"
    if path.exists():
        try:
            made_with = pq.read_schema(path).metadata.get(CACHE_KEY)
        except Exception:  # an unreadable file is made again
            made_with = None
        if made_with is not None and json.loads(made_with) == _parquet_recipe(n_rows, row_group_rows, 0, width):
            return path, "reused"
    start = time.perf_counter()
    write_customers_parquet(path, n_rows, row_group_rows, width=width, workers=workers)
    return path, f"written in {time.perf_counter() - start:.1f} s"


def _parquet_recipe(n_rows: int, row_group_rows: int, seed: int, width: int = 10) -> dict:
    recipe = {"rows": n_rows, "row_group_rows": row_group_rows, "seed": seed, "generator": GENERATOR_VERSION}
    return recipe if width == 10 else {**recipe, "columns": width}


def row_label(n_rows: int) -> str:
    """10000000 -> "10m", 5000 -> "5k", 12345 -> "12345": the row count in a file name."""
    for size, letter in ((1_000_000, "m"), (1_000, "k")):
        if n_rows >= size and n_rows % size == 0:
            return f"{n_rows // size}{letter}"
    return str(n_rows)


# ---------------------------------------------------------------- running the command

#: Runs the command given after the file name, then writes its wall seconds and the
#: peak resident set of its largest process into that file. A wrapper per case, since
#: RUSAGE_CHILDREN is the largest over every child a process has waited for.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": code, "wall_seconds": wall, "peak_rss_bytes": peak}, out)
sys.exit(code)
"""


def gpukmeans_command() -> list[str]:
    script = Path(sys.executable).with_name("gpukmeans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]


def measure(args: list[str], measurement: Path) -> dict:
    """Run ``gpukmeans ARGS`` as a fresh process: its wall seconds and peak resident bytes."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(measurement), *gpukmeans_command(), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"gpukmeans {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    facts = json.loads(measurement.read_text())
    return {"wall_seconds": round(facts["wall_seconds"], 2), "peak_rss_bytes": facts["peak_rss_bytes"]}


def predict_takes_device() -> bool:
    """Whether the installed ``predict`` has a ``--device`` option (it is passed through when it has)."""
    done = subprocess.run([*gpukmeans_command(), "predict", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    return "--device" in done.stdout


@dataclass(frozen=True)
class Inputs:
    """Where a run's tables and outputs are."""

    csv: Path | None
    parquet: Path | None
    work: Path
    device: str
    predict_device: bool

    def out(self, case: str) -> Path:
        return self.work / f"out_{case}"

    def predicted(self) -> Path:
        return self.out("parquet-predict") / "predicted.parquet"


def case_arguments(case: str, inputs: Inputs) -> list[str]:
    """The ``gpukmeans`` arguments of ``case``."""
    segment_options = ["--out", str(inputs.out(case)), "--device", inputs.device, "--quiet"]
    if case == "csv-k8":
        return ["segment", str(inputs.csv), "--k", "8", *segment_options]
    if case == "parquet-k8":
        return ["segment", str(inputs.parquet), "--k", "8", "--categorical", "channel", *segment_options]
    if case == "parquet-sweep":
        return ["segment", str(inputs.parquet), "--categorical", "channel", *segment_options]
    if case == "parquet-predict":
        device = ["--device", inputs.device] if inputs.predict_device else []
        model = inputs.out("parquet-k8") / "model.safetensors"
        return ["predict", str(model), str(inputs.parquet), "--out", str(inputs.predicted()), *device, "--quiet"]
    raise ValueError(f"unknown case {case!r}")


def run_case(case: str, inputs: Inputs) -> dict:
    """Run one case: what it measured, and for segment runs the stages of its summary."""
    args = case_arguments(case, inputs)
    out = inputs.out(case)
    shutil.rmtree(out, ignore_errors=True)
    if case == "parquet-predict":
        out.mkdir(parents=True)
    result = {"case": case, "command": _shown(args), **measure(args, inputs.work / f"{case}.measured.json")}
    if case == "parquet-predict":
        fitted = inputs.out("parquet-k8") / "segments.parquet"
        result["rows_compared"], result["differing_segments"] = count_differing_segments(fitted, inputs.predicted())
    else:
        summary = json.loads((out / "summary.json").read_text())
        result.update(stages=summary["timings"], k=summary["k"], k_reason=summary["k_reason"])
        result.update(engine_and_outside(summary["timings"]))
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return result


def _shown(args: list[str]) -> str:
    """The command line with file names in place of paths."""
    return "gpukmeans " + " ".join(Path(a).name if os.sep in a else a for a in args)


def count_differing_segments(expected: Path, actual: Path) -> tuple[int, int]:
    """Rows compared, and rows whose ID or segment differs between two segments files (Parquet).

    The ID is the first column of ``expected``; rows are matched by position, so a
    different order counts as differing rows, and so does every row one file lacks.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    key = pq.read_schema(expected).names[0]
    if not {key, "segment"} <= set(pq.read_schema(actual).names):
        return pq.read_metadata(expected).num_rows, pq.read_metadata(expected).num_rows
    want = pq.read_table(expected, columns=[key, "segment"])
    got = pq.read_table(actual, columns=[key, "segment"])
    common = min(len(want), len(got))
    same = pc.and_(
        pc.equal(want[key][:common], got[key][:common]),
        pc.equal(want["segment"][:common].cast(pa.int64()), got["segment"][:common].cast(pa.int64())),
    )
    matching = pc.sum(pc.fill_null(same, False)).as_py() or 0
    return max(len(want), len(got)), max(len(want), len(got)) - matching


# ---------------------------------------------------------------- figures and targets


def engine_and_outside(stages: dict) -> dict:
    """Seconds in the engine (``fit`` and ``sweep``), in every other stage but ``total``, and their ratio."""
    timed = {name: seconds for name, seconds in stages.items() if isinstance(seconds, (int, float))}
    engine = sum(seconds for name, seconds in timed.items() if name in ENGINE_STAGES)
    outside = sum(seconds for name, seconds in timed.items() if name not in ENGINE_STAGES and name != "total")
    return {
        "engine_seconds": round(engine, 3),
        "outside_seconds": round(outside, 3),
        "outside_to_engine": round(outside / engine, 3) if engine > 0 else None,
    }


@dataclass(frozen=True)
class Target:
    """A figure of one case that must be at most ``limit``."""

    case: str
    what: str
    field: str
    limit: float


TARGETS = (
    Target("parquet-k8", "outside/engine", "outside_to_engine", 0.5),
    Target("parquet-k8", "peak memory", "peak_rss_bytes", 2 * GB),
    Target("parquet-sweep", "outside/engine", "outside_to_engine", 0.5),
    Target("parquet-predict", "peak memory", "peak_rss_bytes", 1.5 * GB),
    Target("parquet-predict", "rows whose segment differs from parquet-k8's", "differing_segments", 0),
)
#: On a CUDA GPU, at 100,000,000 rows x 12 columns: the whole command, and host memory.
GPU_TARGETS = (
    Target("parquet-k8", "wall seconds", "wall_seconds", 60),
    Target("parquet-k8", "peak host memory", "peak_rss_bytes", 16 * GB),
    Target("parquet-predict", "rows whose segment differs from parquet-k8's", "differing_segments", 0),
)


def check_targets(runs: list[dict], device: str = "cpu") -> list[dict]:
    """Each target of a case that ran (the GPU's on a CUDA device), with the measured
    value and whether it passes.

    A figure that could not be computed (no engine time for a ratio) fails.
    """
    by_case = {run_["case"]: run_ for run_ in runs}
    checks = []
    for target in (TARGETS if device == "cpu" else GPU_TARGETS):
        if target.case not in by_case:
            continue
        value = by_case[target.case].get(target.field)
        checks.append({"case": target.case, "what": target.what, "field": target.field, "limit": target.limit,
                       "value": value, "passed": value is not None and value <= target.limit})
    return checks


# ---------------------------------------------------------------- the report


def markdown(record: dict) -> str:
    runs = record["runs"]
    lines = [
        "# `gpukmeans segment` and `predict` end to end",
        "",
        markdown_header(record["machine"]),
        "",
        *_input_lines(record),
        "Each case is a fresh process (start-up and imports included); peak memory is the process's",
        "peak resident set (1 GB = 10^9 bytes). Engine: the stages `fit`, `sweep` and `stability` (k-means",
        "fits and refits); outside: every",
        "other stage the run's `summary.json` records (not `total`).",
        "",
        *([record["note"], ""] if record.get("note") else []),
        "| case | command | wall s | peak GB | engine s | outside s | outside/engine | k | load after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run_ in runs:
        lines.append(
            f"| {run_['case']} | `{run_['command']}` | {run_['wall_seconds']:.1f} | {run_['peak_rss_bytes'] / GB:.2f} "
            f"| {_figure(run_.get('engine_seconds'))} | {_figure(run_.get('outside_seconds'))} "
            f"| {_figure(run_.get('outside_to_engine'), 2)} | {run_.get('k', '-')} "
            f"| {run_['load_average_1m_after']:.2f} |"
        )
    lines += ["", "## Targets", "", "| case | figure | target | measured | passes |", "|---|---|---:|---:|---|"]
    for check in record["targets"]:
        lines.append(f"| {check['case']} | {check['what']} | <= {_target_value(check['field'], check['limit'])} "
                     f"| {_target_value(check['field'], check['value'])} | {'yes' if check['passed'] else 'NO'} |")
    lines += ["", *_stage_table(runs)]
    return "\n".join(lines) + "\n"


def _input_lines(record: dict) -> list[str]:
    lines = []
    if record.get("csv"):
        csv = record["csv"]
        lines.append(f"CSV: {csv['rows']:,} rows x {N_FEATURES} numeric columns plus an ID, {csv['mib']} MiB.")
    if record.get("parquet"):
        table = record["parquet"]
        lines.append(
            f"Parquet: {table['rows']:,} rows x {table.get('columns', 10)} columns (a string ID, "
            f"{table.get('columns', 10) - 2} numeric, `channel` with 3 levels), "
            f"{table['mib']} MiB in row groups of {table['row_group_rows']:,} rows."
        )
    return [*lines, ""] if lines else []


def _stage_table(runs: list[dict]) -> list[str]:
    """Seconds per stage of each segment run, the stages in order of first appearance."""
    timed = [run_ for run_ in runs if run_.get("stages")]
    if not timed:
        return []
    names = stage_order([list(run_["stages"]) for run_ in timed])
    lines = ["## Stages (seconds, from `summary.json`)", "",
             "| case | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for run_ in timed:
        lines.append(f"| {run_['case']} | " + " | ".join(_figure(run_["stages"].get(name)) for name in names) + " |")
    lines += ["", "Time the summary does not record (start-up, imports, writing after the summary) counts in",
              "the wall time only."]
    return lines


def stage_order(runs_stages: list[list[str]]) -> list[str]:
    """Every stage once, in order of first appearance, a stage first seen in a later run
    placed before the next stage it precedes there (a sweep before the fit, not after ``total``)."""
    order: list[str] = []
    for stages in runs_stages:
        for position, name in enumerate(stages):
            if name in order:
                continue
            following = next((later for later in stages[position + 1:] if later in order), None)
            order.insert(order.index(following) if following is not None else len(order), name)
    return order


def _figure(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _target_value(field: str, value) -> str:
    if value is None:
        return "-"
    if field == "peak_rss_bytes":
        return f"{value / GB:.2f} GB"
    if field == "outside_to_engine":
        return f"{value:.2f}"
    return f"{value:,}"


# ---------------------------------------------------------------- main


def selected_cases(only: list[str] | None) -> list[str]:
    """The cases to run, in their order; ``parquet-predict`` brings ``parquet-k8`` (its model)."""
    wanted = {name.strip() for entry in (only or CASES) for name in entry.split(",") if name.strip()}
    unknown = wanted - set(CASES)
    if unknown:
        raise SystemExit(f"error: unknown case(s) {', '.join(sorted(unknown))}; the cases are {', '.join(CASES)}")
    if "parquet-predict" in wanted:
        wanted.add("parquet-k8")
    return [case for case in CASES if case in wanted]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="Rows of the Parquet table.")
    parser.add_argument("--row-group-rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, choices=sorted(NUMERIC_BY_WIDTH), default=10,
                        help="Columns of the Parquet table (12 for the GPU target).")
    parser.add_argument("--workers", type=int, default=1, help="Processes drawing the Parquet table's blocks.")
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="Rows of the CSV table.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", action="append", help=f"Comma-separated cases among {', '.join(CASES)}.")
    parser.add_argument("--data-dir", type=Path, help="Folder caching the generated tables [default: a temp folder].")
    parser.add_argument("--keep", type=Path, help="Keep the outputs in this folder.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder for segment_cli.{json,md}.")
    parser.add_argument("--note", default="", help="Where the measured code came from, for the record.")
    args = parser.parse_args(argv)
    cases = selected_cases(args.only)

    info = machine_info()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_segment_"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    record = {"machine": info, "note": args.note, "device": args.device,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(set by the CLI: PASSIVE)")}
    csv = parquet = None
    if "csv-k8" in cases:
        csv, how = cached_csv(data_dir, args.csv_rows)
        record["csv"] = {"rows": args.csv_rows, "mib": round(csv.stat().st_size / 2**20, 1)}
        print(f"{csv}: {how}", file=sys.stderr)
    if any(case.startswith("parquet") for case in cases):
        parquet, how = cached_parquet(data_dir, args.rows, args.row_group_rows, args.columns, args.workers)
        record["parquet"] = {"rows": args.rows, "row_group_rows": args.row_group_rows, "columns": args.columns,
                             "mib": round(parquet.stat().st_size / 2**20, 1)}
        print(f"{parquet}: {how}", file=sys.stderr)
    inputs = Inputs(csv, parquet, work, args.device, "parquet-predict" in cases and predict_takes_device())

    runs = []
    for case in cases:
        runs.append(run_case(case, inputs))
        print(json.dumps(runs[-1]), file=sys.stderr)
    record.update(runs=runs, targets=check_targets(runs, args.device))

    args.results.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}"
    (args.results / f"segment_cli{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.results / f"segment_cli{suffix}.md").write_text(markdown(record))
    print((args.results / f"segment_cli{suffix}.md").read_text())
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return record


if __name__ == "__main__":
    main()
