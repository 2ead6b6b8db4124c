"""The ``gpukmeans`` command: a thin Typer layer over :mod:`gpukmeans.segmentation`.

Each command parses its options, calls one library function, and prints. Every
problem a user can cause ends as one line on standard error and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from enum import StrEnum
from typing import Annotated, Optional

import typer

from ._console import ProgressDisplay, fail, note, print_json, stop_cleanly_on_sigterm, user_errors
from ._help import Command, Group
from ._options import expand_option_groups
from ._streams import STDIN_NAME, is_stream, spooled_stdin, stdout_spool

# OpenMP threads that spin while waiting at the end of each parallel region lose
# whole scheduler time slices when other processes share the cores: a fit on a busy
# machine is several times slower spinning (benchmarks/bench_omp_wait.py). This must
# be set before torch loads its OpenMP runtime, hence here, before any command
# imports the library; a value the user set is kept. The library itself changes no
# process-wide setting, and neither does importing this package: its benchmark harness
# (gpukmeans_cli.benchmarking) leaves the policy to the benchmark that imports it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    help="GPU-accelerated k-means for customer segmentation: from a customer table to "
    "named segments, a report and a reusable model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    cls=Group,
)

# ---------------------------------------------------------------- shared options
# A help text that names its default writes "\\[default: ...]": --help renders help as rich
# markup (rich_markup_mode="rich", which Typer before 0.20.1 does not take as its default),
# where a bare "[default: ...]" reads as a style tag and vanishes.

DataArg = Annotated[
    Path,
    typer.Argument(
        help="Customer table: CSV (any delimiter) or Parquet; '-' reads it from standard input, which is copied "
        "to a temporary file first (the table is read in several passes) and deleted when the command ends.",
        show_default=False,
    ),
]
KOpt = Annotated[Optional[int], typer.Option("--k", help="Number of segments. Without it, a sweep chooses k.")]
KRangeOpt = Annotated[
    str,
    typer.Option("--k-range", metavar="LOW:HIGH",
                 help="Range of k to sweep, both ends included; its top is lowered on a small table."),
]
MinShareOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-share", metavar="FRACTION",
        help="No segment smaller than this share of the customers, e.g. 0.05 for 5%. The sweep skips every k "
        "whose fit has a smaller segment; with --k, such a fit is an error and nothing is written.",
    ),
]
LabelsFileOpt = Annotated[
    Optional[Path],
    typer.Option("--labels", metavar="FILE.json",
                 help='How columns read in segment names and the report: a JSON object such as '
                 '{"CASH_ADVANCE": "Cash advances"} \\[default: column names made readable].'),
]
LabelOpt = Annotated[
    Optional[list[str]],
    typer.Option("--label", metavar="COLUMN=Label", help="One column's label (repeat for more); overrides --labels."),
]
ColumnsOpt = Annotated[
    Optional[str],
    typer.Option(help="Comma-separated numeric columns to cluster \\[default: every numeric column but the ID]."),
]
IdOpt = Annotated[
    str, typer.Option("--id-column", help="Customer ID column, never clustered; 'auto' detects it, 'none' for none.")
]
CategoricalOpt = Annotated[Optional[str], typer.Option(help="Comma-separated columns to one-hot encode.")]
DropMissingOpt = Annotated[
    bool, typer.Option("--drop-missing", help="Drop rows with missing values instead of imputing them.")
]
LogOpt = Annotated[
    str,
    typer.Option(metavar="<auto|none|COLUMNS>",
                 help="log1p transform: 'auto' (skewed non-negative columns), 'none', or comma-separated columns."),
]
ClipOpt = Annotated[
    Optional[float], typer.Option(help="Clip numeric columns at this quantile and 1 minus it, e.g. 0.01.")
]


# Options with a fixed set of values are string enums: --help lists the values, Click refuses
# others, and each value is the plain string the library takes.
class Scale(StrEnum):
    standard = "standard"
    robust = "robust"
    minmax = "minmax"
    none = "none"


class Decimal(StrEnum):
    point = "."
    comma = ","


ScaleOpt = Annotated[Scale, typer.Option(help="How columns are scaled.")]
DecimalOpt = Annotated[
    Optional[Decimal],
    typer.Option(help="Decimal separator of numbers such as 1.234 that read two ways "
                 "\\[default: detected from the file]."),
]
NInitOpt = Annotated[
    str, typer.Option("--n-init", metavar="<auto|N>", help="k-means restarts (they share passes over the data), or 'auto'.")
]
SweepNInitOpt = Annotated[
    str,
    typer.Option("--sweep-n-init", metavar="<auto|N>",
                 help="Restarts per k when k is chosen (without --k); 'auto' is three per k, "
                 "each k also started from its neighbours."),
]
MaxIterOpt = Annotated[int, typer.Option("--max-iter", help="Most Lloyd iterations per fit.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed; the same seed gives the same segments.")]
#: The values of --device; N is a CUDA device's index.
DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def _device(text: str) -> str:
    """A --device value as given, or Click's message for a value outside the choices."""
    if text in DEVICES[:3] or re.fullmatch(r"cuda:\d+", text):
        return text
    raise ValueError(f"{text!r} is not one of {', '.join(map(repr, DEVICES))}.")


# The device is a fact of the machine, so it can be set once for the machine.
DeviceOpt = Annotated[
    str,
    typer.Option(parser=_device, metavar="<" + "|".join(DEVICES) + ">", envvar="GPUKMEANS_DEVICE",
                 help="Where to run: auto is CUDA when present, else the CPU."),
]
SampleOpt = Annotated[int, typer.Option("--sample-size", help="Rows for the sampled silhouette and the plots.")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an earlier output of this command at --out (a folder holding only files it writes). "
        "A folder holding other files or the input, a file, a link or a special file is never replaced.",
    ),
]
FileForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing --out file. An input, a folder, a link or a special file is never replaced.",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display and no messages.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on standard output.")]


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        fail(f"expected comma-separated column names, got {text!r}")
    return names


def _n_init(text: str, option: str = "--n-init"):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        fail(f"{option} must be 'auto' or a positive integer, got {text!r}")
    return value


@dataclass(frozen=True)
class Preprocessing:
    """How the table is cleaned and scaled: the options ``segment`` and ``sweep`` share."""

    columns: ColumnsOpt = None
    id_column: IdOpt = "auto"
    categorical: CategoricalOpt = None
    drop_missing: DropMissingOpt = False
    log: LogOpt = "auto"
    clip: ClipOpt = None
    scale: ScaleOpt = Scale.standard
    decimal: DecimalOpt = None

    def as_kwargs(self) -> dict:
        """The library's preprocessing arguments (as taken by ``segment`` and ``sweep_k``)."""
        return {
            "columns": _split(self.columns),
            "id_column": None if self.id_column.lower() == "none" else self.id_column,
            "categorical": _split(self.categorical) or (),
            "missing": "drop" if self.drop_missing else "impute",
            "log": self.log if self.log in ("auto", "none") else _split(self.log),
            "clip": self.clip,
            "scale": self.scale,
            "decimal": self.decimal,
        }


@dataclass(frozen=True)
class Engine:
    """How the k-means fits run: the options ``segment`` and ``sweep`` share.

    The two commands differ only in ``n_init``'s default, set by their default instances.
    """

    n_init: NInitOpt = "10"
    max_iter: MaxIterOpt = 300
    seed: SeedOpt = 0
    device: DeviceOpt = "auto"
    sample_size: SampleOpt = 10_000

    def as_kwargs(self) -> dict:
        """The library's fitting arguments (as taken by ``segment`` and ``sweep_k``)."""
        return {
            "n_init": _n_init(self.n_init),
            "max_iter": self.max_iter,
            "seed": self.seed,
            "device": self.device,
            "sample_size": self.sample_size,
        }


#: The command line as typed, recorded by :func:`main` (None when the app is driven
#: from Python, e.g. by Typer's test runner, where sys.argv is someone else's).
_invocation: list[str] | None = None


def _command_line() -> str | None:
    return " ".join(["gpukmeans", *map(shlex.quote, _invocation)]) if _invocation is not None else None


@contextlib.contextmanager
def _torchrun_ranks(device: str):
    """Join the torchrun run this command belongs to, if any, for the command's
    duration; yields whether this process is a rank other than 0 (which prints nothing)."""
    from gpukmeans.segmentation.ranks import start_process_group, stop_process_group, torchrun_world

    world = torchrun_world()
    if world is None:
        yield False
        return
    start_process_group(device)
    try:
        yield world[0] != 0
    finally:
        stop_process_group()


def _default_out(data: Path, suffix: str) -> Path:
    return Path(f"{'stdin' if is_stream(data) else data.stem}_{suffix}")


def _refuse_folder_on_stdout(out: Path | None) -> None:
    if is_stream(out):
        fail("--out names a folder here; only predict and rfm write their table to standard output ('-')")


def _refuse_two_writers_of_stdout(out: Path, json_output: bool) -> None:
    if is_stream(out) and json_output:
        fail("--out - and --json both write to standard output; give --out a file to have both")


def _where(out: Path) -> str:
    return "standard output" if is_stream(out) else str(out)


def _labels(labels_file: Path | None, label: list[str] | None) -> dict[str, str]:
    """The labels of ``--labels FILE.json``, then of each ``--label COLUMN=Label``."""
    from gpukmeans.segmentation.labels import parse_label, read_labels_file

    labels = read_labels_file(labels_file) if labels_file is not None else {}
    labels.update(parse_label(text) for text in label or ())
    return labels


# ---------------------------------------------------------------- commands


def _version() -> str:
    """The installed package's version, read from its metadata without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpukmeans")
    except PackageNotFoundError:  # run from a source tree that is not installed
        import gpukmeans

        return gpukmeans.__version__


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"gpukmeans {_version()}")
        raise typer.Exit()


@app.callback()
def _options_of_every_command(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")
    ] = False,
):
    """Options given before the command's name."""



@app.command(cls=Command)
@expand_option_groups
def segment(
    data: DataArg,
    k: KOpt = None,
    k_range: KRangeOpt = "2:12",
    min_share: MinShareOpt = None,
    preprocessing: Preprocessing = Preprocessing(),
    labels_file: LabelsFileOpt = None,
    label: LabelOpt = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder (new or empty) \\[default: DATA's name + _segments].")
    ] = None,
    force: ForceOpt = False,
    engine: Engine = Engine(n_init="10"),
    sweep_n_init: SweepNInitOpt = "auto",
    stability: Annotated[
        int,
        typer.Option("--stability", metavar="B",
                     help="Bootstrap resamples for each segment's stability (Hennig's mean Jaccard, 0 to 1); "
                     "0 skips it."),
    ] = 20,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
):
    """Segment customers: clean, scale, choose k, cluster, profile and name the segments.

    Writes segments (same format as DATA), profiles.csv, summary.json, report.html
    and model.safetensors (for `gpukmeans predict`) into the output folder, and says
    how distinct the segments are.
    """
    from gpukmeans.segmentation import parse_k_range
    from gpukmeans.segmentation import segment as run_segment

    _refuse_folder_on_stdout(out)
    out = out or _default_out(data, "segments")
    with user_errors(quiet=quiet or json_output), _torchrun_ranks(engine.device) as follower:
        quiet = quiet or follower
        low_high = parse_k_range(k_range)
        labels = _labels(labels_file, label)
        with ProgressDisplay(quiet=quiet or json_output) as progress, spooled_stdin(data) as (table, source):
            result = run_segment(
                table, k=k, k_range=low_high, min_share=min_share, labels=labels, **preprocessing.as_kwargs(),
                **engine.as_kwargs(), sweep_n_init=_n_init(sweep_n_init, "--sweep-n-init"), stability=stability,
                out=out, force=force, report=not no_report, listener=progress, command=_command_line(),
                source=source,
            )
    if result is None:  # a rank other than 0: rank 0 writes and prints
        return
    summary = result.summary
    if json_output:
        print_json(summary)
        return
    _print_preprocessing_notes(summary["preprocessing"], quiet)
    _print_run_notes(summary, quiet)
    _print_dissolving(summary["segments"], quiet)
    if quiet:
        return
    _print_choice(summary)
    _print_segments(summary["segments"])
    _print_rules(summary)
    typer.echo(f"Wrote {out}/ ({', '.join(summary['outputs']['files'])}) in {summary['timings']['total']:.1f} s")
    if not no_report:
        typer.echo(f"Report: {out / 'report.html'}")


@app.command(cls=Command)
@expand_option_groups
def sweep(
    data: DataArg,
    k_range: KRangeOpt = "2:12",
    min_share: MinShareOpt = None,
    preprocessing: Preprocessing = Preprocessing(),
    out: Annotated[
        Optional[Path], typer.Option(help="Folder for sweep.csv and the plots \\[default: DATA's name + _sweep].")
    ] = None,
    force: ForceOpt = False,
    engine: Engine = Engine(n_init="auto"),
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
):
    """Choose k only: the table of metrics per k, the elbow and silhouette plots, a recommendation."""
    from gpukmeans.segmentation import parse_k_range, sweep_k

    _refuse_folder_on_stdout(out)
    out = out or _default_out(data, "sweep")
    with user_errors(quiet=quiet or json_output), _torchrun_ranks(engine.device) as follower:
        quiet = quiet or follower
        low_high = parse_k_range(k_range)
        with ProgressDisplay(quiet=quiet or json_output) as progress, spooled_stdin(data) as (table, source):
            run = sweep_k(
                table, k_range=low_high, min_share=min_share, **preprocessing.as_kwargs(), **engine.as_kwargs(),
                out=out, force=force, listener=progress, command=_command_line(), source=source,
            )
    if run is None:
        return
    if json_output:
        print_json(run.summary)
        return
    _print_preprocessing_notes(run.summary["preprocessing"], quiet)
    _print_run_notes(run.summary, quiet)
    if quiet:
        return
    typer.echo(run.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"Recommended k = {run.summary['recommended_k']}: {run.summary['reason']}")
    typer.echo(f"Wrote {out}/ (sweep.csv, elbow.png, silhouette.png, summary.json)")


@app.command(cls=Command)
def predict(
    model: Annotated[Path, typer.Argument(help="model.safetensors, or the segment output folder holding it.")],
    data: DataArg,
    out: Annotated[
        Path,
        typer.Option(help="File to write (.csv or .parquet), with the columns of segments; '-' writes CSV to "
                     "standard output once every row is done, and the messages to standard error."),
    ],
    decimal: Annotated[
        Optional[Decimal],
        typer.Option(help="Decimal separator of numbers such as 1.234 that read two ways "
                     "\\[default: the training table's]."),
    ] = None,
    force: FileForceOpt = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
):
    """Assign new customers to the segments of a saved model, batch by batch."""
    from gpukmeans.segmentation import predict as run_predict
    from gpukmeans.segmentation.ranks import torchrun_world

    if (torchrun_world() or (0, 1))[0] != 0:
        return  # under torchrun, rank 0 predicts alone: the output is one file
    _refuse_two_writers_of_stdout(out, json_output)
    with user_errors(quiet=quiet or json_output):
        with ProgressDisplay(quiet=quiet or json_output) as progress, spooled_stdin(data) as (table, source), \
                stdout_spool(out) as target:
            prediction = run_predict(model, table, out=target, decimal=decimal, force=force, device=device,
                                     listener=progress, source=source)
    counts = {key: count for key, count in prediction.counts.items() if count}
    if json_output:
        print_json(
            {
                "rows": prediction.rows,
                "out": str(out),
                "segments": [{"segment": int(s), "name": n, "size": int(c)} for (s, n), c in counts.items()],
            }
        )
        return
    if not quiet:
        to_stderr = is_stream(out)  # standard output holds the table
        total = max(prediction.rows, 1)
        _print_segments(
            [{"segment": s, "name": n, "size": c, "share": c / total} for (s, n), c in counts.items()],
            err=to_stderr,
        )
        for name, count in prediction.unknown_levels.items():
            note(f"warning: {count:,} rows hold a level of {name!r} the model never saw (counted in no level)",
                 quiet=quiet)
        typer.echo(f"Wrote {prediction.rows:,} rows to {_where(out)}", err=to_stderr)


@app.command(cls=Command)
def compare(
    old: Annotated[Path, typer.Argument(help="Segments file of the earlier snapshot (from segment or predict).")],
    new: Annotated[Path, typer.Argument(help="Segments file of the later snapshot.")],
    out: Annotated[Path, typer.Option(help="Table of counts to write (.csv or .parquet): old segments by new.")],
    html_out: Annotated[
        Optional[Path], typer.Option("--html", help="Also write a flow chart with the table, as one HTML page.")
    ] = None,
    old_model: Annotated[
        Optional[Path], typer.Option("--old-model", help="OLD's model \\[default: model.safetensors beside OLD].")
    ] = None,
    new_model: Annotated[
        Optional[Path], typer.Option("--new-model", help="NEW's model \\[default: model.safetensors beside NEW].")
    ] = None,
    force: FileForceOpt = False,
    quiet: QuietOpt = False,
):
    """Where customers moved between two snapshots: counts by old and new segment, joined on the ID.

    Segments match by name when both files come from one model, else by their centres (two models over the same features) or by the customers they share.
    """
    from gpukmeans.segmentation.compare import compare_segments

    with user_errors(quiet=quiet):
        comparison = compare_segments(old, new, old_model=old_model, new_model=new_model, out=out,
                                      html_out=html_out, force=force)
    for text in comparison.notes:
        note(f"note: {text}", quiet=quiet)
    if quiet:
        return
    if comparison.method != "name":
        typer.echo(f"Segments matched by {comparison.method}:")
        for a, b in comparison.matching.items():
            typer.echo(f"  {a} -> {b}")
    if comparison.stayed is not None:
        typer.echo(f"{100 * comparison.stayed:.1f}% of the {comparison.in_both:,} customers in both files stayed "
                   f"in their segment")
    for line in comparison.flow_lines():
        typer.echo(f"  {line}")
    typer.echo(f"Wrote {out}" + (f" and {html_out}" if html_out else ""))


@app.command(cls=Command)
def rfm(
    transactions: Annotated[
        Path,
        typer.Argument(help="Transaction log: one row per invoice line (CSV or Parquet); '-' reads it from "
                       "standard input, which is copied to a temporary file first and deleted when the command ends."),
    ],
    out: Annotated[
        Path,
        typer.Option(help="File to write (.csv or .parquet): one row per customer; '-' writes CSV to standard "
                     "output, and the messages to standard error."),
    ],
    force: FileForceOpt = False,
    customer_column: Annotated[str, typer.Option(help="Customer ID column.")] = "CustomerID",
    invoice_column: Annotated[str, typer.Option(help="Invoice number column; 'C...' marks a cancellation.")] = "InvoiceNo",
    date_column: Annotated[str, typer.Option(help="Invoice date column.")] = "InvoiceDate",
    quantity_column: Annotated[str, typer.Option(help="Quantity column.")] = "Quantity",
    price_column: Annotated[str, typer.Option(help="Unit price column.")] = "UnitPrice",
    date_format: Annotated[
        Optional[str], typer.Option(help="strptime format of the dates, e.g. '%d/%m/%Y %H:%M' \\[default: inferred].")
    ] = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
):
    """Recency, frequency and monetary value per customer, ready for `gpukmeans segment`."""
    from gpukmeans.segmentation import RFMColumns, rfm_file

    columns = RFMColumns(
        customer=customer_column, invoice=invoice_column, date=date_column,
        quantity=quantity_column, price=price_column,
    )
    _refuse_two_writers_of_stdout(out, json_output)
    with user_errors(quiet=quiet or json_output):
        with spooled_stdin(transactions) as (log, source), stdout_spool(out) as target:
            run = rfm_file(log, target, columns=columns, date_format=date_format, force=force, source=source)
    facts = {
        "transactions": run.n_transactions,
        "used": run.n_used,
        "dropped": run.dropped,
        "malformed_lines_skipped": run.skipped_lines,
        "customers": len(run.table),
        "snapshot": str(run.snapshot),
        "out": str(out),
    }
    if json_output:
        print_json(facts)
        return
    if quiet:
        return
    to_stderr = is_stream(out)  # standard output holds the table
    dropped = ", ".join(f"{reason}: {n:,}" for reason, n in run.dropped.items() if n) or "none"
    if run.skipped_lines:
        shown = ", ".join(map(str, run.skipped_lines[:10])) + (" ..." if len(run.skipped_lines) > 10 else "")
        note(f"skipped {len(run.skipped_lines)} malformed line(s): {shown}", quiet=quiet)
    typer.echo(f"{run.n_used:,} of {run.n_transactions:,} transactions used; dropped: {dropped}", err=to_stderr)
    typer.echo(f"{len(run.table):,} customers, snapshot date {run.snapshot:%Y-%m-%d %H:%M}; wrote {_where(out)}",
               err=to_stderr)
    if not to_stderr:
        typer.echo(f"Next: gpukmeans segment {shlex.quote(str(out))}")


@app.command(cls=Command)
def demo(
    rows: Annotated[int, typer.Option(help="Synthetic customers to generate.")] = 20_000,
    out: Annotated[Path, typer.Option(help="Folder for the generated table and the results.")] = Path("gpukmeans-demo"),
    force: ForceOpt = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
):
    """Generate a realistic customer table with known segments and segment it end to end."""
    from gpukmeans.segmentation import run_demo

    with user_errors(quiet=quiet or json_output):
        with ProgressDisplay(quiet=quiet or json_output) as progress:
            result = run_demo(out, rows=rows, seed=seed, device=device, force=force, listener=progress,
                              command=_command_line())
    summary = result.summary
    if json_output:
        print_json(summary)
        return
    if quiet:
        return
    typer.echo(f"Generated {rows:,} customers with 5 planted segments: {out / 'customers.csv'}")
    _print_choice(summary)
    _print_segments(summary["segments"])
    typer.echo(
        f"Agreement with the planted segments (adjusted Rand index): {summary['demo']['adjusted_rand_index']:.3f}"
    )
    typer.echo(f"Done in {summary['timings']['total']:.1f} s. Open the report: {result.out / 'report.html'}")


@app.command(cls=Command)
def info(json_output: JsonOpt = False):
    """Versions, devices, GPU memory, and which optional parts are installed."""
    from gpukmeans._environment import environment_info

    facts = environment_info()
    if json_output:
        print_json(facts)
        return
    typer.echo("Versions: " + ", ".join(f"{name} {version}" for name, version in facts["versions"].items()))
    typer.echo(f"CPU: {facts['cpu']['cores']} cores ({facts['cpu']['torch_threads']} torch threads)")
    if facts["cuda"]["available"]:
        for gpu in facts["cuda"]["devices"]:
            typer.echo(
                f"GPU {gpu['index']}: {gpu['name']}, {gpu['free_gib']:.1f} of {gpu['total_gib']:.1f} GiB free"
            )
    else:
        typer.echo("GPU: none (CUDA is not available to torch); everything runs on the CPU")
    optional = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in facts["optional"].items())
    typer.echo(f"Optional parts: {optional}")


# ---------------------------------------------------------------- more commands
# Commands that live in their own modules register here, one line each.
from .bench import bench  # noqa: E402

app.command(cls=Command)(bench)


# ---------------------------------------------------------------- printing


#: Column names shown per note line; a wide table's long lists end in "and N more".
_NAMES_SHOWN = 20


def _print_preprocessing_notes(prep: dict, quiet: bool) -> None:
    left_out: dict[str, list[str]] = {}
    for entry in prep.get("left_out", []):
        left_out.setdefault(entry["reason"], []).append(entry["column"])
    if left_out.get("ID column"):
        note("note: ID column, not clustered: " + _names(left_out["ID column"]), quiet=quiet)
    if left_out.get("not numeric"):
        note(
            "note: non-numeric column(s) left out: " + _names(left_out["not numeric"])
            + " (list them with --categorical to one-hot encode)",
            quiet=quiet,
        )
    for entry in prep.get("left_out", []):
        if entry["reason"] == "not numeric" and entry.get("detail", "").startswith("mostly numbers"):
            note(f"warning: column {entry['column']!r} is left out: {entry['detail']}", quiet=quiet)
    if prep.get("auto_categorical"):
        note(
            "note: column(s) of codes one-hot encoded as categories: " + _names(prep["auto_categorical"])
            + " (name them in --columns to cluster them as numbers)",
            quiet=quiet,
        )
    if prep.get("missing_counts"):
        counts = _names([f"{c} {n:,}" for c, n in prep["missing_counts"].items()])
        action = f"{prep.get('rows_dropped_missing', 0):,} rows dropped" if prep.get("missing") == "drop" else "imputed"
        note(f"note: missing values ({action}): {counts}", quiet=quiet)
    # Constant columns and columns without values are left out with a warning each.
    for warning in prep.get("warnings", []):
        note(f"warning: {warning}", quiet=quiet)
    if prep.get("log_columns"):
        note("note: log1p-transformed: " + _names(prep["log_columns"]), quiet=quiet)


def _print_run_notes(summary: dict, quiet: bool) -> None:
    """What the run changed on its own (a narrowed k range, k's skipped for the minimum share)."""
    for text in summary.get("notes", []):
        note(f"note: {text}", quiet=quiet)


def _print_choice(summary: dict) -> None:
    """The k and why, then how distinct the segments are, each on one plain line."""
    typer.echo(f"k = {summary['k']}: {summary['k_reason']}")
    if summary.get("structure_note"):
        typer.echo(summary["structure_note"])


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN:,} more" if len(names) > _NAMES_SHOWN else "")


def _print_dissolving(segments: list[dict], quiet: bool) -> None:
    """One warning naming the segments whose stability is below 0.6: they dissolve when
    the customers are resampled (Hennig's reading), so they are not to be acted on."""
    from gpukmeans.segmentation.stability import DISSOLVES_BELOW

    weak = [item for item in segments if item.get("stability", 1.0) < DISSOLVES_BELOW]
    if weak:
        listed = "; ".join(f"{item['segment']} {item['name']!r} {item['stability']:.2f}" for item in weak)
        note(f"warning: segment(s) that dissolve when the customers are resampled (stability below "
             f"{DISSOLVES_BELOW}): {listed}", quiet=quiet)


def _print_segments(segments: list[dict], *, err: bool = False) -> None:
    with_stability = any("stability" in item for item in segments)
    stability_head = "stability  " if with_stability else ""
    typer.echo(f"{'segment':>7}  {'customers':>10}  {'share':>6}  {stability_head}name", err=err)
    for item in segments:
        stability = f"{item['stability']:>9.2f}  " if with_stability else ""
        size, share = f"{item['size']:>10,}", f"{100 * item['share']:>5.1f}%"
        typer.echo(f"{item['segment']:>7}  {size}  {share}  {stability}{item['name']}", err=err)


def _print_rules(summary: dict) -> None:
    """Each segment's rule, after the share of customers the rules give their own segment."""
    if summary.get("rules_fidelity") is None:
        return
    typer.echo(f"Rules (they give {100 * summary['rules_fidelity']:.1f}% of the customers their own segment):")
    for item in summary["segments"]:
        typer.echo(f"{item['segment']:>7}  {item['rule']}")


def main() -> None:
    """Entry point of the installed ``gpukmeans`` command."""
    global _invocation
    _invocation = sys.argv[1:]
    with stop_cleanly_on_sigterm():
        app()
